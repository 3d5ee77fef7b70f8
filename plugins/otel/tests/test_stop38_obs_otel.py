"""What the OTel plugin exports names the right webhook and the right trace.

- Names: the span name and every `empathy.webhook` value are the Prometheus `webhook` label:
  masked (a credential-shaped name as well as a URL), and two names masked alike kept apart.
- Exemplars: an attempt's duration points at that attempt's span, never at the trace of the
  emit that happened to start the worker task.
"""

from __future__ import annotations

from typing import Any

import empathy_webhooks_otel
from opentelemetry import context as otel_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from empathy_webhooks_core import CustomWebhook, WebhookMonitor
from empathy_webhooks_core.prometheus import WebhookCollector
from empathy_webhooks_core.testing import Receiver, Reply

from .conftest import Telemetry

SECRET_A = "STOP38OTELSECRETAAAA"
SECRET_B = "STOP38OTELSECRETBBBB"
SHAPED = "STOP38OTELSHAPEDTOKEN"
NAMES = (
    f"https://hooks.slack.com/services/T0/B0/{SECRET_A}",
    f"https://hooks.slack.com/services/T0/B0/{SECRET_B}",
    f"alerts xoxb-1234-5678-{SHAPED}",
)


def _prometheus_labels(registry: CollectorRegistry) -> set[str]:
    text = generate_latest(registry).decode()
    return {
        sample.labels["webhook"]
        for family in text_string_to_metric_families(text)
        if family.name == "empathy_webhooks_delivered"
        for sample in family.samples
    }


async def test_names_are_masked_and_kept_apart_as_the_prometheus_labels(
    telemetry: Telemetry, receiver: Receiver
) -> None:
    # The second webhook's receiver fails it: its figures must not land on the first's.
    receiver.handler = lambda request: Reply(status=500 if request.path == "/b" else 200)
    webhooks = [
        CustomWebhook(name=NAMES[0], url=receiver.url("/a")),
        CustomWebhook(name=NAMES[1], url=receiver.url("/b"), retry_policy={"max_retries": 0}),
        CustomWebhook(name=NAMES[2], url=receiver.url("/c")),
    ]
    registry = CollectorRegistry()
    async with telemetry.dispatcher(*webhooks) as dispatcher:
        registry.register(WebhookCollector(WebhookMonitor(dispatcher)))
        await dispatcher.emit("alert", {"title": "x"})
        await dispatcher.drain()
        labels = _prometheus_labels(registry)
        depth = telemetry.points(empathy_webhooks_otel.QUEUE_DEPTH)

    masked = "https://hooks.slack.com/services/***"
    assert {masked + " #1", masked + " #2"} < labels
    spans: dict[str, str] = {}  # the receiver's path -> the span's name
    for span in telemetry.attempt_spans():
        assert span.attributes is not None
        assert span.name == span.attributes["empathy.webhook"]
        spans[span.attributes["url.full"].rsplit("/", 1)[-1]] = span.name
    assert set(spans.values()) == labels
    assert (spans["a"], spans["b"]) == (masked + " #1", masked + " #2")

    deliveries = {
        (point.attributes["empathy.webhook"], point.attributes["empathy.outcome"])
        for point in telemetry.points(empathy_webhooks_otel.DELIVERIES)
    }
    assert deliveries == {
        (spans["a"], "delivered"),
        (spans["b"], "failed"),
        (spans["c"], "delivered"),
    }
    durations = {
        point.attributes["empathy.webhook"]
        for point in telemetry.points(empathy_webhooks_otel.ATTEMPT_DURATION)
    }
    assert durations == labels == {point.attributes["empathy.webhook"] for point in depth}

    exported = repr(
        [
            [span.to_json() for span in telemetry.attempt_spans()],
            telemetry.metrics.get_metrics_data().to_json(),
            sorted(labels),
        ]
    )
    for secret in (SECRET_A, SECRET_B, SHAPED):
        assert secret not in exported


def _exemplars(telemetry: Telemetry) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for name in (empathy_webhooks_otel.ATTEMPT_DURATION, empathy_webhooks_otel.DELIVERIES):
        found[name] = [e for point in telemetry.points(name) for e in point.exemplars]
    return found


async def test_exemplars_point_at_the_attempt_not_the_emit_that_started_the_worker(
    telemetry: Telemetry, receiver: Receiver
) -> None:
    tracer = telemetry.tracer()
    async with telemetry.dispatcher(CustomWebhook(name="ops", url=receiver.url())) as d:
        # The first emit starts the lane's worker task, inside span A.
        with tracer.start_as_current_span("emit-A") as emit_a:
            await d.emit("alert", {"title": "A"})
        await d.drain()
        _exemplars(telemetry)  # a collection: the exemplars of A are taken
        # The second emit, in another trace (as a request handler continuing a caller's).
        incoming = TraceContextTextMapPropagator().extract(
            {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
        )
        token = otel_context.attach(incoming)
        try:
            with tracer.start_as_current_span("emit-B"):
                await d.emit("alert", {"title": "B"})
        finally:
            otel_context.detach(token)
        await d.drain()
        exemplars = _exemplars(telemetry)

    trace_a = emit_a.get_span_context().trace_id
    trace_b = 0x0AF7651916CD43DD8448EB211C80319C
    attempt_b = telemetry.attempt_spans()[-1].get_span_context()
    assert attempt_b.trace_id == trace_b
    [duration] = exemplars[empathy_webhooks_otel.ATTEMPT_DURATION]
    assert (duration.trace_id, duration.span_id) == (trace_b, attempt_b.span_id)
    every = [e for found in exemplars.values() for e in found]
    assert all(e.trace_id != trace_a for e in every)
