"""Redis forgetting the stream under running producers and workers: said once, as an error
(queued alerts were lost), and everything emitted afterwards delivered. The stream of this
test's own prefix is deleted, as a restart without persistence or FLUSHALL would."""

from __future__ import annotations

import asyncio
import logging

import pytest
import redis.asyncio as aioredis

from empathy_webhooks_core import CustomWebhook, WebhookDispatcher
from empathy_webhooks_core.testing import Receiver
from empathy_webhooks_core.worker import run_worker


async def test_a_lost_stream_is_recreated_and_said_once_as_an_error(
    redis_url: str, webhook_receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: one WARNING, though what was queued at that moment is gone for good."""
    caplog.set_level(logging.WARNING, logger="empathy_webhooks")
    hook = CustomWebhook(name="h", url=webhook_receiver.url("/h"))
    producer = WebhookDispatcher(webhooks=[hook], store=redis_url)
    await producer.start()
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker([hook], redis_url, stop=stop, grace_seconds=1))
    prefix = redis_url.split("prefix=", 1)[1]
    client = aioredis.Redis.from_url(redis_url.split("?", 1)[0])
    try:
        first = await producer.emit("alert", {"n": 0})
        async with asyncio.timeout(10):
            while first.event_id not in webhook_receiver.delivered_event_ids():  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        await client.delete(f"{prefix}deliveries")  # the stream and its group, gone
        after = {(await producer.emit("alert", {"n": n})).event_id for n in range(1, 6)}
        async with asyncio.timeout(10):
            while not set(webhook_receiver.delivered_event_ids()) >= after:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.wait_for(worker, 10)
        await producer.close()
        await client.aclose()
    said = [r for r in caplog.records if "redis_group_recreated" in r.getMessage()]
    assert 1 <= len(said) <= 2, [r.getMessage() for r in said]  # the producer, the worker
    assert all(r.levelno == logging.ERROR for r in said)
