"""PagerDuty Events API v2 through a real dispatcher to a loopback fake of PagerDuty."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import empathy_webhooks_pagerduty as plugin
import jsonschema
import pytest
from empathy_webhooks_pagerduty import PagerDutyWebhook
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from empathy_webhooks_core import Event, WebhookDispatcher, hookimpl
from empathy_webhooks_core.delivery import render_request
from empathy_webhooks_core.events import MAX_SAFE_INTEGER
from empathy_webhooks_core.plugins import build_plugin_manager
from empathy_webhooks_core.testing import ReceivedRequest, Receiver, Reply
from empathy_webhooks_core.testing.conformance import emit_accepts

KEY = "0123456789abcdef0123456789abcdef"
FAST = {"initial_delay_seconds": 0.001, "max_delay_seconds": 0.01}
WHEN = datetime(2025, 11, 25, 14, 30, 5, 123000, tzinfo=UTC)


#: The Events API v2 change event, as PagerDuty documents it (developer docs "Send a Change
#: Event"): a routing key, a payload of summary (required, at most 1024 characters), source,
#: timestamp and custom details, and links; nothing else.
CHANGE_EVENT_SCHEMA = {
    "type": "object",
    "required": ["routing_key", "payload"],
    "additionalProperties": False,
    "properties": {
        "routing_key": {"type": "string", "pattern": "^[A-Za-z0-9]{32}$"},
        "payload": {
            "type": "object",
            "required": ["summary"],
            "additionalProperties": False,
            "properties": {
                "summary": {"type": "string", "minLength": 1, "maxLength": 1024},
                "source": {"type": "string"},
                "timestamp": {"type": "string", "format": "date-time"},
                "custom_details": {"type": "object"},
            },
        },
        "links": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["href"],
                "additionalProperties": False,
                "properties": {"href": {"type": "string"}, "text": {"type": "string"}},
            },
        },
    },
}


def change_problems(body: Any) -> list[str]:
    checker = jsonschema.Draft202012Validator(
        CHANGE_EVENT_SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    return [f"{error.json_path}: {error.message}" for error in checker.iter_errors(body)]


def fake_pagerduty(request: ReceivedRequest) -> Reply:
    """Answers as the Events API v2 does, validating what PagerDuty validates."""
    body = request.json()
    if request.path == "/v2/change/enqueue":
        problems = change_problems(body)
        if problems:
            return Reply(
                status=400,
                body={
                    "status": "invalid event",
                    "message": "Event object is invalid",
                    "errors": problems,
                },
            )
        return Reply(status=202, body={"status": "success", "message": "Change event processed"})
    errors = []
    if len(body.get("routing_key", "")) != 32:
        errors.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    if body.get("event_action") not in ("trigger", "acknowledge", "resolve"):
        errors.append("'event_action' is invalid")
    if len(body.get("dedup_key", "")) > 255:
        errors.append("'dedup_key' is too long")
    if body.get("event_action") == "trigger":
        payload = body.get("payload", {})
        for field in ("summary", "source", "severity"):
            if not payload.get(field):
                errors.append(f"'payload.{field}' is missing or blank")
        if len(payload.get("summary", "")) > 1024:
            errors.append("'payload.summary' is too long")
        if payload.get("severity") not in ("critical", "error", "warning", "info"):
            errors.append("'payload.severity' is invalid")
    elif not body.get("dedup_key"):
        errors.append("'dedup_key' is required for acknowledge and resolve")
    if errors:
        return Reply(
            status=400,
            body={
                "status": "invalid event",
                "message": "Event object is invalid",
                "errors": errors,
            },
        )
    return Reply(
        status=202,
        body={"status": "success", "message": "Event processed", "dedup_key": body["dedup_key"]},
    )


class Successes:
    """A plugin that keeps what `on_success` is told (the verdict's details)."""

    def __init__(self) -> None:
        self.details: list[dict[str, Any]] = []

    @hookimpl
    def on_success(self, webhook: Any, event: Any, result: Any) -> None:
        self.details.append(dict(result.details))


@pytest.fixture
async def pagerduty() -> AsyncIterator[Receiver]:
    async with Receiver() as receiver:
        receiver.handler = fake_pagerduty
        yield receiver


def manager(*extra: Any) -> Any:
    return build_plugin_manager(load_entry_points=False, extra_plugins=[plugin, *extra])


def webhook(receiver: Receiver, **options: Any) -> PagerDutyWebhook:
    return PagerDutyWebhook(api_key=KEY, events_url=receiver.url(""), retry_policy=FAST, **options)


async def test_a_trigger_arrives_with_every_field(pagerduty: Receiver) -> None:
    event = Event(
        event_type="performance_issue",
        data={"endpoint": "/api/users", "service": "api", "avg_response_time": 850},
        severity="high",
        user_id="developer_123",
        timestamp=WHEN,
    )
    async with WebhookDispatcher(webhooks=[webhook(pagerduty)], plugin_manager=manager()) as d:
        await d.emit_event(event)
    [request] = pagerduty.requests
    assert (request.method, request.path) == ("POST", "/v2/enqueue")
    assert request.header("Content-Type") == "application/json"
    body = request.json()
    assert body == {
        "routing_key": KEY,
        "event_action": "trigger",
        "dedup_key": body["dedup_key"],
        "payload": {
            "summary": "Performance: /api/users response time degraded",
            "source": "api",
            "severity": "error",
            "timestamp": "2025-11-25T14:30:05.123Z",
            "component": "api",
            "class": "performance_issue",
            "custom_details": {
                "endpoint": "/api/users",
                "service": "api",
                "avg_response_time": 850,
                "event_type": "performance_issue",
                "event_id": event.event_id,
                "user_id": "developer_123",
            },
        },
        "client": "Empathy Framework",
    }
    assert body["dedup_key"].startswith("empathy:performance_issue:")
    assert pagerduty.requests[0].answered == 202


async def test_trigger_then_resolve_and_acknowledge_share_one_dedup_key(
    pagerduty: Receiver,
) -> None:
    seen = Successes()
    hook = webhook(pagerduty)
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager(seen)) as d:
        await d.emit("alert", {"service": "checkout", "alert": "error budget burn"})
        await d.drain()
        await d.emit(
            "alert", {"service": "checkout", "alert": "error budget burn", "status": "acknowledged"}
        )
        await d.drain()
        await d.emit("alert_resolved", {"service": "checkout", "alert": "error budget burn"})
        await d.emit("alert", {"service": "payments", "alert": "error budget burn"})
    trigger, ack, resolve, other = (r.json() for r in pagerduty.requests)
    key = trigger["dedup_key"]
    assert ack == {"routing_key": KEY, "event_action": "acknowledge", "dedup_key": key}
    assert resolve == {"routing_key": KEY, "event_action": "resolve", "dedup_key": key}
    assert other["event_action"] == "trigger" and other["dedup_key"] != key
    assert [r.answered for r in pagerduty.requests] == [202] * 4
    assert {"dedup_key": key, "event_action": "trigger"} in seen.details
    assert {"dedup_key": key, "event_action": "resolve"} in seen.details


