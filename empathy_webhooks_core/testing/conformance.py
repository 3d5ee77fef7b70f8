"""The conformance suite: one set of tests every plugin runs against its own webhook type.

A plugin's test module subclasses it in a few lines::

    from empathy_webhooks_core.testing.conformance import WebhookConformance
    import empathy_webhooks_ntfy

    class TestNtfyConformance(WebhookConformance):
        plugin = empathy_webhooks_ntfy          # or None: use the installed entry points
        secrets = ("tk_conformance_token",)

        def make_webhook(self, url):
            return empathy_webhooks_ntfy.NtfyWebhook(
                server_url=url, topic="alerts", token="tk_conformance_token"
            )

What it checks, for the webhook `make_webhook` returns:

- the plugin declares the webhook's type (``webhook_types``);
- every known `EventType` and an unknown event type render, within the service's limits
  (`check_limits`), deterministically;
- hypothesis-generated events (huge strings, unicode, markdown specials, missing, None and
  empty fields, nesting) render without raising and within the limits;
- a delivery goes through a real `WebhookDispatcher` to a loopback fake of the service, and
  `on_success` hears of it with the event's id;
- a final failure reaches the webhook's `on_failure` callback, every plugin's `on_failure`
  hook and the dead letters;
- the reference's failure callback, which reads `webhook.url`, runs to its end: every webhook
  has a `url` (where it sends), a string that shows no secret;
- no secret (`secrets` plus the webhook's own `secret_values()`), nor its URL-encoded or
  base64 form, appears in `repr(webhook)` or the rendered request's repr; in what the CLI's
  `render` and `validate` print (plain, rich and `--json`); or, when the service echoes the
  request (headers, URL, body) and the secrets back in its refusal, in the logs (the
  ``empathy_webhooks`` logger at DEBUG), the `DeliveryError` handed to `on_failure` and its
  `last_exception` (`str`, `repr`, `args`, formatted traceback), or the dead letter (the
  memory store's, and the bytes of an SQLite store's file and WAL);
- a service that answers with a malformed status line quoting the request and the secrets
  leaves none of them, and no more than a bounded excerpt, in any of those places.

Each secrets check runs with an empty registry of secrets, so what it finds masked the
plugin's own declarations masked (`secret_field()`, `secret_url = True`), not another test.

The tests are plain (synchronous) functions that run their own event loop, so the suite works
whatever a project's pytest-asyncio mode is. The base class is not named ``Test...``, so
pytest collects it only through a subclass.

Targets that are not a single HTTP call: set `requests_per_delivery` and make `success_reply`
and `failure_reply` answer by path (they receive the request). Targets that are not HTTP at
all (SMTP) override `fake_service`, which yields a `FakeService` in one of three modes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import logging
import tempfile
import traceback
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol
from urllib.parse import quote

import attrs
import pytest

from ..dispatcher import WebhookDispatcher
from ..events import MAX_SAFE_INTEGER, Event, EventType
from ..plugins import PluginManager, build_plugin_manager, hookimpl, hooks_for
from ..redaction import isolated_registry
from ..webhooks import Webhook
from ..wire import DeliveryError, DeliveryResult, OutgoingRequest
from .receiver import ReceivedRequest, Receiver, Reply

try:
    import hypothesis
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - the suite runs without hypothesis, less one test
    hypothesis = None  # type: ignore[assignment]
    st = None  # type: ignore[assignment]

__all__ = [
    "MAX_DEAD_LETTER_CHARS",
    "SAMPLE_DATA",
    "UNKNOWN_EVENT_TYPE",
    "FakeService",
    "ReceiverService",
    "ServiceMode",
    "WebhookConformance",
    "emit_accepts",
    "event_strategy",
    "exception_texts",
    "find_leaks",
    "secret_forms",
]

ServiceMode = Literal["success", "failure", "leak"]

#: The longest text a failing delivery may leave in a dead letter's fields, however large
#: the answer (each field is cut at 500 characters).
MAX_DEAD_LETTER_CHARS = 4000

UNKNOWN_EVENT_TYPE = "conformance_unknown_event"

#: Realistic data for each known event type, shaped like the reference's examples.
SAMPLE_DATA: dict[str, dict[str, Any]] = {
    EventType.PREDICTION: {
        "prediction": "Authentication module will need refactoring within 30 days",
        "confidence": 0.87,
        "timeframe": "30 days",
        "recommendations": ["Extract the token logic", "Add integration tests"],
    },
    EventType.ALERT: {"title": "Error rate above 5%", "message": "checkout-api", "value": 5.4},
    EventType.BUG_DETECTED: {
        "title": "Null dereference",
        "file": "src/cart.py",
        "line": 118,
        "severity": "medium",
    },
    EventType.SECURITY_VULNERABILITY: {
        "vulnerability": "SQL injection",
        "title": "SQL injection in login query",
        "file": "auth.py",
        "line": 45,
        "severity": "critical",
        "cwe": "CWE-89",
    },
    EventType.PERFORMANCE_ISSUE: {
        "title": "Slow query",
        "metric": "p95_latency_ms",
        "value": 2300,
        "threshold": 500,
    },
    EventType.CODE_REVIEW_COMPLETE: {
        "title": "Review of PR #42",
        "pr_number": 42,
        "repository": "acme/shop",
        "issues_found": 3,
        "url": "https://example.com/acme/shop/pull/42",
    },
    EventType.TEST_FAILURE: {
        "title": "test_checkout_total failed",
        "test": "tests/test_cart.py::test_checkout_total",
        "error": "AssertionError: 41 != 42",
    },
    EventType.DEPLOYMENT_RISK: {
        "title": "Risky deploy",
        "risk_score": 0.72,
        "service": "payments",
        "environment": "production",
    },
    EventType.COMPLIANCE_VIOLATION: {
        "title": "PII logged",
        "regulation": "GDPR",
        "file": "src/log.py",
        "line": 12,
    },
    EventType.PATTERN_DISCOVERED: {
        "pattern": "Retry storms after deploys",
        "occurrences": 7,
        "description": "Clients retry without jitter.",
    },
}

#: Text that breaks naive formatters: markup of every service, control characters, RTL.
SPECIAL_STRINGS = (
    "",
    " ",
    "*bold* _italic_ ~strike~ `code` ```block``` > quote",
    "[link](https://example.com) <https://example.com|label> <!channel> @here @everyone",
    "<script>alert(1)</script> & &amp; \"quotes\" 'single'",
    "line one\nline two\r\nline three\ttab",
    "{{ template }} {0} %s %(name)s $PATH \\ backslash",
    "emoji 😀🔥🚨 and ZWJ 👩‍💻 and flags 🇫🇷",
    "right-to-left \u202e txet and zero\u200bwidth",
    "control \x00\x01\x1b[31m",
    "日本語のテキスト и кириллица و العربية",
)

#: Data keys plugins read (titles, locations, links, severities); generated data uses them.
KNOWN_KEYS = (
    "title",
    "summary",
    "message",
    "description",
    "prediction",
    "vulnerability",
    "severity",
    "file",
    "file_path",
    "line",
    "url",
    "link",
    "priority",
    "tags",
    "labels",
    "recommendations",
    "metric",
    "value",
    "confidence",
    "repository",
    "pr_number",
    "assignee",
)


def _safe_integer(number: int) -> int:
    return max(-MAX_SAFE_INTEGER, min(MAX_SAFE_INTEGER, number))


def _printable(text: str) -> str:
    return "".join(char if char.isprintable() else "?" for char in text)


def emit_accepts(event_type: str) -> bool:
    """Whether `emit` takes this event type (a hypothesis filter for generated types): not
    blank, and no line breaks, NUL or other control characters."""
    return bool(event_type.strip()) and event_type.isprintable()


def event_strategy(huge_text_chars: int = 20_000) -> Any:
    """A hypothesis strategy of events: any event type, odd data, missing and empty fields,
    and at most one huge string (at a key plugins read, or anywhere else)."""
    if st is None:  # pragma: no cover
        raise RuntimeError("hypothesis is not installed")
    text = st.one_of(st.text(max_size=50), st.sampled_from(SPECIAL_STRINGS))
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        # Clamped into the range emit accepts (JSON's exact integers), so its edges come up
        # often and the draws stay those of earlier versions.
        st.integers(min_value=-(2**63), max_value=2**63).map(_safe_integer),
        st.floats(allow_nan=False, allow_infinity=False),
        text,
    )
    values = st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=5),
            st.dictionaries(st.text(max_size=12), children, max_size=5),
            # Containers where a formatter expects text.
            st.just({}),
            st.just([]),
        ),
        max_leaves=10,
    )
    known = st.fixed_dictionaries({}, optional={key: values for key in KNOWN_KEYS})
    extra = st.dictionaries(st.text(max_size=20), values, max_size=4)
    huge = st.one_of(
        st.none(),
        st.tuples(
            st.one_of(st.sampled_from(KNOWN_KEYS), st.text(min_size=1, max_size=12)),
            st.sampled_from(["x", "é", "😀", "*_`~", "\n", "界", "word "]).map(
                lambda piece: (piece * huge_text_chars)[:huge_text_chars]
            ),
        ),
    )

    def combine(known: dict[str, Any], extra: dict[str, Any], huge: Any) -> dict[str, Any]:
        data = {**extra, **known}
        if huge is not None:
            data[huge[0]] = huge[1]
        return data

    optional_text = st.one_of(st.none(), text)
    return st.builds(
        Event,
        event_type=st.one_of(
            st.sampled_from([member.value for member in EventType]),
            st.just(UNKNOWN_EVENT_TYPE),
            # Control characters are refused at emit (the type travels in a header).
            st.text(min_size=1, max_size=40).filter(str.strip).map(_printable),
        ),
        data=st.builds(combine, known, extra, huge),
        user_id=optional_text,
        empathy_level=st.one_of(st.none(), st.integers(min_value=1, max_value=5)),
        severity=st.one_of(
            st.none(), st.sampled_from(["low", "medium", "high", "critical", "info"]), text
        ),
        classification=optional_text,
        metadata=st.dictionaries(st.text(max_size=12), values, max_size=3),
    )


class FakeService(Protocol):
    """A fake of the target service, as the suite sees it."""

    @property
    def url(self) -> str:
        """What `make_webhook` is given: where the webhook should send."""

    def received(self) -> Sequence[bytes]:
        """What arrived so far, one item per request (or message)."""


@attrs.define
class ReceiverService:
    """The default fake: a loopback `Receiver`; the raw requests are in `receiver.requests`."""

    receiver: Receiver
    path: str = "/conformance/hook"

    @property
    def url(self) -> str:
        return self.receiver.url(self.path)

    def received(self) -> Sequence[bytes]:
        return [request.body for request in self.receiver.requests]


@attrs.define
class _Run:
    """One delivery run: what the webhook, the listeners and the store saw."""

    webhook: Webhook
    service: FakeService
    rendered: OutgoingRequest
    successes: list[DeliveryResult]
    hook_failures: list[DeliveryError]
    callbacks: list[tuple[Webhook, Event, DeliveryError]]
    dead_letters: list[Any]
    #: The store's files as they were before it closed (SQLite: the database and its WAL).
    store_bytes: bytes = b""


class _Recorder:
    """A plugin that listens to `on_success` and `on_failure`, as any third party could."""

    def __init__(self) -> None:
        self.successes: list[DeliveryResult] = []
        self.failures: list[DeliveryError] = []

    @hookimpl
    def on_success(self, webhook: Webhook, event: Event, result: DeliveryResult) -> None:
        self.successes.append(result)

    @hookimpl
    def on_failure(self, webhook: Webhook, event: Event, error: DeliveryError) -> None:
        self.failures.append(error)


@contextlib.contextmanager
def _capture_logs() -> Any:
    """Everything the library logs, at DEBUG, as text: through the stdlib logger
    ``empathy_webhooks`` (the library's default), or through structlog when the application
    (or an earlier test) has configured it."""
    import structlog

    from .._log import LOGGER_NAME

    stream = io.StringIO()
    if structlog.is_configured():
        # Only when already configured: capture_logs leaves structlog configured afterwards.
        with structlog.testing.capture_logs() as entries:
            yield stream
        stream.write("\n".join(repr(entry) for entry in entries))
        return
    logger = logging.getLogger(LOGGER_NAME)
    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _echo(reply: Reply, leaked: str, request: ReceivedRequest | None = None) -> Reply:
    """`reply` whose body starts with `leaked` and what the request carried (its headers,
    path, query and body), and whose headers repeat them: a service that echoes everything
    back, as some error pages do."""
    if request is not None:
        seen = {
            "path": request.path,
            "query": dict(request.query),
            "headers": dict(request.headers),
            "body": request.body.decode("utf-8", "replace")[:2000],
        }
        leaked = f"{leaked} {json.dumps(seen, ensure_ascii=False)}"
        echoed = {
            f"X-Echo-{key}": value
            for key, value in request.headers.items()
            if key.lower() not in ("content-length", "content-type", "host", "transfer-encoding")
            and value.isascii()
        }
        reply = attrs.evolve(reply, headers={**echoed, **reply.headers})
    body = reply.body
    if isinstance(body, bytes):
        body = leaked.encode() + b" " + body
    elif isinstance(body, str):
        body = f"{leaked} {body}"
    elif isinstance(body, dict):
        body = {"echo": leaked, **body}
    else:
        body = leaked
    return attrs.evolve(reply, body=body)


def secret_forms(secret: str) -> dict[str, str]:
    """What to search for a secret by: itself, URL-encoded, and base64 (standard and URL-safe,
    padding left off so it matches wherever the encoding is cut)."""
    raw = secret.encode()
    return {
        "": secret,
        " (URL-encoded)": quote(secret, safe=""),
        " (base64)": base64.b64encode(raw).decode().rstrip("="),
        " (base64url)": base64.urlsafe_b64encode(raw).decode().rstrip("="),
    }


def find_leaks(secrets: Sequence[str], places: Mapping[str, str]) -> list[str]:
    """`secret abc… (base64) in dead letter`, for every secret form found in a place."""
    found = []
    for secret in secrets:
        for label, form in secret_forms(secret).items():
            for where, text in places.items():
                if form and form in text:
                    found.append(f"secret {secret[:3]}…{label} in {where}")
    return found


def exception_texts(name: str, exc: BaseException | None) -> dict[str, str]:
    """Every way an exception's text is read: `str`, `repr`, `args`, formatted traceback."""
    if exc is None:
        return {}
    return {
        f"str({name})": str(exc),
        f"repr({name})": repr(exc),
        f"{name}.args": repr(exc.args),
        f"traceback of {name}": "".join(traceback.format_exception(exc)),
    }


class _GarbledService:
    """A raw TCP server on loopback that answers every request with a malformed status line,
    thousands of characters long, quoting the request it got and `leaked`."""

    def __init__(self, leaked: str) -> None:
        self.leaked = leaked
        self.server: asyncio.Server | None = None
        self.requests: list[bytes] = []

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            self.requests.append(head)
            quoted = head.replace(b"\r\n", b" | ")
            line = b"HTTP/1.1 4x0 " + quoted + b" " + self.leaked.encode() + b" " + b"Z" * 30_000
            writer.write(line + b"\r\n\r\n")
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            pass
        finally:
            writer.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/conformance/hook"

    def received(self) -> Sequence[bytes]:
        return self.requests

    async def __aenter__(self) -> _GarbledService:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@contextlib.contextmanager
def _captured_stdout() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        yield buffer


#: Small waits, few attempts: a conformance run takes milliseconds per delivery.
FAST_RETRY = {"max_retries": 1, "initial_delay_seconds": 0.001, "max_delay_seconds": 0.01}


class WebhookConformance:
    """The suite. Subclass it as ``Test<Name>Conformance`` and provide `make_webhook`."""

    #: The plugin module (or object) under test. None: the installed entry points are used.
    plugin: ClassVar[Any] = None
    #: Strings that must never appear in logs, reprs or errors (besides `secret_values()`).
    secrets: ClassVar[Sequence[str]] = ()
    #: HTTP requests one successful delivery makes (Jira searches, then creates: 2).
    requests_per_delivery: ClassVar[int] = 1
    #: How many generated events the property test renders.
    max_examples: ClassVar[int] = 40
    #: How long the generated "huge" strings are, in characters.
    huge_text_chars: ClassVar[int] = 20_000
    #: Seconds a delivery test may take before it fails (never reached when things work).
    delivery_timeout: ClassVar[float] = 10.0

    # -- what a plugin provides ------------------------------------------------------------

    def make_webhook(self, url: str) -> Webhook:
        """The webhook under test, sending to `url` (the fake service). Required."""
        raise NotImplementedError(f"{type(self).__name__} must implement make_webhook(url)")

    def success_reply(self, request: ReceivedRequest) -> Reply:
        """How the fake service says yes to `request`."""
        return Reply(status=200)

    def failure_reply(self, request: ReceivedRequest) -> Reply:
        """How the fake service refuses `request` for good (no retry would help)."""
        return Reply(status=400, body={"error": "conformance: rejected"})

    def check_limits(self, request: OutgoingRequest, webhook: Webhook) -> None:
        """Assert `request` is within the service's limits. The default: a JSON body parses,
        and the body fits `webhook.max_payload_bytes`. Plugins add their service's limits."""
        assert len(request.body) <= webhook.max_payload_bytes, (
            f"body is {len(request.body)} bytes, over max_payload_bytes "
            f"({webhook.max_payload_bytes})"
        )
        content_type = next(
            (v for k, v in request.headers.items() if k.lower() == "content-type"), ""
        )
        if "json" in content_type.lower():
            json.loads(request.body)

    def check_rendered(self, request: OutgoingRequest, event: Event, webhook: Webhook) -> None:
        """Further assertions on a rendered sample event (none by default)."""

    def sample_event(self, event_type: str) -> Event:
        """The event the rendering and delivery tests use for `event_type`."""
        return Event(
            event_type=event_type,
            data=SAMPLE_DATA.get(event_type, {"title": "Something new", "detail": 1}),
            user_id="dev_conformance",
            empathy_level=4,
        )

    def build_plugin_manager(self) -> PluginManager:
        """The plugin manager the suite uses: `plugin` alone (with the core's defaults), or
        every installed entry point when `plugin` is None."""
        if self.plugin is None:
            return build_plugin_manager()
        return build_plugin_manager(load_entry_points=False, extra_plugins=[self.plugin])

    @contextlib.asynccontextmanager
    async def fake_service(self, mode: ServiceMode) -> AsyncIterator[FakeService]:
        """Run the fake service: answering with `success_reply` ("success"), `failure_reply`
        ("failure"), or `failure_reply` with the secrets echoed first in its body ("leak").
        Override for a target that is not HTTP."""
        async with Receiver() as receiver:
            if mode == "success":
                receiver.handler = self.success_reply
            elif mode == "failure":
                receiver.handler = self.failure_reply
            else:
                leaked = " ".join(self._secrets(self.make_webhook(receiver.url())))
                receiver.handler = lambda request: _echo(
                    self.failure_reply(request), leaked, request
                )
            yield ReceiverService(receiver)

    @contextlib.asynccontextmanager
    async def garbled_service(self) -> AsyncIterator[FakeService]:
        """A service whose answer is not HTTP: a malformed status line, thousands of
        characters long, quoting the request and the secrets. The default suits HTTP targets;
        a target that overrides `fake_service` (SMTP) overrides this too, or the test skips."""
        leaked = " ".join(self._secrets(self.make_webhook("http://127.0.0.1:9/conformance")))
        async with _GarbledService(leaked) as service:
            yield service

    def check_delivered(
        self, service: FakeService, event: Event, rendered: OutgoingRequest
    ) -> None:
        """What the service must have seen after one successful delivery. The default: exactly
        `requests_per_delivery` requests, and for single-request targets the rendered bytes."""
        received = service.received()
        assert len(received) == self.requests_per_delivery, (
            f"expected {self.requests_per_delivery} request(s) for one delivery, "
            f"got {len(received)}"
        )
        if self.requests_per_delivery == 1 and isinstance(service, ReceiverService):
            assert received[0] == rendered.body, "the service received other bytes than rendered"

    # -- helpers ---------------------------------------------------------------------------

    def _secrets(self, webhook: Webhook) -> list[str]:
        from ..redaction import MIN_SECRET_LENGTH

        values = {*self.secrets, *webhook.secret_values()}
        # Shorter values cannot be masked without masking ordinary words; none should exist.
        return sorted(v for v in values if len(v) >= MIN_SECRET_LENGTH)

    def _render(self, webhook: Webhook, event: Event, pm: PluginManager) -> OutgoingRequest:
        from ..delivery import render_request

        return render_request(webhook, event, plugin_manager=pm)

    async def _deliver(
        self,
        mode: ServiceMode | Literal["garbled"],
        event: Event,
        callback: Callable[..., Any] | None = None,
        *,
        store: str | None = None,
    ) -> _Run:
        """Deliver `event` once through a real dispatcher to the fake service in `mode`
        (`store`: a store URL, default memory); `callback`, if given, is called from the
        webhook's `on_failure` too."""
        pm = self.build_plugin_manager()
        recorder = _Recorder()
        pm.register(recorder, name="conformance-recorder")
        callbacks: list[tuple[Webhook, Event, DeliveryError]] = []

        def on_failure(webhook: Webhook, event: Event, error: DeliveryError) -> None:
            callbacks.append((webhook, event, error))
            if callback is not None:
                callback(webhook, event, error)

        service_context = self.garbled_service() if mode == "garbled" else self.fake_service(mode)
        async with service_context as service:
            webhook = attrs.evolve(
                self.make_webhook(service.url), on_failure=on_failure, retry_policy=FAST_RETRY
            )
            async with WebhookDispatcher([webhook], plugin_manager=pm, store=store) as dispatcher:
                rendered = dispatcher.render(webhook, event)
                routed = await dispatcher.emit_event(event)
                assert routed == [webhook.name], f"the event was not routed to {webhook.name!r}"
                await dispatcher.drain(timeout=self.delivery_timeout)
                dead = await dispatcher.dead_letters()
                store_bytes = b""
                if store is not None and store.startswith("sqlite:///"):
                    database = Path(store.removeprefix("sqlite:///"))
                    store_bytes = b"".join(
                        path.read_bytes()
                        for path in sorted(database.parent.glob(database.name + "*"))
                    )
            return _Run(
                webhook=webhook,
                service=service,
                rendered=rendered,
                successes=recorder.successes,
                hook_failures=recorder.failures,
                callbacks=callbacks,
                dead_letters=dead,
                store_bytes=store_bytes,
            )

    def _failure_places(self, run: _Run, logs: str) -> dict[str, str]:
        """Every place a failed delivery's text can be read from, by name."""
        assert len(run.callbacks) == 1, "the failure was not reported to on_failure"
        error = run.callbacks[0][2]
        places = {
            "logs": logs,
            "repr(webhook)": repr(run.webhook),
            "str(error)": str(error),
            "repr(error)": repr(error),
            "error.args": repr(error.args),
            "error.reason": str(error.reason),
            "error.body_excerpt": str(error.body_excerpt),
            "error.to_dict()": json.dumps(error.to_dict(), ensure_ascii=False),
            "on_failure hook's error": " ".join(repr(e) for e in run.hook_failures),
            "dead letter": json.dumps(
                [d.to_dict() for d in run.dead_letters], ensure_ascii=False, default=str
            ),
            "SQLite store file": run.store_bytes.decode("utf-8", "replace"),
        }
        places.update(exception_texts("error.last_exception", error.last_exception))
        return places

    # -- the tests -------------------------------------------------------------------------

    def test_plugin_declares_the_webhook_type(self) -> None:
        webhook = self.make_webhook("http://127.0.0.1:9/conformance")
        types = hooks_for(self.build_plugin_manager()).webhook_types()
        assert webhook.kind in types, f"no plugin declares type {webhook.kind!r}: {sorted(types)}"
        assert isinstance(webhook, types[webhook.kind])

    def test_the_core_routes_the_webhook_to_its_plugin(self) -> None:
        """Its per-type hooks are asked of the plugin that registered the type, first."""
        pm = self.build_plugin_manager()
        webhook = self.make_webhook("http://127.0.0.1:9/conformance")
        owners = hooks_for(pm).route(type(webhook)).owners
        assert owners, f"no loaded plugin registered {type(webhook).__name__} or an ancestor"
        if self.plugin is not None:
            assert owners[0] == pm.get_name(self.plugin), (
                f"{type(webhook).__name__} is routed to {owners[0]!r}, not to the plugin under "
                "test: does another plugin register the same class?"
            )

    @pytest.mark.parametrize(
        "event_type", [*(member.value for member in EventType), UNKNOWN_EVENT_TYPE]
    )
    def test_renders_event_type(self, event_type: str) -> None:
        pm = self.build_plugin_manager()
        webhook = self.make_webhook("http://127.0.0.1:9/conformance")
        event = self.sample_event(event_type)
        request = self._render(webhook, event, pm)
        assert isinstance(request, OutgoingRequest)
        assert request.body, "an empty body"
        self.check_limits(request, webhook)
        self.check_rendered(request, event, webhook)
        again = self._render(webhook, event, pm)
        assert (again.url, again.method, dict(again.headers), again.body) == (
            request.url,
            request.method,
            dict(request.headers),
            request.body,
        ), "rendering is not deterministic"

    def test_renders_minimal_event(self) -> None:
        """An event with no data, no user, no level: every field a formatter reads is absent."""
        webhook = self.make_webhook("http://127.0.0.1:9/conformance")
        request = self._render(webhook, Event(event_type="alert"), self.build_plugin_manager())
        self.check_limits(request, webhook)

    def test_generated_events_render_within_limits(self) -> None:
        if hypothesis is None:
            pytest.skip("hypothesis is not installed")
        pm = self.build_plugin_manager()
        webhook = self.make_webhook("http://127.0.0.1:9/conformance")

        @hypothesis.settings(
            max_examples=self.max_examples,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(hypothesis.HealthCheck),
            # Shrinking examples that hold 20,000-character strings takes minutes; the
            # assertion's own message says what went wrong.
            phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        )
        @hypothesis.given(event=event_strategy(self.huge_text_chars))
        def renders(event: Event) -> None:
            self.check_limits(self._render(webhook, event, pm), webhook)

        renders()

    def test_delivers_through_the_pipeline(self) -> None:
        event = self.sample_event(EventType.SECURITY_VULNERABILITY)
        run = asyncio.run(self._deliver("success", event))
        assert not run.callbacks, f"on_failure was called: {run.callbacks[0][2]}"
        assert not run.dead_letters, f"dead letters: {[d.error for d in run.dead_letters]}"
        assert [r.event_id for r in run.successes] == [event.event_id]
        assert run.successes[0].webhook_name == run.webhook.name
        self.check_delivered(run.service, event, run.rendered)

    def test_final_failure_reaches_on_failure_and_dead_letters(self) -> None:
        event = self.sample_event(EventType.BUG_DETECTED)
        run = asyncio.run(self._deliver("failure", event))
        assert not run.successes, "a refused delivery was reported as a success"
        assert len(run.callbacks) == 1, (
            f"the webhook's on_failure was called {len(run.callbacks)} times"
        )
        _, told_event, error = run.callbacks[0]
        assert isinstance(error, DeliveryError)
        assert told_event.event_id == event.event_id == error.event_id
        assert error.webhook_name == run.webhook.name
        assert error.attempts >= 1
        assert [e.event_id for e in run.hook_failures] == [event.event_id], (
            "the plugins' on_failure hook was not told"
        )
        assert [d.event.event_id for d in run.dead_letters] == [event.event_id]

    def test_repr_hides_secrets(self) -> None:
        with isolated_registry():
            webhook = self.make_webhook("http://127.0.0.1:9/conformance")
            shown = {"repr(webhook)": repr(webhook), "str(webhook)": str(webhook)}
            shown["describe()"] = webhook.describe()
            request = self._render(
                webhook, self.sample_event(EventType.ALERT), self.build_plugin_manager()
            )
            shown["repr(rendered request)"] = repr(request)
            leaks = find_leaks(self._secrets(webhook), shown)
        assert not leaks, "a secret appears in a repr: " + "; ".join(leaks)

    def test_cli_render_and_validate_hide_secrets(self) -> None:
        """What `empathy-webhooks render` and `validate` print for this webhook, in each
        output mode (plain text, rich, `--json`)."""
        from ..cli import render as render_cmd
        from ..cli import validate as validate_cmd
        from ..cli._common import Output

        places: dict[str, str] = {}
        with isolated_registry():
            webhook = self.make_webhook("http://127.0.0.1:9/conformance")
            pm = self.build_plugin_manager()
            event = self.sample_event(EventType.SECURITY_VULNERABILITY)
            for mode in ("plain", "rich", "json"):
                out = Output(json_mode=mode == "json", plain=True)
                if mode == "rich":
                    from rich.console import Console

                    out.rich = True
                    out._console = Console(file=io.StringIO(), width=1000, highlight=False)
                with _captured_stdout() as printed:
                    entries = render_cmd.render_entries([webhook], event, pm)
                    render_cmd.show(out, event, entries)
                    validate_cmd.show(out, "conformance.toml", None, [webhook])
                text = printed.getvalue()
                if mode == "rich":
                    text += out.console.file.getvalue()
                assert text.strip(), f"render and validate printed nothing ({mode})"
                assert not any("error" in entry for entry in entries), entries
                places[f"CLI render/validate output ({mode})"] = text
            leaks = find_leaks(self._secrets(webhook), places)
        assert not leaks, "a secret appears in CLI output: " + "; ".join(leaks)

    def test_secrets_stay_out_of_logs_and_errors(self) -> None:
        """The service echoes the request (headers, URL, body) and the secrets in its
        refusal: none reaches a log line, the error, its exception or a dead letter."""
        event = self.sample_event(EventType.SECURITY_VULNERABILITY)
        with isolated_registry(), tempfile.TemporaryDirectory() as folder:
            store = f"sqlite:///{Path(folder) / 'conformance.db'}"
            with _capture_logs() as logs:
                run = asyncio.run(self._deliver("leak", event, store=store))
            secrets = self._secrets(run.webhook)
            places = self._failure_places(run, logs.getvalue())
            leaks = find_leaks(secrets, places)
        assert places["logs"], "nothing was logged at DEBUG (is the logger silenced?)"
        assert run.store_bytes, "the SQLite store wrote nothing"
        assert [d.event.event_id for d in run.dead_letters] == [event.event_id]
        assert not leaks, "leaked: " + "; ".join(leaks)

    def test_garbled_answer_stays_small_and_hides_secrets(self) -> None:
        """A malformed status line, tens of thousands of characters long and quoting the
        request and the secrets: the failure is reported, bounded, with no secret."""
        if (
            type(self).fake_service is not WebhookConformance.fake_service
            and type(self).garbled_service is WebhookConformance.garbled_service
        ):
            pytest.skip("not an HTTP target: override garbled_service to run this test")
        event = self.sample_event(EventType.ALERT)
        with isolated_registry():
            with _capture_logs() as logs:
                run = asyncio.run(self._deliver("garbled", event))
            secrets = self._secrets(run.webhook)
            places = self._failure_places(run, logs.getvalue())
            leaks = find_leaks(secrets, places)
        assert run.service.received(), "the garbled service got no request"
        assert not leaks, "leaked: " + "; ".join(leaks)
        error = run.callbacks[0][2]
        assert len(error.reason) <= 500, f"a reason of {len(error.reason)} characters"
        dead = json.dumps([d.error for d in run.dead_letters], ensure_ascii=False)
        assert len(dead) <= MAX_DEAD_LETTER_CHARS, f"a dead letter of {len(dead)} characters"
        for line in places["logs"].splitlines():
            assert len(line) <= MAX_DEAD_LETTER_CHARS, f"a log line of {len(line)} characters"

    def test_the_reference_failure_callback_reads_webhook_url(self) -> None:
        """The reference's `on_failure` logs `webhook.url` and stores `(webhook.url, event)`
        for a manual retry: on a real final failure it must run to its end, for every type."""
        stored: list[tuple[str, str]] = []

        def on_webhook_failure(webhook: Any, event: Event, error: DeliveryError) -> None:
            logging.getLogger("conformance.reference").error(f"Webhook failed: {webhook.url}")
            stored.append((webhook.url, event.event_id))  # store_failed_webhook(...)

        event = self.sample_event(EventType.BUG_DETECTED)
        run = asyncio.run(self._deliver("failure", event, on_webhook_failure))
        assert len(run.callbacks) == 1, "the failure was not reported"
        assert len(stored) == 1, (
            f"the reference's callback did not run to its end: does {type(run.webhook).__name__}"
            " have a `url`?"
        )
        url, event_id = stored[0]
        assert event_id == event.event_id
        assert isinstance(url, str) and "://" in url, f"webhook.url is not a URL: {url!r}"
        for secret in self._secrets(run.webhook):
            assert secret not in url, f"webhook.url shows a secret ({secret[:3]}…)"
