"""The other side of the wire and code we did not write, as an adversary would try them: a
user's callback that never returns, a plugin whose send ends in a stray cancellation, a
plugin's flush that hangs, a listener that raises, an answer that means "not now" to a vendor
plugin, and a success whose details echo a credential. Each runs through a real dispatcher
to a receiver on loopback, and asserts what a user sees: the dead letter, the log line, the
counts, how long `drain` takes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any, ClassVar

import attrs
import pytest
from empathy_webhooks_discord import DiscordWebhook
from empathy_webhooks_grafana import GrafanaWebhook
from empathy_webhooks_slack import SlackWebhook
from empathy_webhooks_teams import TeamsWebhook

from empathy_webhooks_core import CustomWebhook, DeliveryError, WebhookDispatcher
from empathy_webhooks_core.events import Event
from empathy_webhooks_core.plugins import build_plugin_manager, hookimpl
from empathy_webhooks_core.testing import Receiver, Reply
from empathy_webhooks_core.webhooks import Webhook
from empathy_webhooks_core.wire import OutgoingRequest, Response

FAST = {"initial_delay_seconds": 0.001, "max_delay_seconds": 0.01}


def lines(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if f"'{name}'" in r.getMessage()]


# -- a user's on_failure that never returns -----------------------------------------------------


async def test_an_on_failure_callback_that_never_returns_is_bounded_and_said(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="empathy_webhooks")
    receiver.respond(status=400)

    async def page_someone(webhook: Webhook, event: Event, error: DeliveryError) -> None:
        await asyncio.Event().wait()  # the pager's client hangs

    webhook = CustomWebhook(
        name="hangs",
        url=receiver.url(),
        retry_policy={"max_retries": 0, "timeout_seconds": 0.2},
        on_failure=page_someone,
    )
    async with WebhookDispatcher(webhooks=[webhook]) as dispatcher:
        event = await dispatcher.emit("alert", {"message": "disk full"})
        # Before: drain never returned, the delivery stayed "pending" forever.
        await dispatcher.drain(timeout=10)
        [letter] = await dispatcher.dead_letters()
        assert letter.event.event_id == event.event_id
        receiver.respond(status=200)
        await dispatcher.emit("alert", {"message": "next"})
        await dispatcher.drain(timeout=10)
        stats = dispatcher.get_webhook_stats("hangs")
    assert (stats["failed_count"], stats["delivered_count"], stats["callback_errors"]) == (1, 1, 1)
    [line] = lines(caplog, "on_failure_callback_failed")
    assert "webhook='hangs'" in line and f"event_id='{event.event_id}'" in line
    assert "did not return within 0.2 s" in line


# -- a plugin's send that ends in a cancellation that is not ours -------------------------------


@attrs.frozen(kw_only=True, eq=False)
class StrayWebhook(CustomWebhook):
    kind: ClassVar[str] = "stray"


class StrayCancellation:
    """A plugin whose send awaits a future something else cancelled (a shared client torn
    down under it): `await` raises CancelledError, although nobody cancelled the worker."""

    @hookimpl
    def webhook_types(self) -> dict[str, type[Webhook]]:
        return {"stray": StrayWebhook}

    @hookimpl
    def deliver(self, webhook: Webhook, request: OutgoingRequest, session: Any) -> Any:
        future = asyncio.get_running_loop().create_future()
        future.cancel()
        return future


async def test_a_plugin_send_cancelled_from_elsewhere_is_a_failed_attempt_not_a_lost_delivery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="empathy_webhooks")
    pm = build_plugin_manager(load_entry_points=False, extra_plugins=[StrayCancellation()])
    errors: list[DeliveryError] = []
    webhook = StrayWebhook(
        name="stray",
        url="http://127.0.0.1:9/never",
        retry_policy={"max_retries": 1, **FAST},
        circuit_breaker=False,
        on_failure=lambda w, e, error: errors.append(error),
    )
    async with WebhookDispatcher(webhooks=[webhook], plugin_manager=pm) as dispatcher:
        event = await dispatcher.emit("alert", {"message": "x"})
        # Before: the worker died with the CancelledError; nothing logged, drain timed out.
        await dispatcher.drain(timeout=10)
        [letter] = await dispatcher.dead_letters()
    [error] = errors
    assert error.event_id == letter.event.event_id == event.event_id
    assert error.attempts == 2
    assert error.reason.startswith("CancelledError: the plugin's send was cancelled")
    assert letter.error["reason"] == error.reason
    assert any(f"event_id='{event.event_id}'" in line for line in lines(caplog, "delivery_failed"))


async def test_closing_the_dispatcher_still_cancels_a_send_in_flight(receiver: Receiver) -> None:
    receiver.respond(status=200, delay=30)
    webhook = CustomWebhook(url=receiver.url(), retry_policy={"timeout_seconds": 30})
    dispatcher = WebhookDispatcher(webhooks=[webhook])
    await dispatcher.start()
    await dispatcher.emit("alert", {})
    await receiver.wait_for(1)
    started = time.monotonic()
    await dispatcher.close(drain=False)
    # The worker's own cancellation still ends it (not taken for a failed attempt).
    assert time.monotonic() - started < 5
    assert dispatcher.get_webhook_stats(webhook.name)["failed_count"] == 0


@attrs.frozen(kw_only=True, eq=False)
class SwallowingWebhook(CustomWebhook):
    kind: ClassVar[str] = "swallowing"


class SwallowedCancellation:
    """A plugin whose send swallows the worker's cancellation and answers 503 (aiosmtplib and
    redis-py under Python 3.11's `wait_for` do so when the answer lands with the cancel)."""

    def __init__(self) -> None:
        self.sends = 0
        self.started = asyncio.Event()

    @hookimpl
    def webhook_types(self) -> dict[str, type[Webhook]]:
        return {"swallowing": SwallowingWebhook}

    @hookimpl
    def deliver(self, webhook: Webhook, request: OutgoingRequest, session: Any) -> Any:
        return self._send()

    async def _send(self) -> Response:
        self.sends += 1
        self.started.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(30)
        return Response(status=503, body=b"busy", elapsed_ms=1.0)


