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


async def test_dead_letter_counts_a_page_a_call_across_pages_and_replays(redis_url: str) -> None:
    """2,500 letters (a hash stored as a real hash table, not a listpack), counted a page
    of HSCAN a script call: one script over every letter held Redis for all its clients.
    A letter a replay holds within its lease is left out, as `dead_letters` leaves it."""
    hooks = [CustomWebhook(name="a", url="http://127.0.0.1:9/a")]
    async with WebhookDispatcher(webhooks=hooks, store=redis_url) as producer:
        store = producer.store
        letters = {
            f"dl_{n}": f'{{"webhook_name": "{"a" if n % 5 else "b"}", "n": {n}}}'
            for n in range(2_500)
        }
        letters["dl_odd"] = '{"n": 1, "webhook_name": "c\\u00e9"}'  # decoded whole
        await store.redis.hset(store.dead_key, mapping=letters)
        now = int((await store.redis.time())[0])
        await store.redis.hset(store.replaying_key, "dl_1", now)  # held by a replay
        calls = 0
        script = store._count_dead

        async def counted(**kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            return await script(**kwargs)

        store._count_dead = counted
        assert await store.dead_letter_counts() == {"a": 1_999, "b": 500, "cé": 1}
        assert calls > 1
