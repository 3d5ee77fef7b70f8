"""The plugin author kit itself: fixtures, assertions, and a conformance suite that catches
the mistakes it is there to catch."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import attrs
import pytest

from empathy_webhooks_core import (
    CustomWebhook,
    Event,
    Outcome,
    OutgoingRequest,
    Verdict,
    Webhook,
    hookimpl,
)
from empathy_webhooks_core.testing import (
    Receiver,
    Reply,
    assert_header,
    assert_sent_count,
    assert_sent_json,
    sent_json,
)
from empathy_webhooks_core.testing.conformance import WebhookConformance, event_strategy

FAST = {"initial_delay_seconds": 0.001, "max_delay_seconds": 0.01}


# -- fixtures and assertions ---------------------------------------------------------------


async def test_receiver_and_dispatcher_fixtures(webhook_receiver, webhook_dispatcher) -> None:
    webhook_receiver.queue(Reply(status=503, headers={"Retry-After": "0"}))
    webhook = CustomWebhook(
        url=webhook_receiver.url("/in"), headers={"X-Team": "core"}, retry_policy=FAST
    )
    dispatcher = webhook_dispatcher([webhook])
    event = await dispatcher.emit("alert", {"title": "Disk full"}, user_id="u1")
    await dispatcher.drain(timeout=5)
    assert_sent_count(webhook_receiver, 2)
    assert_sent_count(webhook_receiver, 1, delivered=True)
    body = assert_sent_json(
        webhook_receiver,
        {"event_type": "alert", "event_id": event.event_id, "data": {"title": "Disk full"}},
        partial=True,
    )
    assert body["user_id"] == "u1"
    assert_header(webhook_receiver, "X-Team", "core")
    assert_header(webhook_receiver, "X-Signature", None)
    assert sent_json(webhook_receiver, 0) == body


async def test_assertion_messages_show_what_arrived() -> None:
    async with Receiver() as receiver:
        with pytest.raises(AssertionError, match="nothing arrived"):
            assert_sent_count(receiver, 1)
        with pytest.raises(AssertionError, match="no request at index -1"):
            sent_json(receiver)
        receiver.requests.append(_received({"a": 1, "b": {"c": 2}}))
        assert_sent_json(receiver, {"b": {"c": 2}}, partial=True)
        with pytest.raises(AssertionError, match=r"body\['b'\]\['c'\]: expected 3, got 2"):
            assert_sent_json(receiver, {"b": {"c": 3}}, partial=True)
        with pytest.raises(AssertionError, match="missing key 'z'"):
            assert_sent_json(receiver, {"z": 1}, partial=True)
        with pytest.raises(AssertionError, match="sent JSON differs"):
            assert_sent_json(receiver, {"a": 1})
        with pytest.raises(AssertionError, match="expected 2 arrived, got 1"):
            assert_sent_count(receiver, 2)
        with pytest.raises(AssertionError, match="header 'x-a'"):
            assert_header(receiver, "x-a", "1")


async def test_stop_ends_a_stall_past_its_grace_and_lets_a_short_one_answer() -> None:
    """Stopping gives a stalled answer the grace aiohttp gives any handler: one due within it
    is still sent; one that would outlast it ends unanswered at once, as the grace's end
    would have ended it."""
    import asyncio

    import aiohttp

    receiver = await Receiver().start()
    receiver.queue(Reply(status=201, delay=1.0), Reply(status=202, delay=3600))

    async def post(session: aiohttp.ClientSession) -> int | str:
        try:
            async with session.post(receiver.url(), data=b"{}") as answer:
                return answer.status
        except aiohttp.ClientError as exc:
            return type(exc).__name__

    async with aiohttp.ClientSession() as session:
        short = asyncio.create_task(post(session))
        await receiver.wait_for(1)
        long = asyncio.create_task(post(session))
        await receiver.wait_for(2)
        await receiver.stop()
        assert await short == 201
        assert isinstance(await long, str)  # the connection closed without an answer
    assert [r.answered for r in receiver.requests] == [201, None]


def _received(body: Any) -> Any:
    from empathy_webhooks_core.testing import ReceivedRequest

    return ReceivedRequest(
        method="POST", path="/", query={}, headers={}, body=json.dumps(body).encode()
    )


def test_pytest_plugin_adds_no_imports_of_its_own() -> None:
    """It is loaded in every pytest run wherever the core is installed: beyond the core
    package itself it loads nothing (no receiver, no hypothesis, no dispatcher)."""
    import subprocess
    import sys

    code = (
        "import sys, empathy_webhooks_core; before = set(sys.modules); "
        "import empathy_webhooks_core.testing.pytest_plugin; "
        "print(sorted(m for m in set(sys.modules) - before "
        "if m.startswith(('empathy', 'hypothesis', 'aiohttp', 'yarl', 'multidict'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == (
        "['empathy_webhooks_core.testing', 'empathy_webhooks_core.testing.pytest_plugin']"
    ), out.stdout


def test_event_strategy_makes_events() -> None:
    hypothesis = pytest.importorskip("hypothesis")

    @hypothesis.settings(max_examples=20, database=None, derandomize=True)
    @hypothesis.given(event_strategy(huge_text_chars=100))
    def check(event: Event) -> None:
        assert isinstance(event, Event)
        json.dumps(event.to_envelope())

    check()


# -- the suite catches broken plugins -------------------------------------------------------

TOKEN = "kit-token-do-not-leak-42"


@attrs.frozen(kw_only=True, eq=False)
class SloppyWebhook(Webhook):
    """A webhook with every mistake the suite is there to catch (each switched on by a flag)."""

    kind: ClassVar[str] = "sloppy"
    url: str
    token: str  # shown in repr, not in secret_values(): a leak
    truncate: bool = True
    accept_everything: bool = False


class SloppyPlugin:
    @hookimpl
    def webhook_types(self) -> dict[str, type[Webhook]]:
        return {"sloppy": SloppyWebhook}

    @hookimpl
    def format_payload(self, webhook: SloppyWebhook, event: Event) -> OutgoingRequest:
        text = json.dumps(event.data, ensure_ascii=False)
        return OutgoingRequest.json(webhook.url, {"text": text[:100] if webhook.truncate else text})

    @hookimpl
    def classify_response(
        self, webhook: SloppyWebhook, request: Any, response: Any
    ) -> Verdict | None:
        if webhook.accept_everything:
            return Verdict(outcome=Outcome.SUCCESS)
        return None


class SloppySuite(WebhookConformance):  # not Test...: run by hand below
    plugin = SloppyPlugin()
    secrets = (TOKEN,)
    max_examples = 30
    options: ClassVar[dict[str, Any]] = {}

    def make_webhook(self, url: str) -> Webhook:
        return SloppyWebhook(url=url, token=TOKEN, **self.options)

    def check_limits(self, request: OutgoingRequest, webhook: Webhook) -> None:
        super().check_limits(request, webhook)
        assert len(json.loads(request.body)["text"]) <= 100, "text over 100 characters"


class HiddenTokenSuite(SloppySuite):
    def make_webhook(self, url: str) -> Webhook:
        return CustomWebhook(url=url, headers={"Authorization": f"Bearer {TOKEN}"})

    def check_limits(self, request: OutgoingRequest, webhook: Webhook) -> None:
        WebhookConformance.check_limits(self, request, webhook)


def test_suite_catches_a_secret_in_repr() -> None:
    with pytest.raises(AssertionError, match="a secret appears"):
        SloppySuite().test_repr_hides_secrets()


def test_suite_catches_a_secret_echoed_into_the_error() -> None:
    with pytest.raises(AssertionError, match="leaked: .*in dead letter"):
        SloppySuite().test_secrets_stay_out_of_logs_and_errors()


def test_suite_passes_a_webhook_that_hides_its_secret() -> None:
    suite = HiddenTokenSuite()
    suite.test_repr_hides_secrets()
    suite.test_secrets_stay_out_of_logs_and_errors()


def test_suite_catches_output_over_the_limits() -> None:
    class Unbounded(SloppySuite):
        options: ClassVar[dict[str, Any]] = {"truncate": False}

    Unbounded().test_renders_event_type("alert")  # small samples fit...
    with pytest.raises(AssertionError, match="text over 100 characters"):
        Unbounded().test_generated_events_render_within_limits()  # ...generated ones do not


def test_suite_catches_a_failure_reported_as_success() -> None:
    class Optimist(SloppySuite):
        options: ClassVar[dict[str, Any]] = {"accept_everything": True}

    with pytest.raises(AssertionError, match="reported as a success"):
        Optimist().test_final_failure_reaches_on_failure_and_dead_letters()


def test_suite_catches_a_missing_webhook_type() -> None:
    class Unregistered(SloppySuite):
        plugin = object()  # a plugin with no hooks at all

    with pytest.raises(AssertionError, match="no plugin declares type 'sloppy'"):
        Unregistered().test_plugin_declares_the_webhook_type()


def test_suite_counts_requests_per_delivery() -> None:
    class TwoCalls(HiddenTokenSuite):
        requests_per_delivery = 2

    with pytest.raises(AssertionError, match="expected 2 request"):
        TwoCalls().test_delivers_through_the_pipeline()


# -- a third-party chat plugin that forgets to declare its URL a secret --------------------

CHAT_TOKEN = "chatTokenKit0123456789abcdefXYZ"


@attrs.frozen(kw_only=True, eq=False)
class ForgetfulChatWebhook(Webhook):
    """Written as the old documentation said (`repr=False` on the credential), but nothing
    tells the core that the URL is the credential: a chat webhook's URL is its token."""

    kind: ClassVar[str] = "forgetful_chat"
    webhook_url: str = attrs.field(repr=False)


