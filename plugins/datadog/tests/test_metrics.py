"""`send_metric`: buffered points sent in batches to `/api/v2/series`, flushed on drain/close."""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import AsyncIterator
from typing import Any

import empathy_webhooks_datadog as plugin
import pytest
from empathy_webhooks_datadog import DatadogWebhook
from empathy_webhooks_datadog.metrics import batches, make_point
from hypothesis import given, settings
from hypothesis import strategies as st

from empathy_webhooks_core import WebhookDispatcher, WebhookMonitor, state_for
from empathy_webhooks_core.clock import FakeClock
from empathy_webhooks_core.plugins import build_plugin_manager
from empathy_webhooks_core.testing import ReceivedRequest, Receiver, Reply
from empathy_webhooks_core.wire import json_bytes

API_KEY = "0123456789abcdef0123456789abcdef"
FAST = {"initial_delay_seconds": 0.001, "max_delay_seconds": 0.01}
PM = build_plugin_manager(load_entry_points=False, extra_plugins=[plugin])


def accept(request: ReceivedRequest) -> Reply:
    assert request.header("DD-API-KEY") == API_KEY and request.query == {}
    if len(request.body) > 512_000:
        return Reply(status=413, body={"errors": ["Payload too large"]})
    return Reply(status=202, body={"errors": []})


@pytest.fixture
async def datadog() -> AsyncIterator[Receiver]:
    async with Receiver() as receiver:
        receiver.handler = accept
        yield receiver


def points(receiver: Receiver) -> list[tuple[str, int, float, tuple[str, ...]]]:
    return [
        (entry["metric"], point["timestamp"], point["value"], tuple(entry["tags"]))
        for request in receiver.requests
        if request.answered == 202
        for entry in request.json()["series"]
        for point in entry["points"]
    ]


def figures(webhook: DatadogWebhook) -> dict[str, Any]:
    """The plugin's figures as `get_webhook_stats` shows them (`plugin.datadog.<key>`), read
    through the process's monitor, which keeps them once the dispatcher has closed."""
    stats = WebhookMonitor().get_webhook_stats(webhook.name)
    prefix = "plugin.datadog."
    return {k.removeprefix(prefix): v for k, v in stats.items() if k.startswith(prefix)}


def hook(receiver: Receiver, **options: Any) -> DatadogWebhook:
    options.setdefault("retry_policy", FAST)
    return DatadogWebhook(api_key=API_KEY, base_url=receiver.url(""), **options)


async def test_the_reference_calls_need_no_await_and_flush_on_close(datadog: Receiver) -> None:
    datadog_webhook = hook(datadog)
    # The points' fixed times are on time for Datadog on this clock (on the real one they are
    # too old, and would be re-stamped: see test_late_data.py).
    clock = FakeClock(wall=1_700_000_030)
    async with WebhookDispatcher(webhooks=[datadog_webhook], plugin_manager=PM, clock=clock):
        datadog_webhook.send_metric(
            metric="empathy.prediction.confidence",
            value=0.87,
            tags=["user:developer_123", "level:4"],
            timestamp=1_700_000_000,
        )
        datadog_webhook.send_metric(
            metric="empathy.interactions.duration_ms",
            value=1234,
            tags=["user:developer_123"],
            timestamp=1_700_000_001,
        )
        assert datadog.requests == []  # buffered, not sent one by one
    [request] = datadog.requests
    assert request.path == "/api/v2/series"
    assert request.json() == {
        "series": [
            {
                "metric": "empathy.prediction.confidence",
                "type": 3,
                "points": [{"timestamp": 1_700_000_000, "value": 0.87}],
                "tags": ["user:developer_123", "level:4"],
            },
            {
                "metric": "empathy.interactions.duration_ms",
                "type": 3,
                "points": [{"timestamp": 1_700_000_001, "value": 1234.0}],
                "tags": ["user:developer_123"],
            },
        ]
    }
    assert figures(datadog_webhook) == {
        "points_buffered": 0,
        "points_sent": 2,
        "points_dropped": 0,
        "points_late": 0,
        "points_early": 0,
        "events_late": 0,
        "batches_sent": 1,
        "batches_failed": 0,
        "accepted_with_errors": 0,
        "last_error": None,
    }


