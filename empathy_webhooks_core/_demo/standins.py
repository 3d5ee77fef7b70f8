"""Loopback stand-ins for the demo's services: the core's `Receiver` with a handler that
answers as each service answers success, and a one-line summary of what each received."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from .._formatting import truncate
from ..testing.receiver import ReceivedRequest, Receiver, Reply

__all__ = ["STANDINS", "StandIn", "summarize"]


def _slack(request: ReceivedRequest) -> Reply:
    return Reply(status=200, body="ok")


def _jira() -> Callable[[ReceivedRequest], Reply]:
    numbers = itertools.count(1)

    def handle(request: ReceivedRequest) -> Reply:
        if "/search" in request.path:
            return Reply(status=200, body={"issues": [], "isLast": True, "total": 0})
        # The create screen's metadata, read once before the first create.
        if request.path.endswith("/createmeta/EMP/issuetypes"):
            return Reply(status=200, body={"issueTypes": [{"id": "10001", "name": "Bug"}]})
        if "/createmeta/" in request.path:
            names = ("project", "issuetype", "summary", "description", "priority", "labels")
            return Reply(status=200, body={"fields": [{"fieldId": name} for name in names]})
        if request.method == "POST" and request.path.endswith("/issue"):
            number = next(numbers)
            return Reply(
                status=201,
                body={
                    "id": str(10000 + number),
                    "key": f"EMP-{number}",
                    "self": f"http://jira.local/rest/api/3/issue/{10000 + number}",
                },
            )
        return Reply(status=404, body={"errorMessages": ["not found"]})

    return handle


def _github() -> Callable[[ReceivedRequest], Reply]:
    ids = itertools.count(1)

    def handle(request: ReceivedRequest) -> Reply:
        if request.path.endswith("/comments") and request.method == "GET":
            return Reply(status=200, body=[])
        if request.method in ("POST", "PATCH"):
            comment_id = next(ids)
            return Reply(
                status=201 if request.method == "POST" else 200,
                body={
                    "id": comment_id,
                    "html_url": f"https://github.local/pull/123#issuecomment-{comment_id}",
                },
            )
        return Reply(status=404, body={"message": "Not Found"})

    return handle


def _datadog(request: ReceivedRequest) -> Reply:
    if request.path.endswith("/series"):
        return Reply(status=202, body={"errors": []})
    return Reply(status=202, body={"status": "ok", "event": {"id": 7001, "url": ""}})


def _pagerduty(request: ReceivedRequest) -> Reply:
    try:
        key = request.json().get("dedup_key")
    except (ValueError, AttributeError):
        key = None
    return Reply(
        status=202,
        body={"status": "success", "message": "Event processed", "dedup_key": key or "demo"},
    )


def _custom(request: ReceivedRequest) -> Reply:
    return Reply(status=200, body={"status": "ok"})


@attrs.frozen
class StandIn:
    """One service: its label, a handler factory, and the webhook table pointing at it."""

    service: str
    label: str
    handler: Callable[[], Callable[[ReceivedRequest], Reply]]
    table: Callable[[Receiver], dict[str, Any]]


STANDINS: tuple[StandIn, ...] = (
    StandIn(
        "slack",
        "Slack",
        lambda: _slack,
        lambda r: {
            "name": "slack_webhook",
            "webhook_url": r.url("/services/T0DEMO/B0DEMO/demo"),
            "channel": "#ai-alerts",
            "username": "Empathy Bot",
            "icon_emoji": ":robot_face:",
            "events": ["prediction", "alert"],
        },
    ),
    StandIn(
        "jira",
        "Jira",
        _jira,
        lambda r: {
            "name": "jira_webhook",
            "url": r.url(""),
            "email": "bot@example.com",
            "api_token": "demo-jira-token",
            "project": "EMP",
            "issue_type": "Bug",
            "events": ["bug_detected", "security_vulnerability"],
        },
    ),
    StandIn(
        "github",
        "GitHub",
        _github,
        lambda r: {
            "name": "github_webhook",
            "token": "ghp_demo_token",
            "repository": "Smart-AI-Memory/empathy",
            "api_url": r.url(""),
            "events": ["code_review_complete"],
        },
    ),
    StandIn(
        "datadog",
        "Datadog",
        lambda: _datadog,
        lambda r: {
            "name": "datadog_webhook",
            "api_key": "demo-datadog-api-key",
            "app_key": "demo-datadog-app-key",
            "base_url": r.url(""),
            "events": ["performance_issue", "prediction"],
        },
    ),
    StandIn(
        "pagerduty",
        "PagerDuty",
        lambda: _pagerduty,
        lambda r: {
            "name": "pagerduty_webhook",
            "api_key": "demo0r0ut1ngkey00000000000000000",
            "events_url": r.url(""),
            "events": ["alert"],
            # The reference's `filter=lambda event: event.severity == "high"`, declaratively.
            "filter": {"severity": "high"},
        },
    ),
    StandIn(
        "custom",
        "Custom endpoint",
        lambda: _custom,
        lambda r: {
            "name": "custom_webhook",
            "url": r.url("/webhooks/empathy"),
            "events": ["*"],
            "signing_secret": "demo-signing-secret",
        },
    ),
)


def _first(body: Any, *paths: str) -> str | None:
    for path in paths:
        value: Any = body
        for part in path.split("."):
            if isinstance(value, Mapping) and part in value:
                value = value[part]
            elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                value = None
                break
        if value not in (None, "", [], {}):
            return str(value)
    return None


def summarize(service: str, request: ReceivedRequest) -> str:
    """What a person would read first in this request's body."""
    if not request.body:
        return ""
    try:
        body = request.json()
    except ValueError:
        return truncate(request.body.decode("utf-8", errors="replace"), 90)
    picks = {
        "slack": ("blocks.0.text.text", "text"),
        "jira": ("fields.summary", "jql"),
        "github": ("body",),
        "datadog": ("title", "series.0.metric"),
        "pagerduty": ("payload.summary",),
        "custom": ("event_type",),
    }.get(service, ())
    found = _first(body, *picks)
    if service == "slack" and found:
        section = _first(body, "blocks.1.text.text")
        found = f"{found}: {section.splitlines()[0]}" if section else found
    elif service == "pagerduty" and found:
        found = f"{body.get('event_action')}: {found} (dedup_key {body.get('dedup_key')})"
    elif service == "custom" and found:
        signed = "signed" if request.header("X-Signature") else "unsigned"
        found = f"{found} {body.get('event_id')} ({signed})"
    elif service == "github" and found:
        found = found.strip().splitlines()[0]
    if found is None:
        found = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    return truncate(" ".join(found.split()), 90)
