"""A replay that cannot queue its letter leaves the letter where it was: listed, replayable
later. Before, the memory store lost it, and a SQLite file hid it from every process until
the one that tried ended. Real SQLite files, a real receiver on loopback."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

import pytest

from empathy_webhooks_core import CustomWebhook, WebhookDispatcher
from empathy_webhooks_core.stores import Delivery, MemoryStore
from empathy_webhooks_core.testing import Receiver, Reply

from .conftest import FAST


def _hook(receiver: Receiver, name: str) -> CustomWebhook:
    return CustomWebhook(
        name=name, url=receiver.url(f"/{name}"), retry_policy={**FAST, "max_retries": 0}
    )


async def _dead_letter(dispatcher: WebhookDispatcher, receiver: Receiver) -> str:
    receiver.queue(Reply(status=400))
    await dispatcher.emit("alert", {"n": 1})
    await dispatcher.drain(timeout=10)
    [letter] = await dispatcher.dead_letters()
    return letter.dead_letter_id


class _RefusingStore(MemoryStore):
    """A store whose writes fail for a while (a full disk, a server away)."""

    refuse = False

    async def enqueue(self, deliveries: Sequence[Delivery]) -> None:
        if self.refuse:
            raise OSError("disk full")
        await super().enqueue(deliveries)


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
async def test_a_letter_for_a_webhook_this_dispatcher_does_not_know_stays_listed(
    tmp_path: Path, receiver: Receiver, kind: str
) -> None:
    # Two dispatchers on one store: a SQLite file (two processes), or one memory store object.
    store: str | MemoryStore = (
        f"sqlite:///{tmp_path / 'outbox.db'}" if kind == "sqlite" else MemoryStore()
    )
    owner = WebhookDispatcher(webhooks=[_hook(receiver, "a")], store=store)
    other = WebhookDispatcher(webhooks=[_hook(receiver, "b")], store=store)
    await owner.start()
    await other.start()
    try:
        letter_id = await _dead_letter(owner, receiver)
        with pytest.raises(KeyError, match="unknown webhook 'a'"):
            await other.replay_dead_letter(letter_id)
        # Listed for both while the one that tried still runs, and replayable by the
        # dispatcher that knows its webhook.
        assert [d.dead_letter_id for d in await owner.dead_letters()] == [letter_id]
        assert [d.dead_letter_id for d in await other.dead_letters()] == [letter_id]
        replayed = await owner.replay_dead_letter(letter_id)
        await owner.drain(timeout=10)
        assert replayed.event_id in receiver.delivered_event_ids()
        assert await owner.dead_letters() == []
    finally:
        await other.close()
        await owner.close()


async def test_a_replay_whose_write_fails_raises_and_keeps_the_letter(receiver: Receiver) -> None:
    store = _RefusingStore()
    dispatcher = WebhookDispatcher(webhooks=[_hook(receiver, "a")], store=store)
    await dispatcher.start()
    try:
        letter_id = await _dead_letter(dispatcher, receiver)
        store.refuse = True
        with pytest.raises(OSError, match="disk full"):
            await dispatcher.replay_dead_letter(letter_id)
        assert [d.dead_letter_id for d in await dispatcher.dead_letters()] == [letter_id]
        assert dispatcher.get_webhook_stats("a")["dead_letters"] == 1
        store.refuse = False
        replayed = await dispatcher.replay_dead_letter(letter_id)
        await dispatcher.drain(timeout=10)
        assert replayed.event_id in receiver.delivered_event_ids()
        assert await dispatcher.dead_letters() == []
    finally:
        await dispatcher.close()


async def test_closing_without_drain_names_what_the_memory_store_loses(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """It said only a total, as a warning, though a memory store loses them all."""
    caplog.set_level(logging.WARNING, logger="empathy_webhooks")
    hook = CustomWebhook(
        name="slow", url=receiver.url("/slow"), rate_limit={"max_requests_per_hour": 1}
    )
    dispatcher = WebhookDispatcher(webhooks=[hook])
    await dispatcher.start()
    for n in range(3):
        await dispatcher.emit("alert", {"n": n})
    await asyncio.sleep(0.2)
    await dispatcher.close(drain=False)
    [record] = [r for r in caplog.records if "closed_with_pending_deliveries" in r.getMessage()]
    assert record.levelno == logging.ERROR
    line = record.getMessage()
    assert "count=2" in line and "'slow': 2" in line and "lost" in line
    assert len(receiver.requests) == 1


async def test_replaying_every_letter_counts_what_was_queued_and_says_what_was_left(
    tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """Before, `replay_dead_letters` answered how many letters it listed: a letter for a
    webhook this dispatcher does not have was counted as replayed, and stayed unsent."""
    caplog.set_level(logging.WARNING, logger="empathy_webhooks")
    store = f"sqlite:///{tmp_path / 'outbox.db'}"
    owner = WebhookDispatcher(webhooks=[_hook(receiver, "a")], store=store)
    other = WebhookDispatcher(webhooks=[_hook(receiver, "b")], store=store)
    await owner.start()
    await other.start()
    try:
        await _dead_letter(owner, receiver)  # webhook a's
        receiver.queue(Reply(status=400))
        await other.emit("alert", {"n": 2})
        await other.drain(timeout=10)
        assert len(await other.dead_letters()) == 2
        assert await other.replay_dead_letters() == 1  # b's; a's is not b's to send
        await other.drain(timeout=10)
        [left] = await other.dead_letters()
        assert left.webhook_name == "a"
    finally:
        await other.close()
        await owner.close()
    [said] = [
        r.getMessage() for r in caplog.records if "dead_letters_not_replayed" in r.getMessage()
    ]
    assert "count=1" in said and "unknown webhook" in said