async def test_many_points_go_in_few_requests_and_none_is_lost(datadog: Receiver) -> None:
    datadog_webhook = hook(datadog, metrics_batch_size=1000)
    # Every point within the hour Datadog takes as is (on this clock).
    clock = FakeClock(wall=1_700_002_500)
    async with WebhookDispatcher(
        webhooks=[datadog_webhook], plugin_manager=PM, clock=clock
    ) as dispatcher:
        for n in range(5000):
            await datadog_webhook.send_metric(  # awaiting is allowed too
                "empathy.load", n, tags=[f"shard:{n % 4}"], timestamp=1_700_000_000 + n // 2
            )
        await dispatcher.drain()
        assert dispatcher.get_webhook_stats(datadog_webhook.name)["plugin.datadog.points_sent"] == (
            5000
        )
    assert 5 <= len(datadog.requests) <= 6
    received = points(datadog)
    assert sorted(value for _, _, value, _ in received) == [float(n) for n in range(5000)]
    assert all(tags == (f"shard:{int(value) % 4}",) for _, _, value, tags in received)
    # Points of one series share an entry: a few entries per request, not one per point.
    assert sum(len(r.json()["series"]) for r in datadog.requests) <= 4 + len(datadog.requests)


async def test_batches_stay_under_datadogs_payload_limit(datadog: Receiver) -> None:
    datadog_webhook = hook(datadog, metrics_batch_size=100_000)
    long_tag = "team:" + "x" * 190
    async with WebhookDispatcher(webhooks=[datadog_webhook], plugin_manager=PM):
        for n in range(3000):
            datadog_webhook.send_metric(f"empathy.m{n}", n, tags=[long_tag, f"n:{n}"])
    assert len(datadog.requests) >= 2
    assert all(len(r.body) <= 512_000 and r.answered == 202 for r in datadog.requests)
    assert sorted(v for _, _, v, _ in points(datadog)) == [float(n) for n in range(3000)]


def test_batching_splits_one_long_series_too() -> None:
    key_points = [
        make_point("empathy.x", n, ["a:b"], 1_700_000_000 + n, "count", 10, None, 0.0)
        for n in range(50_000)
    ]
    payloads = batches(key_points, limit=100_000)
    assert len(payloads) > 5
    import json

    sizes = [len(json.dumps(p, separators=(",", ":"))) for p in payloads]
    assert max(sizes) <= 100_000
    values = [pt["value"] for p in payloads for e in p["series"] for pt in e["points"]]
    assert values == [float(n) for n in range(50_000)]
    assert payloads[0]["series"][0]["type"] == 1 and payloads[0]["series"][0]["interval"] == 10


async def test_the_interval_flush_runs_on_the_dispatchers_clock(datadog: Receiver) -> None:
    clock = FakeClock()
    datadog_webhook = hook(datadog, metrics_flush_interval=10)
    async with WebhookDispatcher(
        webhooks=[datadog_webhook], plugin_manager=PM, clock=clock
    ) as dispatcher:
        datadog_webhook.send_metric("empathy.a", 1)
        datadog_webhook.send_metric("empathy.a", 2)
        await asyncio.sleep(0)  # let the flush timer start sleeping on the fake clock
        await clock.advance(9)
        assert datadog.requests == []
        await clock.advance(1)
        await datadog.wait_for(1)
        assert [v for _, _, v, _ in points(datadog)] == [1.0, 2.0]
        # the default timestamp is the dispatcher's clock, in POSIX seconds
        assert {t for _, t, _, _ in points(datadog)} == {int(clock.time()) - 10}
        datadog_webhook.send_metric("empathy.a", 3)
        await dispatcher.drain()
        assert len(datadog.requests) == 2


async def test_points_sent_before_start_and_from_other_threads_arrive(datadog: Receiver) -> None:
    datadog_webhook = hook(datadog, metrics_batch_size=50)
    datadog_webhook.send_metric("empathy.early", 1)  # no dispatcher yet: kept
    async with WebhookDispatcher(webhooks=[datadog_webhook], plugin_manager=PM) as dispatcher:

        def produce(worker: int) -> None:
            for n in range(200):
                datadog_webhook.send_metric("empathy.threaded", n, tags=[f"worker:{worker}"])

        threads = [threading.Thread(target=produce, args=(w,)) for w in range(4)]
        for thread in threads:
            thread.start()
        await asyncio.to_thread(lambda: [thread.join() for thread in threads])
        await dispatcher.drain()
    counts = collections.Counter(tags for metric, _, _, tags in points(datadog))
    assert counts == {
        ("worker:0",): 200,
        ("worker:1",): 200,
        ("worker:2",): 200,
        ("worker:3",): 200,
        (): 1,
    }
    assert figures(datadog_webhook)["points_sent"] == 801