async def test_closing_is_prompt_when_a_plugin_swallows_the_cancellation() -> None:
    """Before: the worker went on to wait 30 s for its next delivery, `close` with it, and the
    retry its 503 scheduled after the timers were cancelled was sent after the close."""
    plugin = SwallowedCancellation()
    pm = build_plugin_manager(load_entry_points=False, extra_plugins=[plugin])
    webhook = SwallowingWebhook(
        name="swallowing", url="http://127.0.0.1:9/never", retry_policy=FAST
    )
    dispatcher = WebhookDispatcher(webhooks=[webhook], plugin_manager=pm)
    await dispatcher.start()
    await dispatcher.emit("alert", {})
    await asyncio.wait_for(plugin.started.wait(), 10)
    started = time.monotonic()
    await dispatcher.close(drain=False)
    assert time.monotonic() - started < 5
    await asyncio.sleep(0.3)  # FAST's retry would have gone by now
    assert plugin.sends == 1


# -- a plugin's flush that never returns ---------------------------------------------------------


@attrs.frozen(kw_only=True, eq=False)
class BufferedWebhook(CustomWebhook):
    kind: ClassVar[str] = "buffered"


class HangingFlush:
    @hookimpl
    def webhook_types(self) -> dict[str, type[Webhook]]:
        return {"buffered": BufferedWebhook}

    @hookimpl
    def flush(self, webhook: Webhook, state: Any, dispatcher: Any) -> Any:
        return asyncio.Event().wait()  # its batch endpoint never answers


async def test_drain_keeps_its_timeout_when_a_plugins_flush_never_returns(
    receiver: Receiver,
) -> None:
    pm = build_plugin_manager(load_entry_points=False, extra_plugins=[HangingFlush()])
    webhook = BufferedWebhook(name="buffered", url=receiver.url())
    dispatcher = WebhookDispatcher(webhooks=[webhook], plugin_manager=pm)
    await dispatcher.start()
    try:
        await dispatcher.emit("alert", {})
        started = time.monotonic()
        # Before: `drain(timeout=0.5)` waited for the flush forever.
        with pytest.raises(TimeoutError, match="a plugin's flush had not returned"):
            await asyncio.wait_for(dispatcher.drain(timeout=0.5), 10)
        assert time.monotonic() - started < 5
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(dispatcher.close(timeout=0.5), 10)
        assert time.monotonic() - started < 5
    finally:
        await dispatcher.close(drain=False)
    assert len(receiver.requests) == 1


