"""The claim check before each attempt (`ConfirmsHolding`), as a third-party store sees it: a
store whose claims can run out says which deliveries are surely its process's; for the rest
the dispatcher asks, leaves a delivery another process took (said, not counted as sent or
failed), and sends one it cannot tell about (a duplicate rather than a loss). Real receiver
on loopback; SQLite and Redis have their own tests with real processes."""

from __future__ import annotations

import logging

import pytest

from empathy_webhooks_core import CustomWebhook, WebhookDispatcher
from empathy_webhooks_core.plugin.store import ConfirmsHolding, Delivery
from empathy_webhooks_core.stores import MemoryStore
from empathy_webhooks_core.testing import Receiver


class Claims(MemoryStore):
    """In doubt about every delivery whose `n` is odd; the answer given for those by `held`."""

    def __init__(self, held: bool | Exception) -> None:
        super().__init__()
        self.held = held
        self.asked: list[int] = []

    def surely_held(self, delivery: Delivery) -> bool:
        return delivery.event.data["n"] % 2 == 0

    async def confirm_held(self, delivery: Delivery) -> bool:
        self.asked.append(delivery.event.data["n"])
        if isinstance(self.held, Exception):
            raise self.held
        return self.held


def test_the_protocol_is_the_plugin_api_s() -> None:
    assert isinstance(Claims(True), ConfirmsHolding)
    assert not isinstance(MemoryStore(), ConfirmsHolding)


async def test_a_delivery_another_process_took_is_left_to_it_and_said(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="empathy_webhooks")
    store = Claims(held=False)
    async with WebhookDispatcher(
        webhooks=[CustomWebhook(name="h", url=receiver.url())], store=store
    ) as dispatcher:
        for n in range(6):
            await dispatcher.emit("alert", {"n": n})
        await dispatcher.drain(timeout=10)
        stats = dispatcher.get_webhook_stats("h")
        assert await dispatcher.dead_letters() == []
    assert sorted(r.json()["data"]["n"] for r in receiver.requests) == [0, 2, 4]
    assert sorted(store.asked) == [1, 3, 5]
    # Neither sent nor failed here: another process has it.
    assert (stats["total_sent"], stats["delivered_count"], stats["failed_count"]) == (3, 3, 0)
    assert (stats["queued"], stats["in_flight"]) == (0, 0)
    lines = [r.getMessage() for r in caplog.records if "delivery_taken_over" in r.getMessage()]
    assert len(lines) == 3 and all("webhook" in line and "event_id" in line for line in lines)


async def test_a_confirmed_delivery_is_sent_once(receiver: Receiver) -> None:
    store = Claims(held=True)
    async with WebhookDispatcher(
        webhooks=[CustomWebhook(name="h", url=receiver.url())], store=store
    ) as dispatcher:
        for n in range(4):
            await dispatcher.emit("alert", {"n": n})
        await dispatcher.drain(timeout=10)
    assert sorted(r.json()["data"]["n"] for r in receiver.requests) == [0, 1, 2, 3]
    assert sorted(store.asked) == [1, 3]


async def test_a_store_that_cannot_tell_gets_the_delivery_sent_and_said(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="empathy_webhooks")
    store = Claims(held=ConnectionError("database is locked"))
    async with WebhookDispatcher(
        webhooks=[CustomWebhook(name="h", url=receiver.url())], store=store
    ) as dispatcher:
        for n in range(2):
            await dispatcher.emit("alert", {"n": n})
        await dispatcher.drain(timeout=10)
    assert sorted(r.json()["data"]["n"] for r in receiver.requests) == [0, 1]
    said = [r.getMessage() for r in caplog.records]
    [line] = [text for text in said if "delivery_claim_unconfirmed" in text]
    assert "database is locked" in line


class Outage(Claims):
    """Cannot answer the first `failing` checks (the store out of reach), then answers yes."""

    def __init__(self, failing: int) -> None:
        super().__init__(held=True)
        self.failing = failing

    async def confirm_held(self, delivery: Delivery) -> bool:
        self.asked.append(delivery.event.data["n"])
        if len(self.asked) <= self.failing:
            raise ConnectionError("database is locked")
        return True


async def test_an_outage_is_said_once_and_counted_when_the_store_answers_again(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="empathy_webhooks")
    store = Outage(failing=4)
    async with WebhookDispatcher(
        webhooks=[CustomWebhook(name="h", url=receiver.url(), max_concurrency=1)], store=store
    ) as dispatcher:
        for n in range(12):
            await dispatcher.emit("alert", {"n": n})
        await dispatcher.drain(timeout=10)
    assert sorted(r.json()["data"]["n"] for r in receiver.requests) == list(range(12))
    unconfirmed = [r for r in caplog.records if "delivery_claim_unconfirmed" in r.getMessage()]
    warned = [r for r in unconfirmed if r.levelno >= logging.WARNING]
    assert len(warned) == 1 and "database is locked" in warned[0].getMessage()
    # Each delivery sent unchecked is still on record, at debug, with its id.
    assert len(unconfirmed) == 4
    [again] = [r.getMessage() for r in caplog.records if "answered_again" in r.getMessage()]
    assert "sent_unconfirmed=4" in again or '"sent_unconfirmed": 4' in again
