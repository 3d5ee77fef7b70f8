"""Discord's `/slack` and `/github` endpoints read other services' formats, never Discord's
embeds (reference targets.md, section 7): a URL ending in them is neither claimed by the
Discord plugin nor accepted by `DiscordWebhook`.

Delivery keeps the URL as the user wrote it: a `LoopbackResolver` sends discord.com to an https
receiver on 127.0.0.1 that answers as Discord's Slack-compatible endpoint does. Nothing leaves
the machine.
"""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from empathy_webhooks_core import CustomWebhook, Event, WebhookDispatcher, service_for_url
from empathy_webhooks_core.plugins import build_plugin_manager
from empathy_webhooks_core.testing import LoopbackResolver, ReceivedRequest, Receiver, Reply

pytest.importorskip("empathy_webhooks_slack")
discord = pytest.importorskip("empathy_webhooks_discord")
trustme = pytest.importorskip("trustme")

TOKEN = "STOP38DISCORDTOKENxyz0123456789"
BASE = f"https://discord.com/api/webhooks/1234567890/{TOKEN}"


def slack_compatible_answer(request: ReceivedRequest) -> Reply:
    """Discord's `/slack`: Slack's `text` (or legacy `attachments`) makes a message; a body
    with neither is an empty message to Discord (400, code 50006)."""
    body = request.json()
    if not isinstance(body, dict) or not (body.get("text") or body.get("attachments")):
        return Reply(status=400, body={"message": "Cannot send an empty message", "code": 50006})
    return Reply(status=200, body="ok")


@pytest.fixture(scope="module")
def ca() -> Any:
    return trustme.CA()


@pytest.fixture
async def receiver(ca: Any) -> AsyncIterator[Receiver]:
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("discord.com").configure_cert(server)
    async with Receiver(ssl_context=server) as started:
        started.handler = slack_compatible_answer
        yield started


@pytest.fixture
async def session(ca: Any, receiver: Receiver) -> AsyncIterator[aiohttp.ClientSession]:
    client = ssl.create_default_context()
    ca.configure_trust(client)
    connector = aiohttp.TCPConnector(
        resolver=LoopbackResolver({"discord.com": receiver}), ssl=client
    )
    async with aiohttp.ClientSession(connector=connector) as opened:
        yield opened


def plugins(load: str) -> Any:
    return build_plugin_manager(env={"EMPATHY_WEBHOOKS_LOAD_PLUGINS": load})


@pytest.mark.parametrize(
    ("url", "service"),
    [
        (BASE, "discord"),
        (BASE + "/", "discord"),
        (BASE.replace("/api/", "/api/v10/") + "?thread_id=1", "discord"),
        (BASE + "/slack", "slack"),
        (BASE + "/slack/", "slack"),
        (BASE.replace("discord.com", "discordapp.com") + "/Slack", "slack"),
        (BASE + "/github", None),
        (BASE + "/messages/1", None),
    ],
)
def test_a_discord_url_names_the_service_whose_format_it_reads(
    url: str, service: str | None
) -> None:
    assert service_for_url(url) == service


async def test_a_generic_webhook_to_discords_slack_endpoint_is_sent_slacks_message(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    webhook = CustomWebhook(name="ops", url=BASE + "/slack")
    pm = plugins("slack,discord")
    async with WebhookDispatcher(webhooks=[webhook], session=session, plugin_manager=pm) as d:
        [claimed] = d.webhooks
        await d.emit("alert", {"title": "Disk almost full"})
        await d.drain()
        stats = d.get_webhook_stats("ops")
    assert claimed.kind == "slack"
    [request] = receiver.requests
    assert request.path == f"/api/webhooks/1234567890/{TOKEN}/slack"
    assert dict(request.query) == {}  # no `?wait=true`: Discord's native query
    body = json.loads(request.body)
    assert "embeds" not in body
    assert "Disk almost full" in body["text"]
    assert (stats["delivered_count"], stats["failed_count"]) == (1, 0)


async def test_a_generic_webhook_to_discords_github_endpoint_is_refused_at_start() -> None:
    for load in ("slack,discord", ""):
        webhook = CustomWebhook(name="ops", url=BASE + "/github")
        with pytest.raises(ValueError) as refused:
            WebhookDispatcher(webhooks=[webhook], plugin_manager=plugins(load))
        text = str(refused.value)
        assert "GitHub-compatible endpoint (`/github`)" in text
        assert "Drop `/github`" in text and "raw=True" in text
        assert TOKEN not in text and TOKEN not in repr(refused.value)
    # Sent as asked when the user says so.
    raw = CustomWebhook(name="ops", url=BASE + "/github", raw=True)
    [kept] = WebhookDispatcher(webhooks=[raw], plugin_manager=plugins("slack,discord")).webhooks
    assert kept is raw


def test_without_the_slack_plugin_discord_does_not_take_its_slack_endpoint(
    caplog: pytest.LogCaptureFixture,
) -> None:
    webhook = CustomWebhook(name="ops", url=BASE + "/slack")
    with caplog.at_level(logging.WARNING, logger="empathy_webhooks"):
        [kept] = WebhookDispatcher(webhooks=[webhook], plugin_manager=plugins("discord")).webhooks
    assert kept.kind == "custom"
    said = [r for r in caplog.records if "webhook_url_names_a_service" in r.getMessage()]
    assert len(said) == 1 and "plugin='slack'" in said[0].getMessage()
    assert TOKEN not in caplog.text


@pytest.mark.parametrize(
    ("suffix", "advice"),
    [
        ("/slack", "use SlackWebhook with this URL, or drop /slack"),
        ("/SLACK/", "use SlackWebhook with this URL, or drop /slack"),
        ("/github", "drop /github"),
    ],
)
def test_discord_webhook_refuses_an_endpoint_for_another_format(suffix: str, advice: str) -> None:
    with pytest.raises(ValueError) as refused:
        discord.DiscordWebhook(name="ops", webhook_url=BASE + suffix)
    assert advice in str(refused.value)
    assert TOKEN not in str(refused.value) and TOKEN not in repr(refused.value)


def test_discord_webhook_still_posts_embeds_to_its_own_endpoint() -> None:
    webhook = discord.DiscordWebhook(name="ops", webhook_url=BASE + "/")
    dispatcher = WebhookDispatcher(webhooks=[webhook], plugin_manager=plugins("discord"))
    request = dispatcher.render(webhook, Event(event_type="alert", data={"title": "x"}))
    assert request.url.endswith("?wait=true") and "embeds" in json.loads(request.body)
