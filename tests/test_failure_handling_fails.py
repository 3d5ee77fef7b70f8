"""When the handling of a final failure fails in turn: found by an audit of stop 37, each
through a real dispatcher, a loopback receiver and real stores.

- An `on_failure` that raised CancelledError (it awaited a task something else cancelled)
  ended the worker without a word: the fallback never sent, the failure never counted, the
  lane one worker short for good, and `close()` hung.
- A dead letter the store refused stopped everything after it: `on_failure`, the plugins'
  hooks and the fallback were skipped, and the reason became the store's error.
- A close while an async `on_failure` ran lost the fallback (queued after it) without a word.
- After a 410, `drain()` returned while the webhook's `on_failure` still ran.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from empathy_webhooks_core import CustomWebhook, Event, WebhookDispatcher
from empathy_webhooks_core.clock import SystemClock
from empathy_webhooks_core.stores.memory import MemoryStore
from empathy_webhooks_core.testing import ReceivedRequest, Receiver, Reply

FAST = {"max_retries": 0, "initial_delay_seconds": 0.001}


def lines(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if f"'{name}'" in r.getMessage()]


def route(status: int) -> Any:
    """`/w` answers `status`, anything else (the fallback) 200."""

    def handler(request: ReceivedRequest) -> Reply:
        return Reply(status=status if request.path == "/w" else 200)

    return handler


def hooks(receiver: Receiver, on_failure: Any, **options: Any) -> list[CustomWebhook]:
    """`w`, whose fallback `fb` (given as a webhook: it gets only what `w` could not send)."""
    fallback = CustomWebhook(name="fb", url=receiver.url("/fb"))
    main = CustomWebhook(
        name="w",
        url=receiver.url("/w"),
        retry_policy=FAST,
        fallback=fallback,
        on_failure=on_failure,
        **options,
    )
    return [main]


async def test_an_on_failure_raising_cancelled_error_is_its_failure_not_the_workers(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="empathy_webhooks")
    receiver.handler = route(400)

    async def pager(webhook: Any, event: Any, error: Any) -> None:
        call = asyncio.ensure_future(asyncio.sleep(5))  # a client's request, shut down under it
        asyncio.get_running_loop().call_later(0.01, call.cancel)
        await call

    webhooks = hooks(receiver, pager, max_concurrency=1)
    async with asyncio.timeout(20):
        async with WebhookDispatcher(webhooks=webhooks) as dispatcher:
            for n in range(3):
                await dispatcher.emit("alert", {"n": n})
            await dispatcher.drain(timeout=10)
            stats = dispatcher.get_webhook_stats("w")
            dead = await dispatcher.dead_letters("w")
    assert [r.path for r in receiver.requests].count("/w") == 3  # the lane kept its worker
    assert [r.path for r in receiver.requests].count("/fb") == 3
    assert (stats["failed_count"], stats["callback_errors"], len(dead)) == (3, 3, 3)
    assert len(lines(caplog, "on_failure_callback_failed")) == 3
    assert "CancelledError" in lines(caplog, "on_failure_callback_failed")[0]


class _RefusingStore(MemoryStore):
    """A store whose dead-letter writes fail (a disk full, a file locked for long)."""

    async def add_dead_letter(self, delivery: Any, error: dict[str, Any]) -> None:
        raise OSError("disk full")


async def test_a_dead_letter_the_store_refuses_still_tells_on_failure_and_the_fallback(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="empathy_webhooks")
    receiver.handler = route(400)
    told: list[Any] = []
    webhooks = hooks(receiver, lambda w, e, error: told.append(error))
    async with WebhookDispatcher(webhooks=webhooks, store=_RefusingStore()) as dispatcher:
        await dispatcher.emit("alert", {"n": 1})
        await dispatcher.drain(timeout=10)
        stats = dispatcher.get_webhook_stats("w")
    [error] = told
    assert (error.status, error.reason) == (400, "rejected with HTTP 400")
    assert [r.path for r in receiver.requests] == ["/w", "/fb"]
    [line] = lines(caplog, "dead_letter_not_recorded")
    assert "OSError: disk full" in line and "rejected with HTTP 400" in line
    assert stats["failed_count"] == 1
    assert not lines(caplog, "worker_error")


async def test_a_close_during_on_failure_keeps_the_fallback_and_says_it_cut_the_call_short(
    receiver: Receiver, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.WARNING, logger="empathy_webhooks")
    receiver.handler = route(400)
    calls: list[str] = []

    async def pager(webhook: Any, event: Any, error: Any) -> None:
        calls.append("start")
        await asyncio.sleep(10)
        calls.append("end")

    store = f"sqlite:///{tmp_path / 'outbox.db'}"
    webhooks = hooks(receiver, pager)
    dispatcher = WebhookDispatcher(webhooks=webhooks, store=store)
    await dispatcher.start()
    await dispatcher.emit("alert", {"n": 1})
    async with asyncio.timeout(10):
        while calls != ["start"]:  # noqa: ASYNC110 - the callback's own list
            await asyncio.sleep(0.01)
    await dispatcher.close(drain=False)
    assert calls == ["start"]
    assert lines(caplog, "on_failure_callback_cut_short")
    assert not lines(caplog, "closed_with_pending_deliveries") or all(
        "'w'" not in line for line in lines(caplog, "closed_with_pending_deliveries")
    )
    # The next process on the file sends the fallback's delivery (queued before on_failure).
    again = [CustomWebhook(name="w", url=receiver.url("/w"), fallback=webhooks[0].fallback)]
    async with WebhookDispatcher(webhooks=again, store=store) as reopened:
        await reopened.drain(timeout=10)
        assert [d.webhook_name for d in await reopened.dead_letters()] == ["w"]
    assert [r.path for r in receiver.requests].count("/fb") >= 1  # at least once


async def test_drain_waits_for_the_on_failure_of_a_webhook_a_410_disabled(
    receiver: Receiver,
) -> None:
    receiver.handler = route(410)
    calls: list[str] = []

    async def pager(webhook: Any, event: Any, error: Any) -> None:
        calls.append("start")
        await asyncio.sleep(0.3)
        calls.append("end")

    webhook = CustomWebhook(name="w", url=receiver.url("/w"), on_failure=pager)
    async with WebhookDispatcher(webhooks=[webhook]) as dispatcher:
        await dispatcher.emit("alert", {"n": 1})
        async with asyncio.timeout(10):
            while not receiver.requests:  # noqa: ASYNC110 - the receiver's own list
                await asyncio.sleep(0.01)
        await dispatcher.drain(timeout=10)
        assert calls == ["start", "end"]
        assert dispatcher.is_enabled("w") is False


async def test_a_memory_store_closing_says_which_webhook_lost_which_event(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """An event one webhook got and another lost was listed twice in one flat list: resent
    whole from that line, it reached the first webhook twice."""
    caplog.set_level(logging.ERROR, logger="empathy_webhooks")
    receiver.handler = lambda request: Reply(status=200 if request.path == "/fast" else 503)
    fast = CustomWebhook(name="fast", url=receiver.url("/fast"))
    slow = CustomWebhook(
        name="slow", url=receiver.url("/slow"), retry_policy={"initial_delay_seconds": 30}
    )
    dispatcher = WebhookDispatcher(webhooks=[fast, slow])
    await dispatcher.start()
    event = await dispatcher.emit("alert", {"n": 1})
    async with asyncio.timeout(10):
        while len(receiver.requests) < 2:  # noqa: ASYNC110 - the receiver's own list
            await asyncio.sleep(0.01)
    await dispatcher.close(drain=False)
    [line] = lines(caplog, "closed_with_pending_deliveries")
    assert f"lost_by_webhook={{'slow': ['{event.event_id}']}}" in line
    assert f"event_ids=['{event.event_id}']" in line


async def test_a_delivery_whose_retry_timer_never_ran_is_named_at_close(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """A retry scheduled in the loop turn before `close(drain=False)`: its timer, cancelled
    before its first turn, never ran the handler that named its delivery, so the line said
    `count=1` and `lost_by_webhook={}` (the suite saw it once under load). The worker's own
    step is taken here by hand: only the order of the loop's turns is arranged, the timer
    and the close are the dispatcher's."""
    caplog.set_level(logging.ERROR, logger="empathy_webhooks")
    slow = CustomWebhook(name="slow", url=receiver.url("/slow"))
    dispatcher = WebhookDispatcher(webhooks=[slow])
    await dispatcher.start()
    event = await dispatcher.emit("alert", {"n": 1})
    lane = dispatcher._lanes["slow"]
    delivery = lane.queue.popleft()  # taken by a worker, answered 503, retried in 30 s:
    dispatcher._workers._later(asyncio.get_running_loop().time() + 30, lane, delivery)
    await dispatcher.close(drain=False)  # before the timer's first turn
    [line] = lines(caplog, "closed_with_pending_deliveries")
    assert f"lost_by_webhook={{'slow': ['{event.event_id}']}}" in line
    assert not receiver.requests


