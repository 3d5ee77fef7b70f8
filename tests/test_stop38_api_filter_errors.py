"""A filter that raises skips its webhook for that event (documented), and is counted.

Before: a filter with an attribute typo dropped every event for its webhook, and the only trace
was a log line: `get_webhook_stats` showed nothing wrong (no failure, no error figure).
"""

from __future__ import annotations

import logging

import pytest

from empathy_webhooks_core import CustomWebhook, WebhookDispatcher, WebhookMonitor
from empathy_webhooks_core.testing import Receiver

prometheus_client = pytest.importorskip("prometheus_client", reason="the prometheus extra")


async def test_a_filter_that_raises_is_counted_logged_and_scraped(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    from empathy_webhooks_core.prometheus import register_collector

    caplog.set_level(logging.ERROR, logger="empathy_webhooks")
    typo = CustomWebhook(
        name="stop38_filter_typo",
        url=receiver.url("/typo"),
        filter=lambda event: event.severty == "high",  # type: ignore[attr-defined]
    )
    fine = CustomWebhook(name="stop38_filter_fine", url=receiver.url("/fine"))
    async with WebhookDispatcher(webhooks=[typo, fine]) as dispatcher:
        for n in range(3):
            await dispatcher.emit("alert", {"n": n}, severity="high")
        await dispatcher.drain()
        assert dispatcher.get_webhook_stats("stop38_filter_typo")["filter_errors"] == 3
        registry = prometheus_client.CollectorRegistry()
        register_collector(registry, dispatcher.monitor)
        text = prometheus_client.generate_latest(registry).decode()

    # The events still skip that webhook only.
    assert [r.path for r in receiver.requests] == ["/fine"] * 3
    stats = WebhookMonitor().get_webhook_stats("stop38_filter_typo")
    assert (stats["filter_errors"], stats["total_sent"], stats["failed_count"]) == (3, 0, 0)
    assert WebhookMonitor().get_webhook_stats("stop38_filter_fine")["filter_errors"] == 0
    assert 'empathy_webhooks_filter_errors_total{webhook="stop38_filter_typo"} 3.0' in text
    assert 'empathy_webhooks_filter_errors_total{webhook="stop38_filter_fine"} 0.0' in text

    lines = [r.getMessage() for r in caplog.records if "filter_failed" in r.getMessage()]
    assert len(lines) == 3
    for line in lines:
        assert "webhook='stop38_filter_typo'" in line
        assert "AttributeError" in line and "severty" in line


async def test_a_filter_returning_an_awaitable_is_counted_too(receiver: Receiver) -> None:
    async def check(event: object) -> bool:
        return True

    webhook = CustomWebhook(
        name="stop38_filter_async", url=receiver.url(), filter=lambda event: check(event)
    )
    async with WebhookDispatcher(webhooks=[webhook]) as dispatcher:
        await dispatcher.emit("alert", {})
        await dispatcher.drain()
    assert receiver.requests == []
    assert WebhookMonitor().get_webhook_stats("stop38_filter_async")["filter_errors"] == 1


async def test_a_webhook_served_by_two_dispatchers_counts_each_call_once(
    receiver: Receiver,
) -> None:
    webhook = CustomWebhook(
        name="stop38_filter_shared", url=receiver.url(), filter=lambda event: 1 / 0
    )
    async with WebhookDispatcher(webhooks=[webhook]) as first:
        async with WebhookDispatcher(webhooks=[webhook]) as second:
            await first.emit("alert", {})
            await second.emit("alert", {})
            assert WebhookMonitor().get_webhook_stats("stop38_filter_shared")["filter_errors"] == 2
