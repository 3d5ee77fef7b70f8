"""What is sent to a webhook a 410 disabled is held until `enable_webhook`, as the webhook's
own queue is, and said with its event id: a fallback's backup above all, which had waited in
silence (`drain` returned, the primary's `on_failure` ran, and the alert had reached nobody).
"""

from __future__ import annotations

import logging

import pytest

from empathy_webhooks_core import CustomWebhook, WebhookDispatcher
from empathy_webhooks_core.testing import Receiver, Reply

NO_RETRIES = {"max_retries": 0}


def _said(caplog: pytest.LogCaptureFixture, event: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if event in r.getMessage()]


async def test_a_failure_backed_up_to_a_disabled_fallback_is_said_and_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="empathy_webhooks")
    async with Receiver() as pager, Receiver() as chat:
        pager.respond(status=500)
        chat.queue(Reply(status=410, body="gone"))
        told: list[str] = []
        backup = CustomWebhook(
            name="chat_backup", url=chat.url(), events=["ping"], retry_policy=NO_RETRIES
        )
        primary = CustomWebhook(
            name="pager",
            url=pager.url(),
            events=["alert"],
            retry_policy=NO_RETRIES,
            circuit_breaker=False,
            fallback="chat_backup",
            on_failure=lambda webhook, event, error: told.append(event.event_id),
        )
        async with WebhookDispatcher(webhooks=[primary, backup]) as dispatcher:
            await dispatcher.emit("ping", {})  # the backup answers 410: disabled
            await dispatcher.drain()
            assert not dispatcher.is_enabled("chat_backup")
            alert = await dispatcher.emit("alert", {"message": "db down"})
            await dispatcher.drain()  # returns: a disabled webhook is not waited for
            assert told == [alert.event_id]
            [line] = _said(caplog, "delivery_held_webhook_disabled")
            assert alert.event_id in line
            assert "fallback 'chat_backup' of 'pager' is disabled since it answered: " in line
            assert "endpoint gone (410)" in line
            assert "until enable_webhook('chat_backup')" in line
            assert dispatcher.get_webhook_stats("chat_backup")["queued"] == 2
            # Held, not dropped: re-enabled, the backup sends it.
            dispatcher.enable_webhook("chat_backup")
            await dispatcher.drain()
            assert alert.event_id in [r.event_id for r in chat.delivered]


async def test_events_emitted_to_a_disabled_webhook_are_each_said(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="empathy_webhooks")
    receiver.queue(Reply(status=410))
    hook = CustomWebhook(name="ops", url=receiver.url(), max_concurrency=1)
    async with WebhookDispatcher(webhooks=[hook]) as dispatcher:
        first = await dispatcher.emit("alert", {"n": 0})
        await dispatcher.drain()
        [disabled] = _said(caplog, "webhook_disabled")
        assert first.event_id in disabled and "held=1" in disabled
        later = [await dispatcher.emit("alert", {"n": n}) for n in (1, 2)]
        await dispatcher.drain()
        held = _said(caplog, "delivery_held_webhook_disabled")
        assert len(held) == 2
        for line, event in zip(held, later, strict=True):
            assert event.event_id in line
            assert "webhook 'ops' is disabled since it answered: endpoint gone (410)" in line
            assert "fallback_of" not in line or "fallback_of=None" in line
        dispatcher.enable_webhook("ops")
        await dispatcher.drain()
    assert sorted(r.json()["data"]["n"] for r in receiver.delivered) == [0, 1, 2]


async def test_a_disabled_webhook_emitted_to_without_end_does_not_flood_the_log(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """The first ten held deliveries are said one by one; the rest are counted into the next
    line (a minute on), so a busy producer aimed at a disabled webhook is not a log flood."""
    caplog.set_level(logging.INFO, logger="empathy_webhooks")
    receiver.queue(Reply(status=410))
    hook = CustomWebhook(name="ops", url=receiver.url(), max_concurrency=1)
    async with WebhookDispatcher(webhooks=[hook]) as dispatcher:
        await dispatcher.emit("alert", {"n": 0})
        await dispatcher.drain()
        for n in range(1, 26):
            await dispatcher.emit("alert", {"n": n})
        assert len(_said(caplog, "delivery_held_webhook_disabled")) == 10
        dispatcher.enable_webhook("ops")
        [enabled] = _said(caplog, "webhook_enabled")
        assert "queued=26" in enabled
        await dispatcher.drain()
    assert len(receiver.delivered) == 26
