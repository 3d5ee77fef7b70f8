"""The monitor's figures for Prometheus (the `prometheus` extra: `prometheus-client`).

    from prometheus_client import start_http_server
    from empathy_webhooks_core.prometheus import register_collector

    register_collector()       # every dispatcher of the process, as WebhookMonitor() sees them
    start_http_server(9100)

Figures are read at scrape time from `WebhookMonitor`, so they always equal what
`get_webhook_stats` reports; nothing is counted twice. A plugin's own numeric figures
(`plugin.datadog.points_sent`) are exported with the `webhook` label: those it reports as a
`Count` as counters (`<prefix>_plugin_datadog_points_sent_total`), the others as gauges
(`<prefix>_plugin_datadog_points_buffered`).

The names follow Prometheus' conventions: counts are counters ending in `_total` (the client
adds the suffix), durations a histogram in seconds (`empathy_webhooks_attempt_duration_seconds`,
from which `histogram_quantile` gives any percentile over any window), states gauges. The
p50/p95/p99 figures of `get_webhook_stats` are not exported: quantiles computed in the process
cannot be summed across processes. `METRICS` lists every family with its type and labels;
`docs/metrics.md` documents them (a test keeps the two in step).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from .monitor import WebhookMonitor
from .redaction import exported_name, exported_names

__all__ = [
    "METRICS",
    "STORE_METRICS",
    "Count",
    "WebhookCollector",
    "register_collector",
    "webhook_labels",
]

PREFIX = "empathy_webhooks"

# Each table maps the exported name (after the prefix) to the `get_webhook_stats` key it
# reads and its help text. Adding a figure is one line in one table.
# Every figure but the store's (`_STORE_GAUGES`) is this process's: a help text that does not
# say so reads as the webhook's whole health, and a restarted process showed 0 dead letters
# beside a store full of them.
_COUNTERS = {
    "delivered": ("delivered_count", "Deliveries the service accepted, in this process."),
    "failed": (
        "failed_count",
        "Deliveries that finally failed (retries exhausted or a final answer), in this process.",
    ),
    "attempts": ("attempts", "Requests this process sent, first attempts and retries alike."),
    "retries": ("retries", "Attempts after a delivery's first, in this process."),
    "refused": (
        "refused",
        "Deliveries emit refused with QueueFull (max_pending reached), in this process.",
    ),
    "callback_errors": (
        "callback_errors",
        "Times the webhook's on_failure callback raised, in this process.",
    ),
    "filter_errors": (
        "filter_errors",
        "Events the webhook's filter raised on (each skipped this webhook), in this process.",
    ),
}
_GAUGES = {
    "queued": (
        "queued",
        "Deliveries this process holds waiting now (queue, ordering key, retry, rate limit, "
        "open breaker, 410); not what a durable store holds: see store_pending.",
    ),
    "in_flight": ("in_flight", "Attempts under way in this process now."),
    "dead_letters": (
        "dead_letters",
        "Final failures this process dead-lettered since it started, less those it replayed; "
        "not the store's list: see store_dead_letters.",
    ),
    "max_pending": ("max_pending", "Deliveries the webhook may hold before emit refuses more."),
    "paused_seconds": (
        "paused_seconds",
        "Seconds the webhook still waits after a 429 or a Retry-After (0 when not paused).",
    ),
}
# Gauges worked out from a figure that is not a number.
_STATES = {
    "breaker_open": (
        lambda figures: 0 if figures["breaker_state"] == "closed" else 1,
        "1 while the circuit breaker is open or half-open, else 0.",
    ),
    "disabled": (
        lambda figures: 1 if figures["disabled"] else 0,
        "1 after a 410 Gone, until re-enabled.",
    ),
}
# What the store holds (every process's, across restarts), when the caller read it and gave
# it to the collector (`WebhookCollector(stored=...)`: the gateway's /metrics does): the
# collector runs in a scrape thread and cannot ask the store itself.
_STORE_GAUGES = {
    "store_pending": (
        "pending",
        "Deliveries the store holds not finished (waiting, retrying or under way, in any "
        "process), read at scrape time.",
    ),
    "store_dead_letters": (
        "dead_letters",
        "Dead letters the store holds (every process's, kept for replay), read at scrape time.",
    ),
}
_HISTOGRAMS = {
    "attempt_duration_seconds": (
        WebhookMonitor.duration_histogram,
        "Time from request to answer of each answered attempt.",
    ),
}

#: Every fixed family: full name (as scraped: counters with `_total`) -> (type, labels). Plugins'
#: figures add gauges `<prefix>_plugin_<plugin>_<figure>` beside them.
METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    **{f"{PREFIX}_{name}_total": ("counter", ("webhook",)) for name in _COUNTERS},
    **{f"{PREFIX}_{name}": ("gauge", ("webhook",)) for name in (*_GAUGES, *_STATES)},
    **{f"{PREFIX}_{name}": ("histogram", ("webhook",)) for name in _HISTOGRAMS},
}

#: The families of what the store holds, exported only when the collector is given them.
STORE_METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    f"{PREFIX}_{name}": ("gauge", ("webhook",)) for name in _STORE_GAUGES
}


class Count(int):
    """A plugin's figure that only grows (points sent, batches failed), as its `webhook_stats`
    hook reports it: `{"points_sent": Count(n)}`. Prometheus gets it as a counter
    (`..._total`), whose `rate()` survives a restart; any other number is a gauge, a level
    now (points buffered). Everywhere else (`get_webhook_stats`, JSON) it is the int it
    holds; summed over dispatchers, it stays a count."""

    __slots__ = ()

    def __add__(self, other: Any) -> Any:
        total = int.__add__(self, other)
        if total is NotImplemented or not isinstance(other, int) or isinstance(other, bool):
            return total
        return Count(total)

    __radd__ = __add__


_NOT_IN_NAMES = re.compile(r"[^a-zA-Z0-9_]+")
#: What prometheus_client writes raw into a label value or a HELP line but line-oriented
#: readers break on (a carriage return, the other line separators of `str.splitlines`),
#: control characters, and lone surrogates (which UTF-8 cannot encode: the whole scrape
#: failed with UnicodeEncodeError). The client escapes a backslash, a quote and a newline.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def _escaped(text: str) -> str:
    """`text` with `_UNSAFE` characters written as Python escapes (`\\r`, `\\x00`,
    `\\udcff`): shown, not dropped."""
    return _UNSAFE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def _plugin_metric(prefix: str, key: str) -> str:
    """`plugin.datadog.points_sent` -> `<prefix>_plugin_datadog_points_sent` (a valid name)."""
    return f"{prefix}_{_NOT_IN_NAMES.sub('_', exported_name(key)).strip('_')}"


def webhook_labels(webhooks: Iterable[str]) -> dict[str, str]:
    """The `webhook` label of each webhook name: masked like a log line, unsafe characters
    escaped, and distinct (` #1`, ` #2` for names masked alike): `exported_names`, which the
    OpenTelemetry plugin's names share."""
    return exported_names(webhooks, lambda webhook: _escaped(exported_name(webhook)))


