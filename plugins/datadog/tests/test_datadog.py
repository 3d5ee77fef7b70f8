"""Datadog through a real dispatcher to a loopback fake of its intake (events v1, series v2)."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import empathy_webhooks_datadog as plugin
import pytest
from empathy_webhooks_datadog import DatadogWebhook
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from empathy_webhooks_core import Event, Outcome, Response, WebhookDispatcher
from empathy_webhooks_core.clock import FakeClock
from empathy_webhooks_core.delivery import render_request
from empathy_webhooks_core.events import MAX_SAFE_INTEGER
from empathy_webhooks_core.plugins import build_plugin_manager
from empathy_webhooks_core.testing import ReceivedRequest, Receiver, Reply
from empathy_webhooks_core.testing.conformance import emit_accepts

API_KEY = "0123456789abcdef0123456789abcdef"
APP_KEY = "fedcba9876543210fedcba9876543210fedcba98"
FAST = {"initial_delay_seconds": 0.001, "max_delay_seconds": 0.01}
ALERT_TYPES = {"error", "warning", "info", "success", "user_update", "recommendation", "snapshot"}
METRIC = re.compile(r"^[A-Za-z][A-Za-z0-9_.]{0,199}$")


def event_errors(body: dict[str, Any]) -> list[str]:
    errors = []
    if not isinstance(body.get("title"), str) or not body["title"]:
        errors.append("Event title is required")
    if not isinstance(body.get("text"), str) or len(body["text"]) > 4000:
        errors.append("Event text is required and at most 4000 characters")
    if body.get("alert_type", "info") not in ALERT_TYPES:
        errors.append("Invalid alert_type")
    if len(body.get("aggregation_key", "")) > 100:
        errors.append("aggregation_key is longer than 100 characters")
    if not all(isinstance(tag, str) and len(tag) <= 200 for tag in body.get("tags", [])):
        errors.append("Invalid tags")
    return errors


def series_errors(raw: bytes, body: dict[str, Any]) -> list[str]:
    errors = []
    if len(raw) > 512_000:
        errors.append("Payload too large")
    for entry in body.get("series", []):
        if not METRIC.match(entry.get("metric", "")):
            errors.append(f"Invalid metric name {entry.get('metric')!r}")
        if entry.get("type") not in (0, 1, 2, 3):
            errors.append("Invalid type")
        for point in entry.get("points", []):
            if not isinstance(point.get("value"), int | float):
                errors.append("Invalid point value")
    return errors


class FakeDatadog:
    def __init__(self) -> None:
        self.ids = itertools.count(5_000_000_001)

    def __call__(self, request: ReceivedRequest) -> Reply:
        if request.header("DD-API-KEY") != API_KEY:
            return Reply(status=403, body={"errors": ["Forbidden"]})
        if request.path == "/api/v1/events":
            errors = event_errors(request.json())
            if errors:
                return Reply(status=400, body={"errors": errors})
            event_id = next(self.ids)
            return Reply(
                status=202,
                body={"status": "ok", "event": {"id": event_id, "url": f"https://app/{event_id}"}},
            )
        if request.path == "/api/v2/series":
            errors = series_errors(request.body, request.json())
            if errors:
                return Reply(
                    status=400 if "Payload too large" not in errors else 413,
                    body={"errors": errors},
                )
            return Reply(status=202, body={"errors": []})
        return Reply(status=404, body={"errors": ["Not found"]})


@pytest.fixture
async def datadog() -> AsyncIterator[Receiver]:
    async with Receiver() as receiver:
        receiver.handler = FakeDatadog()
        yield receiver


@pytest.fixture
def pm() -> Any:
    return build_plugin_manager(load_entry_points=False, extra_plugins=[plugin])


def series_points(receiver: Receiver) -> list[tuple[str, float, tuple[str, ...]]]:
    """Every point that reached the series endpoint: (metric, value, tags)."""
    return [
        (entry["metric"], point["value"], tuple(entry["tags"]))
        for request in receiver.requests
        if request.path == "/api/v2/series" and request.answered == 202
        for entry in request.json()["series"]
        for point in entry["points"]
    ]


def webhook(receiver: Receiver, **options: Any) -> DatadogWebhook:
    options.setdefault("retry_policy", FAST)
    return DatadogWebhook(api_key=API_KEY, app_key=APP_KEY, base_url=receiver.url(""), **options)


WHEN = datetime(2025, 11, 25, 14, 30, 5, 123000, tzinfo=UTC)


def soon_after_when() -> FakeClock:
    """A dispatcher clock a minute after `WHEN`: the fixed-time events are sent on time (on
    the real clock they would be too old for Datadog, and re-stamped)."""
    return FakeClock(wall=WHEN.timestamp() + 60)


PERFORMANCE = {
    "endpoint": "/api/users",
    "service": "api",
    "avg_response_time": 850,
    "p95_response_time": 2300,
    "error_rate": 0.02,
    "description": "Response time degraded after the 14:00 deploy",
}


# -- events ----------------------------------------------------------------------------------


async def test_the_reference_performance_event_and_its_metrics(datadog: Receiver, pm: Any) -> None:
    event = Event(
        event_type="performance_issue", data=PERFORMANCE, user_id="developer_123", timestamp=WHEN
    )
    hook = webhook(datadog, events=["performance_issue", "prediction", "error"])
    async with WebhookDispatcher(
        webhooks=[hook], plugin_manager=pm, clock=soon_after_when()
    ) as dispatcher:
        await dispatcher.emit_event(event)
        await dispatcher.drain()
        stats = dispatcher.get_webhook_stats(hook.name)
    posted, series = datadog.requests
    for request in (posted, series):
        assert request.method == "POST" and request.query == {}
        assert request.header("DD-API-KEY") == API_KEY
        assert request.header("DD-APPLICATION-KEY") == APP_KEY
        assert request.header("Content-Type") == "application/json"
        assert API_KEY not in request.path and APP_KEY not in request.path
    assert posted.path == "/api/v1/events"
    body = posted.json()
    tags = [
        "service:api",
        "endpoint:/api/users",
        "severity:warning",
        "event_type:performance_issue",
    ]
    assert body == {
        "title": "Performance: /api/users response time degraded",
        "text": (
            "%%% \nResponse time degraded after the 14:00 deploy\n\n"
            "- **endpoint**: /api/users\n- **service**: api\n"
            "- **avg_response_time**: 850\n- **p95_response_time**: 2300\n"
            "- **error_rate**: 0.02\n\n"
            f"event `{event.event_id}` · user developer_123\n %%%"
        ),
        "alert_type": "warning",
        "priority": "normal",
        "tags": tags,
        "aggregation_key": body["aggregation_key"],
        "source_type_name": "empathy",
        "date_happened": 1764081005,
    }
    assert body["aggregation_key"].startswith("empathy:performance_issue:")
    assert len(body["aggregation_key"]) <= 100
    assert series.path == "/api/v2/series"
    assert series.json() == {
        "series": [
            {
                "metric": f"empathy.performance_issue.{name}",
                "type": 3,
                "points": [{"timestamp": 1764081005, "value": value}],
                "tags": tags,
            }
            for name, value in (
                ("avg_response_time", 850.0),
                ("p95_response_time", 2300.0),
                ("error_rate", 0.02),
            )
        ]
    }
    assert (stats["delivered_count"], stats["attempts"]) == (1, 1)
    assert stats["details"] == {"datadog_event_id": 1}


async def test_an_event_without_numbers_is_one_request(datadog: Receiver, pm: Any) -> None:
    hook = DatadogWebhook(api_key=API_KEY, base_url=datadog.url(""), tags=["team:ai"], host="web-1")
    event = Event(
        event_type="prediction",
        data={"prediction": "Auth deployment may conflict with user-service v2.1"},
        empathy_level=4,
        timestamp=WHEN,
    )
    async with WebhookDispatcher(
        webhooks=[hook], plugin_manager=pm, clock=soon_after_when()
    ) as dispatcher:
        await dispatcher.emit_event(event)
    [request] = datadog.requests
    assert request.header("DD-APPLICATION-KEY") is None
    body = request.json()
    assert body["title"] == "Prediction: Auth deployment may conflict with user-service v2.1"
    assert body["text"] == f"%%% \nevent `{event.event_id}` · level 4\n %%%".replace(
        "%%% \n", "%%% \n- **prediction**: Auth deployment may conflict with user-service v2.1\n\n"
    )
    assert (body["alert_type"], body["priority"], body["host"]) == ("info", "low", "web-1")
    assert body["tags"] == ["severity:info", "event_type:prediction", "team:ai"]


async def test_a_resolved_finding_is_a_success_in_the_same_aggregation(
    datadog: Receiver, pm: Any
) -> None:
    async with WebhookDispatcher(webhooks=[webhook(datadog)], plugin_manager=pm) as dispatcher:
        await dispatcher.emit(
            "bug_detected", {"file": "auth.py", "line": 45, "title": "N+1"}, severity="critical"
        )
        await dispatcher.emit(
            "bug_detected", {"file": "auth.py", "line": 45, "title": "N+1", "status": "resolved"}
        )
    first, second = (r.json() for r in datadog.requests)
    assert (first["alert_type"], second["alert_type"]) == ("error", "success")
    assert first["aggregation_key"] == second["aggregation_key"]
    assert first["title"] == "Bug detected: N+1"
    assert "severity:critical" in first["tags"]


async def test_two_different_alerts_never_share_an_aggregation_key(
    datadog: Receiver, pm: Any
) -> None:
    """Issue 15: with no identifying field, the text (else the event id) tells them apart."""
    async with WebhookDispatcher(webhooks=[webhook(datadog)], plugin_manager=pm) as dispatcher:
        await dispatcher.emit("alert", {"message": "Disk full on db-1"}, severity="critical")
        await dispatcher.emit("alert", {"message": "CPU at 100% on web-3"}, severity="critical")
        await dispatcher.emit("alert", {"note_count": 1}, severity="critical")
        await dispatcher.emit("alert", {"note_count": 1}, severity="critical")
        await dispatcher.drain()
        long_key = "k" * 150
        await dispatcher.emit("alert", {"dedup_key": long_key + "a"})
        await dispatcher.emit("alert", {"dedup_key": long_key + "b"})
    keys = [r.json()["aggregation_key"] for r in datadog.requests]
    assert len(set(keys)) == 6
    assert all(len(key) <= 100 for key in keys)


async def test_with_the_guard_on_an_event_and_its_metrics_never_reach_a_loopback_datadog(
    datadog: Receiver, pm: Any
) -> None:
    """Both calls of a delivery (event, then series) go through the guarded session."""
    errors: list[Any] = []
    hook = webhook(
        datadog,
        block_private_addresses=True,
        retry_policy={**FAST, "max_retries": 3},
        on_failure=lambda webhook, event, error: errors.append(error),
    )
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=pm) as dispatcher:
        await dispatcher.emit("performance_issue", PERFORMANCE)
        await dispatcher.drain()
        dead = await dispatcher.dead_letters()
    assert datadog.requests == []
    [error] = errors
    assert error.attempts == 1
    assert error.reason.startswith("BlockedAddressError: refused to connect to 127.0.0.1")
    assert [letter.event.event_type for letter in dead] == ["performance_issue"]


async def test_a_400_is_final_with_datadogs_errors(datadog: Receiver, pm: Any) -> None:
    datadog.queue(Reply(status=400, body={"errors": ["Event too old"]}))
    failures: list[Any] = []
    hook = webhook(datadog, on_failure=lambda w, e, error: failures.append(error))
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=pm) as dispatcher:
        await dispatcher.emit("alert", {"message": "x"})
    [error] = failures
    assert error.reason == "event rejected (HTTP 400): Event too old"
    assert len(datadog.requests) == 1


async def test_a_bad_key_is_final_and_never_shown(datadog: Receiver, pm: Any) -> None:
    failures: list[Any] = []
    hook = DatadogWebhook(
        api_key="not-the-right-key",
        base_url=datadog.url(""),
        on_failure=lambda w, e, error: failures.append(error),
    )
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=pm) as dispatcher:
        await dispatcher.emit("alert", {"message": "x"})
    [error] = failures
    assert error.reason == "event rejected (HTTP 403) (check the API key and site): Forbidden"
    for text in (str(error), repr(hook), repr(dispatcher.render(hook, Event(event_type="a")))):
        assert "not-the-right-key" not in text
    assert "not-the-right-key" in hook.secret_values()


async def test_429_waits_for_the_rate_limit_reset_and_pauses(datadog: Receiver, pm: Any) -> None:
    datadog.queue(
        Reply(status=429, headers={"X-RateLimit-Reset": "0", "X-RateLimit-Remaining": "0"}),
        Reply(status=503),
    )
    async with WebhookDispatcher(webhooks=[webhook(datadog)], plugin_manager=pm) as dispatcher:
        await dispatcher.emit("alert", {"message": "x"})
    assert [r.answered for r in datadog.requests] == [429, 503, 202]
    verdict = plugin.classify(
        DatadogWebhook(api_key=API_KEY),
        Response(status=429, headers={"x-ratelimit-reset": "7"}),
    )
    assert (verdict.outcome, verdict.retry_after, verdict.pause_webhook) == (
        Outcome.RETRY,
        7.0,
        True,
    )


async def test_failed_event_metrics_are_retried_without_reposting_the_event(
    datadog: Receiver, pm: Any
) -> None:
    datadog.queue(
        Reply(status=202, body={"status": "ok", "event": {"id": 1}}),
        Reply(status=500, body={"errors": ["Internal"]}),
    )
    async with WebhookDispatcher(webhooks=[webhook(datadog)], plugin_manager=pm) as dispatcher:
        await dispatcher.emit("performance_issue", PERFORMANCE)
        await dispatcher.drain()
        stats = dispatcher.get_webhook_stats("datadog_webhook")
    assert [(r.path, r.answered) for r in datadog.requests] == [
        ("/api/v1/events", 202),
        ("/api/v2/series", 500),
        ("/api/v2/series", 202),
    ]
    assert (stats["delivered_count"], stats["attempts"]) == (1, 2)
    assert len(series_points(datadog)) == 3


async def test_rejected_event_metrics_fail_the_delivery_and_say_why(
    datadog: Receiver, pm: Any
) -> None:
    datadog.queue(
        Reply(status=202, body={"status": "ok"}),
        Reply(status=400, body={"errors": ["Invalid metric"]}),
    )
    failures: list[Any] = []
    hook = webhook(datadog, on_failure=lambda w, e, error: failures.append(error))
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=pm) as dispatcher:
        await dispatcher.emit("performance_issue", PERFORMANCE)
    assert failures[0].reason == (
        "event accepted, but its metrics rejected (HTTP 400): Invalid metric"
    )


@pytest.mark.parametrize(
    ("site", "url"),
    [
        ("US1", "https://api.datadoghq.com"),
        ("datadoghq.com", "https://api.datadoghq.com"),
        ("EU", "https://api.datadoghq.eu"),
        ("datadoghq.eu", "https://api.datadoghq.eu"),
        ("US3", "https://api.us3.datadoghq.com"),
        ("us5.datadoghq.com", "https://api.us5.datadoghq.com"),
        ("AP1", "https://api.ap1.datadoghq.com"),
        ("AP2", "https://api.ap2.datadoghq.com"),
        ("UK1", "https://api.uk1.datadoghq.com"),
        ("US1-FED", "https://api.ddog-gov.com"),
        ("gov", "https://api.ddog-gov.com"),
        ("ddog-gov.com", "https://api.ddog-gov.com"),
        ("https://app.datadoghq.eu/", "https://api.datadoghq.eu"),
    ],
)
def test_every_site_maps_to_its_api_host(site: str, url: str) -> None:
    hook = DatadogWebhook(api_key=API_KEY, site=site)
    assert hook.api_url == url
    assert hook.events_url == f"{url}/api/v1/events"
    assert hook.series_url == f"{url}/api/v2/series"


def test_configuration_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="unknown Datadog site 'mars'"):
        DatadogWebhook(api_key=API_KEY, site="mars")
    with pytest.raises(ValueError, match="api_key is required"):
        DatadogWebhook(api_key=None)  # type: ignore[arg-type]
    assert DatadogWebhook(api_key=API_KEY, site="EU", base_url="http://127.0.0.1:9/").api_url == (
        "http://127.0.0.1:9"
    )


def test_templates_override_per_event_type_and_render_dry(pm: Any) -> None:
    hook = DatadogWebhook(
        api_key=API_KEY,
        templates={
            "prediction": "Predicted: {data[prediction]}",
            "deployment_risk": lambda event: {"title": "Risky!", "priority": None, "tags": ["x y"]},
        },
    )
    predicted = render_request(
        hook, Event(event_type="prediction", data={"prediction": "p"}), plugin_manager=pm
    ).json_body()
    assert predicted["text"] == "Predicted: p"
    risky = render_request(
        hook, Event(event_type="deployment_risk", data={"service": "auth"}), plugin_manager=pm
    ).json_body()
    assert risky["title"] == "Risky!" and "priority" not in risky and risky["tags"] == ["x_y"]
    request = render_request(
        hook, Event(event_type="performance_issue", data=PERFORMANCE), plugin_manager=pm
    )
    assert [e["metric"] for e in request.extras["series"]["series"]] == [
        "empathy.performance_issue.avg_response_time",
        "empathy.performance_issue.p95_response_time",
        "empathy.performance_issue.error_rate",
    ]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=60),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=16,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    event_type=st.text(min_size=1, max_size=300).filter(emit_accepts),
    data=st.dictionaries(
        st.sampled_from(
            [
                "title",
                "message",
                "description",
                "service",
                "endpoint",
                "file",
                "line",
                "status",
                "host",
                "severity",
                "metrics",
                "avg_response_time",
                "error_rate",
                "aggregation_key",
                "dedup_key",
                "x",
            ]
        ),
        json_values | st.text(max_size=6000),
        max_size=12,
    ),
    tags=st.lists(st.text(max_size=300), max_size=120),
    prefix=st.text(max_size=40),
)
def test_limits_hold_for_any_event(
    event_type: str, data: dict[str, Any], tags: list[str], prefix: str
) -> None:
    hook = DatadogWebhook(api_key=API_KEY, tags=tags, metric_prefix=prefix)
    request = render_request(hook, Event(event_type=event_type, data=data), plugin_manager=PM)
    body = request.json_body()
    assert event_errors(body) == []
    assert 0 < len(body["title"]) <= 100
    assert len(body["tags"]) <= 100 and all(0 < len(t) <= 200 for t in body["tags"])
    series = request.extras.get("series")
    if series:
        assert series_errors(json.dumps(series).encode(), series) == []


def test_the_entry_point_is_discovered() -> None:
    pm = build_plugin_manager(env={"EMPATHY_WEBHOOKS_LOAD_PLUGINS": "datadog"})
    assert pm.has_plugin("datadog")
    assert any((m or {}).get("datadog") is DatadogWebhook for m in pm.hook.webhook_types())


PM = build_plugin_manager(load_entry_points=False, extra_plugins=[plugin])
