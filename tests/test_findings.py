"""Finding keys and lifecycle actions shared by incident-style plugins (PagerDuty, Datadog)."""

from __future__ import annotations

from empathy_webhooks_core import Event, Webhook
from empathy_webhooks_core.findings import finding_key, lifecycle_action
from empathy_webhooks_core.templating import merge_payload, render_template


def test_trigger_and_resolve_of_one_finding_share_a_key() -> None:
    trigger = Event(
        event_type="performance_issue",
        data={"endpoint": "/api/users", "avg_response_time": 850},
        severity="high",
    )
    resolve = Event(
        event_type="performance_issue_resolved",
        data={"endpoint": "/api/users", "avg_response_time": 120},
    )
    other = Event(event_type="performance_issue", data={"endpoint": "/api/orders"})
    assert finding_key(trigger) == finding_key(resolve) != finding_key(other)
    assert finding_key(trigger).startswith("empathy:performance_issue:")
    assert (lifecycle_action(trigger), lifecycle_action(resolve)) == ("trigger", "resolve")


def test_explicit_keys_and_status_words() -> None:
    event = Event(event_type="alert", data={"dedup_key": "srv01/HTTP", "status": "Acknowledged"})
    assert finding_key(event) == "srv01/HTTP"
    assert lifecycle_action(event) == "acknowledge"
    long = Event(event_type="alert", data={"incident_key": "k" * 300})
    assert len(finding_key(long, max_length=100)) == 100
    assert finding_key(long, max_length=100) != finding_key(
        Event(event_type="alert"), max_length=100
    )


def test_templates_render_and_merge() -> None:
    webhook = Webhook(templates={"alert": "{event_type}: {data[x]}", "*": lambda e: {"a": 1}})
    assert render_template(webhook, Event(event_type="alert", data={"x": 5})) == "alert: 5"
    assert render_template(webhook, Event(event_type="other")) == {"a": 1}
    assert merge_payload({"a": {"b": 1, "c": 2}, "d": 3}, {"a": {"b": 9}, "d": None}) == {
        "a": {"b": 9, "c": 2}
    }
