"""Whether the Redis server may evict this store's keys under memory pressure.

A server with a `maxmemory` and an eviction policy other than `noeviction` (the setting of a
Redis run as a cache) deletes keys to make room, without an error to anyone: with an
`allkeys-*` policy the deliveries' stream itself, so queued alerts vanish; with a
`volatile-*` one the keys that expire (attempt history, rate-limit windows, breaker state).
Sidekiq warns of the same at start-up. Read from `INFO memory`, which managed services that
rename or refuse `CONFIG` still answer; a server that answers neither is left unjudged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["eviction_risk", "memory_full"]


def eviction_risk(memory_info: Mapping[str, Any]) -> tuple[str, str] | None:
    """From `INFO memory`: None when nothing of this store can be evicted, else the log level
    (`error`: queued deliveries can vanish; `warning`: only keys that expire) and the reason."""
    policy = str(memory_info.get("maxmemory_policy", "noeviction"))
    try:
        limit = int(memory_info.get("maxmemory", 0))
    except (TypeError, ValueError):
        limit = 0
    if limit <= 0 or policy == "noeviction":
        # Without a limit Redis never evicts (it grows until the machine refuses it memory,
        # and then writes fail: an emit raises).
        return None
    if policy.startswith("allkeys-"):
        return (
            "error",
            f"maxmemory-policy is {policy} with maxmemory {limit} bytes: when the server "
            "fills up it deletes keys to make room, the deliveries' stream and dead letters "
            "included, and queued alerts vanish without an error; set maxmemory-policy "
            "noeviction (writes then fail loudly when it is full) or raise maxmemory",
        )
    return (
        "warning",
        f"maxmemory-policy is {policy} with maxmemory {limit} bytes: when the server fills up "
        "it deletes keys that expire (attempt history, rate-limit windows, breaker state, "
        "the gateway's idempotency keys, plugins' memory); "
        "queued deliveries and dead letters do not expire and are kept. maxmemory-policy "
        "noeviction keeps everything",
    )


def memory_full(memory_info: Mapping[str, Any]) -> str | None:
    """From `INFO memory`: why emits fail now, when the server is at its `maxmemory` with
    `noeviction` (it refuses every write that adds memory, an emit's XADD among them), else
    None. Workers still deliver and acknowledge, which frees memory."""
    policy = str(memory_info.get("maxmemory_policy", "noeviction"))
    try:
        limit = int(memory_info.get("maxmemory", 0))
        used = int(memory_info.get("used_memory", 0))
    except (TypeError, ValueError):
        return None
    if limit <= 0 or policy != "noeviction" or used < limit:
        return None
    return (
        f"the server uses {used} bytes of its maxmemory {limit} (noeviction): it refuses "
        "every write that adds memory, so each emit raises OutOfMemoryError until workers "
        "drain the stream or maxmemory is raised; workers still deliver and acknowledge"
    )
