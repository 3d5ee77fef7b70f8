"""`pending_counts` is counted inside Redis a page at a time: the counts, not the queued events'
text, cross the wire (the gateway's health pages ask it on every view). Its figures are the
ones reading the entries gave, across pages, webhooks and attempted entries."""

from __future__ import annotations

from typing import Any

from empathy_webhooks_redis import store as redis_store

from empathy_webhooks_core import CustomWebhook, WebhookDispatcher


async def _read_the_entries(store: Any) -> dict[str, dict[str, int]]:
    """What the counts were before: every entry read, its fields and all."""
    attempted = await store.redis.hgetall(store.attempts_key)
    counts: dict[str, dict[str, int]] = {}
    for _, fields in await store.redis.xrange(store.stream):
        row = counts.setdefault(fields.get("w") or "", {"pending": 0, "retrying": 0})
        row["pending"] += 1
        row["retrying"] += (
            redis_store._int(attempted.get(fields.get("d") or "", fields.get("a"))) > 0
        )
    return counts


async def test_pending_counts_across_pages_webhooks_and_attempts(
    redis_url: str, monkeypatch: Any
) -> None:
    monkeypatch.setattr(redis_store, "_COUNT_PAGE_SIZE", 7)  # pages of 7: many of them
    hooks = [CustomWebhook(name=name, url=f"http://127.0.0.1:9/{name}") for name in ("a", "b")]
    async with WebhookDispatcher(webhooks=hooks, store=redis_url) as producer:
        for n in range(25):
            await producer.emit("alert", {"n": n})
        await producer.emit_event((await producer.emit("alert", {"n": "only a"})), webhooks=["a"])
        store = producer.store
        # Two deliveries attempted before (a worker's count), one of them by its entry's own.
        entries = await store.redis.xrange(store.stream, count=3)
        await store.redis.hset(store.attempts_key, entries[0][1]["d"], 2)
        await store.redis.hset(store.attempts_key, entries[2][1]["d"], 0)
        counts = await store.pending_counts()
        assert counts == await _read_the_entries(store)
        assert counts["a"]["pending"] == 27 and counts["b"]["pending"] == 26
        assert counts["a"]["retrying"] + counts["b"]["retrying"] == 1
