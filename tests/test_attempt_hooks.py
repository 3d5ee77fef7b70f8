"""The hooks that let a plugin follow a delivery: `delivery_context` captured at emit and given
back at every attempt, `before_attempt` adding headers after signing (the signatures still
verify), `after_attempt` told once per attempt whatever happens. A plugin of the test's own,
a real dispatcher, a loopback receiver."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar

import attrs
import pytest

from empathy_webhooks_core import CustomWebhook, Event, WebhookDispatcher, hookimpl
from empathy_webhooks_core.plugins import build_plugin_manager, hooks_for
from empathy_webhooks_core.signing import verify_request
from empathy_webhooks_core.testing import Receiver, Reply
from empathy_webhooks_core.wire import OutgoingRequest, Response, Verdict

from .conftest import FAST

#: What the emitting code has in its context: the plugin captures it at emit.
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")
SECRET = "whsec_dGVzdHNlY3JldHRlc3RzZWNyZXQ="


class Watcher:
    """Carries the emitter's request id to every attempt, as a header and in its records."""

    def __init__(self, headers: Mapping[str, str] | None = None) -> None:
        self.headers = dict(headers or {})
        self.before: list[tuple[str, int, dict[str, str], dict[str, str]]] = []
        self.after: list[dict[str, Any]] = []

    @hookimpl
    def delivery_context(self, webhook: CustomWebhook, event: Event) -> Mapping[str, str]:
        return {"request-id": REQUEST_ID.get(), "webhook": webhook.name}

    @hookimpl
    def before_attempt(
        self,
        webhook: CustomWebhook,
        event: Event,
        delivery_id: str,
        attempt: int,
        request: OutgoingRequest,
        context: Mapping[str, str],
    ) -> Mapping[str, str]:
        self.before.append((delivery_id, attempt, dict(context), dict(request.headers)))
        return {"X-Request-Id": context["request-id"], "X-Attempt": str(attempt), **self.headers}

    @hookimpl
    def after_attempt(
        self,
        webhook: CustomWebhook,
        event: Event,
        delivery_id: str,
        attempt: int,
        request: OutgoingRequest,
        context: Mapping[str, str],
        verdict: Verdict | None,
        response: Response | None,
        error: BaseException | None,
        duration_s: float,
    ) -> None:
        self.after.append(
            {
                "delivery_id": delivery_id,
                "attempt": attempt,
                "event_id": event.event_id,
                "sent": request.headers.get("X-Request-Id"),
                "outcome": verdict.outcome.value if verdict is not None else None,
                "status": response.status if response is not None else None,
                "error": error,
                "duration_s": duration_s,
            }
        )


def _dispatcher(plugin: object, *webhooks: CustomWebhook, **options: Any) -> WebhookDispatcher:
    pm = build_plugin_manager(load_entry_points=False, extra_plugins=[plugin])
    return WebhookDispatcher(webhooks=list(webhooks), plugin_manager=pm, **options)


async def test_the_emitters_context_reaches_every_attempt_and_the_wire(receiver: Receiver) -> None:
    watcher = Watcher()
    receiver.queue(Reply(status=503), Reply(status=200))
    hook = CustomWebhook(
        name="watched", url=receiver.url(), signing_secret=SECRET, retry_policy=FAST
    )
    async with _dispatcher(watcher, hook) as dispatcher:
        token = REQUEST_ID.set("req-42")
        try:
            event = await dispatcher.emit("alert", {"n": 1})
        finally:
            REQUEST_ID.reset(token)
        await dispatcher.drain(timeout=10)
    # Captured in the emitter's task, then read back in the worker's, whose context differs.
    assert [(a, ctx) for _, a, ctx, _ in watcher.before] == [
        (1, {"request-id": "req-42", "webhook": "watched"}),
        (2, {"request-id": "req-42", "webhook": "watched"}),
    ]
    assert [r.header("X-Request-Id") for r in receiver.requests] == ["req-42", "req-42"]
    assert [r.header("X-Attempt") for r in receiver.requests] == ["1", "2"]
    for request in receiver.requests:
        # Added after signing, and the signatures cover no header: both schemes still verify.
        assert verify_request(request.body, request.headers, SECRET)
        assert request.header("webhook-signature") and request.header("X-Signature")
    # before_attempt saw the signed request; after_attempt came once per attempt, paired.
    assert all("webhook-signature" in headers for *_, headers in watcher.before)
    assert [(a["attempt"], a["outcome"], a["status"], a["sent"]) for a in watcher.after] == [
        (1, "retry", 503, "req-42"),
        (2, "success", 200, "req-42"),
    ]
    assert {a["delivery_id"] for a in watcher.after} == {d for d, *_ in watcher.before}
    assert all(a["event_id"] == event.event_id and a["duration_s"] >= 0 for a in watcher.after)