async def test_an_explicit_dedup_key_is_kept(pagerduty: Receiver) -> None:
    async with WebhookDispatcher(webhooks=[webhook(pagerduty)], plugin_manager=manager()) as d:
        await d.emit("alert", {"dedup_key": "srv01/HTTP", "message": "HTTP down"})
        await d.emit("alert", {"incident_key": "srv01/HTTP", "status": "resolved"})
    assert [r.json()["dedup_key"] for r in pagerduty.requests] == ["srv01/HTTP"] * 2
    assert pagerduty.requests[1].json()["event_action"] == "resolve"


async def test_two_different_alerts_are_two_incidents(pagerduty: Receiver) -> None:
    """Issue 15: with no identifying field, the alert's text (else its id) tells them apart."""
    async with WebhookDispatcher(webhooks=[webhook(pagerduty)], plugin_manager=manager()) as d:
        await d.emit("alert", {"message": "Disk full on db-1"}, severity="critical")
        await d.emit("alert", {"message": "CPU at 100% on web-3"}, severity="critical")
        await d.emit("alert", {"value": 97}, severity="critical")
        await d.emit("alert", {"value": 97}, severity="critical")
        await d.drain()
        # The first alert again (a repeat) joins its incident rather than paging twice.
        await d.emit("alert", {"message": "Disk full on db-1"}, severity="critical")
    keys = [r.json()["dedup_key"] for r in pagerduty.requests]
    assert len(set(keys[:4])) == 4
    assert keys[4] == keys[0]
    assert [r.answered for r in pagerduty.requests] == [202] * 5