class _SleepFails(SystemClock):
    """A clock whose waits of a second or more raise (a plugin's or a test's own clock)."""

    async def sleep(self, seconds: float) -> None:
        if seconds >= 1:
            raise RuntimeError("this clock cannot wait that long")
        await super().sleep(seconds)


async def test_a_retry_whose_wait_raises_is_queued_again_not_stranded(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """The retry timer's wait raised: the delivery sat in the lane, neither sent nor ended,
    and `drain()` waited for it for ever. Now it is queued again at once, and said."""
    caplog.set_level(logging.ERROR, logger="empathy_webhooks")
    receiver.queue(Reply(status=503), Reply(status=200))
    hook = CustomWebhook(
        name="w", url=receiver.url("/w"), retry_policy={"initial_delay_seconds": 5}
    )
    async with WebhookDispatcher(webhooks=[hook], clock=_SleepFails()) as dispatcher:
        await dispatcher.emit("alert", {"n": 1})
        await dispatcher.drain(timeout=10)
        assert dispatcher.get_webhook_stats("w")["delivered_count"] == 1
    assert [r.answered for r in receiver.requests] == [503, 200]
    [said] = lines(caplog, "retry_timer_failed")
    assert "RuntimeError: this clock cannot wait that long" in said


async def test_endpoints_that_hang_on_every_connection_do_not_hold_another_hosts_alert(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """`max_connections=2`, and webhook a's endpoint hangs on three requests (a 30 s
    timeout): the pool was full, and b's alert, on another host, waited out its own 5 s
    timeout on every attempt without sending a byte, dead-lettered as b's endpoint not
    answering. A host with no connection now opens one at the limit; the wait of a's third
    request is said, naming the host that holds the connections."""
    caplog.set_level(logging.WARNING, logger="empathy_webhooks")
    hang = asyncio.Event()

    async def hangs(_: ReceivedRequest) -> Reply:
        await hang.wait()
        return Reply(status=200)

    async with Receiver() as stuck:
        stuck.handler = hangs
        a = CustomWebhook(
            name="a",
            url=stuck.url("/a"),
            max_concurrency=3,
            retry_policy={"timeout_seconds": 30, "max_retries": 0},
        )
        b = CustomWebhook(
            name="b", url=receiver.url("/b"), retry_policy={"timeout_seconds": 5, "max_retries": 0}
        )
        async with WebhookDispatcher(webhooks=[a, b], max_connections=2) as dispatcher:
            for n in range(3):
                await dispatcher.emit_event(
                    Event(event_type="alert", data={"n": n}), webhooks=["a"]
                )
            async with asyncio.timeout(10):
                while len(stuck.requests) < 2:  # noqa: ASYNC110 - the receiver's own list
                    await asyncio.sleep(0.01)
            alert = await dispatcher.emit_event(
                Event(event_type="alert", data={"page": 1}), webhooks=["b"]
            )
            assert alert == ["b"]
            async with asyncio.timeout(3):
                while dispatcher.get_webhook_stats("b")["delivered_count"] < 1:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            assert len(receiver.requests) == 1
            [said] = lines(caplog, "http_connections_all_in_use")
            assert f"'http://127.0.0.1:{stuck.port}': 2" in said, said
            hang.set()
            await dispatcher.drain()


async def test_a_webhook_paused_by_retry_after_says_so_in_its_figures(
    receiver: Receiver,
) -> None:
    receiver.handler = lambda request: Reply(status=503, headers={"Retry-After": "600"})
    webhook = CustomWebhook(name="w", url=receiver.url("/w"))
    async with WebhookDispatcher(webhooks=[webhook]) as dispatcher:
        assert dispatcher.get_webhook_stats("w")["paused_seconds"] == 0.0
        await dispatcher.emit("alert", {"n": 1})
        async with asyncio.timeout(10):
            while not receiver.requests:  # noqa: ASYNC110 - the receiver's own list
                await asyncio.sleep(0.01)
            while dispatcher.get_webhook_stats("w")["paused_seconds"] == 0.0:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        assert 590 < dispatcher.get_webhook_stats("w")["paused_seconds"] <= 600
        await dispatcher.close(drain=False)
