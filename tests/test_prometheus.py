"""The Prometheus export reports the monitor's figures under the documented names: counters
ending in `_total`, the attempt durations as a histogram in seconds, states as gauges; and the
Grafana dashboard under docs/ asks only for those names."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from empathy_webhooks_core import CustomWebhook, WebhookDispatcher
from empathy_webhooks_core.monitor import DURATION_BUCKETS
from empathy_webhooks_core.testing import Receiver, Reply

from .conftest import FAST

prometheus_client = pytest.importorskip("prometheus_client", reason="the prometheus extra")

DOCS = Path(__file__).resolve().parents[1] / "docs"


async def _scrape(receiver: Receiver) -> tuple[str, dict]:
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
    return text, stats


async def test_scraped_figures_equal_the_monitor(receiver: Receiver) -> None:
    text, stats = await _scrape(receiver)
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
    # Four answered attempts, every one under a minute.
    assert 'empathy_webhooks_attempt_duration_seconds_count{webhook="scraped"} 4.0' in lines
    assert 'empathy_webhooks_attempt_duration_seconds_bucket{le="+Inf",webhook="scraped"} 4.0' in (
        lines
    )
    # The percentiles stay in get_webhook_stats: a quantile cannot be summed across processes.
    assert "quantile=" not in text and "response_time" not in text
    assert stats["p95_response_time_ms"] is not None


def _documented() -> dict[str, tuple[str, set[str]]]:
    """The Prometheus table of docs/metrics.md: name -> (type, labels)."""
    section = (DOCS / "metrics.md").read_text().split("## Prometheus")[1].split("\n## ")[0]
    rows = re.findall(r"^\| `(empathy_webhooks_\w+)` \| (\w+) \| ([^|]+) \|", section, re.M)
    return {
        name: (kind, set(re.findall(r"`(\w+)`", labels)) - {"le"}) for name, kind, labels in rows
    }


async def test_the_parsed_scrape_has_the_documented_names_types_and_labels(
    receiver: Receiver,
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from empathy_webhooks_core.prometheus import METRICS

    text, _ = await _scrape(receiver)
    families = {family.name: family for family in text_string_to_metric_families(text)}
    documented = _documented()
    scraped: dict[str, tuple[str, set[str]]] = {}
    for family in families.values():
        # The parser names a counter without its `_total`; its samples keep it.
        name = family.name + "_total" if family.type == "counter" else family.name
        labels = {key for sample in family.samples for key in sample.labels} - {"le"}
        scraped[name] = (family.type, labels)
    assert scraped == documented
    assert {name: (kind, set(labels)) for name, (kind, labels) in METRICS.items()} == documented

    histogram = families["empathy_webhooks_attempt_duration_seconds"]
    assert histogram.type == "histogram"
    bounds = [
        sample.labels["le"] for sample in histogram.samples if sample.name.endswith("_bucket")
    ]
    assert bounds == [*(repr(bound) for bound in DURATION_BUCKETS), "+Inf"]
    counts = [s.value for s in histogram.samples if s.name.endswith("_bucket")]
    assert counts == sorted(counts)  # cumulative
    (total,) = [s.value for s in histogram.samples if s.name.endswith("_count")]
    assert total == counts[-1] == 4
    (seconds,) = [s.value for s in histogram.samples if s.name.endswith("_sum")]
    assert 0 < seconds < 4 * 60


def test_the_grafana_dashboard_asks_only_for_documented_metrics() -> None:
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    documented = set(_documented())
    asked: set[str] = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            for name in re.findall(r"\bempathy_webhooks_\w+", target["expr"]):
                asked.add(re.sub(r"_(bucket|sum|count)$", "", name))
    assert asked and asked <= documented, asked - documented
    # Deliveries, failures and the histogram are on it, at least.
    assert {
        "empathy_webhooks_delivered_total",
        "empathy_webhooks_failed_total",
        "empathy_webhooks_attempt_duration_seconds",
    } <= asked
    assert "(docs/metrics.md)" in (DOCS / "../README.md").read_text()
    assert "grafana-dashboard.json" in (DOCS / "metrics.md").read_text()