async def test_a_resolve_repeating_its_triggers_text_resolves_it(pagerduty: Receiver) -> None:
    async with WebhookDispatcher(webhooks=[webhook(pagerduty)], plugin_manager=manager()) as d:
        await d.emit("alert", {"message": "Disk full on db-1"})
        await d.drain()
        await d.emit("alert_resolved", {"message": "Disk full on db-1"})
    trigger, resolve = (r.json() for r in pagerduty.requests)
    key = trigger["dedup_key"]
    assert resolve == {"routing_key": KEY, "event_action": "resolve", "dedup_key": key}


async def test_a_resolve_that_names_no_alert_fails_loudly_and_sends_nothing(
    pagerduty: Receiver,
) -> None:
    """Its key would be its own event id, which no incident has: PagerDuty would accept it and
    resolve nothing. It fails finally with a reason that says what to give."""
    failures: list[Any] = []
    hook = webhook(pagerduty, on_failure=lambda webhook, event, error: failures.append(error))
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager()) as d:
        await d.emit("alert_resolved", {"value": 3})
        await d.emit("alert", {"status": "acknowledged"})
        await d.drain()
        dead = await d.dead_letters()
    assert pagerduty.requests == []
    assert len(failures) == len(dead) == 2
    assert "cannot resolve an incident" in failures[0].reason
    assert "cannot acknowledge an incident" in failures[1].reason
    assert "data['dedup_key']" in failures[0].reason


async def test_a_resolve_naming_only_a_host_fails_loudly(pagerduty: Receiver) -> None:
    """A place alone names no alert: the trigger said what was wrong on db-1, so its key holds
    that text, and a resolve carrying only the host would be accepted and resolve nothing."""
    failures: list[Any] = []
    hook = webhook(pagerduty, on_failure=lambda webhook, event, error: failures.append(error))
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager()) as d:
        await d.emit("alert", {"host": "db-1", "message": "Disk full"})
        await d.drain()
        await d.emit("alert_resolved", {"host": "db-1"})
        await d.drain()
    assert len(pagerduty.requests) == 1  # the trigger only
    assert len(failures) == 1
    assert "cannot resolve an incident" in failures[0].reason
    assert "a place such as host alone names no alert" in failures[0].reason


async def test_the_reference_filter_sends_only_high_severity(pagerduty: Receiver) -> None:
    hook = PagerDutyWebhook(
        api_key=KEY,
        events=["alert"],
        filter=lambda event: event.severity == "high",
        events_url=pagerduty.url(""),
    )
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager()) as d:
        await d.emit("alert", {"message": "disk full"}, severity="high")
        await d.emit("alert", {"message": "disk 70%"}, severity="low")
        await d.emit("prediction", {"prediction": "x"}, severity="high")
    [request] = pagerduty.requests
    assert request.json()["payload"]["summary"] == "Alert: disk full"
    assert request.json()["payload"]["severity"] == "error"


