"""Redis Streams store for empathy-webhooks: `store="redis://127.0.0.1:6379/0"`.

Processes that only `emit` are producers; `empathy-webhooks worker` (or
`empathy_webhooks_core.worker.run_worker`) runs a delivery worker, as many as you like, on any
machine that reaches the server. See `store.py` for the keys and the guarantees.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from empathy_webhooks_core.plugin import hookimpl

from .breaker import RedisCircuitBreaker
from .store import RedisRateLimiter, RedisStore, open_redis_store

#: The plugin API this plugin is written for (docs/writing-plugins.md, section 7).
PLUGIN_API = "1.0"

__all__ = ["RedisCircuitBreaker", "RedisRateLimiter", "RedisStore", "open_redis_store"]


@hookimpl
def store_backends() -> dict[str, Callable[[str], Any]]:
    return {"redis": open_redis_store, "rediss": open_redis_store}


@hookimpl
def dispatcher_started(dispatcher: Any) -> None:
    # A worker-role store starts taking deliveries once the dispatcher's lanes are running.
    store = dispatcher.store
    if isinstance(store, RedisStore) and store.role == "worker":
        store.start_consuming(dispatcher)
