"""A delivery's `context` through the Redis store: the stream entry, the worker that takes it
(another store, as another process would), the dead letter, and the replay in one step."""

from __future__ import annotations

import asyncio

from empathy_webhooks_redis import RedisStore, open_redis_store

from empathy_webhooks_core import CustomWebhook, Event, WebhookDispatcher
from empathy_webhooks_core.stores import Delivery
from empathy_webhooks_core.testing import Receiver
from empathy_webhooks_core.worker import run_worker

FAST = {"initial_delay_seconds": 0.001, "max_delay_seconds": 0.01, "max_retries": 0}
CONTEXT = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "k": "é"}


async def test_the_context_rides_the_stream_to_a_worker_and_its_dead_letter_and_replay(
    redis_url: str, webhook_receiver: Receiver
) -> None:
    producer = open_redis_store(redis_url)
    await producer.open()
    try:
        sent = Delivery(
            webhook_name="h",
            event=Event(event_type="prediction", data={"n": 1}),
            context=dict(CONTEXT),
        )
        plain = Delivery(webhook_name="h", event=Event(event_type="prediction", data={"n": 2}))
        await producer.enqueue([sent, plain])
        # The entry holds it (and one without a context holds no `c` field at all).
        entries = await producer.redis.xrange(producer.stream)
        assert [("c" in fields) for _, fields in entries] == [True, False]

        webhook_receiver.respond(status=400)
        hook = CustomWebhook(name="h", url=webhook_receiver.url("/h"), retry_policy=FAST)
        stop = asyncio.Event()
        task = asyncio.create_task(run_worker([hook], redis_url, stop=stop, grace_seconds=1))
        try:
            async with asyncio.timeout(10):
                while len(letters := await producer.dead_letters("h")) < 2:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            by_id = {letter.delivery_id: letter for letter in letters}
            assert by_id[sent.delivery_id].context == CONTEXT
            assert by_id[plain.delivery_id].context == {}

            # The replay in one step (XADD and delete in one script) keeps it too.
            replayed = await producer.requeue_dead_letter(by_id[sent.delivery_id].dead_letter_id)
            assert replayed is not None and replayed.context == CONTEXT
            async with asyncio.timeout(10):
                while True:
                    letters = await producer.dead_letters("h")
                    again = [d for d in letters if d.delivery_id == replayed.delivery_id]
                    if again:
                        break
                    await asyncio.sleep(0.01)
            assert again[0].context == CONTEXT
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
    finally:
        await producer.close()


async def test_a_producer_dispatcher_replays_with_the_context(
    redis_url: str, webhook_receiver: Receiver
) -> None:
    webhook_receiver.respond(status=400)
    hook = CustomWebhook(name="h", url=webhook_receiver.url("/h"), retry_policy=FAST)
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker([hook], redis_url, stop=stop, grace_seconds=1))
    try:
        async with WebhookDispatcher(webhooks=[hook], store=redis_url) as dispatcher:
            store = dispatcher.store
            assert isinstance(store, RedisStore)
            await store.enqueue(
                [
                    Delivery(
                        webhook_name="h",
                        event=Event(event_type="prediction", data={}),
                        context=dict(CONTEXT),
                    )
                ]
            )
            async with asyncio.timeout(10):
                while not (letters := await dispatcher.dead_letters("h")):  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            await dispatcher.replay_dead_letter(letters[0].dead_letter_id)
            async with asyncio.timeout(10):
                while True:
                    again = [
                        d
                        for d in await dispatcher.dead_letters("h")
                        if d.dead_letter_id != letters[0].dead_letter_id
                    ]
                    if again:
                        break
                    await asyncio.sleep(0.01)
            assert again[0].context == CONTEXT
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
