"""Audit 3: the annotation goes to `/api/annotations` whatever address was pasted, at the
event's time in epoch milliseconds, with the token in the Authorization header only."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import empathy_webhooks_grafana as plugin
import pytest
from empathy_webhooks_grafana import GrafanaWebhook

from empathy_webhooks_core import Event, WebhookDispatcher
from empathy_webhooks_core.delivery import render_request
from empathy_webhooks_core.plugins import build_plugin_manager
from empathy_webhooks_core.testing import ReceivedRequest, Receiver, Reply

TOKEN = "glsa_audit3_0123456789abcdefTOKEN"
PM = build_plugin_manager(load_entry_points=False, extra_plugins=[plugin])


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://grafana.example.com", "https://grafana.example.com/api/annotations"),
        ("https://grafana.example.com/", "https://grafana.example.com/api/annotations"),
        ("https://ops.example.com/grafana/", "https://ops.example.com/grafana/api/annotations"),
        (
            "https://grafana.example.com/api/annotations/",
            "https://grafana.example.com/api/annotations",
        ),
        # The address bar's, pasted as is: the path goes before the query.
        (
            "https://grafana.example.com/?orgId=1",
            "https://grafana.example.com/api/annotations?orgId=1",
        ),
        ("https://grafana.example.com/#/alerting", "https://grafana.example.com/api/annotations"),
        ("https://grafana.example.com/?", "https://grafana.example.com/api/annotations"),
    ],
)
def test_the_annotations_path_goes_at_the_end_of_the_path(url: str, expected: str) -> None:
    """Before: `https://grafana.example.com/?orgId=1` became
    `https://grafana.example.com/?orgId=1/api/annotations`: every annotation posted to `/`."""
    assert GrafanaWebhook(url=url, api_key=TOKEN).annotations_url == expected


def test_time_is_integer_epoch_milliseconds_whatever_the_events_offset() -> None:
    moment = datetime(2025, 1, 1, 14, 0, 0, 999_999, tzinfo=timezone(timedelta(hours=2)))
    event = Event(event_type="alert", data={"title": "Deploy"}, timestamp=moment)
    hook = GrafanaWebhook(url="https://g.example", api_key=TOKEN)
    body = render_request(hook, event, plugin_manager=PM).json_body()
    assert body["time"] == 1_735_732_800_999
    assert isinstance(body["time"], int)


async def test_the_token_travels_as_a_bearer_header_only_and_never_in_a_reason() -> None:
    async with Receiver() as grafana:

        def handle(request: ReceivedRequest) -> Reply:
            return Reply(status=403, body={"message": f"token {TOKEN} lacks annotations:create"})

        grafana.handler = handle
        failures: list[object] = []
        hook = GrafanaWebhook(
            url=grafana.url("/") + "?orgId=1",
            api_key=TOKEN,
            retry_policy={"max_retries": 0},
            on_failure=lambda webhook, event, error: failures.append(error),
        )
        async with WebhookDispatcher(webhooks=[hook], plugin_manager=PM) as dispatcher:
            await dispatcher.emit("alert", {"title": "Disk full"})
            await dispatcher.drain()
            dead = await dispatcher.dead_letters()
        [request] = grafana.requests
    assert request.path == "/api/annotations" and request.query == {"orgId": "1"}
    assert request.header("Authorization") == f"Bearer {TOKEN}"
    assert TOKEN not in request.body.decode()
    [error] = failures
    assert str(error).count("***") >= 1 and TOKEN not in str(error)
    assert TOKEN not in repr(dead) and TOKEN not in repr(hook)