async def test_a_plugin_header_never_replaces_the_requests_own(receiver: Receiver) -> None:
    watcher = Watcher({"X-Team": "plugin", "webhook-signature": "forged", "X-Extra": "yes"})
    hook = CustomWebhook(
        name="own", url=receiver.url(), headers={"X-Team": "mine"}, signing_secret=SECRET
    )
    async with _dispatcher(watcher, hook) as dispatcher:
        await dispatcher.emit("alert", {})
        await dispatcher.drain(timeout=10)
    (request,) = receiver.requests
    assert request.header("X-Team") == "mine"
    assert request.header("webhook-signature") != "forged"
    assert verify_request(request.body, request.headers, SECRET)
    assert request.header("X-Extra") == "yes"


@attrs.frozen(kw_only=True, eq=False)
class StrictWebhook(CustomWebhook):
    """A target whose service refuses headers it does not know."""

    rejects_unknown_headers: ClassVar[bool] = True


async def test_no_plugin_header_for_a_strict_type_or_a_webhook_that_turns_them_off(
    receiver: Receiver,
) -> None:
    watcher = Watcher()
    hooks = [
        StrictWebhook(name="strict", url=receiver.url("/strict")),
        CustomWebhook(name="off", url=receiver.url("/off"), plugin_headers=False),
        CustomWebhook(name="on", url=receiver.url("/on")),
    ]
    async with _dispatcher(watcher, *hooks) as dispatcher:
        await dispatcher.emit("alert", {})
        await dispatcher.drain(timeout=10)
    sent = {r.path: r.header("X-Request-Id") for r in receiver.requests}
    assert sent == {"/strict": None, "/off": None, "/on": "none"}
    # The hooks still ran for every attempt (a span per attempt needs them), headers or not.
    assert len(watcher.before) == len(watcher.after) == 3


async def test_after_attempt_is_told_of_a_cancelled_attempt(receiver: Receiver) -> None:
    watcher = Watcher()
    arrived = asyncio.Event()

    async def hang(request: object) -> Reply:
        arrived.set()
        return Reply(delay=3600)  # no answer before the test ends

    receiver.handler = hang
    hook = CustomWebhook(name="hung", url=receiver.url())
    dispatcher = _dispatcher(watcher, hook)
    async with dispatcher:
        await dispatcher.emit("alert", {})
        async with asyncio.timeout(10):
            await arrived.wait()
        await dispatcher.close(drain=False)
    ((delivery_id, attempt, _, _),) = watcher.before
    (after,) = watcher.after
    assert (after["delivery_id"], after["attempt"]) == (delivery_id, attempt)
    assert after["outcome"] is None and after["status"] is None
    assert isinstance(after["error"], asyncio.CancelledError)


async def test_a_transport_error_reaches_after_attempt_redacted(receiver: Receiver) -> None:
    watcher = Watcher()
    receiver.queue(Reply(reset=True))
    hook = CustomWebhook(
        name="reset", url=receiver.url() + "?token=s3cr3t-value", retry_policy=FAST
    )
    async with _dispatcher(watcher, hook) as dispatcher:
        await dispatcher.emit("alert", {})
        await dispatcher.drain(timeout=10)
    first, second = watcher.after
    assert first["outcome"] == "retry" and first["status"] is None
    assert first["error"] is not None and first["error"].__traceback__ is None
    assert "s3cr3t-value" not in str(first["error"]) + repr(first["error"])
    assert second["outcome"] == "success"


class Broken:
    @hookimpl
    def delivery_context(self) -> Any:
        return {"n": 1}  # not strings

    @hookimpl
    def before_attempt(self) -> Any:
        return {"Bad Header": "x", "X-Fine": "ok", "X-Split": "a\r\nInjected: 1"}

    @hookimpl
    def after_attempt(self) -> None:
        raise RuntimeError("a plugin bug")


