"""Grafana annotations through a real dispatcher to a loopback fake of Grafana's HTTP API."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import empathy_webhooks_grafana as plugin
import pytest
from empathy_webhooks_grafana import GrafanaWebhook
from hypothesis import given, settings
from hypothesis import strategies as st

from empathy_webhooks_core import Event, WebhookDispatcher, hookimpl
from empathy_webhooks_core.delivery import render_request
from empathy_webhooks_core.events import MAX_SAFE_INTEGER
from empathy_webhooks_core.plugins import build_plugin_manager
from empathy_webhooks_core.testing import ReceivedRequest, Receiver, Reply
from empathy_webhooks_core.testing.conformance import emit_accepts

TOKEN = "glsa_0123456789abcdefTOKEN"
FAST = {"initial_delay_seconds": 0.001, "max_delay_seconds": 0.01}
WHEN = datetime(2025, 11, 25, 14, 30, 5, 123000, tzinfo=UTC)
PM = build_plugin_manager(load_entry_points=False, extra_plugins=[plugin])


def fake_grafana() -> Any:
    ids = itertools.count(1)

    def handle(request: ReceivedRequest) -> Reply:
        if request.header("Authorization") != f"Bearer {TOKEN}":
            return Reply(status=401, body={"message": "invalid API key"})
        body = request.json()
        if not isinstance(body.get("text"), str) or not isinstance(body.get("time"), int):
            return Reply(status=400, body={"message": "bad request data"})
        return Reply(status=200, body={"message": "Annotation added", "id": next(ids)})

    return handle


@pytest.fixture
async def grafana() -> AsyncIterator[Receiver]:
    async with Receiver() as receiver:
        receiver.handler = fake_grafana()
        yield receiver


class Successes:
    def __init__(self) -> None:
        self.details: list[dict[str, Any]] = []

    @hookimpl
    def on_success(self, webhook: Any, event: Any, result: Any) -> None:
        self.details.append(dict(result.details))


async def test_an_event_becomes_an_organisation_wide_annotation(grafana: Receiver) -> None:
    seen = Successes()
    pm = build_plugin_manager(load_entry_points=False, extra_plugins=[plugin, seen])
    hook = GrafanaWebhook(url=grafana.url("/grafana/"), api_key=TOKEN, events=["*"])
    event = Event(
        event_type="performance_issue",
        data={"endpoint": "/api/users", "service": "api", "avg_response_time": 850},
        user_id="developer_123",
        timestamp=WHEN,
    )
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=pm) as dispatcher:
        await dispatcher.emit_event(event)
    [request] = grafana.requests
    assert (request.method, request.path) == ("POST", "/grafana/api/annotations")
    assert request.header("Content-Type") == "application/json"
    assert request.json() == {
        "time": 1764081005123,
        "tags": [
            "empathy",
            "performance_issue",
            "severity:warning",
            "service:api",
            "endpoint:/api/users",
        ],
        "text": (
            "Performance: /api/users response time degraded\n\n"
            "endpoint: /api/users\nservice: api\navg_response_time: 850\n\n"
            f"event {event.event_id} · user developer_123"
        ),
    }
    assert seen.details == [{"annotation_id": "1"}]


async def test_a_dashboard_panel_annotation(grafana: Receiver) -> None:
    hook = GrafanaWebhook(
        url=grafana.url("/"),
        api_key=TOKEN,
        dashboard_uid="jcIIG-07z",
        panel_id=1,
        tags=["prod"],
    )
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=PM) as dispatcher:
        await dispatcher.emit("prediction", {"prediction": "Auth deploy may conflict"})
    body = grafana.requests[0].json()
    assert (body["dashboardUID"], body["panelId"]) == ("jcIIG-07z", 1)
    assert body["tags"] == ["empathy", "prediction", "severity:info", "prod"]
    assert body["text"].startswith("Prediction: Auth deploy may conflict\n")


async def test_a_bad_token_is_a_final_failure_without_the_token(grafana: Receiver) -> None:
    failures: list[Any] = []
    hook = GrafanaWebhook(
        url=grafana.url("/"),
        api_key="wrong-token-value",
        on_failure=lambda webhook, event, error: failures.append(error),
    )
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=PM) as dispatcher:
        await dispatcher.emit("alert", {"message": "x"})
    assert len(grafana.requests) == 1
    [error] = failures
    assert error.reason == "Grafana refused the token (HTTP 401): invalid API key"
    assert "wrong-token-value" not in str(error) and "wrong-token-value" not in repr(hook)


async def test_5xx_and_429_are_retried(grafana: Receiver) -> None:
    grafana.queue(Reply(status=503), Reply(status=429, headers={"Retry-After": "0"}))
    hook = GrafanaWebhook(url=grafana.url("/"), api_key=TOKEN, retry_policy=FAST)
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=PM) as dispatcher:
        await dispatcher.emit("alert", {"message": "x"})
        await dispatcher.drain()
        stats = dispatcher.get_webhook_stats(hook.name)
    assert [r.answered for r in grafana.requests] == [503, 429, 200]
    assert stats["delivered_count"] == 1 and stats["details"] == {"annotation_id": 1}


def test_templates_override_text_and_fields() -> None:
    hook = GrafanaWebhook(
        url="https://grafana.example.com",
        api_key=TOKEN,
        templates={
            "deployment_risk": "Risky deploy of {data[service]}",
            "*": lambda event: {"tags": ["custom"], "timeEnd": 1},
        },
    )
    risky = render_request(
        hook, Event(event_type="deployment_risk", data={"service": "auth"}), plugin_manager=PM
    )
    assert risky.json_body()["text"] == "Risky deploy of auth"
    other = render_request(hook, Event(event_type="x"), plugin_manager=PM).json_body()
    assert other["tags"] == ["custom"] and other["timeEnd"] == 1
    assert risky.headers["Authorization"] == f"Bearer {TOKEN}"
    assert TOKEN in hook.secret_values()


@settings(max_examples=100, deadline=None)
@given(
    event_type=st.text(min_size=1, max_size=300).filter(emit_accepts),
    data=st.dictionaries(
        st.sampled_from(["title", "message", "service", "endpoint", "environment", "x", "file"]),
        st.text(max_size=20_000)
        | st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER)
        | st.none(),
        max_size=7,
    ),
    tags=st.lists(st.text(max_size=300), max_size=80),
)
def test_limits_hold_for_any_event(event_type: str, data: dict[str, Any], tags: list[str]) -> None:
    hook = GrafanaWebhook(url="https://grafana.example.com", api_key=TOKEN, tags=tags)
    body = render_request(
        hook, Event(event_type=event_type, data=data), plugin_manager=PM
    ).json_body()
    assert 0 < len(body["text"]) <= 10_000
    assert len(body["tags"]) <= 50 and len(set(body["tags"])) == len(body["tags"])
    assert all(0 < len(tag) <= 100 for tag in body["tags"])
    assert isinstance(body["time"], int)


def test_the_entry_point_is_discovered() -> None:
    pm = build_plugin_manager(env={"EMPATHY_WEBHOOKS_LOAD_PLUGINS": "grafana"})
    assert pm.has_plugin("grafana")
    assert any((m or {}).get("grafana") is GrafanaWebhook for m in pm.hook.webhook_types())
