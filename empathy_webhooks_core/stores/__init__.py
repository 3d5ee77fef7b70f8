"""Delivery stores: the interface, the in-memory default, and opening one from a URL."""

from __future__ import annotations

from typing import Any

from .base import (
    DeadLetter,
    Delivery,
    DeliveryStore,
    PagedStore,
    PendingCounts,
    StoreOpenError,
    UndecodableEvent,
    decode_event,
    new_delivery_id,
)
from .memory import MemoryStore

__all__ = [
    "DeadLetter",
    "Delivery",
    "DeliveryStore",
    "MemoryStore",
    "PagedStore",
    "PendingCounts",
    "StoreOpenError",
    "UndecodableEvent",
    "decode_event",
    "new_delivery_id",
    "open_store",
]


def open_store(spec: Any, backends: dict[str, Any]) -> DeliveryStore:
    """A store from what the user passed: None (memory), a store object, or a URL whose scheme
    a plugin's `store_backends` names (`sqlite:///outbox.db`, `redis://127.0.0.1:6379/0`)."""
    if spec is None or spec == "memory" or spec == "memory://":
        return MemoryStore()
    if not isinstance(spec, str):
        if isinstance(spec, DeliveryStore):
            return spec
        raise TypeError(f"store must be a URL or a DeliveryStore, got {type(spec).__name__}")
    scheme = spec.split(":", 1)[0].lower()
    factory = backends.get(scheme)
    if factory is None:
        known = ", ".join(sorted({"memory", *backends})) or "memory"
        raise ValueError(f"no store for {scheme!r} URLs (known: {known}); is its plugin installed?")
    store: DeliveryStore = factory(spec)
    return store
