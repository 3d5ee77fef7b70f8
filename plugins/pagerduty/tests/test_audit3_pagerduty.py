"""Audit 3: what a template or the data says about severity and source reaches PagerDuty as
meant, long dedup keys never merge two alerts, and a 429's own wait is honoured."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import empathy_webhooks_pagerduty as plugin
import pytest
from empathy_webhooks_pagerduty import PagerDutyWebhook

from empathy_webhooks_core import Event, Outcome, OutgoingRequest, Response, WebhookDispatcher
from empathy_webhooks_core.plugins import build_plugin_manager
from empathy_webhooks_core.testing import Receiver

from .test_pagerduty import fake_pagerduty

KEY = "0123456789abcdef0123456789abcdef"
FAST = {"initial_delay_seconds": 0.001, "max_delay_seconds": 0.01}


def manager() -> Any:
    return build_plugin_manager(load_entry_points=False, extra_plugins=[plugin])


def payload(hook: PagerDutyWebhook, event: Event) -> dict[str, Any]:
    body = json.loads(hook.render(event).body)
    assert isinstance(body, dict)
    return body["payload"]  # type: ignore[no-any-return]


@pytest.fixture
async def pagerduty() -> AsyncIterator[Receiver]:
    async with Receiver() as receiver:
        receiver.handler = fake_pagerduty
        yield receiver


@pytest.mark.parametrize(
    ("written", "sent"),
    [
        ("Critical", "critical"),
        (" CRITICAL ", "critical"),
        ("Warning", "warning"),
        ("high", "error"),
        ("medium", "warning"),
        ("low", "info"),
        ("fatal", "critical"),
        ("sev-whatever", "error"),
        (3, "error"),
    ],
)
def test_a_templates_severity_keeps_its_meaning(written: Any, sent: str) -> None:
    """Before: anything but PagerDuty's four lower-case words became `error`: a template's
    "Critical" paged as an error (no high-urgency escalation) and its "low" as an error too."""
    hook = PagerDutyWebhook(api_key=KEY, templates={"alert": {"payload": {"severity": written}}})
    assert payload(hook, Event(event_type="alert", data={"title": "Disk full"}))["severity"] == sent


@pytest.mark.parametrize(
    ("data", "source"),
    [
        ({"source": "   ", "host": "db-1"}, "db-1"),
        ({"source": "\n", "host": " ", "service": "checkout"}, "checkout"),
        ({"host": " db-2 "}, "db-2"),
        ({"source": "  "}, "empathy-framework"),
    ],
)
def test_a_blank_source_in_the_data_is_no_source(data: dict[str, Any], source: str) -> None:
    """PagerDuty requires `payload.source` and refuses a blank one (400: the page is lost):
    blank text in the data gives way to the next field, then to the default."""
    event = Event(event_type="alert", data={"title": "Disk full", **data})
    assert payload(PagerDutyWebhook(api_key=KEY), event)["source"] == source


async def test_long_dedup_keys_sharing_their_first_255_characters_stay_two_alerts(
    pagerduty: Receiver,
) -> None:
    """PagerDuty takes 255 characters: two explicit keys cut there would be one incident (the
    second pages nobody) and the resolve of one would resolve both."""
    head = "checkout/" + "x" * 300
    hook = PagerDutyWebhook(api_key=KEY, events_url=pagerduty.url(""), retry_policy=FAST)
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager()) as d:
        await d.emit("alert", {"title": "Disk full", "dedup_key": head + "/db-1"})
        await d.emit("alert", {"title": "Disk full", "dedup_key": head + "/db-2"})
        await d.drain()
        await d.emit("alert_resolved", {"dedup_key": head + "/db-2"})
    first, second, resolve = (request.json() for request in pagerduty.requests)
    assert [r.answered for r in pagerduty.requests] == [202, 202, 202]
    assert len(first["dedup_key"]) <= 255 and len(second["dedup_key"]) <= 255
    assert first["dedup_key"] != second["dedup_key"]
    assert resolve["event_action"] == "resolve" and resolve["dedup_key"] == second["dedup_key"]


@pytest.mark.parametrize(
    ("url", "enqueue", "change"),
    [
        (
            "https://relay.example.com/pd?token=abc",
            "https://relay.example.com/pd/v2/enqueue?token=abc",
            "https://relay.example.com/pd/v2/change/enqueue?token=abc",
        ),
        (
            "https://events.pagerduty.com/v2/enqueue?x=1",
            "https://events.pagerduty.com/v2/enqueue?x=1",
            "https://events.pagerduty.com/v2/change/enqueue?x=1",
        ),
        (
            "https://events.pagerduty.com/#top",
            "https://events.pagerduty.com/v2/enqueue",
            "https://events.pagerduty.com/v2/change/enqueue",
        ),
        (
            "https://events.eu.pagerduty.com/",
            "https://events.eu.pagerduty.com/v2/enqueue",
            "https://events.eu.pagerduty.com/v2/change/enqueue",
        ),
    ],
)
def test_the_enqueue_path_goes_before_an_events_urls_query(
    url: str, enqueue: str, change: str
) -> None:
    """Before: `/v2/enqueue` was appended to the whole address, after its query
    (`...?token=abc/v2/enqueue`): every page went to the wrong path, with a mangled token."""
    hook = PagerDutyWebhook(api_key=KEY, events_url=url)
    assert (hook.enqueue_url, hook.change_url) == (enqueue, change)


async def test_a_relay_with_a_query_token_gets_the_page_on_the_enqueue_path(
    pagerduty: Receiver,
) -> None:
    hook = PagerDutyWebhook(
        api_key=KEY, events_url=pagerduty.url("/pd") + "?token=relay-t0ken", retry_policy=FAST
    )
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager()) as d:
        await d.emit("alert", {"title": "Disk full"})
        await d.emit("deployment", {"title": "v2.1 shipped"})
    trigger, change = pagerduty.requests
    assert (trigger.path, trigger.query) == ("/pd/v2/enqueue", {"token": "relay-t0ken"})
    assert (change.path, change.query) == ("/pd/v2/change/enqueue", {"token": "relay-t0ken"})
    assert "relay-t0ken" not in hook.url and "relay-t0ken" not in repr(hook)


def test_a_429_with_a_retry_after_is_honoured() -> None:
    hook = PagerDutyWebhook(api_key=KEY)
    request = OutgoingRequest(url=hook.enqueue_url)
    verdict = plugin.classify_response(
        hook, request, Response(status=429, headers={"retry-after": "30"})
    )
    assert (verdict.outcome, verdict.retry_after, verdict.pause_webhook) == (
        Outcome.RETRY,
        30.0,
        True,
    )
