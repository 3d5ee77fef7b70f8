"""An OpenTelemetry SDK of the test's own: in-memory span and metric exporters, and the plugin
registered over them (never the global providers, shared by every test of the process)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import attrs
import pytest
from empathy_webhooks_otel import OtelPlugin
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from empathy_webhooks_core import WebhookDispatcher
from empathy_webhooks_core.plugins import build_plugin_manager
from empathy_webhooks_core.testing import Receiver


@attrs.define
class Telemetry:
    tracer_provider: TracerProvider
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader
    plugin: OtelPlugin

    def tracer(self) -> Any:
        return self.tracer_provider.get_tracer("the-emitting-app")

    def attempt_spans(self) -> list[ReadableSpan]:
        """The plugin's spans, in the order they ended."""
        return [
            span
            for span in self.spans.get_finished_spans()
            if span.instrumentation_scope is not None
            and span.instrumentation_scope.name == "empathy_webhooks_otel"
        ]

    def dispatcher(self, *webhooks: Any, load: str = "", **options: Any) -> WebhookDispatcher:
        """A dispatcher whose plugin manager has this plugin and only the entry points in
        `load` (the global `otel` one never: it would report to the global providers)."""
        pm = build_plugin_manager(
            env={"EMPATHY_WEBHOOKS_LOAD_PLUGINS": load}, extra_plugins=[self.plugin]
        )
        return WebhookDispatcher(webhooks=list(webhooks), plugin_manager=pm, **options)

    def points(self, name: str) -> list[Any]:
        """Every data point of the instrument `name`."""
        data = self.metrics.get_metrics_data()
        found = []
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found

    def by_attributes(self, name: str) -> Mapping[tuple[tuple[str, Any], ...], Any]:
        return {tuple(sorted(p.attributes.items())): p for p in self.points(name)}


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    plugin = OtelPlugin(tracer_provider=tracer_provider, meter_provider=meter_provider)
    yield Telemetry(tracer_provider, spans, reader, plugin)
    tracer_provider.shutdown()
    meter_provider.shutdown()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver() as started:
        yield started


#: Retry quickly in tests: the schedule's shape is tested with a fake clock in the core.
FAST = {"initial_delay_seconds": 0.001, "max_delay_seconds": 0.01}
