"""The Prometheus export reports the monitor's figures."""

from __future__ import annotations

import pytest

from empathy_webhooks_core import CustomWebhook, WebhookDispatcher
from empathy_webhooks_core.testing import Receiver, Reply

from .conftest import FAST

prometheus_client = pytest.importorskip("prometheus_client", reason="the prometheus extra")


async def test_scraped_figures_equal_the_monitor(receiver: Receiver) -> None:
    from empathy_webhooks_core.prometheus import register_collector

    receiver.queue(Reply(status=500), Reply(status=400))
    webhook = CustomWebhook(name="scraped", url=receiver.url(), retry_policy=FAST)
    async with WebhookDispatcher(webhooks=[webhook]) as dispatcher:
        for _ in range(3):
            await dispatcher.emit("alert", {})
        await dispatcher.drain()
        registry = prometheus_client.CollectorRegistry()
        register_collector(registry, dispatcher.monitor)
        text = prometheus_client.generate_latest(registry).decode()
        stats = dispatcher.get_webhook_stats("scraped")
    lines = set(text.splitlines())
    assert (
        f'empathy_webhooks_delivered_total{{webhook="scraped"}} {stats["delivered_count"]:.1f}'
        in lines
    )
    assert 'empathy_webhooks_delivered_total{webhook="scraped"} 2.0' in lines
    assert 'empathy_webhooks_failed_total{webhook="scraped"} 1.0' in lines
    assert 'empathy_webhooks_attempts_total{webhook="scraped"} 4.0' in lines
    assert 'empathy_webhooks_retries_total{webhook="scraped"} 1.0' in lines
    assert 'empathy_webhooks_dead_letters{webhook="scraped"} 1.0' in lines
    assert 'empathy_webhooks_breaker_open{webhook="scraped"} 0.0' in lines
    assert any(
        line.startswith('empathy_webhooks_response_time_ms{quantile="0.95",webhook="scraped"}')
        for line in lines
    )
