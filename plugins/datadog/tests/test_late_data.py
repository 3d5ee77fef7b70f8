"""Late data (issue 19, item 4): Datadog drops metric points more than an hour old and events
more than 18 hours old while answering 202. What is that old when sent goes out stamped with the
time it is sent, its own time kept, and is counted as late in the webhook's stats."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import empathy_webhooks_datadog as plugin
import pytest
from empathy_webhooks_datadog import DatadogWebhook

from empathy_webhooks_core import Event, WebhookDispatcher
from empathy_webhooks_core.clock import FakeClock
from empathy_webhooks_core.plugins import build_plugin_manager
from empathy_webhooks_core.testing import ReceivedRequest, Receiver, Reply

API_KEY = "0123456789abcdef0123456789abcdef"
PM = build_plugin_manager(load_entry_points=False, extra_plugins=[plugin])
WHEN = datetime(2025, 11, 25, 14, 30, 5, tzinfo=UTC)
ORIGINAL = "original_timestamp:2025-11-25T14:30:05Z"
HOUR = 3600.0


class Datadog:
    """Answers like Datadog's intake, and, like it, keeps only what is recent enough (what a
    user would see in Datadog); the too old is accepted with 202 all the same."""

    def __init__(self, receiver: Receiver, clock: FakeClock) -> None:
        self.receiver = receiver
        self.clock = clock
        self.kept_events: list[dict[str, Any]] = []
        self.kept_points: list[tuple[str, int, tuple[str, ...]]] = []
        self.refuse_next = 0
        receiver.handler = self.handle

    def handle(self, request: ReceivedRequest) -> Reply:
        if self.refuse_next:
            self.refuse_next -= 1
            return Reply(status=400, body={"errors": ["Invalid payload"]})
        now = self.clock.time()
        body = request.json()
        if request.path == "/api/v1/events":
            if now - body["date_happened"] <= 18 * HOUR:
                self.kept_events.append(body)
            return Reply(status=202, body={"status": "ok", "event": {"id": 1}})
        for entry in body["series"]:
            for point in entry["points"]:
                if -600 <= now - point["timestamp"] <= HOUR:
                    self.kept_points.append(
                        (entry["metric"], point["timestamp"], tuple(entry["tags"]))
                    )
        return Reply(status=202, body={"errors": []})


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(wall=WHEN.timestamp() + 60)


@pytest.fixture
async def datadog(clock: FakeClock) -> AsyncIterator[Datadog]:
    async with Receiver() as receiver:
        yield Datadog(receiver, clock)


def hook(datadog: Datadog) -> DatadogWebhook:
    return DatadogWebhook(
        api_key=API_KEY, base_url=datadog.receiver.url(""), retry_policy={"max_retries": 0}
    )


def performance() -> Event:
    return Event(
        event_type="performance_issue",
        data={"endpoint": "/api/users", "avg_response_time": 850, "error_rate": 0.02},
        timestamp=WHEN,
    )


def late_figures(stats: dict[str, Any]) -> tuple[int, int]:
    return stats["plugin.datadog.events_late"], stats["plugin.datadog.points_late"]


async def test_an_event_older_than_18_hours_is_sent_now_with_its_time_kept(
    datadog: Datadog, clock: FakeClock
) -> None:
    await clock.advance(20 * HOUR)
    now = int(clock.time())
    async with WebhookDispatcher([hook(datadog)], plugin_manager=PM, clock=clock) as dispatcher:
        await dispatcher.emit_event(performance())
        await dispatcher.drain(timeout=5)
        stats = dispatcher.get_webhook_stats("datadog_webhook")
    posted, series = datadog.receiver.requests
    body = posted.json()
    assert body["date_happened"] == now
    assert body["text"].startswith(
        "%%% \nSent late: this happened at 2025-11-25T14:30:05Z, older than Datadog accepts"
    )
    assert body["text"].endswith("\n %%%") and len(body["text"]) <= 4000
    assert ORIGINAL in body["tags"]
    points = [(e["metric"], p["timestamp"]) for e in series.json()["series"] for p in e["points"]]
    assert points == [
        ("empathy.performance_issue.avg_response_time", now),
        ("empathy.performance_issue.error_rate", now),
    ]
    assert all(ORIGINAL in entry["tags"] for entry in series.json()["series"])
    # What Datadog keeps: all of it, instead of nothing.
    assert len(datadog.kept_events) == 1 and len(datadog.kept_points) == 2
    assert late_figures(stats) == (1, 2)
    assert stats["delivered_count"] == 1


async def test_on_time_data_is_sent_as_it_is(datadog: Datadog, clock: FakeClock) -> None:
    async with WebhookDispatcher([hook(datadog)], plugin_manager=PM, clock=clock) as dispatcher:
        await dispatcher.emit_event(performance())
        await dispatcher.drain(timeout=5)
        stats = dispatcher.get_webhook_stats("datadog_webhook")
    posted, series = datadog.receiver.requests
    assert posted.json()["date_happened"] == int(WHEN.timestamp())
    assert not any(tag.startswith("original_timestamp") for tag in posted.json()["tags"])
    assert {p["timestamp"] for e in series.json()["series"] for p in e["points"]} == {
        int(WHEN.timestamp())
    }
    assert late_figures(stats) == (0, 0)


async def test_a_dead_letter_replayed_hours_later_is_restamped_where_datadog_needs_it(
    datadog: Datadog, clock: FakeClock
) -> None:
    """Refused at first (a bad key, fixed since), replayed two hours later: the event is still
    within Datadog's 18 hours and keeps its time; its gauges, past the hour, are re-stamped."""
    datadog.refuse_next = 1
    async with WebhookDispatcher([hook(datadog)], plugin_manager=PM, clock=clock) as dispatcher:
        await dispatcher.emit_event(performance())
        await dispatcher.drain(timeout=5)
        [letter] = await dispatcher.dead_letters()
        await clock.advance(2 * HOUR)
        await dispatcher.replay_dead_letter(letter.dead_letter_id)
        await dispatcher.drain(timeout=5)
        stats = dispatcher.get_webhook_stats("datadog_webhook")
    refused, posted, series = datadog.receiver.requests
    assert refused.answered == 400
    assert posted.json()["date_happened"] == int(WHEN.timestamp())
    assert "Sent late" not in posted.json()["text"]
    now = int(clock.time())
    assert [p["timestamp"] for e in series.json()["series"] for p in e["points"]] == [now, now]
    assert all(ORIGINAL in entry["tags"] for entry in series.json()["series"])
    assert late_figures(stats) == (0, 2)
    assert len(datadog.kept_points) == 2


