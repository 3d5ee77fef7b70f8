"""Delivery stores: the interface, the in-memory default, and opening one from a URL."""

from __future__ import annotations

import urllib.parse
from typing import Any

from ..converter import did_you_mean
from .base import (
    ConfirmsHolding,
    DeadLetter,
    Delivery,
    DeliveryStore,
    HasKeyValue,
    HasProducerRole,
    HasWorkerRole,
    KeyValue,
    Page,
    PagedStore,
    PendingCounts,
    ReplaysInOneStep,
    ReturnsDeadLetters,
    SharedStore,
    SharesBreakers,
    SharesRateLimits,
    StopsConsuming,
    StoreOpenError,
    UndecodableEvent,
    decode_event,
    new_delivery_id,
)
from .memory import MemoryStore

__all__ = [
    "ConfirmsHolding",
    "DeadLetter",
    "Delivery",
    "DeliveryStore",
    "HasKeyValue",
    "HasProducerRole",
    "HasWorkerRole",
    "KeyValue",
    "MemoryStore",
    "Page",
    "PagedStore",
    "PendingCounts",
    "ReplaysInOneStep",
    "ReturnsDeadLetters",
    "SharedStore",
    "SharesBreakers",
    "SharesRateLimits",
    "StopsConsuming",
    "StoreOpenError",
    "UndecodableEvent",
    "decode_event",
    "new_delivery_id",
    "open_store",
    "store_url_problem",
]


def open_store(spec: Any, backends: dict[str, Any]) -> DeliveryStore:
    """A store from what the user passed: None (memory), a store object, or a URL whose scheme
    a plugin's `store_backends` names (`sqlite:///outbox.db`, `redis://127.0.0.1:6379/0`)."""
    if spec is None or spec == "memory" or spec == "memory://":
        return MemoryStore()
    if isinstance(spec, str) and spec.lower().startswith("memory://?"):
        return _memory_store(spec)
    if not isinstance(spec, str):
        if isinstance(spec, DeliveryStore):
            return spec
        raise TypeError(f"store must be a URL or a DeliveryStore, got {type(spec).__name__}")
    scheme = spec.split(":", 1)[0].lower()
    factory = backends.get(scheme)
    if factory is None:
        known = ", ".join(sorted({"memory", *backends})) or "memory"
        raise ValueError(
            f"no store for {scheme!r} URLs{did_you_mean(scheme, {'memory', *backends})} "
            f"(known: {known}); is its plugin installed?"
        )
    store: DeliveryStore = factory(spec)
    return store


def _memory_store(url: str) -> MemoryStore:
    """`memory://?history=N`: the memory store keeping the history of the newest N
    deliveries (0 keeps none)."""
    options: dict[str, Any] = {}
    for key, value in urllib.parse.parse_qsl(url.split("?", 1)[1], keep_blank_values=True):
        if key != "history":
            raise ValueError(f"{url!r}: unknown option {key!r} (known: history)")
        try:
            options["history_limit"] = int(value)
        except ValueError:
            raise ValueError(f"{url!r}: history must be a whole number, got {value!r}") from None
    return MemoryStore(**options)


def store_url_problem(
    spec: str, backends: dict[str, Any], plugin_manager: Any = None
) -> str | None:
    """What is wrong with a store URL, found without opening it (no file, no connection):
    not a URL, an unknown scheme (with the plugin to install or allow), or an option the store
    refuses."""
    if spec in ("memory", "memory://"):
        return None
    if spec.lower().startswith("memory://?"):
        try:
            _memory_store(spec)
        except ValueError as exc:
            return str(exc)
        return None
    if "://" not in spec:
        # Shown only when it cannot hold credentials (user:password@host) or query tokens.
        shown = f", got {spec!r}" if "@" not in spec and "?" not in spec else ""
        return f"expected a URL such as sqlite:///outbox.db{shown}"
    scheme = spec.split(":", 1)[0].lower()
    if scheme not in backends:
        schemes = {"memory", *backends}
        close = did_you_mean(scheme, schemes)
        message = f"no store for {scheme!r} URLs{close} (known: {', '.join(sorted(schemes))})"
        if close:
            return message
        installed = getattr(plugin_manager, "installed", [])
        plugin = next((n for n in (scheme, scheme[:-1]) if n in installed), scheme)
        hint = getattr(plugin_manager, "install_hint", None)
        return f"{message}; a plugin adds it: " + (
            hint(plugin) if hint is not None else f"pip install empathy-webhooks-{plugin}"
        )
    try:
        open_store(spec, backends)
    except (ValueError, TypeError) as exc:
        return str(exc)
    return None
