"""A plugin says which of its figures are counts (`Count(n)` from its `webhook_stats` hook):
Prometheus gets those as `_total` counters and the others as gauges, while
`get_webhook_stats` shows plain numbers either way. Datadog declares its counts.

Read as a user reads them: the collector's text, parsed by prometheus_client's own parser.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from empathy_webhooks_core import CustomWebhook, Webhook, WebhookDispatcher, WebhookMonitor
from empathy_webhooks_core.plugin import Count, hookimpl
from empathy_webhooks_core.plugins import build_plugin_manager
from empathy_webhooks_core.prometheus import WebhookCollector
from empathy_webhooks_core.testing import ReceivedRequest, Receiver, Reply

datadog = pytest.importorskip("empathy_webhooks_datadog")

API_KEY = "0123456789abcdef0123456789abcdef"


class Figures:
    """A third-party plugin with a count and a level for every webhook."""

    @hookimpl
    def webhook_stats(self, webhook: Webhook, state: Any) -> dict[str, Any]:
        return {"sent": Count(3), "open": 2, "last_error": "none"}


def families(collector: WebhookCollector) -> dict[str, Any]:
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    def accept(request: ReceivedRequest) -> Reply:
        return Reply(status=202, body={"errors": []})

    async with Receiver() as started:
        started.handler = accept
        yield started


async def test_datadogs_counts_are_counters_and_its_buffer_a_gauge(receiver: Receiver) -> None:
    pm = build_plugin_manager(load_entry_points=False, extra_plugins=[datadog])
    webhook = datadog.DatadogWebhook(name="dd", api_key=API_KEY, base_url=receiver.url())
    async with WebhookDispatcher(webhooks=[webhook], plugin_manager=pm) as dispatcher:
        for n in range(3):
            await webhook.send_metric("empathy.load", n)
        await dispatcher.drain()
        found = families(WebhookCollector(WebhookMonitor(dispatcher)))
        stats = dispatcher.get_webhook_stats("dd")

    prefix = "empathy_webhooks_plugin_datadog_"
    for count in (
        "points_sent",
        "points_dropped",
        "points_late",
        "points_early",
        "events_late",
        "batches_sent",
        "batches_failed",
        "accepted_with_errors",
    ):
        family = found[prefix + count]
        assert family.type == "counter", count
        assert [sample.name for sample in family.samples] == [prefix + count + "_total"]
    [sent] = found[prefix + "points_sent"].samples
    assert (sent.labels, sent.value) == ({"webhook": "dd"}, 3.0)
    buffered = found[prefix + "points_buffered"]
    assert buffered.type == "gauge"
    assert [sample.name for sample in buffered.samples] == [prefix + "points_buffered"]
    # The stats themselves stay plain numbers.
    assert json.loads(json.dumps(stats))["plugin.datadog.points_sent"] == 3
    assert repr(stats["plugin.datadog.points_sent"]) == "3"


async def test_a_third_party_count_stays_a_counter_summed_over_dispatchers(
    receiver: Receiver,
) -> None:
    pm = build_plugin_manager(load_entry_points=False, extra_plugins=[Figures()])
    first = WebhookDispatcher(
        webhooks=[CustomWebhook(name="ops", url=receiver.url())], plugin_manager=pm
    )
    second = WebhookDispatcher(
        webhooks=[CustomWebhook(name="ops", url=receiver.url())], plugin_manager=pm
    )
    async with first, second:
        found = families(WebhookCollector())
        stats = WebhookMonitor().get_webhook_stats("ops")
    sent = found["empathy_webhooks_plugin_Figures_sent"]
    assert sent.type == "counter"
    assert [(s.name, s.labels["webhook"], s.value) for s in sent.samples] == [
        ("empathy_webhooks_plugin_Figures_sent_total", "ops", 6.0)
    ]
    opened = found["empathy_webhooks_plugin_Figures_open"]
    assert opened.type == "gauge"
    assert [(s.name, s.value) for s in opened.samples] == [
        ("empathy_webhooks_plugin_Figures_open", 4.0)
    ]
    assert "empathy_webhooks_plugin_Figures_last_error" not in found
    assert (stats["plugin.Figures.sent"], stats["plugin.Figures.open"]) == (6, 4)


def test_a_count_is_an_int_that_stays_a_count_when_summed() -> None:
    assert Count(2) == 2 and isinstance(Count(2) + 3, Count) and isinstance(3 + Count(2), Count)
    assert not isinstance(Count(2) + 0.5, Count) and Count(2) + 0.5 == 2.5
    assert not isinstance(Count(2) + True, Count)
    assert json.dumps({"n": Count(5)}) == '{"n": 5}'