async def test_a_400_is_final_and_reports_pagerdutys_errors(pagerduty: Receiver) -> None:
    failures: list[Any] = []
    # A template that blanks what PagerDuty requires (a short key is refused at once now).
    hook = PagerDutyWebhook(
        api_key=KEY,
        events_url=pagerduty.url(""),
        retry_policy=FAST,
        on_failure=lambda webhook, event, error: failures.append(error),
        templates={"alert": {"payload": {"source": ""}}},
    )
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager()) as d:
        await d.emit("alert", {"message": "x"})
        await d.drain()
        stats = d.get_webhook_stats(hook.name)
    assert len(pagerduty.requests) == 1
    [error] = failures
    assert error.status == 400
    assert error.reason == (
        "invalid event (HTTP 400): Event object is invalid; 'payload.source' is missing or blank"
    )
    assert KEY not in str(error)
    assert stats["failed_count"] == 1 and stats["dead_letters"] == 1


async def test_a_429_is_retried_with_backoff_then_delivered(pagerduty: Receiver) -> None:
    pagerduty.queue(
        Reply(status=429, body="Request Limit Exceeded"), Reply(status=500, body="oops")
    )
    async with WebhookDispatcher(webhooks=[webhook(pagerduty)], plugin_manager=manager()) as d:
        await d.emit("alert", {"message": "x"})
        await d.drain()
        stats = d.get_webhook_stats("pagerduty_webhook")
    assert [r.answered for r in pagerduty.requests] == [429, 500, 202]
    assert len({r.body for r in pagerduty.requests}) == 1
    assert (stats["delivered_count"], stats["attempts"], stats["retries"]) == (1, 3, 2)


def test_classify_429_pauses_the_webhook() -> None:
    from empathy_webhooks_core import Outcome, OutgoingRequest, Response

    verdict = plugin.classify_response(
        PagerDutyWebhook(api_key=KEY), OutgoingRequest(url="https://x"), Response(status=429)
    )
    assert verdict is not None
    assert (verdict.outcome, verdict.pause_webhook, verdict.retry_after) == (
        Outcome.RETRY,
        True,
        None,
    )


def test_the_routing_key_stays_out_of_repr_and_is_a_secret() -> None:
    hook = PagerDutyWebhook(api_key=KEY, events=["alert"])
    assert KEY not in repr(hook)
    assert KEY in hook.secret_values()
    assert hook.enqueue_url == "https://events.pagerduty.com/v2/enqueue"
    with pytest.raises(ValueError, match="api_key"):
        PagerDutyWebhook(api_key=None)  # type: ignore[arg-type]


def test_templates_override_per_event_type_and_dry_run_renders() -> None:
    hook = PagerDutyWebhook(
        api_key=KEY,
        templates={
            "prediction": "Predicted: {data[prediction]}",
            "alert": lambda e: {"payload": {"severity": "critical", "group": "oncall"}},
        },
    )
    pm = manager()
    predicted = render_request(
        hook, Event(event_type="prediction", data={"prediction": "outage"}), plugin_manager=pm
    ).json_body()
    assert predicted["payload"]["summary"] == "Predicted: outage"
    alert = render_request(
        hook, Event(event_type="alert", data={"message": "m"}), plugin_manager=pm
    ).json_body()
    assert alert["payload"]["severity"] == "critical"
    assert alert["payload"]["group"] == "oncall"
    assert alert["payload"]["summary"] == "Alert: m"


