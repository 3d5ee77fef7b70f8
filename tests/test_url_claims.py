"""URLs that name their service (`webhook_for_url`): the reference's Quick Start points a
`WebhookConfig` at `hooks.slack.com` and promises a Slack message, so it must get one.

Delivery keeps the URL exactly as the reference writes it: a `LoopbackResolver` sends
`hooks.slack.com` to an https receiver on 127.0.0.1 that answers as Slack does (400
`invalid_payload` for a body with neither `text` nor `blocks`). Nothing leaves the machine.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import aiohttp
import pytest

from empathy_webhooks_core import (
    CustomWebhook,
    Event,
    Webhook,
    WebhookConfig,
    WebhookDispatcher,
    hookimpl,
    service_for_url,
)
from empathy_webhooks_core.config import parse_config
from empathy_webhooks_core.plugins import PluginContractError, build_plugin_manager
from empathy_webhooks_core.testing import LoopbackResolver, ReceivedRequest, Receiver, Reply

slack_plugin = pytest.importorskip("empathy_webhooks_slack")
trustme = pytest.importorskip("trustme")

QUICK_START_URL = "https://hooks.slack.com/services/YOUR/WEBHOOK/URL"
PREDICTION = {
    "prediction": "Auth deployment may conflict with user-service v2.1",
    "confidence": 0.87,
    "recommendation": "Deploy auth behind feature flag",
    "context": {"service": "authentication", "environment": "production"},
}


def slack_answer(request: ReceivedRequest) -> Reply:
    """An incoming webhook's answers: `ok`, or 400 `invalid_payload` / `no_text`."""
    try:
        body = request.json()
    except ValueError:
        return Reply(status=400, body="invalid_payload")
    if not isinstance(body, dict) or ("text" not in body and "blocks" not in body):
        return Reply(status=400, body="invalid_payload")
    if not str(body.get("text") or "").strip() and not body.get("blocks"):
        return Reply(status=400, body="no_text")
    return Reply(status=200, body="ok")


@pytest.fixture(scope="module")
def ca() -> Any:
    return trustme.CA()


@pytest.fixture
async def slack(ca: Any) -> AsyncIterator[Receiver]:
    """An https receiver with a certificate for hooks.slack.com (from a test CA)."""
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("hooks.slack.com").configure_cert(server)
    async with Receiver(ssl_context=server) as receiver:
        receiver.handler = slack_answer
        yield receiver


@pytest.fixture
async def session(ca: Any, slack: Receiver) -> AsyncIterator[aiohttp.ClientSession]:
    """A session in which hooks.slack.com is the loopback receiver, its certificate trusted
    (and verified against the name: nothing is relaxed)."""
    client = ssl.create_default_context()
    ca.configure_trust(client)
    connector = aiohttp.TCPConnector(
        resolver=LoopbackResolver({"hooks.slack.com": slack}), ssl=client
    )
    async with aiohttp.ClientSession(connector=connector) as opened:
        yield opened


@pytest.fixture
def warnings(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.WARNING, logger="empathy_webhooks"):
        yield caplog


def quick_start_webhook() -> WebhookConfig:
    # The reference's Quick Start, as written.
    webhook = WebhookConfig(
        url="https://hooks.slack.com/services/YOUR/WEBHOOK/URL",
        events=["prediction", "alert", "completion"],
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    return webhook


def test_the_quick_start_webhook_renders_a_slack_message() -> None:
    webhook = quick_start_webhook()
    body = webhook.render("prediction", PREDICTION, user_id="developer_123", empathy_level=4)
    message = body.json_body()
    assert message["text"] == "🔮 Prediction: Auth deployment may conflict with user-service v2.1"
    assert message["blocks"][0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "🔮 Level 4 Prediction"},
    }
    assert body.url == QUICK_START_URL
    # The object the user holds keeps working with a dispatcher too, under its own name.
    dispatcher = WebhookDispatcher(webhooks=[webhook])
    event = Event(event_type="prediction", data=PREDICTION, empathy_level=4)
    assert dispatcher.render(webhook, event).json_body()["text"] == message["text"]
    assert dispatcher.webhook_names() == [webhook.name]
    assert dispatcher.webhook(webhook.name).kind == "slack"


