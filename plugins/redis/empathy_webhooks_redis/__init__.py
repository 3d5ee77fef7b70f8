"""Redis Streams store for empathy-webhooks: `store="redis://127.0.0.1:6379/0"`.

Processes that only `emit` are producers; `empathy-webhooks worker` (or
`empathy_webhooks_core.worker.run_worker`) runs a delivery worker, as many as you like, on any
machine that reaches the server. See `store.py` for the keys and the guarantees.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from empathy_webhooks_core.plugin import hookimpl

from .breaker import RedisCircuitBreaker

if TYPE_CHECKING:
    from .store import RedisRateLimiter, RedisStore, open_redis_store

#: The plugin API this plugin is written for (docs/writing-plugins.md, section 7).
PLUGIN_API = "1.2"

__all__ = ["RedisCircuitBreaker", "RedisRateLimiter", "RedisStore", "open_redis_store"]

# `store` imports redis-py, which imports the OpenTelemetry SDK: about 0.2 s of CPU that every
# process loading the installed plugins would pay (each CLI command, each gateway), although only
# one that opens a redis:// store needs it. It is imported on first use, like the core's sqlite.
_STORE = f"{__name__}.store"
_LAZY = ("RedisRateLimiter", "RedisStore", "open_redis_store")


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_STORE), name)


def _open(url: str) -> Any:
    return __getattr__("open_redis_store")(url)


@hookimpl
def store_backends() -> dict[str, Callable[[str], Any]]:
    return {"redis": _open, "rediss": _open}


@hookimpl
def dispatcher_started(dispatcher: Any) -> None:
    # A worker-role store starts taking deliveries once the dispatcher's lanes are running.
    # No store module loaded: the store cannot be a Redis one (and redis-py stays unloaded).
    store_module = sys.modules.get(_STORE)
    store = dispatcher.store
    if store_module and isinstance(store, store_module.RedisStore) and store.role == "worker":
        store.start_consuming(dispatcher)
