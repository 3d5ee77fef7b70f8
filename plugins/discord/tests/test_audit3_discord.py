"""Audit 3: Discord against its documented (and observed) wire behaviour and hostile data.

- an embed `url` whose host has no dot (`http://jenkins:8080/...`) makes Discord refuse the
  whole message (400 `{"embeds": ["0"]}`: grafana/grafana#65270, bugsink/bugsink#280,
  rogerrum/alertmanager-discord#19): such a link is shown as a field instead;
- a string template's `{data}` shows the event's keys too: they must not ping;
- terminal colour codes and control characters in event text are left out.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import empathy_webhooks_discord as plugin
import pytest
from empathy_webhooks_discord import DiscordWebhook
from empathy_webhooks_discord.format import embed_url_ok

from empathy_webhooks_core import Event, WebhookDispatcher
from empathy_webhooks_core.plugins import build_plugin_manager
from empathy_webhooks_core.testing import ReceivedRequest, Receiver, Reply

TOKEN = "dAuditThreeToken_0123456789abcdefABCDEF"
PATH = f"/api/webhooks/112233445566778899/{TOKEN}"
FAST = {"initial_delay_seconds": 0.001, "max_delay_seconds": 0.01}
ZWSP = "\u200b"


def hook(url: str = f"https://discord.com{PATH}", **options: Any) -> DiscordWebhook:
    return DiscordWebhook(webhook_url=url, **options)


def embed(data: dict[str, Any], event_type: str = "alert") -> dict[str, Any]:
    body = hook().render(Event(event_type=event_type, data=data)).json_body()
    [only] = body["embeds"]
    return dict(only)


# -- embed links -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://jenkins:8080/job/api/42/console",
        "http://localhost:3000/d/abc",
        "http://[::1]:9090/graph",
        "https://grafana./d/abc",
        "http://ci.example.com:notaport/x",
    ],
)
def test_a_link_discord_refuses_as_an_embed_url_is_shown_as_a_field(url: str) -> None:
    """Before: the event's `url` became the embed's `url` whatever its host, and Discord
    answered 400 to the whole message: the alert was lost (a final failure)."""
    shown = embed({"title": "Build failed", "url": url})
    assert "url" not in shown
    link = shown["fields"][-1]
    assert link["name"] == "Link" and link["inline"] is False
    assert link["value"].replace("\\", "") == url


@pytest.mark.parametrize(
    "url", ["https://ci.example.com/job/1", "http://10.0.0.5:8080/a", "https://grafana.internal./d"]
)
def test_a_link_with_a_dotted_host_stays_the_embed_url(url: str) -> None:
    shown = embed({"title": "Build failed", "url": url})
    assert shown["url"] == url
    assert all(field["name"] != "Link" for field in shown.get("fields", []))


def test_embed_url_ok() -> None:
    assert embed_url_ok("https://discord.com/x")
    assert not embed_url_ok("ftp://files.example.com/x")
    assert not embed_url_ok("http://intranet/x")


def fake_discord(request: ReceivedRequest) -> Reply:
    """Discord's execute webhook, refusing an embed URL without a dotted host as it does."""
    for item in request.json().get("embeds", []):
        host = urlsplit(item.get("url", "https://x.example")).hostname or ""
        if "." not in host:
            return Reply(status=400, body={"embeds": ["0"]})
    return Reply(status=200, body={"id": "1300000000000000001"})


@pytest.fixture
async def discord() -> AsyncIterator[Receiver]:
    async with Receiver() as receiver:
        receiver.handler = fake_discord
        yield receiver


async def test_an_alert_linking_an_internal_host_is_delivered(discord: Receiver) -> None:
    failures: list[Any] = []
    webhook = hook(
        url=discord.url(PATH), retry_policy=FAST, on_failure=lambda w, e, x: failures.append(x)
    )
    manager = build_plugin_manager(load_entry_points=False, extra_plugins=[plugin])
    async with WebhookDispatcher(webhooks=[webhook], plugin_manager=manager) as dispatcher:
        await dispatcher.emit("alert", {"title": "Disk full", "url": "http://grafana:3000/d/x"})
        await dispatcher.drain()
    assert failures == []
    assert [r.answered for r in discord.requests] == [200]


# -- hostile event data ----------------------------------------------------------------------


def test_a_string_template_of_a_whole_object_makes_keys_mention_safe_too() -> None:
    """Before: `{data}` made only string values mention-safe; a key `@everyone` pinged the
    channel on a webhook whose content may ping (`allowed_mentions={"parse": ["everyone"]}`),
    and the values showed `@\\u200beveryone` (the repr of the zero-width space) as text."""
    webhook = hook(templates={"alert": "Alert: {data}"}, allowed_mentions={"parse": ["everyone"]})
    event = Event(event_type="alert", data={"@everyone": 1, "who": "@here <@123>"})
    content = webhook.render(event).json_body()["content"]
    assert "@everyone" not in content and "@here" not in content and "<@123" not in content
    assert f"@{ZWSP}everyone" in content and f"@{ZWSP}here" in content
    assert "\\u200b" not in content


def test_terminal_colour_codes_and_controls_are_left_out() -> None:
    error = "\x1b[1;31mAssertionError\x1b[0m: got\x00 1\x07\r\nexpected 2"
    body = hook().render(Event(event_type="test_failure", data={"test": "t", "error": error}))
    sent = body.body.decode()
    assert "[31m" not in sent and "[1;31m" not in sent and "\\u001b" not in sent
    assert "\\u0000" not in sent and "\\u0007" not in sent
    [field] = [f for f in body.json_body()["embeds"][0]["fields"] if f["name"] == "Error"]
    assert field["value"] == "AssertionError: got 1\nexpected 2"


def test_a_user_id_with_controls_gives_a_clean_footer() -> None:
    event = Event(event_type="alert", data={"title": "x"}, user_id="dev\x00_1\x1b[2J")
    footer = hook().render(event).json_body()["embeds"][0]["footer"]["text"]
    assert footer == "Detected by: dev_1"
    assert json.dumps(footer).isascii()
