"""Paths where an alert could be lost with nobody told: Redis lost its data and a new process
made the stream again before an old one noticed; the first call after a restart or a killed
connection; a producer whose prefix no worker reads. Each is said once (or made to work), and a
normal run says nothing. Private `redis-server`s where the server itself is the subject."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
from empathy_webhooks_redis import open_redis_store
from empathy_webhooks_redis.store import _MAKE_GROUP, GROUP, RedisStore
from empathy_webhooks_redis.testing import RedisServer

from empathy_webhooks_core import CustomWebhook, Event
from empathy_webhooks_core.plugin.store import Delivery
from empathy_webhooks_core.testing import ReceivedRequest, Receiver, Reply
from empathy_webhooks_core.worker import run_worker

REQUIRE_ENV = "EMPATHY_WEBHOOKS_REQUIRE_REDIS"
PASSWORD = "pw-91c2-never-in-a-log"
LOSS = ("redis_data_lost", "redis_group_recreated")


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    if not RedisServer.available():
        reason = "this test starts its own redis-server, and none is installed"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{reason}; {REQUIRE_ENV}=1, so this is a failure, not a skip")
        pytest.skip(reason)
    with RedisServer(tmp_path, "--requirepass", PASSWORD) as server:
        yield server


def _url(server: RedisServer, options: str = "prefix=t:") -> str:
    return f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0?{options}"


def _said(caplog: pytest.LogCaptureFixture, *events: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if any(f"'{event}'" in r.getMessage() for event in events)
    ]


def _delivery(n: int = 0) -> Delivery:
    return Delivery(webhook_name="h", event=Event(event_type="t", data={"n": n}))


def _new_worker_opens(server: RedisServer, stream: str, marker: str) -> None:
    """What a worker process started after the loss does at open (`_MAKE_GROUP`), done here
    synchronously, so that no task of this test's loop notices the loss before it."""
    client = redis.Redis(host="127.0.0.1", port=server.port, password=PASSWORD)
    try:
        client.eval(_MAKE_GROUP, 2, stream, marker, GROUP, "2-new-worker")
    finally:
        client.close()


