"""The monitor's figures for Prometheus (the `prometheus` extra: `prometheus-client`).

    from prometheus_client import start_http_server
    from empathy_webhooks_core.prometheus import register_collector

    register_collector()       # every dispatcher of the process, as WebhookMonitor() sees them
    start_http_server(9100)

Figures are read at scrape time from `WebhookMonitor`, so they always equal what
`get_webhook_stats` reports; nothing is counted twice. A plugin's own numeric figures
(`plugin.datadog.points_sent`) become gauges named `<prefix>_plugin_datadog_points_sent`, with
the `webhook` label.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from .monitor import WebhookMonitor

__all__ = ["WebhookCollector", "register_collector"]

_COUNTERS = {
    "delivered": ("delivered_count", "Deliveries the service accepted."),
    "failed": ("failed_count", "Deliveries that finally failed."),
    "attempts": ("attempts", "Requests sent, first attempts and retries alike."),
    "retries": ("retries", "Attempts after the first."),
}
_GAUGES = {
    "queued": ("queued", "Deliveries waiting in the queue or for a retry."),
    "in_flight": ("in_flight", "Attempts under way."),
    "dead_letters": ("dead_letters", "Final failures kept for replay."),
}


_NOT_IN_NAMES = re.compile(r"[^a-zA-Z0-9_]+")


def _plugin_metric(prefix: str, key: str) -> str:
    """`plugin.datadog.points_sent` -> `<prefix>_plugin_datadog_points_sent` (a valid name)."""
    return f"{prefix}_{_NOT_IN_NAMES.sub('_', key).strip('_')}"


class WebhookCollector:
    """A prometheus_client collector over a `WebhookMonitor`."""

    def __init__(self, monitor: WebhookMonitor | None = None, prefix: str = "empathy_webhooks"):
        self.monitor = monitor or WebhookMonitor()
        self.prefix = prefix

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        stats = self.monitor.all_stats()
        for name, (key, help_text) in _COUNTERS.items():
            family = CounterMetricFamily(f"{self.prefix}_{name}", help_text, labels=["webhook"])
            for webhook, figures in stats.items():
                family.add_metric([webhook], figures[key])
            yield family
        for name, (key, help_text) in _GAUGES.items():
            gauge = GaugeMetricFamily(f"{self.prefix}_{name}", help_text, labels=["webhook"])
            for webhook, figures in stats.items():
                gauge.add_metric([webhook], figures[key])
            yield gauge
        latency = GaugeMetricFamily(
            f"{self.prefix}_response_time_ms",
            "Response time of recent answered attempts, by quantile.",
            labels=["webhook", "quantile"],
        )
        for webhook, figures in stats.items():
            for quantile in ("50", "95", "99"):
                value = figures[f"p{quantile}_response_time_ms"]
                if value is not None:
                    latency.add_metric([webhook, f"0.{quantile}"], value)
        yield latency
        state = GaugeMetricFamily(
            f"{self.prefix}_breaker_open",
            "1 while the circuit breaker is open or half-open, else 0.",
            labels=["webhook"],
        )
        disabled = GaugeMetricFamily(
            f"{self.prefix}_disabled", "1 after a 410 Gone, until re-enabled.", labels=["webhook"]
        )
        for webhook, figures in stats.items():
            state.add_metric([webhook], 0 if figures["breaker_state"] == "closed" else 1)
            disabled.add_metric([webhook], 1 if figures["disabled"] else 0)
        yield state
        yield disabled
        yield from self._plugin_figures(stats)

    def _plugin_figures(self, stats: dict[str, dict[str, Any]]) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        families: dict[str, Any] = {}
        for webhook, figures in stats.items():
            for key, value in figures.items():
                if not key.startswith("plugin.") or isinstance(value, bool):
                    continue
                if not isinstance(value, int | float):
                    continue  # a text (a last error) is for get_webhook_stats only
                name = _plugin_metric(self.prefix, key)
                if name not in families:
                    families[name] = GaugeMetricFamily(
                        name, f"The plugin's own figure {key}.", labels=["webhook"]
                    )
                families[name].add_metric([webhook], value)
        yield from families.values()


def register_collector(
    registry: Any = None, monitor: WebhookMonitor | None = None
) -> WebhookCollector:
    """Register a collector with `registry` (prometheus_client's default one if None)."""
    if registry is None:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    collector = WebhookCollector(monitor)
    registry.register(collector)
    return collector