@attrs.frozen(kw_only=True, eq=False)
class DeclaredChatWebhook(Webhook):
    """The same webhook, declared the documented way."""

    kind: ClassVar[str] = "declared_chat"
    secret_url: ClassVar[bool] = True
    webhook_url: str = attrs.field()

    @property
    def url(self) -> str:
        from empathy_webhooks_core.redaction import redact_url

        return redact_url(self.webhook_url, secret_path=True)


class ChatPlugin:
    @hookimpl
    def webhook_types(self) -> dict[str, type[Webhook]]:
        return {"forgetful_chat": ForgetfulChatWebhook, "declared_chat": DeclaredChatWebhook}

    @hookimpl
    def format_payload(
        self, webhook: ForgetfulChatWebhook | DeclaredChatWebhook, event: Event
    ) -> OutgoingRequest:
        return OutgoingRequest.json(webhook.webhook_url, {"text": event.event_type})


class ForgetfulChatSuite(WebhookConformance):  # not Test...: run by hand below
    plugin = ChatPlugin()
    secrets = (CHAT_TOKEN,)
    max_examples = 5

    def make_webhook(self, url: str) -> Webhook:
        return ForgetfulChatWebhook(webhook_url=f"{url}/{CHAT_TOKEN}")


class TestDeclaredChatConformance(ForgetfulChatSuite):
    """Collected: with `secret_url = True` the same plugin passes the whole suite."""

    def make_webhook(self, url: str) -> Webhook:
        return DeclaredChatWebhook(webhook_url=f"{url}/{CHAT_TOKEN}")


