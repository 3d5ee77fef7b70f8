"""The Redis store in one process: producer and worker roles, dead letters, reclaiming,
backpressure and the shared rate limiter, against a real Redis and a loopback receiver."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis
from empathy_webhooks_redis import RedisStore, open_redis_store
from empathy_webhooks_redis._aio import checked
from empathy_webhooks_redis.breaker import POLL
from empathy_webhooks_redis.store import _delivery

from empathy_webhooks_core import CustomWebhook, Event, WebhookDispatcher
from empathy_webhooks_core.breaker import BreakerState
from empathy_webhooks_core.plugins import Hooks, get_plugin_manager
from empathy_webhooks_core.ratelimit import RateLimit
from empathy_webhooks_core.stores import Delivery, open_store
from empathy_webhooks_core.testing import FakeClock, ReceivedRequest, Receiver, Reply
from empathy_webhooks_core.worker import run_worker

FAST = {"initial_delay_seconds": 0.001, "max_delay_seconds": 0.01}


def test_the_url_carries_the_role_and_options_and_hides_the_password() -> None:
    store = open_redis_store(
        "redis://user:s3cret@127.0.0.1:6379/2?role=worker&prefix=app:&visibility_timeout=5"
        "&window=16&socket_timeout=3"
    )
    assert (store.role, store.prefix, store.visibility_timeout, store.window) == (
        "worker",
        "app:",
        5.0,
        16,
    )
    assert store.stream == "app:deliveries"
    assert store.url == "redis://user:s3cret@127.0.0.1:6379/2?socket_timeout=3"
    assert "s3cret" not in repr(store)
    assert (
        repr(store)
        == "RedisStore('redis://user:***@127.0.0.1:6379/2', role='worker', prefix='app:')"
    )
    assert store.remote_workers is True
    assert store.for_worker().role == "worker"
    with pytest.raises(ValueError, match="role must be"):
        open_redis_store("redis://127.0.0.1/0?role=boss")
    with pytest.raises(ValueError, match="window must be"):
        open_redis_store("redis://127.0.0.1/0?window=0")


def test_the_plugin_provides_the_redis_schemes() -> None:
    backends = Hooks(get_plugin_manager()).store_backends()
    assert isinstance(open_store("redis://127.0.0.1:6379/0", backends), RedisStore)
    assert isinstance(open_store("rediss://127.0.0.1:6379/0", backends), RedisStore)


@contextlib.asynccontextmanager
async def worker(
    webhooks: list[CustomWebhook], url: str, **options: object
) -> AsyncIterator[asyncio.Event]:
    """`run_worker` in this process, as a task, stopped on leaving."""
    stop = asyncio.Event()
    options.setdefault("grace_seconds", 1)
    task = asyncio.create_task(run_worker(list(webhooks), url, stop=stop, **options))  # type: ignore[arg-type]
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def until(receiver: Receiver, condition: object, timeout: float = 15) -> None:
    """Wait until `condition()` holds (the receiver is checked as requests are answered)."""
    assert callable(condition)
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - answers land in the receiver's list
            await asyncio.sleep(0.01)


async def test_a_producer_only_adds_to_the_stream_and_a_worker_delivers(
    redis_url: str, webhook_receiver: Receiver
) -> None:
    hook = CustomWebhook(name="h", url=webhook_receiver.url("/h"), retry_policy=FAST)
    async with WebhookDispatcher(webhooks=[hook], store=redis_url) as producer:
        events = [await producer.emit("prediction", {"n": n}) for n in range(20)]
        store = producer.store
        assert isinstance(store, RedisStore)
        assert await store.redis.xlen(store.stream) == 20
    assert webhook_receiver.requests == []  # the producer delivered nothing itself

    async with worker([hook], redis_url):
        await until(webhook_receiver, lambda: len(webhook_receiver.delivered) >= 20)
    assert set(webhook_receiver.delivered_event_ids()) == {e.event_id for e in events}
    assert webhook_receiver.requests[0].json() == events[0].to_envelope()
    # Acknowledged and deleted: nothing is left pending.
    client = aioredis.Redis.from_url(redis_url.split("?")[0])
    try:
        assert await client.xlen(store.stream) == 0
    finally:
        await client.aclose()


async def test_a_worker_sends_the_bytes_the_memory_store_would_send(
    redis_url: str, webhook_receiver: Receiver
) -> None:
    hook = CustomWebhook(name="h", url=webhook_receiver.url("/h"), retry_policy=FAST)
    data = {
        "text": "Déploiement ☃ \u2028",
        "ratio": 0.1 + 0.2,
        "big": 2**53 - 1,
        "n": [1.5e300, None],
    }
    async with WebhookDispatcher(webhooks=[hook], store=redis_url) as producer:
        plain = await producer.emit("prediction", data, empathy_level=4, severity="high")
        ordered = await producer.emit("prediction", data, ordering_key="user-7")
    async with worker([hook], redis_url):
        await until(webhook_receiver, lambda: len(webhook_receiver.delivered) >= 2)
    sent = {request.event_id: request.body for request in webhook_receiver.delivered}
    # The envelope's bytes, as the producer's event encodes them (what the memory store
    # sends); the ordering key is kept in the stream, never sent.
    assert sent[plain.event_id] == plain.envelope_bytes()
    assert sent[ordered.event_id] == ordered.envelope_bytes()
    assert b"user-7" not in sent[ordered.event_id]


def test_a_worker_sends_a_marked_text_as_it_is_and_encodes_any_other_again() -> None:
    event = Event(event_type="t", data={"n": 1})
    canonical = event.envelope_bytes()
    # Valid, but not as this version encodes it (a space): only a producer's mark says the
    # text is exactly the envelope's bytes.
    spaced = canonical.decode().replace('"n":1', '"n": 1')
    fields = {"d": "d1", "w": "h", "e": spaced, "a": "0", "t": "1.5"}
    assert _delivery("1-0", {**fields, "b": "1"}, None).event.envelope_bytes() == spaced.encode()
    for unmarked in ({**fields, "b": "0"}, fields):  # an older producer's entry has no mark
        assert _delivery("1-0", unmarked, None).event.envelope_bytes() == canonical
    # A text with an ordering key is never sent as it is, whatever its mark.
    with_key = json.dumps({**json.loads(canonical), "ordering_key": "k"})
    marked = _delivery("1-0", {**fields, "e": with_key, "b": "1"}, None)
    assert marked.event.ordering_key == "k"
    assert marked.event.envelope_bytes() == canonical


async def test_dead_letters_live_in_redis_and_replay_through_the_workers(
    redis_url: str, webhook_receiver: Receiver
) -> None:
    webhook_receiver.respond(status=400, body={"error": "bad"})
    hook = CustomWebhook(name="h", url=webhook_receiver.url("/h"), retry_policy=FAST)
    async with worker([hook], redis_url):
        async with WebhookDispatcher(webhooks=[hook], store=redis_url) as producer:
            event = await producer.emit("prediction", {"n": 1})
            await webhook_receiver.wait_for(1)
            async with asyncio.timeout(10):
                while not (letters := await producer.dead_letters("h")):  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            (letter,) = letters
            assert letter.event == event
            assert letter.error["status"] == 400
            assert letter.attempts == 1

            webhook_receiver.respond(status=200)
            store = producer.store
            assert isinstance(store, RedisStore)
            taken = await store.take_dead_letter(letter.dead_letter_id)
            assert taken is not None and taken.event == event
            assert await store.take_dead_letter(letter.dead_letter_id) is None
            await store.enqueue([Delivery(webhook_name="h", event=taken.event)])
            await until(webhook_receiver, lambda: len(webhook_receiver.delivered) == 1)
    assert webhook_receiver.delivered[0].event_id == event.event_id


async def test_entries_a_dead_consumer_held_are_reclaimed_after_the_visibility_timeout(
    redis_url: str, webhook_receiver: Receiver
) -> None:
    hook = CustomWebhook(name="h", url=webhook_receiver.url("/h"), retry_policy=FAST)
    url = redis_url + "&visibility_timeout=0.2"
    async with WebhookDispatcher(webhooks=[hook], store=url) as producer:
        events = [await producer.emit("prediction", {"n": n}) for n in range(5)]
        store = producer.store
        assert isinstance(store, RedisStore)
        # A consumer takes every entry and dies without acknowledging any.
        taken = await store.redis.xreadgroup(
            "workers", "crashed", {store.stream: ">"}, count=10, block=100
        )
        assert len(taken[0][1]) == 5
        await store.record_attempt(
            Delivery(webhook_name="h", event=events[0], delivery_id="x", attempts=1)
        )
    async with worker([hook], url):
        await until(webhook_receiver, lambda: len(webhook_receiver.delivered) >= 5)
    assert set(webhook_receiver.delivered_event_ids()) == {e.event_id for e in events}


async def test_a_worker_holds_no_more_than_its_window(
    redis_url: str, webhook_receiver: Receiver
) -> None:
    release = asyncio.Event()

    async def hold(_: ReceivedRequest) -> Reply:
        await release.wait()
        return Reply(status=200)

    webhook_receiver.handler = hold
    hook = CustomWebhook(name="h", url=webhook_receiver.url("/h"), max_concurrency=10)
    url = redis_url + "&window=3"
    async with WebhookDispatcher(webhooks=[hook], store=url) as producer:
        for n in range(10):
            await producer.emit("prediction", {"n": n})
        store = producer.store
        assert isinstance(store, RedisStore)
        async with worker([hook], url):
            await webhook_receiver.wait_for(3)
            # Ten workers could send, but only three deliveries were taken from the stream.
            pending = await store.redis.xpending(store.stream, "workers")
            assert pending["pending"] == 3
            assert len(webhook_receiver.requests) == 3
            release.set()
            await until(webhook_receiver, lambda: len(webhook_receiver.delivered) >= 10)


async def test_a_window_nearly_full_of_waiting_deliveries_still_takes_the_next(
    redis_url: str, webhook_receiver: Receiver
) -> None:
    """Seven of a window of 8 wait out a 30 s backoff: the eighth event goes out at once. It
    waited for a quarter of the window to be free, that is for the backoff to end."""
    failing = True

    def handler(_: ReceivedRequest) -> Reply:
        return Reply(status=503 if failing else 200)

    webhook_receiver.handler = handler
    slow = {"initial_delay_seconds": 30, "max_delay_seconds": 30}
    hook = CustomWebhook(
        name="h", url=webhook_receiver.url("/h"), retry_policy=slow, circuit_breaker=False
    )
    url = redis_url + "&window=8"
    async with WebhookDispatcher(webhooks=[hook], store=url) as producer, worker([hook], url):
        for n in range(7):
            await producer.emit("alert", {"n": n})
        await until(webhook_receiver, lambda: len(webhook_receiver.requests) == 7)
        failing = False
        last = await producer.emit("alert", {"n": 7})
        await until(
            webhook_receiver, lambda: last.event_id in webhook_receiver.delivered_event_ids(), 10
        )
        assert len(webhook_receiver.requests) == 8


async def _behind_a_backlog(
    redis_url: str, receiver: Receiver, window: int, backlog: int, after: int = 0
) -> tuple[list[ReceivedRequest], float]:
    """`backlog` events for webhook a (1 a second), then one for b: b's request and when it
    came, seconds after b's emit."""
    slow = CustomWebhook(
        name="a", url=receiver.url("/a"), rate_limit={"max_requests_per_second": 1}
    )
    fast = CustomWebhook(name="b", url=receiver.url("/b"))
    url = f"{redis_url}&window={window}"
    async with WebhookDispatcher(webhooks=[slow, fast], store=url) as producer:
        for n in range(backlog):
            await producer.emit_event(Event(event_type="alert", data={"n": n}), webhooks=["a"])
        async with worker([slow, fast], url):
            await until(receiver, lambda: len(receiver.requests) >= 2)
            began = time.monotonic()
            await producer.emit_event(Event(event_type="alert", data={"b": 1}), webhooks=["b"])
            for n in range(after):
                await producer.emit_event(Event(event_type="alert", data={"m": n}), webhooks=["a"])
            await until(receiver, lambda: any(r.path == "/b" for r in receiver.requests), 30)
            took = time.monotonic() - began
    return [r for r in receiver.requests if r.path == "/b"], took


