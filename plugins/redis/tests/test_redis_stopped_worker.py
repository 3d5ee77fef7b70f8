"""A worker stopped (SIGSTOP, a paused VM, a long pause of its event loop) for longer than the
visibility timeout: another worker takes its entries over and delivers them, and the stopped
one, once it runs again, sends nothing of what it lost (but the request it already had on the
wire) and never takes an entry back from the worker that took it over. What it still owns it
sends, once. Real child processes, a real Redis (a key prefix of each test's own), a real
receiver on loopback."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from empathy_webhooks_redis import RedisStore, open_redis_store
from empathy_webhooks_redis.store import GROUP
from empathy_webhooks_redis.testing import workers_joined

from empathy_webhooks_core import CustomWebhook, Event, WebhookDispatcher
from empathy_webhooks_core.plugin.store import ConfirmsHolding, Delivery, RawAttempt
from empathy_webhooks_core.testing import ReceivedRequest, Receiver, Reply

# A worker (`run_worker`) whose requests name it (X-Process), one at a time, so that what it
# holds waits in its lane while one request is on the wire. SIGTERM stops it.
WORKER = r"""
import asyncio, logging, sys
from empathy_webhooks_core import CustomWebhook
from empathy_webhooks_core.worker import run_worker

logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
url, hook_url, name = sys.argv[1:4]
hook = CustomWebhook(
    name="h", url=hook_url, headers={"X-Process": name}, max_concurrency=1,
    retry_policy={"initial_delay_seconds": 0.01, "max_delay_seconds": 0.05,
                  "timeout_seconds": 30},
    circuit_breaker=False,
)
asyncio.run(run_worker([hook], url, grace_seconds=2))
"""

#: Seconds: short, so that a stop outlasts it quickly; long enough that a loaded machine's
#: late heartbeat is not taken for a dead worker (see test_audit2_redis.py).
VISIBILITY_TIMEOUT = 1.0


async def spawn(tmp_path: Path, url: str, hook_url: str, name: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        # -c, not a file rewritten per spawn: a child still starting read it truncated and ran
        # nothing (exit 0, a worker that never joined).
        "-P",
        "-c",
        WORKER,
        url,
        hook_url,
        name,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


async def finish(proc: asyncio.subprocess.Process) -> str:
    """Continue it if stopped, stop it (SIGTERM); its log."""
    if proc.returncode is None:
        proc.send_signal(signal.SIGCONT)
        proc.send_signal(signal.SIGTERM)
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 20)
    except TimeoutError:
        proc.kill()
        _, err = await proc.communicate()
    return err.decode()


def _keys(url: str) -> tuple[str, str]:
    """The server's URL and the stream's key."""
    return url.split("?", 1)[0], url.split("prefix=", 1)[1].split("&", 1)[0] + "deliveries"


async def pending_by_consumer(url: str) -> dict[str, int]:
    server, stream = _keys(url)
    client = aioredis.Redis.from_url(server, decode_responses=True)
    try:
        summary = await client.xpending(stream, GROUP)
    except Exception:
        return {}
    finally:
        await client.aclose()
    return {row["name"]: int(row["pending"]) for row in summary["consumers"]}


async def until(condition: Callable[[], bool], timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - answers land in the receiver's list
            await asyncio.sleep(0.02)


async def emit(url: str, hook_url: str, count: int) -> list[str]:
    hook = CustomWebhook(name="h", url=hook_url)
    async with WebhookDispatcher(webhooks=[hook], store=url) as producer:
        return [(await producer.emit("alert", {"n": n})).event_id for n in range(count)]


def sent_by(receiver: Receiver, name: str) -> list[ReceivedRequest]:
    return [r for r in receiver.requests if r.header("X-Process") == name]


async def test_a_worker_stopped_past_the_visibility_timeout_sends_nothing_another_took(
    tmp_path: Path, redis_url: str, webhook_receiver: Receiver
) -> None:
    """a holds 12 entries (one request on the wire, eleven in its lane) and is stopped for
    longer than the visibility timeout; b takes them over and delivers all 12. Continued, a
    says it lost them and sends none of the eleven (only the request it had on the wire
    arrives twice: at least once), and leaves them with b: nothing stays pending. Before, a's
    heartbeat claimed every entry back from b and a sent all eleven again."""
    url = redis_url + f"&visibility_timeout={VISIBILITY_TIMEOUT}"
    hang = asyncio.Event()

    async def handler(request: ReceivedRequest) -> Reply:
        if request.header("X-Process") == "a":
            await hang.wait()
        return Reply(status=200)

    webhook_receiver.handler = handler
    hook_url = webhook_receiver.url("/h")
    a = await spawn(tmp_path, url, hook_url, "a")
    b: asyncio.subprocess.Process | None = None
    log_a = log_b = ""
    try:
        (consumer_a,) = await workers_joined(url, 1, [a])
        wanted = await emit(url, hook_url, 12)
        await until(lambda: len(sent_by(webhook_receiver, "a")) == 1)
        async with asyncio.timeout(30):
            while (await pending_by_consumer(url)).get(consumer_a) != 12:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        # b joins once a holds all 12, so that they are a's to lose.
        b = await spawn(tmp_path, url, hook_url, "b")
        await workers_joined(url, 2, [a, b])
        a.send_signal(signal.SIGSTOP)
        await until(lambda: {r.event_id for r in sent_by(webhook_receiver, "b")} >= set(wanted))
        a.send_signal(signal.SIGCONT)
        await asyncio.sleep(0.5)  # a's heartbeat, overdue, runs at once
        hang.set()  # a's request on the wire is answered (a 2xx)
        await asyncio.sleep(2.0)  # whatever a would still send arrives by now
        server, stream = _keys(url)
        client = aioredis.Redis.from_url(server)
        try:
            left = await client.xlen(stream)
        finally:
            await client.aclose()
    finally:
        hang.set()
        log_a = await finish(a)
        if b is not None:
            log_b = await finish(b)
    by_b = Counter(r.event_id for r in webhook_receiver.delivered if r.header("X-Process") == "b")
    assert by_b == dict.fromkeys(wanted, 1), log_b
    (on_the_wire,) = sent_by(webhook_receiver, "a")
    assert on_the_wire.event_id in wanted
    assert webhook_receiver.delivered_event_ids() == {
        **dict.fromkeys(wanted, 1),
        on_the_wire.event_id: 2,
    }
    assert left == 0  # nothing left pending: a took nothing back from b
    assert log_a.count("redis_claims_taken_over") == 1, log_a
    assert log_a.count("delivery_taken_over") == 11, log_a
    assert "deliveries_reclaimed" in log_b, log_b


async def test_a_worker_stopped_past_the_visibility_timeout_that_nobody_took_over_sends_once(
    tmp_path: Path, redis_url: str, webhook_receiver: Receiver
) -> None:
    """Stopped for three visibility timeouts with no other worker to take its entries: once
    continued, they are a's still (checked and refreshed) and every event arrives exactly
    once, from a; none is dropped for being in doubt."""
    url = redis_url + f"&visibility_timeout={VISIBILITY_TIMEOUT}"
    hang = asyncio.Event()

    async def handler(_: ReceivedRequest) -> Reply:
        await hang.wait()
        return Reply(status=200)

    webhook_receiver.handler = handler
    hook_url = webhook_receiver.url("/h")
    a = await spawn(tmp_path, url, hook_url, "a")
    try:
        (consumer_a,) = await workers_joined(url, 1, [a])
        wanted = await emit(url, hook_url, 6)
        await until(lambda: len(webhook_receiver.requests) == 1)
        async with asyncio.timeout(30):
            while (await pending_by_consumer(url)).get(consumer_a) != 6:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        a.send_signal(signal.SIGSTOP)
        await asyncio.sleep(3 * VISIBILITY_TIMEOUT)
        a.send_signal(signal.SIGCONT)
        hang.set()
        await until(lambda: set(webhook_receiver.delivered_event_ids()) >= set(wanted))
        await asyncio.sleep(1.0)  # a duplicate would arrive by now
    finally:
        hang.set()
        log_a = await finish(a)
    assert webhook_receiver.delivered_event_ids() == dict.fromkeys(wanted, 1)
    assert {r.header("X-Process") for r in webhook_receiver.requests} == {"a"}
    assert "delivery_taken_over" not in log_a, log_a
    assert "redis_claims_taken_over" not in log_a, log_a


# -- one process: the store's side, two consumers ---------------------------------------------


class _Lanes:
    """A dispatcher stand-in whose lanes take every delivery and finish none on their own."""

    def __init__(self) -> None:
        self.taken: list[Delivery] = []

    def submit(self, delivery: Delivery) -> None:
        self.taken.append(delivery)


@asynccontextmanager
async def _workers(url: str) -> AsyncIterator[tuple[RedisStore, RedisStore, RedisStore]]:
    """A producer and two workers (consumers a and b) on the same keys, open, closed after."""
    producer = open_redis_store(url)
    a = RedisStore(
        producer.url,
        role="worker",
        prefix=producer.prefix,
        consumer="a",
        visibility_timeout=producer.visibility_timeout,
    )
    b = RedisStore(
        producer.url,
        role="worker",
        prefix=producer.prefix,
        consumer="b",
        visibility_timeout=producer.visibility_timeout,
    )
    for store in (producer, a, b):
        await store.open()
    try:
        yield producer, a, b
    finally:
        for store in (a, b, producer):
            await store.close()


async def _held_by(worker: RedisStore, producer: RedisStore, count: int) -> list[Delivery]:
    """`count` deliveries queued and taken by `worker`'s consumer loop, which then stops
    (its heartbeat goes on refreshing what it holds, and nothing else of it touches Redis)."""
    lanes = _Lanes()
    worker.start_consuming(lanes)
    await producer.enqueue(
        [
            Delivery(webhook_name="h", event=Event(event_type="t", data={"n": n}))
            for n in range(count)
        ]
    )
    async with asyncio.timeout(10):
        while len(lanes.taken) < count:  # noqa: ASYNC110 - the consumer task fills it
            await asyncio.sleep(0.01)
    await worker.stop_consuming()
    return lanes.taken


async def _owner(store: RedisStore, entry_id: Any) -> tuple[str, int] | None:
    """The consumer an entry is pending for and its idle time (ms), or None."""
    rows: Any = await store.redis.xpending_range(store.stream, GROUP, entry_id, entry_id, 1)
    return (str(rows[0]["consumer"]), int(rows[0]["time_since_delivered"])) if rows else None


async def test_a_heartbeat_leaves_an_entry_another_consumer_took_over_to_it(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """b takes over one of a's two entries (as its XAUTOCLAIM does once a's claim ran out).
    a's heartbeat refreshes the one it still owns and leaves the other with b, says so once,
    and a sends the lost one no more; before, it claimed it back (XCLAIM, min idle 0)."""
    caplog.set_level(logging.WARNING, logger="empathy_webhooks")
    async with _workers(redis_url + "&visibility_timeout=0.6") as (producer, a, b):
        assert isinstance(a, ConfirmsHolding)
        lost, kept = await _held_by(a, producer, 2)
        # Just read: sure, without asking Redis.
        assert a.surely_held(lost) and a.surely_held(kept)
        await b.redis.xclaim(b.stream, GROUP, "b", 0, [lost.store_ref], justid=True)
        async with asyncio.timeout(10):
            while a.held != 1:  # noqa: ASYNC110 - a's heartbeat changes it
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.7)  # more heartbeats, and longer than the timeout
        owner, idle_ms = await _owner(a, lost.store_ref) or ("", 0)
        assert owner == "b" and idle_ms >= 700  # b's, and untouched by a's heartbeats since
        owner, idle_ms = await _owner(a, kept.store_ref) or ("", 0)
        assert owner == "a" and idle_ms < 600  # refreshed all along: never idle past it
        assert not a.surely_held(lost)
        assert a.surely_held(kept)
        assert await a.confirm_held(lost) is False
        assert await a.confirm_held(kept) is True
        assert a.held == 1
    said = [r for r in caplog.records if "redis_claims_taken_over" in r.getMessage()]
    assert len(said) == 1, [r.getMessage() for r in said]
    assert "count=1" in said[0].getMessage(), said[0].getMessage()


@pytest.mark.parametrize("ended", ["delivered", "dead-lettered"])
async def test_an_entry_that_ended_at_another_worker_is_not_confirmed(
    redis_url: str, ended: str
) -> None:
    """b took a's entry over and finished it (the acknowledgement and the history record's
    final status are written together): a's copy is not a's to send."""
    async with _workers(redis_url + "&visibility_timeout=30") as (producer, a, b):
        (delivery,) = await _held_by(a, producer, 1)
        await b.redis.xclaim(b.stream, GROUP, "b", 0, [delivery.store_ref], justid=True)
        b._held[str(delivery.store_ref)] = delivery
        if ended == "delivered":
            b.note_attempt(delivery, _success(), "delivered")
            await b.mark_delivered(delivery)
        else:
            await b.add_dead_letter(delivery, {"reason": "HTTP 400"})
        async with asyncio.timeout(10):
            while b.held:  # noqa: ASYNC110 - b's write-behind task releases it
                await asyncio.sleep(0.01)
        assert a.surely_held(delivery)  # by a's own clock, still within its claim
        assert await a.confirm_held(delivery) is False
        assert a.held == 0


async def test_an_entry_still_owned_after_the_sure_window_is_confirmed_and_sent_once(
    redis_url: str, webhook_receiver: Receiver
) -> None:
    """The worker's event loop is held up (a long pause) right after it read an entry, past
    its sure window and its visibility timeout, with no other worker about: the entry is
    still its own, so it is confirmed (claimed again) and sent, once."""
    url = redis_url + "&visibility_timeout=0.5"
    hook = CustomWebhook(name="h", url=webhook_receiver.url("/h"), circuit_breaker=False)
    worker = open_redis_store(url).for_worker()
    dispatcher = WebhookDispatcher(webhooks=[hook], store=worker)
    submit = dispatcher.submit
    answers: list[bool] = []
    confirm = worker.confirm_held

    def paused(delivery: Delivery) -> None:
        submit(delivery)
        time.sleep(1.0)  # the pause itself: nothing else in the loop runs

    async def recorded(delivery: Delivery) -> bool:
        held = await confirm(delivery)
        answers.append(held)
        return held

    dispatcher.submit = paused  # type: ignore[method-assign]
    worker.confirm_held = recorded  # type: ignore[method-assign]
    await dispatcher.start()
    try:
        (event_id,) = await emit(url, hook.url, 1)
        await until(lambda: event_id in webhook_receiver.delivered_event_ids())
        await asyncio.sleep(1.0)  # a second sending would arrive by now
    finally:
        await dispatcher.close(timeout=5)
    assert webhook_receiver.delivered_event_ids() == {event_id: 1}
    # Asked before the attempt, the heartbeat (overdue too) not yet run: a's, so sent.
    assert answers and all(answers), answers


async def test_an_entry_that_went_with_the_servers_data_is_still_sent_from_memory(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The server lost its data (restarted without persistence, FLUSHALL) while a held an
    entry: nobody else can send it, so it stays a's, whether the group is still missing or
    was made again meanwhile (by a producer's emit)."""
    caplog.set_level(logging.WARNING, logger="empathy_webhooks")
    async with _workers(redis_url + "&visibility_timeout=0.3") as (producer, a, _):
        (delivery,) = await _held_by(a, producer, 1)
        keys = [key async for key in a.redis.scan_iter(match=f"{a.prefix}*")]
        await a.redis.delete(*keys)  # the stream, its group, the history record
        assert await a.confirm_held(delivery) is True  # NOGROUP
        await producer.ensure_group()
        assert await a.confirm_held(delivery) is True  # pending for nobody, no record
        await asyncio.sleep(0.5)  # heartbeats
        assert a.held == 1
        assert a.surely_held(delivery)
    assert not [r for r in caplog.records if "redis_claims_taken_over" in r.getMessage()]