async def test_the_quick_start_snippet_is_accepted_by_a_slack_like_receiver(
    slack: Receiver, session: aiohttp.ClientSession, warnings: pytest.LogCaptureFixture
) -> None:
    webhook = quick_start_webhook()
    # Initialize with webhook (EmpathyOS(..., webhooks=[webhook]) in the reference)
    async with WebhookDispatcher(webhooks=[webhook], session=session) as empathy:
        # Webhooks fire automatically on events
        await empathy.emit("prediction", PREDICTION, user_id="developer_123", empathy_level=4)
        await empathy.emit("test_failure", {})  # not subscribed: not sent
        await empathy.drain()
        stats = empathy.get_webhook_stats(webhook.name)
        dead = await empathy.dead_letters()
    [request] = slack.requests
    assert request.path == "/services/YOUR/WEBHOOK/URL"
    assert request.header("Host") == "hooks.slack.com"
    body = request.json()
    assert body["text"].startswith("🔮 Prediction: Auth deployment may conflict")
    assert body["blocks"] and "event_type" not in body
    assert dead == [] and stats["delivered_count"] == 1
    assert "warning" not in warnings.text.lower()


async def test_without_the_slack_plugin_one_warning_names_it_and_slack_refuses_the_envelope(
    slack: Receiver, session: aiohttp.ClientSession, warnings: pytest.LogCaptureFixture
) -> None:
    pm = build_plugin_manager(load_entry_points=False)
    webhook = quick_start_webhook()
    event = Event(event_type="prediction", data=PREDICTION)
    async with WebhookDispatcher(webhooks=[webhook], session=session, plugin_manager=pm) as one:
        assert one.render(webhook, event).json_body()["event_type"] == "prediction"
        await one.emit_event(event)
    WebhookDispatcher(webhooks=[webhook], plugin_manager=pm)  # the same webhook again
    notes = [r.getMessage() for r in warnings.records if "names_a_service" in r.getMessage()]
    assert len(notes) == 1
    assert "pip install empathy-webhooks-slack" in notes[0]
    assert "YOUR/WEBHOOK" not in warnings.text  # the URL is the credential
    [request] = slack.requests
    assert request.json()["event_type"] == "prediction"
    assert slack_answer(request).status == 400


async def test_raw_true_sends_the_envelope_on_purpose(
    slack: Receiver, session: aiohttp.ClientSession, warnings: pytest.LogCaptureFixture
) -> None:
    webhook = CustomWebhook(url=QUICK_START_URL, raw=True, retry_policy={"max_retries": 0})
    async with WebhookDispatcher(webhooks=[webhook], session=session) as dispatcher:
        await dispatcher.emit("alert", {"message": "x"})
        await dispatcher.drain()
        dead = await dispatcher.dead_letters()
    assert slack.requests[0].json()["event_type"] == "alert"
    assert "invalid_payload" in str(dead[0].error)
    assert "names_a_service" not in warnings.text and "ignores" not in warnings.text