async def test_a_producer_is_told_when_a_new_worker_made_the_lost_stream_again(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis restarted without its data; a worker started afterwards made the stream and group
    again before the producer's next emit. The emit goes into the new stream without an error,
    so only the epoch marker tells the producer that what it queued before is gone: said once,
    and counted."""
    caplog.set_level(logging.WARNING, logger="empathy_webhooks")
    producer = open_redis_store(_url(private_redis))
    await producer.open()
    try:
        await producer.enqueue([_delivery(1)])
        private_redis.restart()
        _new_worker_opens(private_redis, producer.stream, producer.epoch_key)
        assert not _said(caplog, *LOSS)
        await producer.enqueue([_delivery(2)])
        await producer.enqueue([_delivery(3)])
        said = _said(caplog, *LOSS)
        assert len(said) == 1, said
        assert "redis_data_lost" in said[0] and "found_by='enqueue'" in said[0]
        assert "deliveries queued before that are lost" in said[0]
        assert (await producer.backlog())["data_losses"] == 1
        assert await producer.redis.xlen(producer.stream) == 2
    finally:
        await producer.close()
    assert all(PASSWORD not in r.getMessage() for r in caplog.records)


async def test_a_running_worker_is_told_when_another_made_the_lost_stream_again(
    private_redis: RedisServer, webhook_receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """The running worker's reads meet no NOGROUP (the stream was made again before it read
    again): its heartbeat reads the marker, says the loss once, and it delivers on."""
    caplog.set_level(logging.WARNING, logger="empathy_webhooks")
    url = _url(private_redis, "prefix=t:&visibility_timeout=0.6")
    hook = CustomWebhook(name="h", url=webhook_receiver.url("/h"))
    stop = asyncio.Event()
    started = asyncio.Event()
    task = asyncio.create_task(
        run_worker([hook], url, stop=stop, started=started.set, grace_seconds=1)
    )
    producer = open_redis_store(url)
    try:
        async with asyncio.timeout(15):
            await started.wait()
        private_redis.restart()
        _new_worker_opens(private_redis, producer.stream, producer.epoch_key)
        await producer.open()  # a producer started afterwards too: it cannot tell, and is quiet
        async with asyncio.timeout(10):
            while not _said(caplog, *LOSS):  # noqa: ASYNC110 - said by the worker's task
                await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # more heartbeats: not said again
        said = _said(caplog, *LOSS)
        assert len(said) == 1, said
        assert "found_by='worker'" in said[0]
        await producer.enqueue([_delivery(7)])
        async with asyncio.timeout(15):
            while not webhook_receiver.requests:  # noqa: ASYNC110 - the receiver's list
                await asyncio.sleep(0.02)
    finally:
        await producer.close()
        stop.set()
        await asyncio.wait_for(task, 15)


async def test_an_idle_producer_is_told_by_its_watch(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A producer that emits nothing after the loss learns it all the same, from the watch
    its first emit started."""
    caplog.set_level(logging.WARNING, logger="empathy_webhooks")
    producer = open_redis_store(_url(private_redis, "prefix=t:&no_worker_after=0.4"))
    await producer.open()
    try:
        await producer.enqueue([_delivery(1)])
        await producer.redis.flushall()
        _new_worker_opens(private_redis, producer.stream, producer.epoch_key)
        async with asyncio.timeout(10):
            while not _said(caplog, *LOSS):  # noqa: ASYNC110 - said by the watch task
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        said = _said(caplog, *LOSS)
        assert len(said) == 1 and "found_by='producer'" in said[0], said
    finally:
        await producer.close()


async def test_the_first_use_of_a_prefix_is_quiet_and_a_loss_seen_at_open_is_said(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="empathy_webhooks")
    url = _url(private_redis)
    producer, worker = open_redis_store(url), open_redis_store(url + "&role=worker")
    await producer.open()
    await worker.open()
    await producer.enqueue([_delivery()])
    await worker.close()
    assert not _said(caplog, *LOSS)
    # The stream alone went (evicted, deleted) while its marker stayed: whoever opens next
    # knows the prefix was in use, and says so.
    await producer.redis.delete(producer.stream)
    await producer.close()
    again = open_redis_store(url)
    await again.open()
    await again.close()
    said = _said(caplog, *LOSS)
    assert len(said) == 1 and "found_by='open'" in said[0], said


@pytest.mark.parametrize("fault", ["restart", "client-kill"])
async def test_the_first_emit_after_a_restart_or_a_killed_connection_is_queued_once(
    private_redis: RedisServer, fault: str
) -> None:
    producer = open_redis_store(_url(private_redis))
    await producer.open()
    try:
        await producer.enqueue([_delivery(1)])
        if fault == "restart":
            private_redis.restart()
        else:
            other = aioredis.Redis(host="127.0.0.1", port=private_redis.port, password=PASSWORD)
            await other.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
            await other.aclose()
        await producer.enqueue([_delivery(2)])  # raised ConnectionError before
        entries = await producer.redis.xrange(producer.stream)
        emitted = [fields["e"] for _, fields in entries]
        assert sum('"n":2' in text for text in emitted) == 1
        assert len(entries) == (1 if fault == "restart" else 2)
    finally:
        await producer.close()


async def test_the_enqueue_sent_again_for_the_same_delivery_adds_no_second_entry(
    private_redis: RedisServer,
) -> None:
    """What the client's retry does after a lost answer: the same call again. It answers the
    entry added the first time and adds nothing; the history record is not reset."""
    producer = open_redis_store(_url(private_redis))
    await producer.open()
    try:
        delivery = _delivery()
        await producer.enqueue([delivery])
        first = delivery.store_ref
        await producer.redis.hset(producer._history_key(delivery.delivery_id), "s", "delivered")
        delivery.store_ref = None
        await producer.enqueue([delivery])
        assert delivery.store_ref == first
        assert await producer.redis.xlen(producer.stream) == 1
        record = await producer.delivery_record(delivery.delivery_id)
        assert record is not None and record.status == "delivered"
    finally:
        await producer.close()