@pytest.mark.parametrize(
    ("check", "where"),
    [
        ("test_repr_hides_secrets", "repr(rendered request)"),
        ("test_cli_render_and_validate_hide_secrets", "CLI render/validate output"),
        ("test_secrets_stay_out_of_logs_and_errors", "dead letter"),
        # Not test_garbled_answer_stays_small_and_hides_secrets: aiohttp's error quoted the
        # malformed status line (and the secrets it echoed); the core's own transport never
        # quotes an answer, so there is no leak on that path left for the suite to catch.
    ],
)
def test_suite_catches_a_chat_url_not_declared_secret(check: str, where: str) -> None:
    with pytest.raises(AssertionError, match=f"secret cha.*in {re.escape(where)}"):
        getattr(ForgetfulChatSuite(), check)()


# -- a target that is not HTTP overrides the fake service ----------------------------------

INBOXES: dict[str, list[bytes]] = {}
REFUSING: set[str] = set()


@attrs.frozen(kw_only=True, eq=False)
class InboxWebhook(Webhook):
    """Stands for SMTP and the like: its own `deliver`, no HTTP at all."""

    kind: ClassVar[str] = "inbox"
    url: str


class InboxPlugin:
    @hookimpl
    def webhook_types(self) -> dict[str, type[Webhook]]:
        return {"inbox": InboxWebhook}

    @hookimpl
    def format_payload(self, webhook: InboxWebhook, event: Event) -> OutgoingRequest:
        return OutgoingRequest(url=webhook.url, body=f"Subject: {event.event_type}".encode())

    @hookimpl
    def deliver(self, webhook: InboxWebhook, request: OutgoingRequest, session: Any) -> Any:
        async def send() -> Any:
            from empathy_webhooks_core import Response

            if request.url in REFUSING:
                return Response(status=550, body=b"mailbox unavailable")
            INBOXES[request.url].append(request.body)
            return Response(status=250)

        return send()

    @hookimpl
    def classify_response(self, webhook: InboxWebhook, request: Any, response: Any) -> Verdict:
        ok = response.status == 250
        return Verdict(outcome=Outcome.SUCCESS if ok else Outcome.FAIL, reason=response.text())


@attrs.define
class InboxService:
    url: str

    def received(self) -> list[bytes]:
        return INBOXES[self.url]


class TestInboxConformance(WebhookConformance):
    """Collected: the whole suite passes for a non-HTTP target through `fake_service`."""

    plugin = InboxPlugin()

    def make_webhook(self, url: str) -> Webhook:
        return InboxWebhook(url=url)

    def check_limits(self, request: OutgoingRequest, webhook: Webhook) -> None:
        assert request.body.startswith(b"Subject: ")

    @contextlib.asynccontextmanager
    async def fake_service(self, mode: str) -> AsyncIterator[InboxService]:
        url = f"inbox://{len(INBOXES)}"
        INBOXES[url] = []
        if mode != "success":
            REFUSING.add(url)
        yield InboxService(url)
