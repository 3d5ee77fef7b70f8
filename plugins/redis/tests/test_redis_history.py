"""Attempt history in Redis: written by the worker that makes the attempts, read by any other
process on the prefix (here a producer), each delivery's keys expiring after `history_ttl`."""

from __future__ import annotations

import asyncio

import pytest
from empathy_webhooks_redis import RedisStore, open_redis_store

from empathy_webhooks_core import CustomWebhook, DeliveryRecord, WebhookDispatcher
from empathy_webhooks_core.testing import Receiver, Reply
from empathy_webhooks_core.worker import run_worker

FAST = {"initial_delay_seconds": 0.001, "max_delay_seconds": 0.01}
SIGNING = "whsec_redis_history_secret_0123456789"


async def settled(dispatcher: WebhookDispatcher, delivery_id: str, status: str) -> DeliveryRecord:
    async with asyncio.timeout(15):
        while True:
            record = await dispatcher.delivery(delivery_id)
            if record is not None and record.status == status:
                return record
            await asyncio.sleep(0.01)


async def test_attempts_written_by_a_worker_are_read_by_a_producer_and_expire(
    redis_url: str, webhook_receiver: Receiver
) -> None:
    webhook_receiver.queue(Reply(status=500, body="busy"), Reply(status=200, body="ok"))
    hook = CustomWebhook(
        name="h", url=webhook_receiver.url("/h"), signing_secret=SIGNING, retry_policy=FAST
    )
    url = redis_url + "&history_ttl=600"
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker([hook], url, stop=stop, grace_seconds=1))
    try:
        async with WebhookDispatcher(webhooks=[hook], store=url) as producer:
            event = await producer.emit("prediction", {"n": 1})
            (queued,) = (await producer.deliveries(event_id=event.event_id)).items
            record = await settled(producer, queued.delivery_id, "delivered")
            assert [(a.attempt, a.status, a.verdict) for a in record.attempts] == [
                (1, 500, "retry"),
                (2, 200, "success"),
            ]
            assert record.attempts[0].response_excerpt == "busy"
            assert record.attempts[0].next_retry_at is not None
            headers = {k.lower(): v for k, v in record.attempts[0].request_headers.items()}
            assert headers["webhook-signature"] == "***"
            assert await producer.event(event.event_id) == event

            store = producer.store
            assert isinstance(store, RedisStore) and store.history_ttl == 600
            for key in (
                f"{store.prefix}history:{record.delivery_id}",
                f"{store.prefix}history:event:{event.event_id}",
                f"{store.prefix}history:of:{event.event_id}",
            ):
                assert 0 < await store.redis.ttl(key) <= 600, key

            # A final failure: the record names its dead letter.
            webhook_receiver.respond(status=400, body="no")
            failing = await producer.emit("alert", {"n": 2})
            (queued,) = (await producer.deliveries(event_id=failing.event_id)).items
            failed = await settled(producer, queued.delivery_id, "failed")
            (letter,) = await producer.dead_letters()
            assert failed.dead_letter_id == letter.dead_letter_id

            # Newest first, a page at a time, filtered.
            first = await producer.deliveries(limit=1)
            assert [r.event_id for r in first.items] == [failing.event_id]
            assert first.next_cursor is not None
            rest = await producer.deliveries(limit=1, cursor=first.next_cursor)
            assert [r.event_id for r in rest.items] == [event.event_id]
            assert rest.next_cursor is None
            assert [r.event_id for r in (await producer.deliveries(status="failed")).items] == [
                failing.event_id
            ]
            assert (await producer.deliveries(webhook="other")).items == ()
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def test_the_history_ttl_is_an_option_of_the_url() -> None:
    assert open_redis_store("redis://127.0.0.1/0?history_ttl=60").history_ttl == 60
    assert open_redis_store("redis://127.0.0.1/0").history_ttl == 86_400
    with pytest.raises(ValueError, match="history_ttl"):
        open_redis_store("redis://127.0.0.1/0?history_ttl=0")