async def test_a_failing_batch_is_retried_then_counted_as_dropped(datadog: Receiver) -> None:
    datadog.queue(Reply(status=500), Reply(status=503))
    datadog_webhook = hook(datadog, retry_policy={**FAST, "max_retries": 2})
    async with WebhookDispatcher(webhooks=[datadog_webhook], plugin_manager=PM) as dispatcher:
        datadog_webhook.send_metric("empathy.a", 1)
        await dispatcher.drain()
        assert [r.answered for r in datadog.requests] == [500, 503, 202]
        datadog.queue(Reply(status=400, body={"errors": ["Invalid metric"]}))
        datadog_webhook.send_metric("empathy.b", 2)
        datadog_webhook.send_metric("empathy.c", 3)
        await dispatcher.drain()
    assert len(datadog.requests) == 4  # a 400 is not retried
    stats = figures(datadog_webhook)
    assert (stats["points_sent"], stats["points_dropped"], stats["batches_failed"]) == (1, 2, 1)
    assert stats["last_error"] == "metrics rejected (HTTP 400): Invalid metric"


def test_send_metric_refuses_what_datadog_would_drop() -> None:
    datadog_webhook = DatadogWebhook(api_key=API_KEY)
    with pytest.raises(ValueError, match="metric must start with a letter"):
        datadog_webhook.send_metric("9lives", 1)
    with pytest.raises(ValueError, match="finite number"):
        datadog_webhook.send_metric("empathy.a", float("nan"))
    with pytest.raises(ValueError, match="finite number"):
        datadog_webhook.send_metric("empathy.a", "12")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="metric_type"):
        datadog_webhook.send_metric("empathy.a", 1, metric_type="histogram")
    assert state_for(datadog_webhook).stats()["points_buffered"] == 0


def test_a_buffer_with_no_dispatcher_is_bounded() -> None:
    datadog_webhook = DatadogWebhook(api_key=API_KEY, metrics_max_buffer=10)
    for n in range(25):
        datadog_webhook.send_metric("empathy.a", n)
    # No dispatcher, so no get_webhook_stats: the deprecated `metrics_stats()` still answers.
    with pytest.deprecated_call(match="get_webhook_stats"):
        stats = datadog_webhook.metrics_stats()
    assert (stats["points_buffered"], stats["points_dropped"]) == (10, 15)


@settings(max_examples=60, deadline=None)
@given(
    calls=st.lists(
        st.tuples(
            st.sampled_from(["empathy.a", "empathy.b.c", "x"]),
            st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(10**12), 10**12),
            st.lists(st.text(max_size=250), max_size=3),
            st.integers(1_700_000_000, 1_700_003_600),
        ),
        max_size=300,
    ),
    limit=st.integers(2_000, 20_000),
    max_points=st.none() | st.integers(1, 50),
)
def test_batches_keep_every_point_within_the_limits(
    calls: list[Any], limit: int, max_points: int | None
) -> None:
    made = [make_point(m, v, tags, ts, "gauge", None, None, 0.0) for m, v, tags, ts in calls]
    payloads = batches(made, limit=limit, max_points=max_points)
    sent = []
    for payload in payloads:
        assert len(json_bytes(payload)) <= limit
        count = sum(len(entry["points"]) for entry in payload["series"])
        assert 0 < count <= (max_points or count)
        for entry in payload["series"]:
            sent.extend(
                (entry["metric"], p["value"], tuple(entry["tags"])) for p in entry["points"]
            )
    expected = [(key[0], value, key[2]) for key, _, value in made]
    assert sorted(sent) == sorted(expected)


# -- the address guard covers the metric batches (issue 15, item 13) ---------------------------


async def test_with_the_guard_on_metric_batches_never_reach_a_loopback_datadog(
    datadog: Receiver,
) -> None:
    """`send_metric` batches go out through the dispatcher's guarded session like every other
    request of the webhook: refused at connect, finally (not retried), counted and said."""
    webhook = hook(datadog, block_private_addresses=True, retry_policy={**FAST, "max_retries": 3})
    async with WebhookDispatcher(webhooks=[webhook], plugin_manager=PM):
        webhook.send_metric("empathy.guarded", 1.0, timestamp=1_700_000_000)
        webhook.send_metric("empathy.guarded", 2.0, timestamp=1_700_000_001)
    assert datadog.requests == []
    stats = figures(webhook)
    assert (stats["points_sent"], stats["points_dropped"]) == (0, 2)
    assert (stats["batches_sent"], stats["batches_failed"]) == (0, 1)
    assert stats["last_error"].startswith("BlockedAddressError: refused to connect to 127.0.0.1")
    assert "loopback address" in stats["last_error"]
    assert API_KEY not in stats["last_error"]