async def test_a_webhook_behind_another_ones_rate_limited_backlog_is_not_held_behind_it(
    redis_url: str, webhook_receiver: Receiver
) -> None:
    """100 deliveries for a webhook limited to 1 a second fill a window of 8, then an alert
    for another webhook is emitted: the worker reads past the stalled window and the alert
    goes out in seconds. Before, it waited for the backlog to drain (90 s)."""
    sent, took = await _behind_a_backlog(redis_url, webhook_receiver, window=8, backlog=100)
    assert len(sent) == 1
    assert took < 20, took
    # b went out while a's backlog was still being sent.
    assert len([r for r in webhook_receiver.requests if r.path == "/a"]) < 30


async def test_an_alert_deep_in_another_webhooks_backlog_is_found_and_sent(
    redis_url: str, webhook_receiver: Receiver
) -> None:
    """b's alert with 600 of a's deliveries before it and 300 after, a window of 64 (16
    windows hold 1,024): a look at only the oldest and newest 256 unread entries never saw
    it, and it waited for a's backlog, one a second."""
    sent, took = await _behind_a_backlog(
        redis_url, webhook_receiver, window=64, backlog=600, after=300
    )
    assert len(sent) == 1
    assert took < 20, took


async def _most_pending(store: RedisStore, done: Callable[[], bool]) -> int:
    """The most deliveries pending for the workers, sampled every 50 ms until `done()`."""
    most = 0
    async with asyncio.timeout(30):
        while not done():
            pending = await store.redis.xpending(store.stream, "workers")
            most = max(most, pending["pending"])
            await asyncio.sleep(0.05)
    return most