async def test_a_broken_plugin_is_logged_and_the_delivery_goes_on(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    hook = CustomWebhook(name="fine", url=receiver.url())
    caplog.set_level(logging.WARNING, logger="empathy_webhooks")
    async with _dispatcher(Broken(), hook) as dispatcher:
        await dispatcher.emit("alert", {})
        await dispatcher.drain(timeout=10)
        assert dispatcher.get_webhook_stats("fine")["delivered_count"] == 1
    (request,) = receiver.requests
    assert request.header("X-Fine") == "ok"
    assert request.header("Injected") is None and request.header("X-Split") is None
    text = caplog.text
    assert "delivery_context" in text and "not a mapping of strings" in text
    assert "'Bad Header'" in text and "a plugin bug" in text


def test_with_no_plugin_watching_the_pipeline_checks_once_and_skips() -> None:
    hooks = hooks_for(build_plugin_manager(load_entry_points=False))
    assert hooks.captures_context is False and hooks.observes_attempts is False
    watched = hooks_for(build_plugin_manager(load_entry_points=False, extra_plugins=[Watcher()]))
    assert watched.captures_context is True and watched.observes_attempts is True


async def test_a_fallback_delivery_carries_the_failed_ones_context(receiver: Receiver) -> None:
    watcher = Watcher()
    receiver.queue(Reply(status=400))
    backup = CustomWebhook(name="backup", url=receiver.url("/backup"), events=["nothing"])
    primary = CustomWebhook(name="primary", url=receiver.url("/primary"), fallback="backup")
    async with _dispatcher(watcher, primary, backup) as dispatcher:
        token = REQUEST_ID.set("req-7")
        try:
            await dispatcher.emit("alert", {})
        finally:
            REQUEST_ID.reset(token)
        await dispatcher.drain(timeout=10)
    assert [(r.path, r.header("X-Request-Id")) for r in receiver.requests] == [
        ("/primary", "req-7"),
        ("/backup", "req-7"),
    ]


class Switchable:
    """A third-party plugin that records attempts and successes only while switched on (a
    metrics client the application configures later), saying so through `observing`."""

    def __init__(self) -> None:
        self.on = False
        self.asked = 0
        self.broken = False
        self.before: list[int] = []
        self.after: list[str | None] = []
        self.succeeded: list[str] = []

    @hookimpl
    def observing(self) -> bool:
        self.asked += 1
        if self.broken:
            raise RuntimeError("probe bug")
        return self.on

    @hookimpl
    def delivery_context(self, event: Event) -> Mapping[str, str] | None:
        # Only what the emitter holds: most emits carry nothing.
        request_id = REQUEST_ID.get()
        return None if request_id == "none" else {"request-id": request_id}

    @hookimpl
    def before_attempt(self, attempt: int) -> Mapping[str, str]:
        self.before.append(attempt)
        return {"X-Watched": str(attempt)}

    @hookimpl
    def after_attempt(self, verdict: Verdict | None) -> None:
        self.after.append(verdict.outcome.value if verdict is not None else None)

    @hookimpl
    def on_success(self, event: Event) -> None:
        self.succeeded.append(event.data["n"])


async def test_a_plugin_turns_observing_off_and_on(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    plugin = Switchable()
    hook = CustomWebhook(name="sw", url=receiver.url())
    caplog.set_level(logging.ERROR, logger="empathy_webhooks")
    async with _dispatcher(plugin, hook) as dispatcher:
        await dispatcher.emit("alert", {"n": "off"})
        await dispatcher.drain(timeout=10)
        # Off: delivered as ever, and none of its attempt or success hooks ran.
        assert plugin.asked >= 1
        assert (plugin.before, plugin.after, plugin.succeeded) == ([], [], [])
        plugin.on = True  # asked every time: the very next attempt is watched
        await dispatcher.emit("alert", {"n": "on"})
        await dispatcher.drain(timeout=10)
        assert (plugin.before, plugin.after, plugin.succeeded) == ([1], ["success"], ["on"])
        plugin.on = False
        token = REQUEST_ID.set("req-9")
        try:
            # Off, but the delivery carries the emitter's context: watched, so it travels.
            await dispatcher.emit("alert", {"n": "context"})
        finally:
            REQUEST_ID.reset(token)
        await dispatcher.emit("alert", {"n": "off again"})
        await dispatcher.drain(timeout=10)
        assert (plugin.before, plugin.after) == ([1, 1], ["success", "success"])
        assert plugin.succeeded == ["on"]  # the success of a context's delivery: not told
        plugin.broken = True  # a probe that raises counts as observing, and is logged
        await dispatcher.emit("alert", {"n": "broken probe"})
        await dispatcher.drain(timeout=10)
        assert dispatcher.get_webhook_stats("sw")["delivered_count"] == 5
    sent = {r.json()["data"]["n"]: r.header("X-Watched") for r in receiver.requests}
    assert sent == {"off": None, "on": "1", "context": "1", "off again": None, "broken probe": "1"}
    assert plugin.succeeded == ["on", "broken probe"]
    assert "observing" in caplog.text and "probe bug" in caplog.text


class WrongAnswer(Switchable):
    """`observing` that answers neither a bool nor None: first a string, then a coroutine."""

    answers: list[Any]

    @hookimpl
    def observing(self) -> Any:
        self.asked += 1
        answer = self.answers.pop(0) if self.answers else "yes"
        if answer == "coroutine":

            async def never_awaited() -> bool:
                return False

            return never_awaited()
        return answer


async def test_an_observing_answer_of_the_wrong_kind_is_said_once_and_taken_as_observing(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    plugin = WrongAnswer()
    plugin.answers = ["coroutine", "yes", "coroutine"]
    hook = CustomWebhook(name="wrong", url=receiver.url())
    caplog.set_level(logging.ERROR, logger="empathy_webhooks")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a coroutine left unclosed would warn
        async with _dispatcher(plugin, hook) as dispatcher:
            for n in range(3):
                await dispatcher.emit("alert", {"n": n})
                await dispatcher.drain(timeout=10)
            assert dispatcher.get_webhook_stats("wrong")["delivered_count"] == 3
        gc.collect()
    # Watched every time (nothing recorded is lost to the bug), and said once.
    assert (plugin.before, plugin.succeeded) == ([1, 1, 1], [0, 1, 2])
    lines = [r.getMessage() for r in caplog.records if "observing" in r.getMessage()]
    assert len(lines) == 1, lines
    assert (
        "plugin_contract_broken" in lines[0]
        and "a coroutine (is the hook `async def`?)" in lines[0]
    )