def _success() -> RawAttempt:
    return RawAttempt(
        attempt=1,
        started_at=time.time(),
        duration_s=0.001,
        verdict="success",
        reason=None,
        response=None,
        headers={},
        body_bytes=2,
        next_retry_at=None,
        transient=False,
    )


async def test_a_suspended_machine_is_not_sure_of_what_it_held(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A laptop suspended past the visibility timeout: `time.monotonic()` did not move, but
    the server's idle clock did, and another worker may have taken the entries over. The
    sure window is timed on the clock that counts a suspend (`CLOCK_BOOTTIME` on Linux),
    here moved on by 60 s while the monotonic clock is not, so the worker asks Redis."""
    from empathy_webhooks_redis import store as module

    slept = 0.0
    real = module._clock_gettime
    monkeypatch.setattr(module, "_clock_gettime", lambda clock: real(clock) + slept)
    async with _workers(redis_url + "&visibility_timeout=30") as (producer, a, b):
        (delivery,) = await _held_by(a, producer, 1)
        assert a.surely_held(delivery)
        before = time.monotonic()
        slept = 60.0
        assert time.monotonic() - before < 30
        assert not a.surely_held(delivery)
        await b.redis.xclaim(b.stream, GROUP, "b", 0, [delivery.store_ref], justid=True)
        assert await a.confirm_held(delivery) is False


async def test_what_a_closing_worker_still_holds_is_handed_to_the_others_at_once(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker whose stop's grace ran out closes holding deliveries: before, they stayed
    its own until a whole visibility timeout had passed, then waited for another worker's
    next look (31.9 s with the default 30 s). Now they are marked idle for a visibility
    timeout as it closes, and the next look of another worker takes them."""
    caplog.set_level(logging.WARNING, logger="empathy_webhooks")
    async with _workers(redis_url + "&visibility_timeout=30") as (producer, a, b):
        held = await _held_by(a, producer, 3)
        await a.close()
        for delivery in held:
            owner, idle_ms = await _owner(b, delivery.store_ref) or ("", 0)
            assert owner == "a" and idle_ms >= 30_000
        claimed: Any = await b.redis.xautoclaim(
            b.stream, GROUP, "b", min_idle_time=30_000, start_id="0-0"
        )
        assert sorted(entry_id for entry_id, _ in claimed[1]) == sorted(
            str(d.store_ref) for d in held
        )
    said = [r.getMessage() for r in caplog.records if "handed_back" in r.getMessage()]
    assert len(said) == 1 and "count=3" in said[0]