class WebhookCollector:
    """A prometheus_client collector over a `WebhookMonitor`.

    `stored`: what the store holds, read by the caller before the scrape, by figure
    (`pending`, `dead_letters`) then webhook name; a figure that is None (the store cannot
    count it) is not exported. See `STORE_METRICS`."""

    def __init__(
        self,
        monitor: WebhookMonitor | None = None,
        prefix: str = PREFIX,
        *,
        stored: Mapping[str, Mapping[str, int] | None] | None = None,
    ):
        self.monitor = monitor or WebhookMonitor()
        self.prefix = prefix
        self.stored = dict(stored or {})

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        stats = self.monitor.all_stats()
        # A name is the user's to choose, and a scrape leaves the process like a log line: a
        # webhook named after its Slack URL must not publish the URL's secret path.
        labels = webhook_labels(stats)
        for name, (key, help_text) in _COUNTERS.items():
            family = CounterMetricFamily(f"{self.prefix}_{name}", help_text, labels=["webhook"])
            for webhook, figures in stats.items():
                family.add_metric([labels[webhook]], figures[key])
            yield family
        for name, (key, help_text) in _GAUGES.items():
            gauge = GaugeMetricFamily(f"{self.prefix}_{name}", help_text, labels=["webhook"])
            for webhook, figures in stats.items():
                gauge.add_metric([labels[webhook]], figures[key])
            yield gauge
        for name, (value_of, help_text) in _STATES.items():
            gauge = GaugeMetricFamily(f"{self.prefix}_{name}", help_text, labels=["webhook"])
            for webhook, figures in stats.items():
                gauge.add_metric([labels[webhook]], value_of(figures))
            yield gauge
        for name, (key, help_text) in _STORE_GAUGES.items():
            counts = self.stored.get(key)
            if counts is None:
                continue
            gauge = GaugeMetricFamily(f"{self.prefix}_{name}", help_text, labels=["webhook"])
            for webhook in stats:
                gauge.add_metric([labels[webhook]], counts.get(webhook, 0))
            yield gauge
        for name, (read, help_text) in _HISTOGRAMS.items():
            histogram = HistogramMetricFamily(
                f"{self.prefix}_{name}", help_text, labels=["webhook"]
            )
            for webhook in stats:
                durations = read(self.monitor, webhook)
                histogram.add_metric(
                    [labels[webhook]],
                    buckets=[(_le(bound), count) for bound, count in durations.buckets],
                    sum_value=durations.sum_seconds,
                )
            yield histogram
        yield from self._plugin_figures(stats, labels)

    def _plugin_figures(
        self, stats: dict[str, dict[str, Any]], labels: dict[str, str]
    ) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        families: dict[str, Any] = {}
        # Two keys that differ only in characters a name cannot hold (`a-b`, `a_b`) make one
        # family: its first figure is kept, as a repeated series is an invalid scrape.
        seen: set[tuple[str, str]] = set()
        for webhook, figures in stats.items():
            for key, value in figures.items():
                if not key.startswith("plugin.") or isinstance(value, bool):
                    continue
                if not isinstance(value, int | float):
                    continue  # a text (a last error) is for get_webhook_stats only
                name = _plugin_metric(self.prefix, key)
                if (name, labels[webhook]) in seen:
                    continue
                seen.add((name, labels[webhook]))
                if name not in families:
                    shown = _escaped(exported_name(key))
                    if isinstance(value, Count):
                        families[name] = CounterMetricFamily(
                            name, f"The plugin's own count {shown}.", labels=["webhook"]
                        )
                    else:
                        families[name] = GaugeMetricFamily(
                            name, f"The plugin's own figure {shown}.", labels=["webhook"]
                        )
                families[name].add_metric([labels[webhook]], value)
        yield from families.values()


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


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
