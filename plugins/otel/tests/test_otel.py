"""The otel plugin through a real dispatcher, a loopback receiver and the OpenTelemetry SDK's
in-memory exporters: a span per attempt in the emitter's trace, `traceparent` on the wire as
the W3C spec writes it, the metrics; and the same trace after a SQLite restart."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import empathy_webhooks_otel
from opentelemetry.trace import SpanKind, StatusCode

from empathy_webhooks_core import CustomWebhook
from empathy_webhooks_core.plugins import build_plugin_manager
from empathy_webhooks_core.signing import verify_request
from empathy_webhooks_core.testing import ReceivedRequest, Receiver, Reply

from .conftest import FAST, Telemetry

# W3C Trace Context, version 00: version-traceid-parentid-flags, lower-case hex.
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
TOKEN = "s3cr3t-query-token-0123456789"


def parse_traceparent(value: str | None) -> tuple[int, int, int]:
    """trace id, parent (span) id and flags, refusing what the spec refuses."""
    assert value is not None, "no traceparent header"
    match = TRACEPARENT.fullmatch(value)
    assert match, f"not a W3C traceparent: {value!r}"
    trace_id, span_id, flags = (int(part, 16) for part in match.groups())
    assert trace_id != 0 and span_id != 0, "all-zero ids are invalid"
    return trace_id, span_id, flags


def test_the_entry_point_loads_the_plugin() -> None:
    pm = build_plugin_manager(env={"EMPATHY_WEBHOOKS_LOAD_PLUGINS": "otel"})
    assert pm.get_plugin("otel") is empathy_webhooks_otel
    assert not pm.load_errors


async def test_one_emit_gives_a_span_per_attempt_in_the_emitters_trace(
    telemetry: Telemetry, receiver: Receiver
) -> None:
    receiver.queue(Reply(status=503), Reply(status=200))
    secret = "whsec_dGVzdHNlY3JldHRlc3RzZWNyZXQ="
    hook = CustomWebhook(
        name="ops-alerts",
        url=receiver.url("/hook") + f"?token={TOKEN}",
        signing_secret=secret,
        retry_policy=FAST,
    )
    async with telemetry.dispatcher(hook) as dispatcher:
        with telemetry.tracer().start_as_current_span("check-disk") as emit_span:
            event = await dispatcher.emit("alert", {"title": "Disk full"})
        await dispatcher.drain(timeout=10)
    emitted = emit_span.get_span_context()

    first, second = telemetry.attempt_spans()
    for number, (span, status, outcome) in enumerate(
        [(first, 503, "retry"), (second, 200, "success")], start=1
    ):
        assert span.name == "ops-alerts" and span.kind is SpanKind.CLIENT
        # A child of the span that emitted, in its trace.
        assert span.context.trace_id == emitted.trace_id
        assert span.parent is not None and span.parent.span_id == emitted.span_id
        attributes = dict(span.attributes or {})
        assert attributes["http.request.method"] == "POST"
        assert attributes["server.address"] == "127.0.0.1"
        assert attributes["server.port"] == int(receiver.url().split(":")[2].split("/")[0])
        assert attributes["http.response.status_code"] == status
        assert attributes["empathy.webhook"] == "ops-alerts"
        assert attributes["empathy.event.type"] == "alert"
        assert attributes["empathy.event.id"] == event.event_id
        assert attributes["empathy.attempt"] == number
        assert attributes["empathy.outcome"] == outcome
        # The URL without its secret: the query value is masked.
        assert attributes["url.full"].startswith(receiver.url("/hook"))
        assert TOKEN not in attributes["url.full"]
    assert dict(first.attributes or {})["error.type"] == "503"
    assert first.status.status_code is StatusCode.ERROR
    assert "error.type" not in dict(second.attributes or {})
    assert second.status.status_code is not StatusCode.ERROR

    # Each request carries its own attempt span's context, as the W3C spec writes it.
    for request, span in zip(receiver.requests, (first, second), strict=True):
        trace_id, parent_id, flags = parse_traceparent(request.header("traceparent"))
        assert trace_id == emitted.trace_id
        assert parent_id == span.context.span_id
        assert flags & 0x01  # sampled
        # Added after signing: both signature schemes still verify.
        assert verify_request(request.body, request.headers, secret)


async def test_the_metrics_count_deliveries_time_attempts_and_see_the_queue(
    telemetry: Telemetry, receiver: Receiver
) -> None:
    release = asyncio.Event()

    async def handler(request: ReceivedRequest) -> Reply:
        if request.path == "/slow":
            await release.wait()
        return Reply(status=400 if request.path == "/bad" else 200)

    receiver.handler = handler
    hooks = [
        CustomWebhook(name="good", url=receiver.url("/good"), retry_policy=FAST),
        CustomWebhook(name="bad", url=receiver.url("/bad"), retry_policy=FAST),
        CustomWebhook(name="slow", url=receiver.url("/slow"), max_concurrency=1),
    ]
    async with telemetry.dispatcher(*hooks) as dispatcher:
        for _ in range(3):
            await dispatcher.emit("alert", {})
        await receiver.wait_for(7)  # 3 good, 3 bad, and the slow one holding the rest
        depth = telemetry.by_attributes(empathy_webhooks_otel.QUEUE_DEPTH)
        assert depth[(("empathy.webhook", "slow"),)].value == 2
        release.set()
        await dispatcher.drain(timeout=10)

    deliveries = telemetry.by_attributes(empathy_webhooks_otel.DELIVERIES)
    counted = {
        (dict(key)["empathy.webhook"], dict(key)["empathy.outcome"]): point.value
        for key, point in deliveries.items()
    }
    assert counted == {("good", "delivered"): 3, ("bad", "failed"): 3, ("slow", "delivered"): 3}
    durations = telemetry.by_attributes(empathy_webhooks_otel.ATTEMPT_DURATION)
    good = durations[(("empathy.outcome", "success"), ("empathy.webhook", "good"))]
    bad = durations[(("empathy.outcome", "fail"), ("empathy.webhook", "bad"))]
    assert good.count == 3 and bad.count == 3 and good.sum > 0
    # Seconds, in bounds made for seconds.
    assert tuple(good.explicit_bounds) == empathy_webhooks_otel.DURATION_BUCKETS
    assert good.sum < 60


async def test_a_transport_error_and_a_final_failure_are_marked(
    telemetry: Telemetry, receiver: Receiver
) -> None:
    receiver.queue(Reply(reset=True), Reply(status=400, body="bad payload"))
    hook = CustomWebhook(name="flaky", url=receiver.url(), retry_policy=FAST)
    async with telemetry.dispatcher(hook) as dispatcher:
        await dispatcher.emit("alert", {})
        await dispatcher.drain(timeout=10)
    reset, final = telemetry.attempt_spans()
    assert dict(reset.attributes or {})["empathy.outcome"] == "retry"
    assert "http.response.status_code" not in dict(reset.attributes or {})
    error_type = dict(reset.attributes or {})["error.type"]
    assert error_type.startswith("aiohttp.") or error_type.endswith("Error"), error_type
    assert [e.name for e in reset.events] == ["exception"]
    assert dict(final.attributes or {})["error.type"] == "400"
    assert dict(final.attributes or {})["empathy.outcome"] == "fail"
    assert final.status.status_code is StatusCode.ERROR
    # Spans of an emit outside any span are roots of a trace of their own.
    assert reset.parent is None and final.parent is None


async def test_trace_headers_are_off_for_a_webhook_that_says_so(
    telemetry: Telemetry, receiver: Receiver
) -> None:
    hooks = [
        CustomWebhook(name="quiet", url=receiver.url("/quiet"), plugin_headers=False),
        CustomWebhook(name="traced", url=receiver.url("/traced")),
    ]
    async with telemetry.dispatcher(*hooks) as dispatcher:
        with telemetry.tracer().start_as_current_span("emit"):
            await dispatcher.emit("alert", {})
        await dispatcher.drain(timeout=10)
    sent = {r.path: r.header("traceparent") for r in receiver.requests}
    assert sent["/quiet"] is None
    parse_traceparent(sent["/traced"])
    # The quiet webhook's attempt is still traced; only the header stays home.
    assert sorted(span.name for span in telemetry.attempt_spans()) == ["quiet", "traced"]


async def test_the_emitters_trace_survives_a_sqlite_restart(
    telemetry: Telemetry, receiver: Receiver, tmp_path: Path
) -> None:
    store = f"sqlite:///{tmp_path / 'outbox.db'}"
    hook = CustomWebhook(name="durable", url=receiver.url(), retry_policy=FAST)
    hanging = asyncio.Event()

    async def first_life(request: ReceivedRequest) -> Reply:
        # A 503, then an attempt that hangs until this dispatcher stops without draining.
        if len(receiver.requests) == 1:
            return Reply(status=503)
        hanging.set()
        return Reply(delay=3600)  # no answer before the test ends

    receiver.handler = first_life
    dispatcher = telemetry.dispatcher(hook, store=store)
    async with dispatcher:
        with telemetry.tracer().start_as_current_span("emit-before-restart") as emit_span:
            event = await dispatcher.emit("alert", {})
        async with asyncio.timeout(10):
            await hanging.wait()
        await dispatcher.close(drain=False)
    emitted = emit_span.get_span_context()

    receiver.handler = None  # answers 200
    async with telemetry.dispatcher(hook, store=store) as resumed:
        await resumed.drain(timeout=10)
    assert [r.event_id for r in receiver.delivered] == [event.event_id]

    spans = telemetry.attempt_spans()
    outcomes = [dict(s.attributes or {})["empathy.outcome"] for s in spans]
    assert outcomes == ["retry", "cancelled", "success"]
    assert {span.context.trace_id for span in spans} == {emitted.trace_id}
    assert {span.parent.span_id for span in spans if span.parent} == {emitted.span_id}
    trace_id, parent_id, _ = parse_traceparent(receiver.requests[-1].header("traceparent"))
    assert (trace_id, parent_id) == (emitted.trace_id, spans[-1].context.span_id)


async def test_without_an_sdk_only_the_emitters_own_context_travels(receiver: Receiver) -> None:
    # The global providers, as the entry point's plugin uses them, with no SDK set: attempts
    # start no span (the fast path), add no header, yet a context the emitter holds (taken
    # from an incoming request, no SDK needed) still reaches the receiver.
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    from empathy_webhooks_core import WebhookDispatcher

    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    plugin = empathy_webhooks_otel.OtelPlugin()
    pm = build_plugin_manager(env={"EMPATHY_WEBHOOKS_LOAD_PLUGINS": ""}, extra_plugins=[plugin])
    hook = CustomWebhook(name="plain", url=receiver.url("/hook"))
    incoming = SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=pm) as dispatcher:
        await dispatcher.emit("alert", {"n": 1})
        with trace.use_span(NonRecordingSpan(incoming)):
            await dispatcher.emit("alert", {"n": 2})
        await dispatcher.drain(timeout=10)
    sent = {
        request.json()["data"]["n"]: request.header("traceparent") for request in receiver.requests
    }
    assert sent[1] is None
    assert parse_traceparent(sent[2]) == (incoming.trace_id, incoming.span_id, 1)