# -- a plugin's listener that raises: said with the webhook and the event -----------------------


class RaisingListeners:
    @hookimpl
    def on_failure(self, webhook: Webhook, event: Event, error: DeliveryError) -> None:
        raise RuntimeError("incident tool unreachable")

    @hookimpl
    def on_success(self, webhook: Webhook, event: Event, result: Any) -> None:
        raise RuntimeError("metrics client not configured")

    @hookimpl
    def after_attempt(self, webhook: Webhook, event: Event, delivery_id: str) -> None:
        raise RuntimeError("span already ended")


@pytest.mark.parametrize(
    ("status", "hooks"), [(400, ("on_failure", "after_attempt")), (200, ("on_success",))]
)
async def test_a_raising_plugin_listener_is_logged_with_webhook_and_event_id(
    receiver: Receiver, caplog: pytest.LogCaptureFixture, status: int, hooks: tuple[str, ...]
) -> None:
    caplog.set_level(logging.ERROR, logger="empathy_webhooks")
    pm = build_plugin_manager(load_entry_points=False, extra_plugins=[RaisingListeners()])
    receiver.respond(status=status)
    webhook = CustomWebhook(name="told", url=receiver.url(), retry_policy={"max_retries": 0})
    async with WebhookDispatcher(webhooks=[webhook], plugin_manager=pm) as dispatcher:
        event = await dispatcher.emit("alert", {})
        await dispatcher.drain(timeout=10)
    failed = lines(caplog, "plugin_hook_failed")
    for hook in hooks:
        [line] = [line for line in failed if f"hook='{hook}'" in line]
        assert "webhook='told'" in line and f"event_id='{event.event_id}'" in line, line
        assert "plugin='RaisingListeners'" in line, line


# -- "not now" means not now, to the vendor plugins too -----------------------------------------


def _vendor(kind: str, url: str, **options: Any) -> Webhook:
    if kind == "slack":
        return SlackWebhook(webhook_url=url, **options)
    if kind == "discord":
        return DiscordWebhook(webhook_url=url, **options)
    return TeamsWebhook(webhook_url=url, **options)


@pytest.mark.parametrize("kind", ["slack", "discord", "teams"])
async def test_a_503_with_retry_after_is_retried_by_vendor_plugins_whatever_the_retry_list(
    receiver: Receiver, kind: str
) -> None:
    # The core's rule (hookspecs: classify_response): a 503 with Retry-After is the service
    # saying "not now", honoured whatever retry_on_status lists. Before, the chat plugins
    # dead-lettered it as "refused the message" when 503 was not listed.
    receiver.queue(Reply(status=503, body="maintenance", headers={"Retry-After": "0"}))
    receiver.respond(status=200 if kind != "teams" else 202, body="ok" if kind == "slack" else "")
    errors: list[DeliveryError] = []
    webhook = _vendor(
        kind,
        receiver.url("/services/T0/B0/xoxbHookTokenAbcdef0123456789"),
        name=kind,
        retry_policy={"max_retries": 0, "retry_on_status": [500], **FAST},
        on_failure=lambda w, e, error: errors.append(error),
    )
    async with WebhookDispatcher(webhooks=[webhook]) as dispatcher:
        await dispatcher.emit("alert", {"message": "x"})
        await dispatcher.drain(timeout=10)
        stats = dispatcher.get_webhook_stats(kind)
    assert errors == []
    assert (stats["delivered_count"], len(receiver.requests)) == (1, 2)


# -- Slack's {"ok": false} in a 200 ------------------------------------------------------------