def test_the_entry_point_is_discovered() -> None:
    pm = build_plugin_manager(env={"EMPATHY_WEBHOOKS_LOAD_PLUGINS": "pagerduty"})
    assert pm.has_plugin("pagerduty")
    assert any((m or {}).get("pagerduty") is PagerDutyWebhook for m in pm.hook.webhook_types())


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER)
    | st.text(max_size=50),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    event_type=st.text(min_size=1, max_size=400).filter(emit_accepts),
    data=st.dictionaries(
        st.sampled_from(
            [
                "title",
                "message",
                "service",
                "endpoint",
                "file",
                "line",
                "dedup_key",
                "status",
                "source",
                "component",
                "group",
                "severity",
                "huge",
                "x",
            ]
        ),
        json_values | st.text(max_size=3000),
        max_size=10,
    ),
    severity=st.none() | st.text(max_size=10),
)
def test_limits_hold_for_any_event(
    event_type: str, data: dict[str, Any], severity: str | None
) -> None:
    event = Event(event_type=event_type, data=data, severity=severity)
    webhook = PagerDutyWebhook(api_key=KEY)
    request = render_request(webhook, event, plugin_manager=PM)
    body = request.json_body()
    assert len(request.body) <= 512 * 1024
    if plugin.format.is_change(webhook, event):
        # A change event (Hypothesis also tries the code's own strings, `deployment` among
        # them): the Change Events schema, which has no action, key or severity.
        assert "event_action" not in body and "dedup_key" not in body
        assert 0 < len(body["payload"]["summary"]) <= 1024
        return
    assert body["event_action"] in ("trigger", "acknowledge", "resolve")
    assert 0 < len(body["dedup_key"]) <= 255
    if body["event_action"] == "trigger":
        payload = body["payload"]
        assert 0 < len(payload["summary"]) <= 1024
        assert payload["source"] and len(payload["source"]) <= 255
        assert payload["severity"] in ("critical", "error", "warning", "info")
    reply = fake_pagerduty(
        ReceivedRequest(method="POST", path="/v2/enqueue", query={}, headers={}, body=request.body)
    )
    assert reply.status == 202, json.dumps(reply.body)


def test_huge_custom_details_are_cut_to_fit() -> None:
    event = Event(event_type="alert", data={"blob": "x" * 600_000, "message": "big"})
    request = render_request(PagerDutyWebhook(api_key=KEY), event, plugin_manager=PM)
    details = request.json_body()["payload"]["custom_details"]
    assert len(request.body) <= 512 * 1024
    assert details["truncated"] is True and details["event_id"] == event.event_id


PM = manager()


# -- routing keys are checked when the webhook is made ----------------------------------------


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("0123456789abcdef0123456789abcde", "it has 31 characters"),
        ("0123456789abcdef0123456789abcdef0", "it has 33 characters"),
        ("0123456789abcdef-0123456789abcde", "it has other characters"),
        ("0123456789abcdef0123456789abcdef\n", "it has spaces or a line break around it"),
    ],
)
def test_a_routing_key_that_pagerduty_would_refuse_is_refused_at_once(
    key: str, problem: str
) -> None:
    with pytest.raises(ValueError) as raised:
        PagerDutyWebhook(api_key=key)
    message = str(raised.value)
    assert message.startswith("api_key must be a PagerDuty routing key: 32 letters and digits")
    assert problem in message
    assert key.strip()[:8] not in message and key.strip()[-8:] not in message


def test_a_routing_key_problem_in_a_config_file_names_its_place_and_hides_the_key() -> None:
    from empathy_webhooks_core.config import ConfigError, parse_config

    with pytest.raises(ConfigError) as raised:
        parse_config(
            {"webhooks": [{"type": "pagerduty", "api_key": "${PD_KEY}"}]},
            env={"PD_KEY": "tooshortkey"},
            plugin_manager=manager(),
        )
    [line] = raised.value.problems
    assert line.startswith("webhooks[0].api_key: must be a PagerDuty routing key")
    assert "tooshortkey" not in line


def test_ruleset_and_integration_keys_are_accepted() -> None:
    for key in (KEY, "R0123456789ABCDEF0123456789ABCDE"):
        assert PagerDutyWebhook(api_key=key).routing_key == key


# -- changes go to Change Events --------------------------------------------------------------


def deployment(**data: Any) -> Event:
    return Event(
        event_type="deployment",
        data={
            "title": "auth-service v2.1 deployed to production",
            "service": "auth-service",
            "version": "2.1.0",
            "url": "https://ci.example.com/deploys/42",
            **data,
        },
        user_id="developer_123",
        timestamp=WHEN,
    )