async def test_a_window_that_only_waits_for_its_own_webhook_or_is_busy_is_not_stretched(
    redis_url: str, webhook_receiver: Receiver
) -> None:
    """A backlog of only the webhook that fills the window (1 a second), and one of a webhook
    that answers in 0.1 s, two at a time, with another webhook's event behind it: neither
    reads past the window of 8. Reading further would only take work that other workers
    could do; the busy one reaches the other webhook's event soon enough."""

    async def slowly(request: ReceivedRequest) -> Reply:
        if request.path == "/busy":
            await asyncio.sleep(0.1)
        return Reply(status=200)

    webhook_receiver.handler = slowly
    limited = CustomWebhook(
        name="a", url=webhook_receiver.url("/a"), rate_limit={"max_requests_per_second": 1}
    )
    busy = CustomWebhook(name="busy", url=webhook_receiver.url("/busy"), max_concurrency=2)
    other = CustomWebhook(name="b", url=webhook_receiver.url("/b"))
    hooks = [limited, busy, other]

    async def most_held(url: str, emits: list[str], done: Callable[[], bool]) -> int:
        async with WebhookDispatcher(webhooks=hooks, store=url) as producer:
            store = producer.store
            assert isinstance(store, RedisStore)
            for n, name in enumerate(emits):
                await producer.emit_event(Event(event_type="alert", data={"n": n}), webhooks=[name])
            async with worker(hooks, url):
                return await _most_pending(store, done)

    began = time.monotonic()
    assert (
        await most_held(redis_url + "&window=8", ["a"] * 40, lambda: time.monotonic() > began + 4)
        <= 8
    )
    # Under the fixture's prefix, so its keys go with the rest.
    sent_b = lambda: any(r.path == "/b" for r in webhook_receiver.requests)  # noqa: E731
    assert await most_held(redis_url + "busy:&window=8", ["busy"] * 60 + ["b"], sent_b) <= 8


