"""Audit: PagerDuty dedup keys and the event size limit, against hostile event data."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import empathy_webhooks_pagerduty as plugin
import pytest
from empathy_webhooks_pagerduty import PagerDutyWebhook
from empathy_webhooks_pagerduty.format import EVENT_BYTES_LIMIT

from empathy_webhooks_core import Event, WebhookDispatcher
from empathy_webhooks_core.plugins import build_plugin_manager
from empathy_webhooks_core.testing import ReceivedRequest, Receiver, Reply

KEY = "0123456789abcdef0123456789abcdef"
FAST = {"initial_delay_seconds": 0.001, "max_delay_seconds": 0.01}


def accept(request: ReceivedRequest) -> Reply:
    body = request.json()
    return Reply(status=202, body={"status": "success", "dedup_key": body.get("dedup_key")})


@pytest.fixture
async def pagerduty() -> AsyncIterator[Receiver]:
    async with Receiver() as receiver:
        receiver.handler = accept
        yield receiver


def manager() -> Any:
    return build_plugin_manager(load_entry_points=False, extra_plugins=[plugin])


@pytest.mark.parametrize("field", ["source", "hostname", "environment", "env"])
async def test_one_alert_on_two_sources_is_two_incidents(pagerduty: Receiver, field: str) -> None:
    """`source` / `hostname` is what PagerDuty shows as the alert's source (and `environment`
    its group): "Disk full" on db-1 and on db-2 are two incidents, or db-2 pages nobody."""
    hook = PagerDutyWebhook(api_key=KEY, events_url=pagerduty.url(""), retry_policy=FAST)
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager()) as d:
        await d.emit("alert", {"title": "Disk full", field: "db-1"}, severity="critical")
        await d.emit("alert", {"title": "Disk full", field: "db-2"}, severity="critical")
        await d.drain()
        await d.emit("alert_resolved", {"title": "Disk full", field: "db-2"})
    first, second, resolve = (r.json() for r in pagerduty.requests)
    assert first["dedup_key"] != second["dedup_key"]
    assert resolve["event_action"] == "resolve"
    assert resolve["dedup_key"] == second["dedup_key"]


async def test_a_huge_link_never_keeps_the_page_from_being_sent(pagerduty: Receiver) -> None:
    """A link that alone passes PagerDuty's 512 KB is left out; the alert still pages."""
    hook = PagerDutyWebhook(api_key=KEY, events_url=pagerduty.url(""), retry_policy=FAST)
    url = "https://grafana.example/d/x?" + "q" * 600_000
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager()) as d:
        await d.emit("alert", {"title": "Disk full", "host": "db-1", "url": url}, severity="high")
    (request,) = pagerduty.requests
    assert len(request.body) <= EVENT_BYTES_LIMIT
    body = request.json()
    assert body["event_action"] == "trigger"
    assert body["payload"]["summary"].endswith("Disk full")
    assert "links" not in body
    assert body["payload"]["custom_details"]["truncated"] is True


def test_a_reasonable_link_is_kept() -> None:
    hook = PagerDutyWebhook(api_key=KEY)
    url = "https://grafana.example/d/abc?var-host=db-1"
    body = json.loads(
        hook.render(Event(event_type="alert", data={"title": "Disk full", "url": url})).body
    )
    assert body["links"] == [{"href": url, "text": "Details"}]


def test_the_readme_s_alert_pages_with_what_it_is_in_its_summary() -> None:
    """The README's example names its alert only in an `alert` field: the page said "Alert",
    the words it named were in the details alone."""
    hook = PagerDutyWebhook(api_key=KEY)
    event = Event(
        event_type="alert",
        data={"service": "checkout", "alert": "error budget burn"},
        severity="high",
    )
    payload = json.loads(hook.render(event).body)["payload"]
    assert payload["summary"] == "Alert: error budget burn"
    assert payload["source"] == "checkout"
