"""A long-running process must not grow with the deliveries it made: the per-delivery and
per-key state a dispatcher keeps is dropped when each delivery ends, and what it keeps on
purpose (the memory store's history, the response-time samples) stays under its bound.

A slow leak fails silently: the alerting process is OOM-killed after days. These tests run
a few thousand real deliveries and look at the structures themselves, and at live memory
between a round after warm-up and a later one (never at time).
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc

from empathy_webhooks_core import CustomWebhook, WebhookDispatcher
from empathy_webhooks_core.stores import MemoryStore
from empathy_webhooks_core.testing import Receiver, Reply

from .conftest import FAST


def _per_delivery_state(dispatcher: WebhookDispatcher) -> dict[str, int]:
    lane = dispatcher._lanes["hook"]
    return {
        "chains": len(lane.chains),
        "outcomes": len(lane.outcomes),
        "unfinished": len(lane.unfinished),
        "queue": len(lane.queue),
        "pending": lane.pending,
        "timers": len(dispatcher._timers),
    }


async def test_per_key_and_per_delivery_state_is_dropped(receiver: Receiver) -> None:
    """Distinct ordering keys (one each), retries, a 410 and dead letters replayed: once
    drained, nothing is left keyed by a delivery or an ordering key."""
    hook = CustomWebhook(
        name="hook",
        url=receiver.url("/h"),
        retry_policy={**FAST, "max_retries": 6},
        circuit_breaker=False,
    )
    store = MemoryStore(history_limit=100)
    async with WebhookDispatcher(webhooks=[hook], store=store) as dispatcher:
        receiver.faults([(Reply(status=503), 0.3)], seed=1)
        for n in range(600):
            await dispatcher.emit("alert", {"n": n}, ordering_key=f"key-{n}")
        await dispatcher.drain(timeout=30)

        receiver.clear_faults()
        receiver.respond(400)
        for n in range(100):
            await dispatcher.emit("alert", {"n": n}, ordering_key=f"gone-{n}")
        await dispatcher.drain(timeout=30)
        receiver.respond(200)
        assert await dispatcher.replay_dead_letters() == 100

        receiver.queue(Reply(status=410))
        await dispatcher.emit("alert", {"n": -1}, ordering_key="after-410")
        for _ in range(500):  # a drain does not wait for a disabled webhook's deliveries
            if not dispatcher.is_enabled("hook"):
                break
            await asyncio.sleep(0.01)
        assert not dispatcher.is_enabled("hook")
        dispatcher.enable_webhook("hook")
        await dispatcher.drain(timeout=30)

        assert _per_delivery_state(dispatcher) == dict.fromkeys(
            ("chains", "outcomes", "unfinished", "queue", "pending", "timers"), 0
        )
        assert await dispatcher.dead_letters() == []
        assert len(store._history) <= store.history_limit


async def test_live_memory_is_flat_after_warm_up(receiver: Receiver) -> None:
    """Rounds of deliveries, each with an ordering key of its own: live memory after a
    later round is within a generous margin of the round after warm-up (a leak of even 100
    bytes a delivery would show as 60 kB here)."""
    hook = CustomWebhook(
        name="hook",
        url=receiver.url("/h"),
        retry_policy=FAST,
        circuit_breaker=False,
    )
    rounds, per_round = 4, 300
    sizes: list[int] = []
    async with WebhookDispatcher(webhooks=[hook], store=MemoryStore(history_limit=50)) as d:
        tracemalloc.start()
        try:
            for r in range(rounds):
                for n in range(per_round):
                    key = r * per_round + n
                    await d.emit("alert", {"n": key}, ordering_key=f"k{key}")
                await d.drain(timeout=30)
                receiver.requests.clear()  # the receiver's own record is not the dispatcher's
                gc.collect()
                sizes.append(tracemalloc.get_traced_memory()[0])
        finally:
            tracemalloc.stop()
    # The response-time samples (2,048 floats at most) grow by ~20 kB over these rounds.
    growth = sizes[-1] - sizes[1]
    assert growth < 60_000, f"live memory grew {growth} bytes over {2 * per_round} deliveries"
