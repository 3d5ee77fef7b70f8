"""ntfy: what reaches the server, byte for byte, through a real dispatcher."""

from __future__ import annotations

import importlib.metadata
from datetime import UTC, datetime

import empathy_webhooks_ntfy
import pytest
from empathy_webhooks_ntfy import NtfyWebhook

from empathy_webhooks_core import Event, WebhookDispatcher
from empathy_webhooks_core.delivery import render_request
from empathy_webhooks_core.plugins import build_plugin_manager
from empathy_webhooks_core.testing import Receiver, Reply, assert_header, assert_sent_json

FAST = {"initial_delay_seconds": 0.001, "max_delay_seconds": 0.01}
VULN = Event(
    event_type="security_vulnerability",
    event_id="evt_ntfy_golden",
    timestamp=datetime(2025, 11, 25, 14, 30, tzinfo=UTC),
    user_id="dev_123",
    empathy_level=4,
    data={
        "vulnerability": "SQL injection",
        "description": "User input reaches the login query unescaped.",
        "file": "auth.py",
        "line": 45,
        "severity": "critical",
        "url": "https://example.com/findings/1",
    },
)
GOLDEN = {
    "topic": "empathy-alerts",
    "title": "SQL injection in auth.py:45",
    "message": (
        "User input reaches the login query unescaped.\n"
        "empathy level 4 · user dev_123 · event evt_ntfy_golden"
    ),
    "priority": 5,
    "tags": ["rotating_light", "security_vulnerability"],
    "markdown": True,
    "click": "https://example.com/findings/1",
}


@pytest.fixture
def pm():  # the plugin alone, whether or not the distribution is installed
    return build_plugin_manager(load_entry_points=False, extra_plugins=[empathy_webhooks_ntfy])


def test_renders_the_golden_message(pm) -> None:
    request = render_request(NtfyWebhook(topic="empathy-alerts"), VULN, plugin_manager=pm)
    assert request.url == "https://ntfy.sh/"
    assert request.json_body() == GOLDEN
    assert "Authorization" not in request.headers


def test_repr_hides_topic_and_token() -> None:
    webhook = NtfyWebhook(topic="private-topic-name", token="tk_hidden_token_value")
    assert "private-topic-name" not in repr(webhook)
    assert "tk_hidden_token_value" not in repr(webhook)
    assert set(webhook.secret_values()) == {"private-topic-name", "tk_hidden_token_value"}


@pytest.mark.parametrize("topic", ["", "has space", "x" * 65, None])
def test_rejects_bad_topics_without_echoing_them(topic) -> None:
    with pytest.raises((ValueError, TypeError)) as caught:
        NtfyWebhook(topic=topic)
    if topic:
        assert topic not in str(caught.value)


def test_long_text_is_cut_to_ntfy_limits(pm) -> None:
    event = Event(event_type="alert", data={"title": "t" * 1000, "description": "é" * 10_000})
    body = render_request(NtfyWebhook(topic="a"), event, plugin_manager=pm).json_body()
    assert len(body["title"]) == 250 and body["title"].endswith("…")
    assert len(body["message"].encode()) <= 4096


def test_templates_override_fields(pm) -> None:
    webhook = NtfyWebhook(
        topic="t1", templates={"security_vulnerability": {"priority": 1, "click": None}}
    )
    body = render_request(webhook, VULN, plugin_manager=pm).json_body()
    assert body["priority"] == 1 and "click" not in body
    text = NtfyWebhook(topic="t1", templates={"*": "{event_type} for {user_id}"})
    body = render_request(text, VULN, plugin_manager=pm).json_body()
    assert body["message"] == "security_vulnerability for dev_123"


async def test_delivers_with_bearer_token_and_retries_429(pm) -> None:
    async with Receiver() as receiver:
        receiver.queue(Reply(status=429, headers={"Retry-After": "0"}, body={"code": 42901}))
        webhook = NtfyWebhook(
            server_url=receiver.url(""), topic="empathy-alerts", token="tk_abc", retry_policy=FAST
        )
        async with WebhookDispatcher([webhook], plugin_manager=pm) as dispatcher:
            await dispatcher.emit_event(VULN)
        assert [r.answered for r in receiver.requests] == [429, 200]
        assert receiver.requests[-1].path == "/"
        assert_sent_json(receiver, GOLDEN)
        assert_header(receiver, "Authorization", "Bearer tk_abc")
        assert_header(receiver, "Content-Type", "application/json")


def test_entry_point_is_declared() -> None:
    try:
        dist = importlib.metadata.distribution("empathy-webhooks-ntfy")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("empathy-webhooks-ntfy is not installed (pip install -e examples/ntfy)")
    (entry,) = [ep for ep in dist.entry_points if ep.group == "empathy_webhooks"]
    assert (entry.name, entry.value) == ("ntfy", "empathy_webhooks_ntfy")
    assert build_plugin_manager().has_plugin("ntfy")
