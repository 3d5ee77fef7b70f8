"""A lane starts workers when it has work and lets them go when it has none: many quiet
webhooks hold no tasks, and a lane whose workers stopped still delivers what comes next."""

from __future__ import annotations

import asyncio

import pytest

from empathy_webhooks_core import CustomWebhook, Event, WebhookDispatcher
from empathy_webhooks_core._pipeline import work
from empathy_webhooks_core.testing import ReceivedRequest, Receiver, Reply


def _workers(dispatcher: WebhookDispatcher) -> dict[str, int]:
    return {name: len(lane.workers) for name, lane in dispatcher._lanes.items()}


async def test_quiet_webhooks_hold_no_workers(receiver: Receiver) -> None:
    webhooks = [CustomWebhook(name=f"quiet{n}", url=receiver.url()) for n in range(300)]
    async with WebhookDispatcher(webhooks=webhooks) as dispatcher:
        await dispatcher.start()
        assert set(_workers(dispatcher).values()) == {0}
        await dispatcher.emit_event(Event(event_type="alert", data={"n": 1}), webhooks=["quiet7"])
        await dispatcher.drain()
        figures = _workers(dispatcher)
        assert figures.pop("quiet7") == 1  # one delivery, one worker
        assert set(figures.values()) == {0}
    assert [r.json()["data"] for r in receiver.delivered] == [{"n": 1}]


async def test_a_burst_starts_up_to_max_concurrency_workers(receiver: Receiver) -> None:
    release = asyncio.Event()

    async def hold(_: ReceivedRequest) -> Reply:
        await release.wait()  # every answer waits: the workers stay busy until released
        return Reply(status=200)

    receiver.handler = hold
    webhook = CustomWebhook(name="burst", url=receiver.url(), max_concurrency=4)
    async with WebhookDispatcher(webhooks=[webhook]) as dispatcher:
        for n in range(6):
            await dispatcher.emit("alert", {"n": n})
        assert _workers(dispatcher) == {"burst": 4}
        try:
            await receiver.wait_for(4)
            await asyncio.sleep(0.05)  # room for a fifth request, were one sent
            assert len(receiver.requests) == 4  # the other two wait for a free worker
        finally:
            release.set()
        await dispatcher.drain()
    assert len(receiver.delivered) == 6


async def test_idle_workers_stop_and_the_next_event_starts_one(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(work, "WORKER_IDLE_SECONDS", 0.05)
    webhook = CustomWebhook(name="sleepy", url=receiver.url(), max_concurrency=3)
    async with WebhookDispatcher(webhooks=[webhook]) as dispatcher:
        for n in range(3):
            await dispatcher.emit("alert", {"n": n})
        await dispatcher.drain()
        async with asyncio.timeout(10):
            while _workers(dispatcher)["sleepy"]:  # noqa: ASYNC110 - their idle time runs out
                await asyncio.sleep(0.02)
        assert dispatcher.running  # workers that stopped for want of work are not a failure
        await dispatcher.emit("alert", {"n": 3})
        await dispatcher.drain()
        assert dispatcher.get_webhook_stats("sleepy")["delivered_count"] == 4
    assert sorted(r.json()["data"]["n"] for r in receiver.delivered) == [0, 1, 2, 3]


async def test_a_worker_kept_busy_in_short_waits_is_not_stopped_and_no_timer_outlives_close(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The idle time is each wait's own, watched by one timer per lane: a worker that waits
    many short whiles, longer than the idle time in all, keeps working; one that then waits
    longer stops; closing leaves no timer behind."""
    monkeypatch.setattr(work, "WORKER_IDLE_SECONDS", 0.3)
    webhook = CustomWebhook(name="steady", url=receiver.url(), max_concurrency=1)
    async with WebhookDispatcher(webhooks=[webhook]) as dispatcher:
        lane = dispatcher._lanes["steady"]
        await dispatcher.emit("alert", {"n": 0})
        await dispatcher.drain()
        [worker] = lane.workers
        for n in range(1, 9):  # 0.1 s apart: 0.8 s of short waits
            await asyncio.sleep(0.1)
            await dispatcher.emit("alert", {"n": n})
            await dispatcher.drain()
            assert lane.workers == [worker]
        async with asyncio.timeout(10):
            while lane.workers:  # noqa: ASYNC110 - its idle time runs out
                await asyncio.sleep(0.02)
        assert worker.done() and not worker.cancelled()
        await dispatcher.emit("alert", {"n": 9})
        await dispatcher.drain()
        assert lane.idle_timer is not None  # the new worker waits, watched
    assert lane.idle_timer is None
    assert sorted(r.json()["data"]["n"] for r in receiver.delivered) == list(range(10))
