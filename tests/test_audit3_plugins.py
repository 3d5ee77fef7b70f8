"""Audit of the plugin contract, from the side of a third-party plugin author and of a user who
installed a faulty plugin: every delivery a faulty plugin takes ends delivered, retried or
dead-lettered with the plugin's error; one broken plugin never stops the others; the messages
name the plugin and say what to fix.

Everything goes over loopback to a real receiver; plugins are registered as a user's would be
(the plugin manager, or a real entry point in a temporary dist-info).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import attrs
import pytest
from empathy_webhooks_slack import SlackWebhook

from empathy_webhooks_core import (
    CustomWebhook,
    DeliveryError,
    Event,
    OutgoingRequest,
    Response,
    Webhook,
    WebhookDispatcher,
    hookimpl,
)
from empathy_webhooks_core.plugins import Hooks, build_plugin_manager
from empathy_webhooks_core.testing import Receiver

from ._plugin_dist import install_distribution

FAST = {"max_retries": 1, "initial_delay_seconds": 0.001, "max_delay_seconds": 0.01}


@attrs.frozen(kw_only=True, eq=False)
class FaultyWebhook(Webhook):
    kind: ClassVar[str] = "faulty"

    url: str


class FaultyRequests:
    """A plugin whose `format_payload` builds the `OutgoingRequest` with a field of the wrong
    type (what `mistake` says): the attrs class has no validators, so it is built."""

    def __init__(self, mistake: dict[str, Any]) -> None:
        self.mistake = mistake

    @hookimpl
    def webhook_types(self) -> dict[str, type[Webhook]]:
        return {"faulty": FaultyWebhook}

    @hookimpl
    def format_payload(self, webhook: FaultyWebhook, event: Event) -> OutgoingRequest:
        fields: dict[str, Any] = {"url": webhook.url, "body": b"{}", **self.mistake}
        return OutgoingRequest(**fields)


@pytest.mark.parametrize(
    ("mistake", "said"),
    [
        ({"url": None}, "url"),
        ({"url": 5}, "url"),
        ({"body": json.dumps({"a": 1})}, "body"),
        ({"body": {"a": 1}}, "body"),
        ({"method": None}, "method"),
        ({"headers": {5: "x"}}, "headers"),
    ],
)
async def test_a_request_with_a_field_of_the_wrong_type_is_dead_lettered_naming_the_plugin(
    receiver: Receiver, mistake: dict[str, Any], said: str
) -> None:
    """Before: a URL that is not a string crashed the worker (`protocol_of`), the delivery
    stayed queued, `drain` never returned and `close` dropped it; a str body failed with
    "can't concat str to bytes" or an internal error in signing.py, naming no plugin."""
    failures: list[DeliveryError] = []
    webhook = FaultyWebhook(
        name="faulty",
        url=receiver.url("/faulty"),
        retry_policy=FAST,
        on_failure=lambda _w, _e, error: failures.append(error),
    )
    pm = build_plugin_manager(load_entry_points=False, extra_plugins=[FaultyRequests(mistake)])
    async with WebhookDispatcher(webhooks=[webhook], plugin_manager=pm) as dispatcher:
        await dispatcher.emit("bug_detected", {"title": "t"})
        await dispatcher.drain(timeout=5)
        [dead] = await dispatcher.dead_letters("faulty")
        stats = dispatcher.get_webhook_stats("faulty")
    assert receiver.requests == []
    [failure] = failures
    assert "'FaultyRequests'" in failure.reason, failure.reason
    assert "format_payload" in failure.reason, failure.reason
    assert said in failure.reason, failure.reason
    assert "a plugin bug" in dead.error["reason"]
    assert (stats["failed_count"], stats["queued"], stats["dead_letters"]) == (1, 0, 1)


@attrs.frozen(kw_only=True, eq=False)
class ScrubbingWebhook(Webhook):
    kind: ClassVar[str] = "scrubbing"

    url: str


class Scrubbing:
    """A plugin that tidies the event in place before formatting it: it drops a field it does
    not want and rewrites the title (a plausible shortcut for its own message)."""

    @hookimpl
    def webhook_types(self) -> dict[str, type[Webhook]]:
        return {"scrubbing": ScrubbingWebhook}

    @hookimpl
    def format_payload(self, webhook: ScrubbingWebhook, event: Event) -> OutgoingRequest:
        event.data.pop("runbook", None)
        event.data["title"] = event.data["title"].upper()
        event.data["nested"]["seen_by"] = "scrubbing"
        event.metadata["scrubbed"] = True
        return OutgoingRequest.json(webhook.url, {"title": event.data["title"]})


async def test_a_plugin_that_mutates_the_event_changes_no_other_webhooks_alert(
    receiver: Receiver,
) -> None:
    """The event is shared by every webhook it fans out to. Before: the Slack message and
    the generic envelope of the same alert showed the other plugin's changes (title rewritten,
    runbook gone), and so did the event `emit` returned."""
    webhooks = [
        ScrubbingWebhook(name="scrubbing", url=receiver.url("/scrubbing")),
        CustomWebhook(name="custom", url=receiver.url("/custom")),
        SlackWebhook(name="slack", webhook_url=receiver.url("/slack/services/T0/B0/x")),
    ]
    pm = build_plugin_manager(load_entry_points=False, extra_plugins=[Scrubbing()])
    import empathy_webhooks_slack

    pm.register(empathy_webhooks_slack, name="slack")
    data = {"title": "disk full", "runbook": "https://runbooks/disk", "nested": {"a": 1}}
    async with WebhookDispatcher(webhooks=webhooks, plugin_manager=pm) as dispatcher:
        event = await dispatcher.emit("bug_detected", data)
        await dispatcher.drain(timeout=5)
    by_path = {request.path: request for request in receiver.requests}
    assert by_path["/scrubbing"].json() == {"title": "DISK FULL"}  # its own change, its own
    envelope = by_path["/custom"].json()
    assert envelope["data"] == data, envelope["data"]
    assert "scrubbed" not in envelope["metadata"]
    slack_text = by_path["/slack/services/T0/B0/x"].body.decode()
    assert "disk full" in slack_text and "DISK FULL" not in slack_text
    assert event.data == data


# -- discovery: entry points ---------------------------------------------------------------

ACME = """
from typing import ClassVar