async def test_a_stall_past_the_most_a_worker_reads_ahead_says_what_waits_behind(
    redis_url: str, webhook_receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """A window of 8 stretches to 128 at most: b's alert behind 200 of a's waits, and the
    worker says which webhook fills its window and which wait behind it."""
    caplog.set_level(logging.INFO, logger="empathy_webhooks")
    task = asyncio.create_task(
        _behind_a_backlog(redis_url, webhook_receiver, window=8, backlog=200)
    )
    async with asyncio.timeout(30):
        while not any("redis_window_stalled" in r.getMessage() for r in caplog.records):  # noqa: ASYNC110 - log records land in a list
            await asyncio.sleep(0.05)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    said = [r.getMessage() for r in caplog.records if "redis_window_stalled" in r.getMessage()]
    assert len(said) == 1, said
    assert re.search(r"holding=\{'a': 12\d\}", said[0]), said[0]
    assert "waiting_behind={'b': 1}" in said[0], said[0]
    assert not any(r.path == "/b" for r in webhook_receiver.requests)


async def test_the_shared_rate_limiter_takes_slots_for_every_worker(redis_url: str) -> None:
    first = open_redis_store(redis_url)
    second = open_redis_store(redis_url)
    await first.open()
    await second.open()
    try:
        hook = CustomWebhook(
            name="h", url="http://127.0.0.1:9/", rate_limit={"max_requests_per_minute": 3}
        )
        one = first.make_rate_limiter(hook, None)
        two = second.make_rate_limiter(hook, None)
        assert [await one.reserve(), await two.reserve(), await one.reserve()] == [0, 0, 0]
        wait = await two.reserve()
        assert 59 < wait <= 60  # the oldest slot frees a minute after it was taken
        assert await one.reserve() > 59
    finally:
        await first.close()
        await second.close()


async def test_a_lane_with_a_rate_limit_uses_the_store_limiter(
    redis_url: str, webhook_receiver: Receiver
) -> None:
    limit = RateLimit(max_requests_per_minute=2)
    hook = CustomWebhook(name="h", url=webhook_receiver.url("/h"), rate_limit=limit)
    async with worker([hook], redis_url):
        async with WebhookDispatcher(webhooks=[hook], store=redis_url) as producer:
            for n in range(3):
                await producer.emit_event(Event(event_type="prediction", data={"n": n}))
            await webhook_receiver.wait_for(2)
            store = producer.store
            assert isinstance(store, RedisStore)
            # The limit's log is in Redis, and the third delivery waits its turn there.
            assert await store.redis.zcard(f"{store.prefix}rate:h:60") == 2
            assert len(webhook_receiver.requests) == 2


async def test_a_cancellation_a_redis_call_dropped_is_raised_again() -> None:
    # What Python 3.11's `wait_for` (under every redis-py command write) does when a cancel
    # lands as the write completes: it returns normally and the task keeps running.
    async def drops_the_cancel() -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            return "carried on"
        return "slept"

    task = asyncio.create_task(checked(drops_the_cancel()))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_busy_worker_stops_promptly_every_time(
    redis_url: str, webhook_receiver: Receiver
) -> None:
    """Stopping never waits on a loop that lost its cancellation inside redis-py: here the
    heartbeat refreshes held entries every 10 ms while deliveries hang at the receiver."""
    release = asyncio.Event()

    async def hang(_: ReceivedRequest) -> Reply:
        await release.wait()
        return Reply(status=200)

    webhook_receiver.handler = hang
    hook = CustomWebhook(name="h", url=webhook_receiver.url("/h"), max_concurrency=4)
    url = redis_url + "&visibility_timeout=0.03"
    async with WebhookDispatcher(webhooks=[hook], store=url) as producer:
        for n in range(4):
            await producer.emit("prediction", {"n": n})
    try:
        for _ in range(8):
            seen = len(webhook_receiver.requests)
            async with worker([hook], url, grace_seconds=0.05):
                await webhook_receiver.wait_for(seen + 1)
                await asyncio.sleep(0.05)  # the heartbeat and the consumer keep calling Redis
    finally:
        release.set()


async def test_the_shared_breaker_opens_for_every_worker_and_lets_one_probe_through(
    redis_url: str,
) -> None:
    first = open_redis_store(redis_url).for_worker()
    second = open_redis_store(redis_url).for_worker()
    producer = open_redis_store(redis_url)
    for store in (first, second, producer):
        await store.open()
    try:
        open_seconds = 30.0
        hook = CustomWebhook(
            name="h",
            url="http://127.0.0.1:9/",
            circuit_breaker={"min_attempts": 4, "failure_rate": 0.5, "open_seconds": open_seconds},
        )
        # Time moves only when the test says so, on both sides: each worker's mirror reads a
        # FakeClock, and the shared open deadline (in Redis server time) is moved back by the
        # same amount. The open time therefore never runs out because the machine was slow,
        # which, with the real clock and a 0.2 s open time, made a worker take the probe early.
        clock = FakeClock()
        one = first.make_circuit_breaker(hook, clock)
        two = second.make_circuit_breaker(hook, clock)

        async def let_time_pass(seconds: float) -> None:
            # The shared deadline first: a mirror reading it before the clock moves already
            # sees less time left, never more.
            await first.redis.hincrby(one.keys[1], "open_until", -int(seconds * 1_000_000))
            await clock.advance(seconds)

        for breaker in (one, two):
            await breaker.sync()
            assert breaker.wait_time() == 0 and breaker.state is BreakerState.CLOSED

        # Two failures here and two there: four attempts, all failed, across the workers.
        one.record(False)
        two.record(False)
        one.record(False)
        await one.sync()
        assert one.state is BreakerState.CLOSED  # three attempts: below min_attempts
        two.record(False)
        await two.sync()
        await one.sync()
        for breaker in (one, two):
            assert breaker.state is BreakerState.OPEN and breaker.times_opened == 1
            assert 0 < (breaker.wait_time() or 0) <= open_seconds

        # Not yet: most of the open time gone, both still wait out the rest.
        await let_time_pass(open_seconds - 10)
        for breaker in (one, two):
            await breaker.sync()
            assert breaker.state is BreakerState.OPEN
            assert 0 < (breaker.wait_time() or 0) <= 10

        # Half-open: whoever asks first takes the probe; the other waits for its result.
        await let_time_pass(10)
        for breaker in (one, two):
            await breaker.sync()
            assert breaker.state is BreakerState.HALF_OPEN
        assert one.wait_time() == POLL  # one asks for the probe...
        await one.sync()
        assert one.wait_time() == 0  # ...and has it
        assert two.wait_time() == POLL  # two asks too...
        await two.sync()
        assert two.wait_time() == POLL  # ...but the probe is one's
        one.before_attempt()
        assert one.wait_time() is None and one.current_state() is BreakerState.HALF_OPEN
        assert two.wait_time() == POLL
        one.record(False)  # the probe failed: open again, for both
        assert one.state is BreakerState.OPEN
        await one.sync()
        await two.sync()
        assert (one.times_opened, two.times_opened) == (2, 2)
        for breaker in (one, two):
            assert breaker.state is BreakerState.OPEN
            assert 0 < (breaker.wait_time() or 0) <= open_seconds

        # The open time runs out again; this time two asks first and its probe succeeds:
        # closed, for both.
        await let_time_pass(open_seconds)
        for breaker in (one, two):
            await breaker.sync()
        assert two.wait_time() == POLL
        await two.sync()
        assert two.wait_time() == 0
        assert one.wait_time() == POLL
        await one.sync()
        assert one.wait_time() == POLL  # the probe is two's
        two.before_attempt()
        two.record(True)
        await two.sync()
        await one.sync()
        assert one.state is two.state is BreakerState.CLOSED
        assert one.wait_time() == two.wait_time() == 0

        # A producer's breaker starts no task (it never sends).
        idle = producer.make_circuit_breaker(hook, clock)
        idle.record(False)
        idle.wait_time()
        assert idle.state is BreakerState.CLOSED
        assert producer._tasks == []
    finally:
        for store in (first, second, producer):
            await store.close()


async def test_a_replay_that_dies_before_its_enqueue_loses_no_letter(redis_url: str) -> None:
    store = open_redis_store(redis_url)
    crashed = open_redis_store(redis_url)
    await store.open()
    await crashed.open()
    try:
        event = Event(event_type="prediction", data={"n": 1})
        delivery = Delivery(webhook_name="h", event=event, attempts=3)
        await store.enqueue([delivery])
        letter = await store.add_dead_letter(delivery, {"reason": "HTTP 400"})
        assert (letter.webhook_name, letter.event, letter.attempts) == ("h", event, 3)
        assert await store.redis.xlen(store.stream) == 0

        # A replay takes the letter; its process dies before it enqueues the delivery.
        taken = await crashed.take_dead_letter(letter.dead_letter_id)
        assert taken is not None and taken.event == event
        await crashed.close()
        # Within the lease the letter is a replay under way: not listed, not taken twice.
        assert await store.dead_letters() == []
        assert await store.take_dead_letter(letter.dead_letter_id) is None
        assert await store.redis.hexists(store.dead_key, letter.dead_letter_id)

        # Past the lease it is listed again, and a replay that completes deletes it in the
        # transaction that adds its delivery.
        store.replay_lease = 0.0
        assert [dl.dead_letter_id for dl in await store.dead_letters()] == [letter.dead_letter_id]
        again = await store.take_dead_letter(letter.dead_letter_id)
        assert again is not None
        await store.enqueue([Delivery(webhook_name="h", event=again.event)])
        assert await store.redis.xlen(store.stream) == 1
        assert not await store.redis.hexists(store.dead_key, letter.dead_letter_id)
        assert not await store.redis.hexists(store.replaying_key, letter.dead_letter_id)
    finally:
        await store.close()
        await crashed.close()


async def test_a_dead_letter_is_requeued_in_one_step_and_delivered(
    redis_url: str, webhook_receiver: Receiver
) -> None:
    hook = CustomWebhook(name="h", url=webhook_receiver.url("/h"), retry_policy=FAST)
    async with WebhookDispatcher(webhooks=[hook], store=redis_url) as producer:
        store = producer.store
        assert isinstance(store, RedisStore)
        event = Event(event_type="prediction", data={"n": 1})
        delivery = Delivery(webhook_name="h", event=event, attempts=4)
        await store.enqueue([delivery])
        letter = await store.add_dead_letter(delivery, {"reason": "HTTP 503"})

        # Another process is replaying a second letter: the one-step replay leaves it alone.
        other = Delivery(webhook_name="h", event=Event(event_type="prediction", data={"n": 2}))
        await store.enqueue([other])
        held = await store.add_dead_letter(other, {"reason": "HTTP 503"})
        assert await store.take_dead_letter(held.dead_letter_id) is not None
        assert await store.requeue_dead_letter(held.dead_letter_id) is None

        replayed = await store.requeue_dead_letter(letter.dead_letter_id)
        assert replayed is not None
        assert (replayed.event, replayed.attempts, replayed.webhook_name) == (event, 0, "h")
        assert await store.requeue_dead_letter(letter.dead_letter_id) is None
        assert [dl.dead_letter_id for dl in await producer.dead_letters()] == []
        async with worker([hook], redis_url):
            await until(webhook_receiver, lambda: len(webhook_receiver.delivered) == 1)
        assert webhook_receiver.delivered[0].event_id == event.event_id

        # The dispatcher's replay (take, then enqueue) of the letter held above, now free.
        store.replay_lease = 0.0
        await producer.replay_dead_letter(held.dead_letter_id)
        assert not await store.redis.hexists(store.dead_key, held.dead_letter_id)
        async with worker([hook], redis_url):
            await until(webhook_receiver, lambda: len(webhook_receiver.delivered) == 2)
        assert webhook_receiver.delivered[1].event_id == other.event.event_id


async def test_consumers_of_dead_workers_are_forgotten_once_they_hold_nothing(
    redis_url: str, webhook_receiver: Receiver
) -> None:
    hook = CustomWebhook(name="h", url=webhook_receiver.url("/h"), retry_policy=FAST)
    url = redis_url + "&visibility_timeout=0.2&consumer_expiry=0.5"
    async with WebhookDispatcher(webhooks=[hook], store=url) as producer:
        event = await producer.emit("prediction", {"n": 1})
        store = producer.store
        assert isinstance(store, RedisStore)
        assert store.consumer_expiry == 0.5
        # Two workers that were killed: one held nothing, one died holding the entry.
        await store.redis.xgroup_createconsumer(store.stream, "workers", "killed-idle")
        await store.redis.xreadgroup("workers", "killed-holding", {store.stream: ">"}, count=1)

        async def names() -> set[str]:
            return {c["name"] for c in await store.redis.xinfo_consumers(store.stream, "workers")}

        assert await names() == {"killed-idle", "killed-holding"}
        async with worker([hook], url):
            # The worker reclaims the held entry, delivers it, then forgets both consumers.
            await until(webhook_receiver, lambda: len(webhook_receiver.delivered) == 1)
            async with asyncio.timeout(10):
                while len(left := await names()) > 1:  # noqa: ASYNC110 - the group is in Redis
                    await asyncio.sleep(0.05)
            assert len(left) == 1 and not left & {"killed-idle", "killed-holding"}
        assert webhook_receiver.delivered[0].event_id == event.event_id

        # Never one that still holds entries, however long idle.
        await producer.emit("prediction", {"n": 2})
        await store.redis.xreadgroup("workers", "holder", {store.stream: ">"}, count=1)
        store.consumer_expiry = 0.001
        await asyncio.sleep(0.01)
        assert "holder" not in await store.forget_dead_consumers()
        assert "holder" in await names()


async def test_stats_count_what_waits_in_the_stream_and_what_workers_hold(
    redis_url: str, webhook_receiver: Receiver
) -> None:
    from empathy_webhooks_core.cli.stats import gather

    release = asyncio.Event()

    async def hold(_: ReceivedRequest) -> Reply:
        await release.wait()
        return Reply(status=200)

    webhook_receiver.handler = hold
    hook = CustomWebhook(name="h", url=webhook_receiver.url("/h"), max_concurrency=1)
    pm = get_plugin_manager()
    async with WebhookDispatcher(webhooks=[hook], store=redis_url) as producer:
        for n in range(2):
            await producer.emit("prediction", {"n": n})
    # No worker yet: both wait in the stream (the group's lag).
    assert (await gather(redis_url, pm, ["h"]))["h"]["pending"] == 2
    async with worker([hook], redis_url + "&window=1"):
        await webhook_receiver.wait_for(1)
        # One is held by the worker (its pending list), one still waits: both are pending.
        figures = (await gather(redis_url, pm, ["h"]))["h"]
        assert figures["pending"] == 2
        release.set()
        await until(webhook_receiver, lambda: len(webhook_receiver.delivered) == 2)
    assert (await gather(redis_url, pm, ["h"]))["h"]["pending"] == 0