async def test_a_deployment_is_a_change_event_matching_the_change_schema(
    pagerduty: Receiver,
) -> None:
    successes = Successes()
    async with WebhookDispatcher(
        webhooks=[webhook(pagerduty)], plugin_manager=manager(successes)
    ) as d:
        await d.emit_event(deployment())
        await d.drain()
        stats = d.get_webhook_stats("pagerduty_webhook")
    [request] = pagerduty.requests
    assert request.path == "/v2/change/enqueue"
    body = request.json()
    assert change_problems(body) == []
    assert body == {
        "routing_key": KEY,
        "payload": {
            "summary": "Deployment: auth-service v2.1 deployed to production",
            "source": "auth-service",
            "timestamp": "2025-11-25T14:30:05.123Z",
            "custom_details": {
                "title": "auth-service v2.1 deployed to production",
                "service": "auth-service",
                "version": "2.1.0",
                "url": "https://ci.example.com/deploys/42",
                "event_type": "deployment",
                "event_id": body["payload"]["custom_details"]["event_id"],
                "user_id": "developer_123",
            },
        },
        "links": [{"href": "https://ci.example.com/deploys/42", "text": "Details"}],
    }
    assert stats["delivered_count"] == 1
    assert successes.details == [{"event_action": "change"}]


@pytest.mark.parametrize(
    ("event", "options", "path"),
    [
        (Event(event_type="deployment_risk", data={"risk": "high"}), {}, "/v2/enqueue"),
        (
            Event(event_type="deployment_risk", data={"risk": "high", "change": True}),
            {},
            "/v2/change/enqueue",
        ),
        # A failed deploy is a problem: PagerDuty lists "Deployment failed" among alerts.
        (Event(event_type="deployment", data={"change": False}), {}, "/v2/enqueue"),
        (
            Event(event_type="config_change", data={"title": "TLS cert rotated"}),
            {"change_event_types": ["config_change"]},
            "/v2/change/enqueue",
        ),
        (Event(event_type="deployment"), {"change_event_types": []}, "/v2/enqueue"),
        # A ruleset key takes no change events: PagerDuty would refuse them.
        (
            Event(event_type="deployment"),
            {"api_key": "R0123456789ABCDEF0123456789ABCDE"},
            "/v2/enqueue",
        ),
    ],
)
def test_which_events_are_changes(event: Event, options: dict[str, Any], path: str) -> None:
    hook = PagerDutyWebhook(**{"api_key": KEY, **options})
    request = render_request(hook, event, plugin_manager=manager())
    assert request.url == f"https://events.pagerduty.com{path}"
    body = request.json_body()
    if path == "/v2/change/enqueue":
        assert change_problems(body) == []
    else:
        assert body["event_action"] == "trigger"


def test_change_event_limits_and_templates_keep_to_the_schema() -> None:
    hook = PagerDutyWebhook(
        api_key=KEY,
        source="x" * 2000,
        templates={"release": lambda event: {"payload": {"summary": "r" * 5000}}},
        change_event_types=("deployment", "release"),
    )
    huge = {"title": "t" * 5000, "blob": "b" * (600 * 1024)}
    for event in (
        Event(event_type="deployment", data=huge),
        Event(event_type="release", data={"title": "v3"}),
    ):
        body = render_request(hook, event, plugin_manager=manager()).json_body()
        assert change_problems(body) == [], event.event_type
        assert len(json.dumps(body)) <= 512 * 1024


def test_change_event_types_from_a_config_file() -> None:
    from empathy_webhooks_core.config import parse_config

    config = parse_config(
        {
            "webhooks": [
                {"type": "pagerduty", "api_key": KEY, "change_event_types": ["release"]},
            ]
        },
        env={},
        plugin_manager=manager(),
    )
    assert config.webhooks[0].change_event_types == ("release",)