async def test_late_custom_metric_points_are_restamped_in_batches_of_their_own(
    datadog: Datadog, clock: FakeClock
) -> None:
    webhook = hook(datadog)
    async with WebhookDispatcher([webhook], plugin_manager=PM, clock=clock) as dispatcher:
        now = int(clock.time())
        webhook.send_metric("empathy.queue.depth", 3, tags=["q:a"], timestamp=now - 10)
        webhook.send_metric(
            "empathy.queue.depth", 9, tags=["q:a"], timestamp=WHEN.timestamp() - 7200
        )
        await dispatcher.drain(timeout=5)
        stats = dispatcher.get_webhook_stats("datadog_webhook")
    on_time, late = (r.json()["series"] for r in datadog.receiver.requests)
    assert on_time == [
        {
            "metric": "empathy.queue.depth",
            "type": 3,
            "points": [{"timestamp": now - 10, "value": 3.0}],
            "tags": ["q:a"],
        }
    ]
    assert late == [
        {
            "metric": "empathy.queue.depth",
            "type": 3,
            "points": [{"timestamp": now, "value": 9.0}],
            "tags": ["q:a", "original_timestamp:2025-11-25T12:30:05Z"],
        }
    ]
    assert len(datadog.kept_points) == 2
    assert (stats["plugin.datadog.points_sent"], stats["plugin.datadog.points_late"]) == (2, 1)


async def test_points_too_far_ahead_are_restamped_and_counted_as_early(
    datadog: Datadog, clock: FakeClock
) -> None:
    """A producer whose clock runs an hour fast (or that sends milliseconds as seconds'
    worth of the future): Datadog would drop the points more than 10 minutes ahead."""
    webhook = hook(datadog)
    async with WebhookDispatcher([webhook], plugin_manager=PM, clock=clock) as dispatcher:
        now = int(clock.time())
        webhook.send_metric("empathy.skewed", 1, timestamp=now + 3600)
        webhook.send_metric("empathy.skewed", 2, timestamp=now + 60)  # within Datadog's 10 min
        await dispatcher.drain(timeout=5)
        stats = dispatcher.get_webhook_stats("datadog_webhook")
    on_time, early = (r.json()["series"] for r in datadog.receiver.requests)
    assert on_time[0]["points"] == [{"timestamp": now + 60, "value": 2.0}]
    assert early[0]["points"] == [{"timestamp": now, "value": 1.0}]
    assert early[0]["tags"] == ["original_timestamp:2025-11-25T15:31:05Z"]
    assert len(datadog.kept_points) == 2
    assert (stats["plugin.datadog.points_early"], stats["plugin.datadog.points_late"]) == (1, 0)


async def test_the_late_counts_reach_prometheus(datadog: Datadog, clock: FakeClock) -> None:
    prometheus_client = pytest.importorskip("prometheus_client", reason="the prometheus extra")
    from empathy_webhooks_core.prometheus import register_collector

    await clock.advance(20 * HOUR)
    async with WebhookDispatcher([hook(datadog)], plugin_manager=PM, clock=clock) as dispatcher:
        await dispatcher.emit_event(performance())
        await dispatcher.drain(timeout=5)
        registry = prometheus_client.CollectorRegistry()
        register_collector(registry, dispatcher.monitor)
        lines = set(prometheus_client.generate_latest(registry).decode().splitlines())
    assert (
        'empathy_webhooks_plugin_datadog_events_late_total{webhook="datadog_webhook"} 1.0' in lines
    )
    assert (
        'empathy_webhooks_plugin_datadog_points_late_total{webhook="datadog_webhook"} 2.0' in lines
    )
    assert (
        'empathy_webhooks_plugin_datadog_points_dropped_total{webhook="datadog_webhook"} 0.0'
        in lines
    )