import attrs

from empathy_webhooks_core import OutgoingRequest, Webhook, hookimpl


@attrs.frozen(kw_only=True, eq=False)
class AcmeWebhook(Webhook):
    kind: ClassVar[str] = "acme"
    url: str


@hookimpl
def webhook_types():
    return {"acme": AcmeWebhook}


@hookimpl
def format_payload(webhook, event):
    return OutgoingRequest.json(webhook.url, {"acme": event.event_id})
"""

MISSPELT = """
from empathy_webhooks_core import hookimpl


@hookimpl
def format_paylod(webhook, event):
    return None
"""

TYPES_RAISE = """
from empathy_webhooks_core import hookimpl


@hookimpl
def webhook_types():
    raise RuntimeError("libacme2 is not configured")
"""

TYPES_WRONG = """
from empathy_webhooks_core import hookimpl


@hookimpl
def webhook_types():
    return ["wrongtypes"]
"""

EXITS = """
import sys

sys.exit("empathy-webhooks-exits needs libfoo: giving up")
"""


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    install_distribution(tmp_path, "acme", "audit3_acme_plugin", ACME)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def _only(site: Path, name: str, source: str) -> dict[str, str]:
    """Install a broken plugin `name` beside acme; the environment that loads just these."""
    install_distribution(site, name, f"audit3_{name}_plugin", source)
    return {"EMPATHY_WEBHOOKS_LOAD_PLUGINS": f"acme,{name}"}


async def _acme_delivers(pm: Any) -> None:
    acme = Hooks(pm).webhook_types()["acme"]
    async with Receiver() as receiver:
        webhook = acme(name="acme", url=receiver.url("/acme"))  # type: ignore[call-arg]
        async with WebhookDispatcher(webhooks=[webhook], plugin_manager=pm) as dispatcher:
            event = await dispatcher.emit("bug_detected", {"title": "t"})
            await dispatcher.drain(timeout=5)
        assert [r.json() for r in receiver.requests] == [{"acme": event.event_id}]


async def test_a_misspelt_hook_skips_that_plugin_only_naming_it_and_the_hook(site: Path) -> None:
    """Before: `check_pending` raised for the whole manager, so one installed plugin with a
    typo in a hook name stopped every webhook of the process (no plugin manager at all)."""
    pm = build_plugin_manager(env=_only(site, "misspelt", MISSPELT))
    [error] = pm.load_errors
    assert error.name == "misspelt"
    assert "format_paylod" in error.error and "format_payload" in error.error, error.error
    assert not pm.has_plugin("misspelt")
    await _acme_delivers(pm)
    with pytest.raises(Exception, match="format_paylod"):
        build_plugin_manager(env=_only(site, "misspelt2", MISSPELT), strict=True)


@pytest.mark.parametrize(
    ("name", "source", "said"),
    [
        ("typesraise", TYPES_RAISE, "libacme2 is not configured"),
        ("typeswrong", TYPES_WRONG, "not a mapping"),
    ],
)
async def test_a_plugin_whose_webhook_types_fails_is_skipped_naming_it(
    site: Path, name: str, source: str, said: str
) -> None:
    """Before: every dispatcher of the process failed to start with `RuntimeError: libacme2
    is not configured` (or the other plugin's `PluginContractError`), naming no plugin for
    the first, and in both cases no dispatcher could start, whatever its webhooks."""
    pm = build_plugin_manager(env=_only(site, name, source))
    [error] = pm.load_errors
    assert error.name == name
    assert said in error.error and "webhook_types" in error.error, error.error
    await _acme_delivers(pm)


async def test_a_plugin_that_exits_at_import_is_a_load_error_not_the_end_of_the_process(
    site: Path,
) -> None:
    """Before: `sys.exit()` in a plugin's module ended the application while the plugin
    manager was built, without saying which plugin."""
    pm = build_plugin_manager(env=_only(site, "exits", EXITS))
    [error] = pm.load_errors
    assert error.name == "exits"
    assert "SystemExit" in error.error and "needs libfoo" in error.error, error.error
    await _acme_delivers(pm)


# -- deliver answering a malformed Response ------------------------------------------------


@attrs.frozen(kw_only=True, eq=False)
class OddAnswerWebhook(Webhook):
    kind: ClassVar[str] = "odd_answer"

    url: str
    answer: str = "status"


class OddAnswers:
    @hookimpl
    def webhook_types(self) -> dict[str, type[Webhook]]:
        return {"odd_answer": OddAnswerWebhook}

    @hookimpl
    def format_payload(self, webhook: OddAnswerWebhook, event: Event) -> OutgoingRequest:
        return OutgoingRequest(url=webhook.url, body=b"{}")

    @hookimpl
    def deliver(self, webhook: OddAnswerWebhook, request: OutgoingRequest, session: Any) -> Any:
        async def answer() -> Response:
            if webhook.answer == "status":
                return Response(status="200")  # type: ignore[arg-type]
            return Response(status=500, body="upstream down")  # type: ignore[arg-type]

        return answer()


@pytest.mark.parametrize(("answer", "said"), [("status", "status"), ("body", "body")])
async def test_a_response_with_a_field_of_the_wrong_type_names_the_plugin(
    answer: str, said: str
) -> None:
    """Before: "could not classify the answer: TypeError: '<=' not supported between
    instances of 'int' and 'str'", or an internal error in wire.py, naming no plugin."""
    failures: list[DeliveryError] = []
    webhook = OddAnswerWebhook(
        name="odd",
        url="http://127.0.0.1:9/odd",
        answer=answer,
        retry_policy=FAST,
        on_failure=lambda _w, _e, error: failures.append(error),
    )
    pm = build_plugin_manager(load_entry_points=False, extra_plugins=[OddAnswers()])
    async with WebhookDispatcher(webhooks=[webhook], plugin_manager=pm) as dispatcher:
        await dispatcher.emit("bug_detected", {"title": "t"})
        await dispatcher.drain(timeout=5)
    [failure] = failures
    assert "'OddAnswers'" in failure.reason, failure.reason
    assert "deliver" in failure.reason and said in failure.reason, failure.reason


# -- webhook_for_url: one plugin's bug must not stop every generic webhook -------------------


class CrashingClaimer:
    """A plugin whose `webhook_for_url` crashes on URLs that are not its service's (a parse
    it did not guard), quoting the URL, token and all, in the exception."""

    @hookimpl
    def webhook_for_url(self, url: str, options: Any) -> Webhook | None:
        raise RuntimeError(f"could not parse {url}")


async def test_a_crashing_webhook_for_url_is_logged_and_the_generic_webhook_still_delivers(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: every plain `WebhookConfig` failed to join any dispatcher with `RuntimeError:
    could not parse http://.../hook?token=...`: no plugin named, the token in the text."""
    import logging

    from empathy_webhooks_core import WebhookConfig

    caplog.set_level(logging.WARNING, logger="empathy_webhooks")
    token = "audit3SECRETtoken4242"
    webhook = WebhookConfig(name="generic", url=receiver.url(f"/hook?token={token}"))
    pm = build_plugin_manager(load_entry_points=False, extra_plugins=[CrashingClaimer()])
    async with WebhookDispatcher(webhooks=[webhook], plugin_manager=pm) as dispatcher:
        event = await dispatcher.emit("bug_detected", {"title": "t"})
        await dispatcher.drain(timeout=5)
    assert [r.json()["event_id"] for r in receiver.requests] == [event.event_id]
    logged = [r.getMessage() for r in caplog.records]
    assert any("CrashingClaimer" in line and "webhook_for_url" in line for line in logged), logged
    assert not any(token in line for line in logged), logged


# -- classify_response answering a Verdict with a wrong outcome ------------------------------


@attrs.frozen(kw_only=True, eq=False)
class StringlyWebhook(Webhook):
    kind: ClassVar[str] = "stringly"

    url: str


class Stringly:
    """A plugin that writes its verdict's outcome as a string (`Verdict` does not check it)."""

    @hookimpl
    def webhook_types(self) -> dict[str, type[Webhook]]:
        return {"stringly": StringlyWebhook}

    @hookimpl
    def format_payload(self, webhook: StringlyWebhook, event: Event) -> OutgoingRequest:
        return OutgoingRequest.json(webhook.url, {"id": event.event_id})

    @hookimpl
    def classify_response(self, webhook: Any, request: Any, response: Response) -> Any:
        from empathy_webhooks_core import Verdict

        return Verdict(outcome="success")  # type: ignore[arg-type]


async def test_a_verdict_with_an_outcome_that_is_not_an_outcome_names_the_plugin(
    receiver: Receiver,
) -> None:
    """Before: "internal error: AttributeError: 'str' object has no attribute '_value_' (at
    work.py:239 in _attempt)", naming no plugin and sounding like the core's bug."""
    failures: list[DeliveryError] = []
    webhook = StringlyWebhook(
        name="stringly",
        url=receiver.url("/stringly"),
        retry_policy=FAST,
        on_failure=lambda _w, _e, error: failures.append(error),
    )
    pm = build_plugin_manager(load_entry_points=False, extra_plugins=[Stringly()])
    async with WebhookDispatcher(webhooks=[webhook], plugin_manager=pm) as dispatcher:
        await dispatcher.emit("bug_detected", {"title": "t"})
        await dispatcher.drain(timeout=5)
        [dead] = await dispatcher.dead_letters("stringly")
    [failure] = failures
    assert "'Stringly'" in failure.reason and "classify_response" in failure.reason
    assert "internal error" not in failure.reason, failure.reason
    assert "Outcome" in dead.error["reason"]
