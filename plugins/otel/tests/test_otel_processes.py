"""Across processes: a Redis worker process (the `otel` entry point over the global SDK
providers, exporting its spans to a file) continues the trace of the process that emitted; and
a process without the plugin loaded neither imports OpenTelemetry nor sends anything new."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from empathy_webhooks_core import CustomWebhook
from empathy_webhooks_core.testing import Receiver, Reply

from .conftest import Telemetry
from .test_otel import parse_traceparent

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379

WORKER = r"""
import asyncio, json, sys
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

store_url, hook_url, spans_path = sys.argv[1], sys.argv[2], sys.argv[3]


class FileExporter(SpanExporter):
    def export(self, spans):
        with open(spans_path, "a", encoding="utf-8") as out:
            for span in spans:
                parent = span.parent
                out.write(json.dumps({
                    "name": span.name,
                    "trace_id": format(span.context.trace_id, "032x"),
                    "span_id": format(span.context.span_id, "016x"),
                    "parent_id": format(parent.span_id, "016x") if parent else None,
                    "attributes": dict(span.attributes or {}),
                }) + "\n")
        return SpanExportResult.SUCCESS


provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(FileExporter()))
trace.set_tracer_provider(provider)  # the application's SDK: the entry point's plugin uses it

from empathy_webhooks_core import CustomWebhook
from empathy_webhooks_core.worker import run_worker

hook = CustomWebhook(
    name="h", url=hook_url,
    retry_policy={"initial_delay_seconds": 0.001, "max_delay_seconds": 0.01},
)
asyncio.run(run_worker([hook], store_url, grace_seconds=2))  # SIGTERM stops it
"""


@pytest.fixture
async def redis_url() -> AsyncIterator[str]:
    """A store URL with a key prefix of its own; every key under it is deleted afterwards."""
    pytest.importorskip("redis.asyncio", reason="the redis plugin")
    pytest.importorskip("empathy_webhooks_redis", reason="the redis plugin")
    try:
        socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=0.5).close()
    except OSError as exc:
        if os.environ.get("EMPATHY_WEBHOOKS_REQUIRE_REDIS") == "1":
            pytest.fail(f"no Redis on {REDIS_HOST}:{REDIS_PORT}: {exc}")
        pytest.skip(f"no Redis on {REDIS_HOST}:{REDIS_PORT}: {exc}")
    prefix = f"test:otel:{secrets.token_hex(4)}:"
    yield f"redis://{REDIS_HOST}:{REDIS_PORT}/0?prefix={prefix}"
    from empathy_webhooks_redis.testing import delete_prefix

    await delete_prefix(prefix, REDIS_HOST, REDIS_PORT)


def _spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


async def test_a_redis_worker_process_continues_the_emitters_trace(
    telemetry: Telemetry, receiver: Receiver, redis_url: str, tmp_path: Path
) -> None:
    receiver.queue(Reply(status=503), Reply(status=200))
    spans_path = tmp_path / "worker-spans.jsonl"
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMPATHY_")}
    env["EMPATHY_WEBHOOKS_LOAD_PLUGINS"] = "redis,otel"
    worker = await asyncio.create_subprocess_exec(
        sys.executable, str(script), redis_url, receiver.url("/h"), str(spans_path), env=env
    )
    try:
        hook = CustomWebhook(name="h", url=receiver.url("/h"))
        async with telemetry.dispatcher(hook, store=redis_url, load="redis") as producer:
            with telemetry.tracer().start_as_current_span("emit-in-producer") as emit_span:
                event = await producer.emit("alert", {"title": "Disk full"})
        emitted = emit_span.get_span_context()
        async with asyncio.timeout(60):
            while len(_spans(spans_path)) < 2:  # noqa: ASYNC110 - the worker writes the file
                await asyncio.sleep(0.05)
    finally:
        if worker.returncode is None:
            worker.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(worker.wait(), 30) == 0

    first, second = _spans(spans_path)
    for number, span in enumerate((first, second), start=1):
        # In the worker process, a child of the producer's emit span.
        assert span["trace_id"] == format(emitted.trace_id, "032x")
        assert span["parent_id"] == format(emitted.span_id, "016x")
        assert span["name"] == "h"
        assert span["attributes"]["empathy.attempt"] == number
        assert span["attributes"]["empathy.event.id"] == event.event_id
    assert [s["attributes"]["empathy.outcome"] for s in (first, second)] == ["retry", "success"]
    # The producer made no attempt: its own plugin recorded none.
    assert telemetry.attempt_spans() == []
    for request, span in zip(receiver.requests, (first, second), strict=True):
        trace_id, parent_id, _ = parse_traceparent(request.header("traceparent"))
        assert (trace_id, parent_id) == (emitted.trace_id, int(span["span_id"], 16))


PROBE = r"""
import asyncio, json, sys
from empathy_webhooks_core import CustomWebhook, WebhookDispatcher
from empathy_webhooks_core.plugins import get_plugin_manager
from empathy_webhooks_core.testing import Receiver


