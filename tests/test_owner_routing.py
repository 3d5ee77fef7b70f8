"""Owner routing (issue 17, point 1): the core asks a webhook's per-type hooks (`format_payload`,
`deliver`, `classify_response`, `flush`) of the plugin that registered its type, then of the
core's defaults, and of no other plugin. Plugins carry no `isinstance` guard.

Everything goes over loopback to a real receiver; what is asserted is the bytes on the wire.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any, ClassVar

import attrs
import pytest
from empathy_webhooks_datadog import DatadogWebhook
from empathy_webhooks_discord import DiscordWebhook
from empathy_webhooks_grafana import GrafanaWebhook
from empathy_webhooks_ntfy import NtfyWebhook
from empathy_webhooks_pagerduty import PagerDutyWebhook
from empathy_webhooks_slack import SlackWebhook
from empathy_webhooks_teams import TeamsWebhook

from empathy_webhooks_core import (
    CustomWebhook,
    DeliveryError,
    Event,
    OutgoingRequest,
    Response,
    Webhook,
    WebhookConfig,
    WebhookDispatcher,
    hookimpl,
)
from empathy_webhooks_core._sender import Sender
from empathy_webhooks_core.plugins import build_plugin_manager, hooks_for
from empathy_webhooks_core.testing import Receiver

DELIVERED_BY = "X-Delivered-By"


@attrs.frozen(kw_only=True, eq=False)
class EchoWebhook(Webhook):
    kind: ClassVar[str] = "echo"

    url: str


class EchoPlugin:
    """A third-party plugin written the new way: `format_payload` and `deliver` for its own
    type, with no guard. Were it asked about another plugin's webhook, it would take it over
    (its body and its header would show on that webhook's path)."""

    def __init__(self) -> None:
        self.formatted: list[str] = []
        self.delivered: list[str] = []

    @hookimpl
    def webhook_types(self) -> dict[str, type[Webhook]]:
        return {"echo": EchoWebhook}

    @hookimpl
    def format_payload(self, webhook: EchoWebhook, event: Event) -> OutgoingRequest:
        self.formatted.append(webhook.name)
        return OutgoingRequest(url=webhook.url, body=f"echo:{event.event_id}".encode())

    @hookimpl
    def deliver(self, webhook: EchoWebhook, request: OutgoingRequest, session: Any) -> Any:
        self.delivered.append(webhook.name)
        sent = attrs.evolve(request, headers={**request.headers, DELIVERED_BY: "echo"})
        return Sender(webhook, session).send(sent)


def _first_party(receiver: Receiver) -> list[Webhook]:
    """One webhook of each first-party HTTP type, each on its own path of the receiver."""
    return [
        CustomWebhook(name="custom", url=receiver.url("/custom")),
        WebhookConfig(name="config", url=receiver.url("/config")),
        SlackWebhook(name="slack", webhook_url=receiver.url("/slack/services/T0/B0/tok123456789")),
        TeamsWebhook(
            name="teams",
            webhook_url=receiver.url("/teams/workflows/abc/triggers/manual/paths/invoke?sig=s1g"),
        ),
        DiscordWebhook(name="discord", webhook_url=receiver.url("/discord/api/webhooks/1/tok0")),
        PagerDutyWebhook(
            name="pagerduty",
            api_key="0123456789abcdef0123456789abcdef",
            events_url=receiver.url("/pagerduty"),
        ),
        GrafanaWebhook(name="grafana", url=receiver.url("/grafana"), api_key="glsa_token0123"),
        DatadogWebhook(
            name="datadog", api_key="dd-api-key-0123456789", base_url=receiver.url("/datadog")
        ),
        NtfyWebhook(name="ntfy", server_url=receiver.url("/ntfy"), topic="alerts"),
    ]


def _path_of(webhook: Webhook, rendered: OutgoingRequest) -> str:
    return rendered.url.split("://", 1)[1].split("/", 1)[1].split("?", 1)[0]


async def test_each_webhook_is_formatted_and_delivered_by_its_own_plugin_only(
    receiver: Receiver,
) -> None:
    echo = EchoPlugin()
    # Every installed plugin (all first-party ones and the ntfy example) beside the new one.
    pm = build_plugin_manager(extra_plugins=[echo])
    alone = build_plugin_manager()  # the same plugins without it: what each one sends alone
    others = _first_party(receiver)
    mine = EchoWebhook(name="echo", url=receiver.url("/echo"))
    async with WebhookDispatcher(webhooks=[*others, mine], plugin_manager=pm) as dispatcher:
        event = await dispatcher.emit("alert", {"title": "Disk full", "host": "db1"})
        await dispatcher.drain(timeout=10)
        # Rendered before closing: Datadog's metrics buffer is flushed on close.
        expected = {
            webhook.name: hooks_for(alone).format_payload(webhook, event) for webhook in others
        }

    assert echo.formatted == ["echo"] and echo.delivered == ["echo"]
    by_path: dict[str, list[Any]] = {}
    for request in receiver.requests:
        by_path.setdefault(request.path.split("/")[1], []).append(request)
    [echoed] = by_path.pop("echo")
    assert echoed.body == f"echo:{event.event_id}".encode()
    assert echoed.header(DELIVERED_BY) == "echo"
    for webhook in others:
        rendered = expected[webhook.name]
        path = _path_of(webhook, rendered).split("/")[0]
        arrived = by_path.pop(path)
        # The webhook's own plugin's bytes, exactly, sent by the core (or its plugin) alone.
        assert arrived[0].body == rendered.body, webhook.name
        assert all(r.header(DELIVERED_BY) is None for r in arrived), webhook.name
        assert not any(r.body.startswith(b"echo:") for r in arrived), webhook.name
    assert not by_path, f"requests to unexpected paths: {sorted(by_path)}"


@attrs.frozen(kw_only=True, eq=False)
class BrandedSlackWebhook(SlackWebhook):
    """A user's subclass of a first-party type, registered by a plugin of their own."""

    kind: ClassVar[str] = "branded_slack"


class BrandedPlugin:
    @hookimpl
    def webhook_types(self) -> dict[str, type[Webhook]]:
        return {"branded_slack": BrandedSlackWebhook}

    @hookimpl
    def format_payload(self, webhook: BrandedSlackWebhook, event: Event) -> OutgoingRequest:
        return OutgoingRequest.json(webhook.webhook_url, {"text": f"ACME: {event.event_type}"})


@attrs.frozen(kw_only=True, eq=False)
class QuietSlackWebhook(SlackWebhook):
    """A subclass nobody registers: it belongs to the Slack plugin."""


async def test_a_subclass_goes_to_its_nearest_registered_ancestors_owner(
    receiver: Receiver,
) -> None:
    plugin = BrandedPlugin()
    pm = build_plugin_manager(extra_plugins=[plugin])
    hooks = hooks_for(pm)
    # Its own plugin first, then the owner of the registered ancestor, then the core.
    assert hooks.route(BrandedSlackWebhook).owners == (pm.get_name(plugin), "slack")
    assert hooks.route(QuietSlackWebhook).owners == ("slack",)
    assert hooks.route(WebhookConfig).owners == ("custom (core)",)
    # Resolved once per class, not per call (or per attempt).
    assert hooks.route(QuietSlackWebhook) is hooks.route(QuietSlackWebhook)

    errors: list[DeliveryError] = []
    receiver.respond(status=404, body="no_service")
    branded = BrandedSlackWebhook(
        name="branded",
        webhook_url=receiver.url("/branded/services/T0/B0/tok123456789"),
        on_failure=lambda w, e, error: errors.append(error),
    )
    quiet = QuietSlackWebhook(
        name="quiet",
        webhook_url=receiver.url("/quiet/services/T0/B0/tok123456789"),
        on_failure=lambda w, e, error: errors.append(error),
    )
    async with WebhookDispatcher(webhooks=[branded, quiet], plugin_manager=pm) as dispatcher:
        event = await dispatcher.emit("alert", {"title": "Disk full"})
        await dispatcher.drain(timeout=10)
    bodies = {r.path.split("/")[1]: r.body for r in receiver.requests}
    # The user's plugin formats its subclass; the Slack plugin the one nobody registered.
    assert bodies["branded"] == b'{"text":"ACME: alert"}'
    slack = hooks_for(build_plugin_manager()).format_payload(quiet, event)
    assert bodies["quiet"] == slack.body
    # Neither plugin answered classify_response for the branded one but Slack's: Slack's
    # reading of its answer (the destination is gone), not the core's plain 404.
    gone = "Slack says the destination is gone: no_service (HTTP 404); webhook disabled"
    assert sorted(error.reason for error in errors) == [
        f"{gone} until enable_webhook('branded')",
        f"{gone} until enable_webhook('quiet')",
    ]


class Freeloader:
    """Per-type hooks and no type of its own: it would answer for everyone's webhooks."""

    def __init__(self) -> None:
        self.calls = 0

    @hookimpl
    def format_payload(self, webhook: Webhook, event: Event) -> OutgoingRequest:
        self.calls += 1
        return OutgoingRequest(url="http://127.0.0.1:9/stolen", body=b"stolen")

    @hookimpl
    def classify_response(self, webhook: Webhook, request: Any, response: Response) -> Any:
        self.calls += 1
        return None

    @hookimpl
    def flush(self, webhook: Webhook, dispatcher: Any) -> Awaitable[None] | None:
        self.calls += 1
        return None


async def test_per_type_hooks_of_a_plugin_without_types_are_never_called_and_said_so(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="empathy_webhooks")
    freeloader = Freeloader()
    pm = build_plugin_manager(load_entry_points=False, extra_plugins=[freeloader])
    pm_name = pm.get_name(freeloader)
    webhook = CustomWebhook(url=receiver.url("/mine"))
    async with WebhookDispatcher(webhooks=[webhook], plugin_manager=pm) as dispatcher:
        event = await dispatcher.emit("alert", {"title": "Disk full"})
        await dispatcher.drain(timeout=10)
    [request] = receiver.requests
    assert request.path == "/mine" and request.body == event.envelope_bytes()
    assert freeloader.calls == 0
    [warning] = [r for r in caplog.records if "plugin_hooks_never_called" in r.getMessage()]
    text = warning.getMessage()
    assert pm_name in text
    assert "format_payload, classify_response, flush" in text
    assert "registers none" in text


@attrs.frozen(kw_only=True, eq=False)
class TwinWebhook(CustomWebhook):
    kind: ClassVar[str] = "twin"


class TwinA:
    @hookimpl
    def webhook_types(self) -> dict[str, type[Webhook]]:
        return {"twin": TwinWebhook}


class TwinB:
    @hookimpl
    def webhook_types(self) -> dict[str, type[Webhook]]:
        return {"twin_again": TwinWebhook}


class NameClash:
    @hookimpl
    def webhook_types(self) -> dict[str, type[Webhook]]:
        return {"twin": CustomWebhook}


@pytest.mark.parametrize(
    ("second", "says"),
    [
        (TwinB, "two plugins register webhook class TwinWebhook"),
        (NameClash, "two plugins register webhook type 'twin'"),
    ],
)
def test_a_type_registered_by_two_plugins_is_refused_naming_both(
    receiver: Receiver, second: type, says: str
) -> None:
    pm = build_plugin_manager(load_entry_points=False)
    pm.register(TwinA(), name="twin-a")
    pm.register(second(), name="twin-b")
    with pytest.raises(ValueError) as refused:
        WebhookDispatcher(webhooks=[TwinWebhook(url=receiver.url())], plugin_manager=pm)
    text = str(refused.value)
    assert says in text
    assert "'twin-a'" in text and "'twin-b'" in text