async def test_a_producer_whose_prefix_no_worker_reads_is_told_once(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="empathy_webhooks")
    producer = open_redis_store(_url(private_redis, "prefix=typo:&no_worker_after=0.4"))
    await producer.open()
    try:
        await producer.enqueue([_delivery(1)])
        await asyncio.sleep(1.2)  # several looks
        await producer.enqueue([_delivery(2)])
        await asyncio.sleep(0.5)
        said = _said(caplog, "redis_no_worker")
        assert len(said) == 1, said
        assert "prefix='typo:'" in said[0] and "redis://:***@127.0.0.1" in said[0]
        figures = await producer.backlog()
        assert figures["entries"] == figures["unread"] == 2
        assert figures["oldest_unread_seconds"] >= 1.0
        assert figures["workers"] == figures["workers_reading"] == 0
    finally:
        await producer.close()
    assert all(PASSWORD not in r.getMessage() for r in caplog.records)


async def test_no_worker_is_not_said_while_workers_read_even_behind_a_backlog(
    private_redis: RedisServer, webhook_receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """One slow worker (a window of 1, 0.3 s a request): the last of 8 deliveries waits unread
    longer than `no_worker_after`, but a worker is reading: nothing is said."""
    caplog.set_level(logging.WARNING, logger="empathy_webhooks")

    def slow(request: ReceivedRequest) -> Reply:
        return Reply(status=200, delay=0.3)

    webhook_receiver.handler = slow
    url = _url(private_redis, "prefix=t:&no_worker_after=0.4")
    hook = CustomWebhook(name="h", url=webhook_receiver.url("/h"))
    stop = asyncio.Event()
    started = asyncio.Event()
    task = asyncio.create_task(
        run_worker([hook], url + "&window=1", stop=stop, started=started.set, grace_seconds=1)
    )
    producer = open_redis_store(url)
    await producer.open()
    try:
        async with asyncio.timeout(15):
            await started.wait()
        async with asyncio.timeout(15):
            while (await producer.backlog())["workers_reading"] < 1:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        for n in range(8):
            await producer.enqueue([_delivery(n)])
        async with asyncio.timeout(20):
            while len(webhook_receiver.delivered) < 8:  # noqa: ASYNC110 - the receiver's list
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
    finally:
        await producer.close()
        stop.set()
        await asyncio.wait_for(task, 15)
    assert not _said(caplog, "redis_no_worker", *LOSS)


async def test_one_dead_letter_is_read_by_its_id(private_redis: RedisServer) -> None:
    store = open_redis_store(_url(private_redis, "prefix=t:&role=worker"))
    await store.open()
    try:
        await store.enqueue([_delivery(), _delivery()])
        letters = []
        for entry_id, fields in await store.redis.xrange(store.stream):
            held = Delivery(
                webhook_name="h",
                event=Event(event_type="t", data={}),
                delivery_id=fields["d"],
                store_ref=entry_id,
            )
            letters.append(await store.add_dead_letter(held, {"reason": "HTTP 500"}))
        wanted = letters[1]
        found = await store.dead_letter(wanted.dead_letter_id)
        assert found is not None and found.dead_letter_id == wanted.dead_letter_id
        assert found.error["reason"] == "HTTP 500"
        assert await store.dead_letter("dl_none") is None
        assert await store.take_dead_letter(wanted.dead_letter_id) is not None
        assert await store.dead_letter(wanted.dead_letter_id) is None  # a replay holds it
    finally:
        await store.close()


def test_no_worker_after_is_a_url_option() -> None:
    store = open_redis_store("redis://127.0.0.1:6379/0?no_worker_after=5")
    assert isinstance(store, RedisStore) and store.no_worker_after == 5.0
    assert store.for_worker().no_worker_after == 5.0
    with pytest.raises(ValueError, match="no_worker_after"):
        open_redis_store("redis://127.0.0.1:6379/0?no_worker_after=nan")


async def test_a_replay_sent_again_after_a_lost_answer_queues_it_once(
    private_redis: RedisServer,
) -> None:
    """The replay script run twice, as the client's retry would after a lost answer: the
    second run answers the entry the first added (not "no such letter"), and adds nothing."""
    store = open_redis_store(_url(private_redis, "prefix=t:&role=worker"))
    await store.open()
    try:
        await store.enqueue([_delivery()])
        ((entry_id, fields),) = await store.redis.xrange(store.stream)
        held = Delivery(
            webhook_name="h",
            event=Event(event_type="t", data={}),
            delivery_id=fields["d"],
            store_ref=entry_id,
        )
        letter = await store.add_dead_letter(held, {"reason": "HTTP 500"})
        once = store._requeue

        async def twice(**call: object) -> object:
            await once(**call)
            return await once(**call)

        store._requeue = twice
        replayed = await store.requeue_dead_letter(letter.dead_letter_id)
        assert replayed is not None and replayed.store_ref is not None
        assert await store.redis.xlen(store.stream) == 1
        assert await store.dead_letters() == []
    finally:
        await store.close()


async def test_the_marker_alone_gone_is_no_data_loss(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The epoch key alone evicted (`allkeys-*`) or deleted by a pattern, the stream kept: it
    is written again, and no process says deliveries were lost (they were not: the stream
    holds them). Before, every process logged `redis_data_lost` for it."""
    caplog.set_level(logging.WARNING, logger="empathy_webhooks")
    url = _url(private_redis)
    producer = open_redis_store(url)
    worker = open_redis_store(url + "&role=worker")
    await producer.open()
    await worker.open()
    try:
        await producer.enqueue([_delivery(1), _delivery(2)])
        await producer.redis.delete(producer.epoch_key)
        await producer.enqueue([_delivery(3)])
        await worker._look_at_epoch("worker")
        assert await producer.redis.xlen(producer.stream) == 3
        assert (producer.data_losses, worker.data_losses) == (0, 0)
        assert _said(caplog, *LOSS) == []
        assert len(_said(caplog, "redis_epoch_restored")) == 2  # once by each process
    finally:
        await producer.close()
        await worker.close()


async def test_a_worker_closing_with_nothing_pending_leaves_the_group_and_one_holding_stays(
    private_redis: RedisServer,
) -> None:
    """Left in the group, idle, a closed worker counted as reading for the visibility timeout,
    so `redis_no_worker` came that much later. One still holding an entry stays: removing it
    would drop the entry from the pending list the other workers take it from."""
    url = _url(private_redis)
    producer = open_redis_store(url)
    await producer.open()
    idle = open_redis_store(url + "&role=worker&consumer=idle")
    holding = open_redis_store(url + "&role=worker&consumer=holding")
    await idle.open()
    await holding.open()
    try:
        await producer.enqueue([_delivery(1)])
        await holding.redis.xreadgroup(GROUP, "holding", {holding.stream: ">"}, count=1)
        await idle.redis.xgroup_createconsumer(idle.stream, GROUP, "idle")  # joined, empty
        names = {c["name"] for c in await producer.redis.xinfo_consumers(producer.stream, GROUP)}
        assert names == {"idle", "holding"}
        await idle.close()
        await holding.close()
        consumers = await producer.redis.xinfo_consumers(producer.stream, GROUP)
        assert [(c["name"], c["pending"]) for c in consumers] == [("holding", 1)]
    finally:
        await producer.close()