async def main():
    async with Receiver() as receiver:
        hook = CustomWebhook(name="h", url=receiver.url(), signing_secret="s3cr3t")
        async with WebhookDispatcher(webhooks=[hook]) as dispatcher:
            await dispatcher.emit("alert", {"title": "Disk full"})
            await dispatcher.drain(timeout=10)
        (request,) = receiver.requests
    print(json.dumps({
        "plugins": sorted(name for name, _ in get_plugin_manager().list_name_plugin()),
        "headers": sorted(name.lower() for name in request.headers),
        "opentelemetry": sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry"),
    }))

asyncio.run(main())
"""


def _probe(load_plugins: str | None) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMPATHY_", "OTEL_"))}
    if load_plugins is not None:
        env["EMPATHY_WEBHOOKS_LOAD_PLUGINS"] = load_plugins
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_without_the_plugin_nothing_changes_and_opentelemetry_is_never_imported() -> None:
    installed = {ep.name for ep in importlib.metadata.entry_points(group="empathy_webhooks")}
    assert "otel" in installed
    # redis-py (7+) imports OpenTelemetry itself when it is installed (its own observability
    # module), so the Redis plugin is left out too: what is checked is that nothing of ours
    # imports it.
    without = _probe(",".join(sorted(installed - {"otel", "redis"})))
    assert "otel" not in without["plugins"]
    assert without["opentelemetry"] == []
    # Loaded, but no SDK configured: OpenTelemetry is imported, and still nothing new is
    # sent (the API adds no header without a valid trace context).
    loaded = _probe(None)
    assert "otel" in loaded["plugins"] and loaded["opentelemetry"]
    assert loaded["headers"] == without["headers"]
    assert "traceparent" not in loaded["headers"]


GLOBAL_METERS = r"""
import asyncio, json, sys
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from empathy_webhooks_core import CustomWebhook, WebhookDispatcher
from empathy_webhooks_otel import ATTEMPT_DURATION, DELIVERIES


async def main(url):
    # The entry point's plugin, made before the application sets its SDK.
    async with WebhookDispatcher(webhooks=[CustomWebhook(name="h", url=url)]) as dispatcher:
        await dispatcher.emit("prediction", {"n": -1})
        await dispatcher.drain()
        reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        for n in range(3):
            await dispatcher.emit("prediction", {"n": n})
        await dispatcher.drain()
    found = {}
    for resource in reader.get_metrics_data().resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points = metric.data.data_points
                if metric.name == DELIVERIES:
                    found["deliveries"] = sum(point.value for point in points)
                if metric.name == ATTEMPT_DURATION:
                    found["attempts"] = sum(point.count for point in points)
    print(json.dumps(found))


asyncio.run(main(sys.argv[1]))
"""


async def test_metrics_reach_a_global_sdk_set_after_the_dispatcher_started(
    tmp_path: Path, receiver: Receiver
) -> None:
    # The plugin skips metric work while no SDK can record it; an application that sets its
    # global meter provider later (the usual order) must still get every delivery counted.
    script = tmp_path / "meters.py"
    script.write_text(GLOBAL_METERS)
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        receiver.url("/h"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
    )
    out, err = await asyncio.wait_for(child.communicate(), 60)
    assert child.returncode == 0, err.decode()
    assert json.loads(out.decode().strip().splitlines()[-1]) == {"deliveries": 3, "attempts": 3}
    assert len(receiver.delivered) == 4