def test_a_config_file_may_give_just_a_url_and_type_custom_opts_out() -> None:
    config = parse_config(
        {
            "webhooks": [
                {"name": "team", "url": QUICK_START_URL, "events": ["alert"]},
                {"name": "envelope", "type": "custom", "url": QUICK_START_URL},
                {"name": "mine", "url": "https://example.com/hook"},
            ]
        },
        env={},
    )
    team, envelope, mine = config.webhooks
    assert (team.kind, envelope.kind, mine.kind) == ("custom", "custom", "custom")
    dispatcher = WebhookDispatcher(webhooks=list(config.webhooks))
    assert [w.kind for w in dispatcher.webhooks] == ["slack", "custom", "custom"]
    assert dispatcher.webhook("team").events == ("alert",)
    event = Event(event_type="alert", data={"message": "disk full"})
    assert "blocks" in dispatcher.render("team", event).json_body()
    assert dispatcher.render("envelope", event).json_body()["event_type"] == "alert"


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        (
            "https://prod-12.westus.logic.azure.com:443/workflows/0a/triggers/manual/paths/invoke?sig=s",
            "teams",
        ),
        ("https://acme.webhook.office.com/webhookb2/abc@def/IncomingWebhook/x/y", "teams"),
        (
            "https://default0a.1b.environment.api.powerplatform.com/powerautomate/automations/x",
            "teams",
        ),
        ("https://discord.com/api/webhooks/123/token", "discord"),
        ("https://discordapp.com/api/webhooks/123/token", "discord"),
        ("https://hooks.slack.com/services/T0/B0/x", "slack"),
    ],
)
def test_chat_service_urls_are_claimed_by_their_plugin(url: str, kind: str) -> None:
    pytest.importorskip(f"empathy_webhooks_{kind}")
    assert service_for_url(url) == kind
    webhook = CustomWebhook(name="ops", url=url, events=["alert"], retry_policy={"max_retries": 7})
    [claimed] = WebhookDispatcher(webhooks=[webhook]).webhooks
    assert claimed.kind == kind
    assert (claimed.name, claimed.events, claimed.retry_policy.max_retries) == (
        "ops",
        ("alert",),
        7,
    )
    assert "token" not in repr(claimed) and "sig=s" not in repr(claimed)


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.slack.com/services/x",  # not https: a test or a proxy, not Slack
        "https://hooks.slack.com.evil.example/services/x",
        "https://discord.com/channels/1/2",
        "https://logic.azure.com/x",
        "https://example.com/hooks.slack.com",
    ],
)
def test_urls_that_only_look_like_a_service_are_left_alone(url: str) -> None:
    assert service_for_url(url) is None
    [kept] = WebhookDispatcher(webhooks=[CustomWebhook(url=url)]).webhooks
    assert kept.kind == "custom"


def test_a_pagerduty_url_without_a_routing_key_says_what_to_write() -> None:
    pytest.importorskip("empathy_webhooks_pagerduty")
    webhook = CustomWebhook(url="https://events.pagerduty.com/v2/enqueue")
    with pytest.raises(ValueError, match=r"needs a routing key .*type = \"pagerduty\""):
        WebhookDispatcher(webhooks=[webhook])


def test_ignored_generic_settings_are_named_once(warnings: pytest.LogCaptureFixture) -> None:
    webhook = CustomWebhook(url=QUICK_START_URL, method="PUT", headers={"X-Team": "ops"})
    WebhookDispatcher(webhooks=[webhook])
    WebhookDispatcher(webhooks=[webhook])
    [note] = [r.getMessage() for r in warnings.records]
    assert "method PUT and headers X-Team are not used" in note


class NtfyWebhook(CustomWebhook):
    kind = "ntfy"


class NtfyPlugin:
    """A third-party plugin claiming its own service's URLs."""

    @hookimpl
    def webhook_types(self) -> dict[str, type[Webhook]]:
        return {"ntfy": NtfyWebhook}

    @hookimpl
    def webhook_for_url(self, url: str, options: Mapping[str, Any]) -> Webhook | None:
        if not url.startswith("https://ntfy.example/"):
            return None
        return NtfyWebhook(url=url, **options)


class RenamingPlugin:
    @hookimpl
    def webhook_for_url(self, url: str, options: Mapping[str, Any]) -> Webhook | None:
        return CustomWebhook(name="someone_else", url=url)


def test_a_third_party_plugin_claims_its_urls() -> None:
    pm = build_plugin_manager(load_entry_points=False, extra_plugins=[NtfyPlugin()])
    mine = CustomWebhook(name="phone", url="https://ntfy.example/alerts")
    other = CustomWebhook(name="other", url="https://example.com/hook")
    dispatcher = WebhookDispatcher(webhooks=[mine, other], plugin_manager=pm)
    assert [type(w) for w in dispatcher.webhooks] == [NtfyWebhook, CustomWebhook]
    assert dispatcher.webhooks[1] is other


def test_a_claim_that_drops_the_users_name_is_a_plugin_bug() -> None:
    pm = build_plugin_manager(load_entry_points=False, extra_plugins=[RenamingPlugin()])
    with pytest.raises(PluginContractError, match="webhook_for_url returned a webhook named"):
        WebhookDispatcher(
            webhooks=[CustomWebhook(name="mine", url="https://example.com/")], plugin_manager=pm
        )