async def test_a_slack_200_saying_ok_false_is_a_failure_naming_slacks_error(
    receiver: Receiver,
) -> None:
    # Slack's API convention (workflow triggers on hooks.slack.com answer so): HTTP 200 and
    # `{"ok": false, "error": "..."}`. Before, it counted as delivered.
    receiver.respond(status=200, body={"ok": False, "error": "invalid_workflow_input"})
    errors: list[DeliveryError] = []
    webhook = SlackWebhook(
        webhook_url=receiver.url("/triggers/T0/1/xoxbHookTokenAbcdef0123456789"),
        name="slack",
        retry_policy={"max_retries": 2, **FAST},
        on_failure=lambda w, e, error: errors.append(error),
    )
    async with WebhookDispatcher(webhooks=[webhook]) as dispatcher:
        await dispatcher.emit("alert", {"message": "x"})
        await dispatcher.drain(timeout=10)
        [letter] = await dispatcher.dead_letters()
        stats = dispatcher.get_webhook_stats("slack")
    [error] = errors
    assert error.reason == "Slack refused the message: invalid_workflow_input"
    assert letter.error["reason"] == error.reason and error.status == 200
    assert (stats["delivered_count"], len(receiver.requests)) == (0, 1)


async def test_a_slack_200_saying_ok_true_is_delivered(receiver: Receiver) -> None:
    receiver.respond(status=200, body={"ok": True})
    webhook = SlackWebhook(webhook_url=receiver.url("/triggers/T0/1/abcdefghijkl"), name="s")
    async with WebhookDispatcher(webhooks=[webhook]) as dispatcher:
        await dispatcher.emit("alert", {"message": "x"})
        await dispatcher.drain(timeout=10)
        assert dispatcher.get_webhook_stats("s")["delivered_count"] == 1


# -- what a success learnt from the answer is capped and masked ----------------------------------

GRAFANA_KEY = "glsa_EchoedMarker0123456789abcdef"


class Successes:
    def __init__(self) -> None:
        self.results: list[Any] = []

    @hookimpl
    def on_success(self, webhook: Webhook, event: Event, result: Any) -> None:
        self.results.append(result)


async def test_success_details_echoing_a_credential_are_masked_and_capped(
    receiver: Receiver,
) -> None:
    # A hostile (or broken) Grafana answers 200 with an "id" 60 KB long that ends in the
    # API key it was sent. Before: the whole of it, key included, was in the webhook's stats
    # (`last_details`, shown by the CLI and the console) and in on_success's result.
    receiver.respond(
        status=200, body={"message": "Annotation added", "id": "Z" * 60_000 + GRAFANA_KEY}
    )
    listener = Successes()
    pm = build_plugin_manager(extra_plugins=[listener])
    webhook = GrafanaWebhook(url=receiver.url(""), api_key=GRAFANA_KEY, name="grafana")
    async with WebhookDispatcher(webhooks=[webhook], plugin_manager=pm) as dispatcher:
        await dispatcher.emit("alert", {"message": "x"})
        await dispatcher.drain(timeout=10)
        stats = dispatcher.get_webhook_stats("grafana")
    assert stats["delivered_count"] == 1
    shown = json.dumps(stats["last_details"])
    [result] = listener.results
    told = json.dumps(dict(result.details))
    for text in (shown, told):
        assert GRAFANA_KEY not in text
        assert len(text) < 1000, len(text)


async def test_ordinary_success_details_are_kept_as_they_are(receiver: Receiver) -> None:
    # The cap and the mask change nothing a service normally answers: ids, keys, and links
    # with their fragment (a GitHub comment's `#issuecomment-1`).
    receiver.respond(status=200, body={"message": "Annotation added", "id": 42})
    webhook = GrafanaWebhook(url=receiver.url(""), api_key=GRAFANA_KEY, name="grafana")
    async with WebhookDispatcher(webhooks=[webhook]) as dispatcher:
        await dispatcher.emit("alert", {"message": "x"})
        await dispatcher.drain(timeout=10)
        assert dispatcher.get_webhook_stats("grafana")["last_details"] == {"annotation_id": "42"}
    from empathy_webhooks_core.wire import Outcome, Verdict

    link = "https://github.com/o/r/pull/1#issuecomment-1"
    verdict = Verdict(outcome=Outcome.SUCCESS, details={"comment_url": link, "left": ["a"]})
    assert dict(verdict.details) == {"comment_url": link, "left": ["a"]}
