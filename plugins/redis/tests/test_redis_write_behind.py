"""What a worker writes behind its deliveries (acknowledgements, attempt history), how it reads
while busy, a producer's shared enqueue call, and the packed script calls that carry both,
against a real Redis (a key prefix of each test's own)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import secrets
import time
from collections.abc import AsyncIterator, Callable

import pytest
from empathy_webhooks_redis import RedisStore, open_redis_store
from empathy_webhooks_redis import store as redis_store
from empathy_webhooks_redis._packed import PackedScript, pack
from empathy_webhooks_redis.store import GROUP, _delivery
from redis.asyncio.connection import Connection
from redis.exceptions import ResponseError

from empathy_webhooks_core import Event
from empathy_webhooks_core.plugin.store import Delivery, DeliveryQuery, RawAttempt


def test_a_packed_command_is_the_bytes_redis_py_would_send() -> None:
    args = ["EVALSHA", "0" * 40, 2, "k:1", "clé ☃", 1.5, 0.1, 1e300, -7, "", "a\r\nb"]
    assert pack(args) == b"".join(Connection().pack_command(*args))


async def test_a_script_the_server_has_not_seen_is_loaded_and_run(redis_url: str) -> None:
    store = open_redis_store(redis_url)
    await store.open()
    try:
        # A text no one loaded before (its own SHA1): the first EVALSHA meets NOSCRIPT.
        script = PackedScript(
            store.redis, f"-- {secrets.token_hex(8)}\nreturn {{KEYS[1], ARGV[1]}}"
        )
        assert await script(keys=["k"], args=[3]) == ["k", "3"]
        assert await script(keys=["k"], args=["é"]) == ["k", "é"]
        # An error reply raises, as it does through redis-py.
        failing = PackedScript(store.redis, "return redis.error_reply('no such thing')")
        with pytest.raises(ResponseError, match="no such thing"):
            await failing(keys=[], args=[])
    finally:
        await store.close()


def _attempt(status_code: int = 200) -> RawAttempt:
    return RawAttempt(
        attempt=1,
        started_at=time.time(),
        duration_s=0.001,
        verdict="success",
        reason=None,
        response=None,
        headers={"Content-Type": "application/json"},
        body_bytes=2,
        next_retry_at=None,
        transient=False,
    )


@contextlib.asynccontextmanager
async def _pair(url: str) -> AsyncIterator[tuple[RedisStore, RedisStore]]:
    """A producer and a worker on the same keys, open, closed afterwards."""
    producer = open_redis_store(url)
    worker = producer.for_worker()
    await producer.open()
    await worker.open()
    try:
        yield producer, worker
    finally:
        await worker.close()
        await producer.close()


async def _taken(producer: RedisStore, worker: RedisStore, count: int) -> list[Delivery]:
    """`count` deliveries queued by the producer and read by the worker (held, as its
    consumer loop would hold them), without a dispatcher."""
    events = [Event(event_type="t", data={"n": n}) for n in range(count)]
    await producer.enqueue([Delivery(webhook_name="h", event=event) for event in events])
    await worker.redis.xgroup_createconsumer(worker.stream, GROUP, worker.consumer)
    answer = await worker.redis.xreadgroup(
        GROUP, worker.consumer, {worker.stream: ">"}, count=count
    )
    taken = [_delivery(entry_id, fields, None) for entry_id, fields in answer[0][1]]
    for delivery in taken:
        worker._held[delivery.store_ref] = delivery
    return taken


async def test_an_acknowledgement_goes_while_other_deliveries_are_still_held(
    redis_url: str,
) -> None:
    async with _pair(redis_url) as (producer, worker):
        done, waiting = await _taken(producer, worker, 2)
        worker.note_attempt(done, _attempt(), "delivered")
        await worker.mark_delivered(done)
        # `waiting` stays held (a slow send, a retry's back-off): the write-behind call does
        # not wait for it, only briefly for company.
        async with asyncio.timeout(10):
            while await worker.redis.xlen(worker.stream) != 1:  # noqa: ASYNC110 - state is in Redis
                await asyncio.sleep(0.01)
        pending = await worker.redis.xpending_range(worker.stream, GROUP, "-", "+", 10)
        assert [entry["message_id"] for entry in pending] == [waiting.store_ref]
        assert worker.held == 1
        record = await worker.delivery_record(done.delivery_id)
        assert record is not None and record.status == "delivered"
        assert [attempt.attempt for attempt in record.attempts] == [1]


async def test_an_attempt_on_a_record_that_is_gone_writes_it_again_whole(redis_url: str) -> None:
    async with _pair(redis_url) as (producer, worker):
        kept, lost = await _taken(producer, worker, 2)
        before = await worker.delivery_record(kept.delivery_id)
        assert before is not None and before.status == "pending"
        # The server lost the second record and its index entry (its data went while the
        # worker held the delivery): the attempt brings back the whole record, listed.
        await worker.redis.delete(worker._history_key(lost.delivery_id))
        await worker.redis.zrem(worker.history_index, lost.delivery_id)
        for delivery in (kept, lost):
            worker.note_attempt(delivery, _attempt(), "delivered")
            await worker.mark_delivered(delivery)
        for delivery in (kept, lost):
            record = await worker.delivery_record(delivery.delivery_id)
            assert record is not None
            assert (record.webhook, record.event_id, record.event_type, record.status) == (
                "h",
                delivery.event.event_id,
                "t",
                "delivered",
            )
            assert record.created_at == pytest.approx(delivery.enqueued_at)
            assert len(record.attempts) == 1
            assert await worker.redis.ttl(worker._history_key(delivery.delivery_id)) > 0
        page = await worker.delivery_records(DeliveryQuery(limit=10))
        assert {record.delivery_id for record in page.items} == {
            kept.delivery_id,
            lost.delivery_id,
        }
        assert await worker.redis.xlen(worker.stream) == 0


async def test_a_cancelled_emit_leaves_the_others_sharing_its_call_unharmed(
    redis_url: str,
) -> None:
    producer = open_redis_store(redis_url)
    await producer.open()
    try:
        deliveries = [
            Delivery(webhook_name="h", event=Event(event_type="t", data={"n": n})) for n in range(3)
        ]
        tasks = [asyncio.create_task(producer.enqueue([delivery])) for delivery in deliveries]
        await asyncio.sleep(0)  # all three wait on the same call now
        tasks[1].cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert results[0] is None and results[2] is None
        assert isinstance(results[1], asyncio.CancelledError)
        # The call went ahead for all three (the cancelled one's delivery is in the stream,
        # as it was before an emit could be cancelled: at least once).
        assert await producer.redis.xlen(producer.stream) == 3
        assert deliveries[0].store_ref and deliveries[2].store_ref
        # And a later emit is not held up by the cancelled one.
        await producer.enqueue([Delivery(webhook_name="h", event=Event(event_type="t"))])
        assert await producer.redis.xlen(producer.stream) == 4
    finally:
        await producer.close()


async def test_a_failed_enqueue_fails_every_emit_sharing_it_and_is_never_left_unretrieved(
    redis_url: str,
) -> None:
    producer = open_redis_store(redis_url)
    await producer.open()
    loop = asyncio.get_running_loop()
    reported: list[str] = []
    loop.set_exception_handler(lambda _, context: reported.append(str(context.get("message"))))
    try:
        # The stream's key holds a string: the script's XADD meets WRONGTYPE.
        await producer.redis.delete(producer.stream)
        await producer.redis.set(producer.stream, "not a stream")
        tasks = [
            asyncio.create_task(
                producer.enqueue([Delivery(webhook_name="h", event=Event(event_type="t"))])
            )
            for _ in range(3)
        ]
        await asyncio.sleep(0)  # all three wait on the same call now
        tasks[1].cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert isinstance(results[1], asyncio.CancelledError)
        for result in (results[0], results[2]):
            assert isinstance(result, ResponseError) and "WRONGTYPE" in str(result)
        del tasks, results
        gc.collect()
        assert reported == []
    finally:
        loop.set_exception_handler(None)
        await producer.close()


@pytest.mark.parametrize("protocol", ["&protocol=2", "&protocol=3"])
async def test_a_read_hands_out_the_new_entries_whole_with_either_protocol(
    redis_url: str, protocol: str
) -> None:
    async with _pair(redis_url + protocol) as (producer, worker):
        events = [Event(event_type="t", data={"n": n}) for n in range(3)]
        queued = [Delivery(webhook_name="h", event=event) for event in events]
        await producer.enqueue(queued)
        await worker.redis.xgroup_createconsumer(worker.stream, GROUP, worker.consumer)
        entries = await worker._read_new(2)
        entries += await worker._read_new(10)
        assert [entry_id for entry_id, _ in entries] == [d.store_ref for d in queued]
        taken = [_delivery(entry_id, fields, None) for entry_id, fields in entries]
        assert [d.event.event_id for d in taken] == [event.event_id for event in events]
        assert [d.delivery_id for d in taken] == [d.delivery_id for d in queued]
        assert await worker._read_new(10) == []  # nothing new: one block, then empty


class _Lanes:
    """A dispatcher stand-in whose lanes take every delivery and finish none on their own."""

    def __init__(self) -> None:
        self.taken: list[Delivery] = []

    def submit(self, delivery: Delivery) -> None:
        self.taken.append(delivery)


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(30):
        while not condition():  # noqa: ASYNC110 - the state is the consumer task's
            await asyncio.sleep(0.01)


async def test_a_busy_worker_reads_again_once_nearly_done_not_once_per_emit(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only the held deliveries falling to a sixteenth of the window, or a stop, end a wait.
    monkeypatch.setattr(redis_store, "_READ_LINGER", 600.0)
    async with _pair(redis_url) as (producer, worker):
        reads: list[int] = []
        read = worker._read_new

        async def counted(count: int) -> list[tuple[str, dict[str, str]]]:
            entries = await read(count)
            if entries:
                reads.append(len(entries))
            return entries

        worker._read_new = counted  # type: ignore[method-assign]
        lanes = _Lanes()
        await producer.enqueue(
            [
                Delivery(webhook_name="h", event=Event(event_type="t", data={"n": n}))
                for n in range(20)
            ]
        )
        worker.start_consuming(lanes)
        await _until(lambda: len(lanes.taken) == 20)
        # 20 under way, more than 16 (the default window's sixteenth): emits made one by one
        # wait in the stream instead of being read one by one.
        later = [Delivery(webhook_name="h", event=Event(event_type="t")) for _ in range(5)]
        for delivery in later:
            await producer.enqueue([delivery])
        await asyncio.sleep(0.3)
        assert len(lanes.taken) == 20
        # Down to 16 under way: the next read takes the five at once, in their order.
        for delivery in lanes.taken[:4]:
            await worker.mark_delivered(delivery)
        await _until(lambda: len(lanes.taken) == 25)
        assert reads == [20, 5]
        assert [d.delivery_id for d in lanes.taken[20:]] == [d.delivery_id for d in later]
        # 21 under way, waiting again: a stop ends the wait, the consumer is not cancelled.
        consumer = worker._consumer_task
        assert consumer is not None
        await worker.stop_consuming()
        assert consumer.done() and not consumer.cancelled()
        assert worker.held == 21
