"""Logging: silent unless the application asks; delivery lines name webhook, event, attempt."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import pytest

from empathy_webhooks_core import CustomWebhook, WebhookDispatcher
from empathy_webhooks_core.testing import Receiver, Reply

from .conftest import FAST


def test_nothing_reaches_stdout_or_stderr_when_the_application_configures_nothing() -> None:
    script = textwrap.dedent(
        """
        import asyncio
        from empathy_webhooks_core import CustomWebhook, WebhookDispatcher
        from empathy_webhooks_core.testing import Receiver

        async def main():
            async with Receiver() as receiver:
                receiver.respond(status=500)
                webhook = CustomWebhook(url=receiver.url(),
                                        retry_policy={"initial_delay_seconds": 0.001})
                async with WebhookDispatcher(webhooks=[webhook]) as dispatcher:
                    await dispatcher.emit("alert", {"message": "x"})

        asyncio.run(main())
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("", "")


async def test_every_delivery_line_carries_webhook_event_and_attempt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="empathy_webhooks")
    async with Receiver() as receiver:
        receiver.queue(Reply(status=503), Reply(status=410))
        webhook = CustomWebhook(name="audited", url=receiver.url(), retry_policy=FAST)
        async with WebhookDispatcher(webhooks=[webhook]) as dispatcher:
            event = await dispatcher.emit("alert", {})
            await dispatcher.drain()
            dispatcher.enable_webhook("audited")
    lines = [r.getMessage() for r in caplog.records if r.name == "empathy_webhooks"]
    delivery_lines = [
        line for line in lines if line.startswith(("event='delivery_", "event='webhook_disabled'"))
    ]
    kinds = [line.split("'")[1] for line in delivery_lines]
    assert kinds == [
        "delivery_attempt",
        "delivery_retry_scheduled",
        "delivery_attempt",
        "webhook_disabled",
        "delivery_attempt",
    ]
    for line in delivery_lines:
        assert "webhook='audited'" in line
        assert f"event_id='{event.event_id}'" in line
        assert "attempt=" in line


async def test_the_application_can_configure_structlog_and_still_gets_the_lines() -> None:
    import structlog
    from structlog.testing import capture_logs

    async with Receiver() as receiver:
        webhook = CustomWebhook(url=receiver.url())
        try:
            with capture_logs() as captured:
                assert structlog.is_configured()
                async with WebhookDispatcher(webhooks=[webhook]) as dispatcher:
                    event = await dispatcher.emit("alert", {})
        finally:
            # capture_logs restores the processors but leaves structlog marked configured,
            # which would send every later test's library lines past the stdlib logger.
            structlog.reset_defaults()
        assert not structlog.is_configured()
    attempts = [entry for entry in captured if entry["event"] == "delivery_attempt"]
    assert attempts and attempts[0]["event_id"] == event.event_id
    assert attempts[0]["webhook"] == "custom_webhook" and attempts[0]["attempt"] == 1
