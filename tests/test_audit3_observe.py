"""Audit of what the project tells operators about deliveries: the figures of
`get_webhook_stats` (exact under concurrency, retries, final failures, replays, a plugin's
faulty answer, a close that leaves deliveries behind), the Prometheus exposition (valid text
whatever the webhooks are named, no secret, no series lost), the redaction of log lines and
texts (URLs, auth headers of every scheme, nested fields, dict keys), and the library's
silence when the application configured no logging.

Everything runs through a real dispatcher and a real loopback receiver where a delivery is
involved; the scrape is parsed with prometheus_client's own parser.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, ClassVar

import attrs
import pytest

from empathy_webhooks_core import (
    CustomWebhook,
    OutgoingRequest,
    Response,
    Webhook,
    WebhookDispatcher,
    WebhookMonitor,
    hookimpl,
)
from empathy_webhooks_core.monitor import STAT_DEFINITIONS, UnknownWebhookError
from empathy_webhooks_core.plugins import build_plugin_manager
from empathy_webhooks_core.redaction import (
    exported_name,
    isolated_registry,
    redact_processor,
    redact_text,
    register_secrets,
)
from empathy_webhooks_core.testing import Receiver, Reply

from .conftest import FAST

# -- figures: a plugin's answer with a duration that is none -----------------------------------


@attrs.frozen(kw_only=True, eq=False)
class TimedWebhook(Webhook):
    kind: ClassVar[str] = "audit3_timed"

    url: str


class Timed:
    """A plugin whose `deliver` answers 200 with the `elapsed_ms` it was given."""

    def __init__(self, elapsed: Any) -> None:
        self.elapsed = elapsed

    @hookimpl
    def webhook_types(self) -> dict[str, type[Webhook]]:
        return {"audit3_timed": TimedWebhook}

    @hookimpl
    def format_payload(self, webhook: TimedWebhook, event: Any) -> OutgoingRequest:
        return OutgoingRequest(url=webhook.url, body=b"{}")

    @hookimpl
    def deliver(self, webhook: TimedWebhook, request: OutgoingRequest, session: Any) -> Any:
        async def answer() -> Response:
            return Response(status=200, elapsed_ms=self.elapsed)

        return answer()


async def _timed_stats(elapsed: Any) -> tuple[dict[str, Any], list[Any]]:
    pm = build_plugin_manager(load_entry_points=False, extra_plugins=[Timed(elapsed)])
    webhook = TimedWebhook(name="timed", url="http://127.0.0.1:9/x", retry_policy=FAST)
    async with WebhookDispatcher(webhooks=[webhook], plugin_manager=pm) as dispatcher:
        await dispatcher.emit("alert", {})
        await dispatcher.drain(timeout=5)
        return dispatcher.get_webhook_stats("timed"), await dispatcher.dead_letters()


@pytest.mark.parametrize(
    "elapsed", ["fast", None, float("nan"), float("inf"), -5.0, True, 1e300, 10**400]
)
async def test_an_answer_whose_duration_is_none_is_still_a_delivery(elapsed: Any) -> None:
    """Before: a string or None failed the worker in the figures' own `+=` after the service
    had said 200, so the delivery was dead-lettered as failed (and a replay sent it twice);
    NaN or infinity made every later average NaN, and the figures invalid JSON."""
    stats, letters = await _timed_stats(elapsed)
    assert letters == []
    assert (stats["delivered_count"], stats["failed_count"], stats["attempts"]) == (1, 0, 1)
    assert stats["avg_response_time_ms"] == 0.0
    assert stats["p50_response_time_ms"] is None
    json.dumps(stats, allow_nan=False)


async def test_an_odd_duration_is_still_a_delivery_with_debug_logging_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The per-attempt debug line rounded the duration: with debug on, a string failed the
    worker after the service had said 200."""
    import logging

    caplog.set_level(logging.DEBUG, logger="empathy_webhooks")
    stats, letters = await _timed_stats("fast")
    assert letters == [] and stats["delivered_count"] == 1
    assert any("delivery_attempt" in r.getMessage() for r in caplog.records)


async def test_an_answer_with_a_whole_number_of_milliseconds_is_timed() -> None:
    stats, _ = await _timed_stats(3)
    assert (stats["avg_response_time_ms"], stats["p50_response_time_ms"]) == (3.0, 3.0)


# -- figures: exact under concurrency, retries and final failures ----------------------------


async def test_figures_add_up_under_concurrency_retries_and_final_failures(
    receiver: Receiver,
) -> None:
    rng = random.Random(7)
    receiver.queue(*[Reply(status=rng.choice([200, 200, 500, 503, 400])) for _ in range(1500)])
    webhook = CustomWebhook(
        name="busy",
        url=receiver.url(),
        retry_policy={**FAST, "max_retries": 2},
        circuit_breaker=False,
        max_concurrency=16,
    )
    emitted = 200
    async with WebhookDispatcher(webhooks=[webhook]) as dispatcher:
        await asyncio.gather(*[dispatcher.emit("alert", {"n": n}) for n in range(emitted)])
        await dispatcher.drain(timeout=30)
        stats = dispatcher.get_webhook_stats("busy")
        letters = await dispatcher.dead_letters("busy")
    assert stats["attempts"] == len(receiver.requests)
    # Every delivery had exactly one first attempt: the rest are retries.
    assert stats["attempts"] - stats["retries"] == emitted
    assert stats["total_sent"] == stats["delivered_count"] + stats["failed_count"] == emitted
    assert stats["failed_count"] == stats["dead_letters"] == len(letters)
    assert stats["delivered_count"] == len({r.event_id for r in receiver.delivered})
    assert (stats["queued"], stats["in_flight"], stats["left_at_close"]) == (0, 0, 0)
    assert stats["success_rate"] == pytest.approx(stats["delivered_count"] / emitted)
    assert 0 < stats["success_rate"] < 1


async def test_a_retry_that_later_succeeds_is_one_delivery_and_no_failure(
    receiver: Receiver,
) -> None:
    receiver.queue(Reply(status=503), Reply(status=500))
    webhook = CustomWebhook(name="flaky", url=receiver.url(), retry_policy=FAST)
    async with WebhookDispatcher(webhooks=[webhook]) as dispatcher:
        await dispatcher.emit("alert", {})
        await dispatcher.drain(timeout=5)
        stats = dispatcher.get_webhook_stats("flaky")
    assert (stats["total_sent"], stats["delivered_count"], stats["failed_count"]) == (1, 1, 0)
    assert (stats["attempts"], stats["retries"], stats["success_rate"]) == (3, 2, 1.0)
    assert stats["dead_letters"] == 0
    assert stats["last_error"] is not None and "500" in stats["last_error"]
    assert stats["last_success_at"] is not None


async def test_a_replayed_dead_letter_counts_once_failed_and_once_delivered(
    receiver: Receiver,
) -> None:
    """What STAT_DEFINITIONS says: a replay is a new delivery; the counts only grow (they are
    Prometheus counters), so the failure stays counted and the replay's success is added."""
    receiver.queue(Reply(status=400))
    webhook = CustomWebhook(name="replayed", url=receiver.url(), retry_policy=FAST)
    async with WebhookDispatcher(webhooks=[webhook]) as dispatcher:
        await dispatcher.emit("alert", {})
        await dispatcher.drain(timeout=5)
        before = dispatcher.get_webhook_stats("replayed")
        [letter] = await dispatcher.dead_letters()
        await dispatcher.replay_dead_letter(letter.dead_letter_id)
        await dispatcher.drain(timeout=5)
        after = dispatcher.get_webhook_stats("replayed")
    assert (before["failed_count"], before["dead_letters"], before["total_sent"]) == (1, 1, 1)
    assert (after["failed_count"], after["delivered_count"], after["total_sent"]) == (1, 1, 2)
    assert (after["dead_letters"], after["attempts"], after["success_rate"]) == (0, 2, 0.5)
    assert "replayed dead letter is a new delivery" in STAT_DEFINITIONS["total_sent"]


async def test_a_breaker_held_delivery_is_queued_not_in_flight(receiver: Receiver) -> None:
    receiver.respond(status=503)
    webhook = CustomWebhook(
        name="held",
        url=receiver.url(),
        retry_policy={"max_retries": 0},
        circuit_breaker={"min_attempts": 2, "failure_rate": 0.5, "open_seconds": 600},
        max_concurrency=1,
    )
    dispatcher = WebhookDispatcher(webhooks=[webhook])
    try:
        for n in range(5):
            await dispatcher.emit("alert", {"n": n})
        await receiver.wait_for(2)
        for _ in range(50):
            stats = dispatcher.get_webhook_stats("held")
            if stats["breaker_state"] == "open" and stats["in_flight"] == 0:
                break
            await asyncio.sleep(0.02)
        assert stats["breaker_state"] == "open"
        assert stats["failed_count"] == 2 and stats["in_flight"] == 0
        assert stats["queued"] == 3  # waiting at the open breaker, none lost nor in flight
    finally:
        await dispatcher.close(drain=False)


# -- figures: reference names and meanings ----------------------------------------------------


async def test_no_delivery_yet_gives_zero_rates_not_nan_and_the_reference_snippet_works(
    receiver: Receiver,
) -> None:
    webhook = CustomWebhook(name="quiet", url=receiver.url())
    async with WebhookDispatcher(webhooks=[webhook]):
        stats = WebhookMonitor().get_webhook_stats("quiet")
    assert (stats["total_sent"], stats["success_rate"], stats["avg_response_time_ms"]) == (
        0,
        0.0,
        0.0,
    )
    assert stats["p95_response_time_ms"] is None
    json.dumps(stats, allow_nan=False)
    # The reference's own lines.
    assert f"Success rate: {stats['success_rate']:.0%}" == "Success rate: 0%"
    assert f"Avg response time: {stats['avg_response_time_ms']}ms" == "Avg response time: 0.0ms"


async def test_every_figure_is_defined_and_every_defined_figure_is_given(
    receiver: Receiver,
) -> None:
    webhook = CustomWebhook(name="defined", url=receiver.url())
    async with WebhookDispatcher(webhooks=[webhook]) as dispatcher:
        await dispatcher.emit("alert", {})
        await dispatcher.drain(timeout=5)
        stats = dispatcher.get_webhook_stats("defined")
    # Present only once a plugin's success reported details, or a plugin reports figures.
    conditional = {"details", "last_details", "plugin.<plugin>.<figure>"}
    assert set(stats) == set(STAT_DEFINITIONS) - conditional
    assert "milliseconds" in STAT_DEFINITIONS["avg_response_time_ms"]
    # Milliseconds, as the name says: a loopback answer is well under a second.
    assert 0 < stats["avg_response_time_ms"] < 1000


async def test_deliveries_a_memory_store_lost_at_close_are_not_reported_as_waiting(
    receiver: Receiver,
) -> None:
    """Before: the closed dispatcher's figures said `queued: 3` for good, though the memory
    store had lost them; now nothing waits, and `left_at_close` says how many were left."""
    receiver.respond(status=503)
    webhook = CustomWebhook(
        name="left_behind",
        url=receiver.url(),
        retry_policy={"initial_delay_seconds": 30, "max_retries": 3},
        circuit_breaker=False,
    )
    dispatcher = WebhookDispatcher(webhooks=[webhook])
    for _ in range(3):
        await dispatcher.emit("alert", {})
    await receiver.wait_for(3)
    for _ in range(50):
        if dispatcher.get_webhook_stats("left_behind")["in_flight"] == 0:
            break
        await asyncio.sleep(0.02)
    running = dispatcher.get_webhook_stats("left_behind")
    assert (running["queued"], running["left_at_close"]) == (3, 0)
    await dispatcher.close(drain=False)
    for stats in (
        WebhookMonitor().get_webhook_stats("left_behind"),
        dispatcher.get_webhook_stats("left_behind"),
    ):
        assert (stats["queued"], stats["in_flight"], stats["left_at_close"]) == (0, 0, 3)
        assert (stats["attempts"], stats["total_sent"]) == (3, 0)


class _NaNFigures:
    @hookimpl
    def webhook_stats(self, webhook: Any, state: Any) -> dict[str, Any]:
        return {"ratio": float("nan"), "peak": float("inf"), "sent": 4}


async def test_a_plugin_figure_that_is_not_finite_does_not_make_the_figures_invalid_json(
    receiver: Receiver,
) -> None:
    pm = build_plugin_manager(
        env={"EMPATHY_WEBHOOKS_LOAD_PLUGINS": ""}, extra_plugins=[_NaNFigures()]
    )
    webhook = CustomWebhook(name="nan_figures", url=receiver.url())
    async with WebhookDispatcher(webhooks=[webhook], plugin_manager=pm) as dispatcher:
        stats = dispatcher.get_webhook_stats("nan_figures")
    figures = {key.rsplit(".", 1)[-1]: value for key, value in stats.items() if "plugin." in key}
    assert figures == {"ratio": None, "peak": None, "sent": 4}
    json.dumps(stats, allow_nan=False)


def test_all_stats_leaves_out_a_webhook_that_went_between_listing_and_reading() -> None:
    class Racing(WebhookMonitor):
        def webhook_names(self) -> list[str]:
            return [*super().webhook_names(), "gone_meanwhile_audit3"]

    with pytest.raises(UnknownWebhookError):
        Racing().get_webhook_stats("gone_meanwhile_audit3")
    assert "gone_meanwhile_audit3" not in Racing().all_stats()


def test_a_read_that_meets_a_collection_changing_is_made_again() -> None:
    from empathy_webhooks_core.monitor import _copied

    calls = []

    def read() -> list[int]:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("Set changed size during iteration")
        return [1]

    assert _copied(read) == [1] and len(calls) == 2


# -- Prometheus --------------------------------------------------------------------------------

prometheus_client = pytest.importorskip("prometheus_client", reason="the prometheus extra")

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


async def _scrape(dispatcher: WebhookDispatcher) -> str:
    from empathy_webhooks_core.prometheus import register_collector

    registry = prometheus_client.CollectorRegistry()
    register_collector(registry, dispatcher.monitor)
    return prometheus_client.generate_latest(registry).decode("utf-8")


def _families(text: str) -> list[Any]:
    from prometheus_client.parser import text_string_to_metric_families

    return list(text_string_to_metric_families(text))


HOSTILE_NAMES = {
    'quo"te': 'quo"te',
    "back\\slash": "back\\slash",
    "new\nline": "new\nline",
    "carriage\rreturn": "carriage\\rreturn",
    "nul\x00byte": "nul\\x00byte",
    "line\u2028separator": "line\\u2028separator",
    "lone\udcffsurrogate": "lone\\udcffsurrogate",
    "tab\tand ☃": "tab\tand ☃",
}


async def test_hostile_webhook_names_are_escaped_not_dropped_and_the_scrape_is_valid(
    receiver: Receiver,
) -> None:
    """Before: a name with a lone surrogate failed the whole scrape (UnicodeEncodeError),
    and a carriage return or NUL went raw into the text."""
    webhooks = [CustomWebhook(name=name, url=receiver.url()) for name in HOSTILE_NAMES]
    async with WebhookDispatcher(webhooks=webhooks) as dispatcher:
        await dispatcher.emit("alert", {})
        await dispatcher.drain(timeout=5)
        text = await _scrape(dispatcher)
    text.encode("utf-8")
    # One sample per line: nothing a line-oriented reader splits on is left raw.
    assert text.splitlines() == text.split("\n")[:-1]
    assert "\x00" not in text
    families = {family.name: family for family in _families(text)}
    delivered = families["empathy_webhooks_delivered"]
    labels = {sample.labels["webhook"]: sample.value for sample in delivered.samples}
    assert labels == dict.fromkeys(HOSTILE_NAMES.values(), 1.0)


async def test_two_webhooks_masked_alike_keep_two_series_and_no_secret(
    receiver: Receiver,
) -> None:
    """Before: both exported `https://hooks.slack.com/services/***`: two series with the same
    labels, of which Prometheus keeps one, so one webhook's figures were lost."""
    names = [f"https://hooks.slack.com/services/T0AUD/B0AUD{n}/AUDIT3SLACK{n}" for n in (1, 2)]
    webhooks = [CustomWebhook(name=name, url=receiver.url()) for name in names]
    async with WebhookDispatcher(webhooks=webhooks) as dispatcher:
        await dispatcher.emit("alert", {})
        await dispatcher.drain(timeout=5)
        text = await _scrape(dispatcher)
    assert "AUDIT3SLACK" not in text and "B0AUD" not in text
    families = {family.name: family for family in _families(text)}
    labels = [s.labels["webhook"] for s in families["empathy_webhooks_delivered"].samples]
    assert sorted(labels) == [
        "https://hooks.slack.com/services/*** #1",
        "https://hooks.slack.com/services/*** #2",
    ]
    seen = [
        (sample.name, tuple(sorted(sample.labels.items())))
        for family in families.values()
        for sample in family.samples
    ]
    assert len(seen) == len(set(seen)), "a repeated series"


async def test_the_scrape_follows_the_conventions_and_no_event_is_a_label(
    receiver: Receiver,
) -> None:
    receiver.queue(Reply(status=503))
    webhook = CustomWebhook(name="conventional", url=receiver.url(), retry_policy=FAST)
    async with WebhookDispatcher(webhooks=[webhook]) as dispatcher:
        events = [await dispatcher.emit(f"custom_type_{n}", {}) for n in range(3)]
        await dispatcher.drain(timeout=5)
        text = await _scrape(dispatcher)
    helps = re.findall(r"^# HELP (\S+) ", text, re.M)
    types = re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M)
    assert len(helps) == len(set(helps)) == len(types) == len({name for name, _ in types})
    for name, kind in types:
        assert _METRIC_NAME.fullmatch(name)
        samples = [
            line.split("{")[0].split(" ")[0]
            for line in text.splitlines()
            if line and not line.startswith("#") and line.split("{")[0].startswith(name)
        ]
        if kind == "counter":
            assert name.endswith("_total")
            created = name.removesuffix("_total") + "_created"
            assert samples and all(s in (name, created) for s in samples)
        if kind == "histogram":
            assert name.endswith("_seconds")
    for family in _families(text):
        for sample in family.samples:
            assert set(sample.labels) <= {"webhook", "le"}
    for event in events:
        assert event.event_id not in text
        assert event.event_type not in text


class _SecretKeyedFigures:
    @hookimpl
    def webhook_stats(self, webhook: Any, state: Any) -> dict[str, Any]:
        return {
            "https://hooks.slack.com/services/T0/B0/AUDIT3KEYSECRET": 1,
            "xoxb-1234-5678-AUDIT3BOT": 2,
        }


async def test_a_plugin_figure_keyed_by_a_secret_publishes_no_secret(receiver: Receiver) -> None:
    pm = build_plugin_manager(
        env={"EMPATHY_WEBHOOKS_LOAD_PLUGINS": ""}, extra_plugins=[_SecretKeyedFigures()]
    )
    webhook = CustomWebhook(name="keyed", url=receiver.url())
    async with WebhookDispatcher(webhooks=[webhook], plugin_manager=pm) as dispatcher:
        text = await _scrape(dispatcher)
    assert "AUDIT3KEYSECRET" not in text and "AUDIT3BOT" not in text
    assert "empathy_webhooks_plugin" in text


async def test_the_gateway_metrics_route_escapes_and_keeps_apart_what_it_exports(
    tmp_path: Path,
) -> None:
    import aiohttp

    from ._gateway_kit import TOKENS, call, config_text, gateway_at, write_config

    async with Receiver() as receiver:
        text = config_text(receiver.url())
        extra = "".join(
            f'\n[[webhooks]]\ntype = "custom"\nname = {json.dumps(name)}\n'
            f'url = "{receiver.url()}"\n'
            for name in (
                "https://hooks.slack.com/services/T0/B1/AUDIT3GWONE",
                "https://hooks.slack.com/services/T0/B2/AUDIT3GWTWO",
                'quo"te\\slash',
            )
        )
        path = write_config(
            tmp_path, text.replace("[[serve.tokens]]", extra + "\n[[serve.tokens]]", 1)
        )
        async with gateway_at(path) as (_gateway, url), aiohttp.ClientSession() as session:
            status, body, _ = await call(session, "GET", f"{url}/metrics", token="reader")
    assert status == 200, body
    assert TOKENS["reader"] not in body
    assert "AUDIT3GW" not in body
    labels = {
        sample.labels["webhook"]
        for family in _families(body)
        if family.name == "empathy_webhooks_queued"
        for sample in family.samples
    }
    assert labels == {
        "hook",
        "https://hooks.slack.com/services/*** #1",
        "https://hooks.slack.com/services/*** #2",
        'quo"te\\slash',
    }


# -- redaction: texts ---------------------------------------------------------------------------

LEAKY_TEXTS = {
    "absolute host name": "https://hooks.slack.com./services/T0A/B0B/AUDIT3SECRET",
    "no scheme": "posting to hooks.slack.com/services/T0A/B0B/AUDIT3SECRET failed",
    "percent-encoded": "url=https%3A%2F%2Fhooks.slack.com%2Fservices%2FT0A%2FB0B%2FAUDIT3SECRET",
    "json-escaped": '{"url": "https:\\/\\/hooks.slack.com\\/services\\/T0A\\/B0B\\/AUDIT3SECRET"}',
    "discord subdomain": "https://ptb.discord.com/api/webhooks/123456/AUDIT3SECRET",
    "discord no scheme": "discordapp.com/api/webhooks/123456/AUDIT3SECRET",
    "telegram bot": "https://api.telegram.org/bot123456:AUDIT3SECRET/sendMessage",
    "userinfo": "https://alice:AUDIT3SECRET@example.com/hook",
    "query token": "GET https://example.com/h?x=1&access_token=AUDIT3SECRET",
    "digest": 'got 401 for Digest username="bob", response="AUDIT3SECRET"',
    "aws sigv4": "AWS4-HMAC-SHA256 Credential=AKIAAUDIT3/x, Signature=AUDIT3SECRET",
    "negotiate": "used Negotiate YIIAUDIT3SECRET here",
    "ntlm": "used NTLM TlRMAUDIT3SECRET here",
    "apikey scheme": "with ApiKey AUDIT3SECRET sent",
    "sharedkey": "with SharedKey account:AUDIT3SECRET= sent",
    "oauth1": 'used OAuth oauth_token="AUDIT3SECRET", oauth_signature="AUDIT3SECRET"',
    "token params": 'with Token token="AUDIT3SECRET"',
    "header mid-line": "sent X-API-Key: AUDIT3SECRET to them",
    "logfmt": "retrying with api_token=AUDIT3SECRET level=info",
    "logfmt quoted": 'db_password="AUDIT3 SECRET" user=bob',
    "folded header": "X-Api-Token:\n\tAUDIT3SECRET",
    "folded bearer": "Authorization: Bearer\n AUDIT3SECRET",
    "crlf header": "HTTP/1.1 401\r\nX-Webhook-Secret: AUDIT3SECRET\r\n",
    "pretty json": '{\n  "token":\n    "AUDIT3SECRET"\n}',
    "slack token": "posted with xoxb-1234-5678-AUDIT3SECRET",
    "github token": "git push with ghp_AUDIT3SECRETabcdefghijklmnopqrstuv0123",
    "jwt": "got eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.AUDIT3SECRET_sig",
}


@pytest.mark.parametrize("text", LEAKY_TEXTS.values(), ids=LEAKY_TEXTS.keys())
def test_credentials_in_text_are_masked_by_their_shape(text: str) -> None:
    with isolated_registry():
        masked = redact_text(text)
    assert "AUDIT3SECRET" not in masked and "AUDIT3 SECRET" not in masked, masked


PLAIN_TEXTS = [
    "connection refused: Cannot connect to host 127.0.0.1:9 ssl:default [Connect call failed]",
    "status=503 reason=Service Unavailable",
    "DirectApiAuthorizationRequired: No sig",
    "has credentials (user:password@) and headers set Authorization: only one can be sent",
    "Bearer tokens are documented at https://example.com/docs",
    "Token expired, please refresh",
    "Negotiate failed; Mutual TLS required",
    "visit hooks.slack.com for details, or the discord.com/api docs",
    "https://hooks.slack.com/services/",
    "Content-Type: application/json\nX-Request-Id: 1234-5678",
    "expected key_count=5, got 3; exit code=1",
    "dedup_key=abc123 ordering_key=user-42",
    # A bare word with a value: prose, or an object's repr the conformance suite must see.
    "bad <token=abc>; SloppyWebhook(token='kit-token-do-not-leak-42')",
    'Traceback (most recent call last):\n  File "x.py", line 3, in <module>\nValueError: boom',
]


@pytest.mark.parametrize("text", PLAIN_TEXTS)
def test_plain_text_is_left_as_it_is(text: str) -> None:
    with isolated_registry():
        assert redact_text(text) == text


def test_a_multi_line_secret_is_masked_when_its_lines_come_apart() -> None:
    body = "\n".join(f"AUDIT3LINE{n:02d}" + "Q" * 40 for n in range(3))
    pem = f"-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----"
    with isolated_registry():
        register_secrets([pem])
        # Re-wrapped with other line endings and indented, as a traceback or a CRLF file shows it.
        shown = redact_text("key was:\r\n    " + body.replace("\n", "\r\n    "))
    assert "AUDIT3LINE" not in shown


def test_a_webhook_name_is_exported_without_a_credential_of_any_shape() -> None:
    with isolated_registry():
        assert exported_name("hooks.slack.com/services/T0/B0/AUDIT3SECRET") == (
            "hooks.slack.com/services/***"
        )
        assert "AUDIT3" not in exported_name("alerts xoxb-1234-5678-AUDIT3SECRET")
        register_secrets(["opsword"])
        # A plain name sharing a word with a registered secret is not mangled.
        assert exported_name("opsword-alerts") == "opsword-alerts"


# -- redaction: log fields ----------------------------------------------------------------------

SLACK = "https://hooks.slack.com/services/T0A/B0B/AUDIT3SECRET"


class _Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError(f"cannot show {SLACK}")


class _BrokenError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text")


@pytest.mark.parametrize(
    "fields",
    [
        {"webhooks": {SLACK: 3}},
        {"a": {"b": [{"c": {SLACK: 1}}]}},
        {"m": {(SLACK, 1): 2}},
        {"m": {SLACK.encode(): 2}},
        {"m": {frozenset([SLACK]): 1}},
        {"headers": {"Authorization": {"scheme": "Bearer", "value": "AUDIT3SECRET"}}},
        {"credentials": attrs.make_class("C", ["v"])("AUDIT3SECRET")},
        {"d": [[[[[[[[[[[SLACK]]]]]]]]]]]},
    ],
    ids=[
        "dict key",
        "nested key",
        "tuple key",
        "bytes key",
        "frozenset key",
        "dict under secret name",
        "object under secret name",
        "deep",
    ],
)
def test_log_fields_are_masked_keys_and_nested_values_alike(fields: dict[str, Any]) -> None:
    """Before: dict keys were never masked (the dispatcher's own closed_with_pending_deliveries
    line is keyed by webhook name), and a dict under a secret-named key was recursed into."""
    with isolated_registry():
        out = redact_processor(None, "info", {"event": "x", **fields})
    assert "AUDIT3SECRET" not in repr(out), out


def test_two_keys_masked_alike_are_both_kept() -> None:
    with isolated_registry():
        out = redact_processor(
            None, "info", {"event": "x", "webhooks": {SLACK: 1, SLACK.replace("B0B", "B0C"): 2}}
        )
    assert sorted(out["webhooks"].values()) == [1, 2]
    assert "AUDIT3SECRET" not in repr(out)


def test_a_field_whose_repr_or_str_raises_does_not_break_the_line() -> None:
    with isolated_registry():
        out = redact_processor(
            None, "error", {"event": "x", "thing": _Unprintable(), "error": _BrokenError()}
        )
    assert out["thing"] == "<unprintable _Unprintable>"
    assert out["error"].startswith("_BrokenError")


async def test_the_closing_line_keyed_by_webhook_name_shows_no_secret(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="empathy_webhooks")
    receiver.respond(status=503)
    webhook = CustomWebhook(
        name=SLACK,
        url=receiver.url(),
        retry_policy={"initial_delay_seconds": 30},
        circuit_breaker=False,
    )
    dispatcher = WebhookDispatcher(webhooks=[webhook])
    await dispatcher.emit("alert", {})
    await receiver.wait_for(1)
    await dispatcher.close(drain=False)
    lines = [r.getMessage() for r in caplog.records if r.name == "empathy_webhooks"]
    assert any("closed_with_pending_deliveries" in line for line in lines)
    assert not any("AUDIT3SECRET" in line for line in lines), lines


async def test_a_configured_structlog_gets_the_keys_masked_too(receiver: Receiver) -> None:
    import structlog
    from structlog.testing import capture_logs

    from empathy_webhooks_core._log import get_logger

    try:
        with capture_logs() as captured:
            get_logger().warning("audit3_line", webhooks={SLACK: 1}, token="AUDIT3SECRET")
    finally:
        structlog.reset_defaults()
    [line] = [entry for entry in captured if entry["event"] == "audit3_line"]
    assert "AUDIT3SECRET" not in repr(line)


# -- library etiquette: silent and cheap when nobody configured logging ------------------------


def test_nothing_is_printed_by_any_of_the_package_s_loggers_when_nothing_is_configured() -> None:
    """Before: a module logging through `logging.getLogger(__name__)` (the SQLite store's
    writer thread) was outside the `empathy_webhooks` logger and its NullHandler, so its
    errors reached Python's last resort: stderr."""
    script = textwrap.dedent(
        """
        import logging
        import empathy_webhooks_core
        from empathy_webhooks_core._log import get_logger
        logging.getLogger("empathy_webhooks_core.stores.sqlite").error("write failed")
        logging.getLogger("empathy_webhooks_core").warning("package line")
        get_logger().error("library_line", reason="x")
        get_logger().exception("library_exception")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("", "")


def test_a_line_nobody_listens_to_is_never_rendered_nor_masked() -> None:
    """With logging left unconfigured, the root logger's default level enables warnings and
    errors, and our NullHandler took them: each was rendered and masked (tens of
    microseconds, on every failure of an outage) to be thrown away. Now no value of a line
    nobody hears is even looked at, whatever its level; once a handler is added, it is."""
    script = textwrap.dedent(
        """
        import logging
        from empathy_webhooks_core._log import get_logger

        shown = []

        class Watched:
            def __repr__(self):
                shown.append(1)
                return "watched"

        log = get_logger()
        for level in ("debug", "info", "warning", "error", "exception"):
            getattr(log, level)("silent_line", value=Watched(), nested={"k": Watched()})
        assert not log.enabled_for("error") and log.plain("error") is None
        unheard = len(shown)
        quiet = logging.StreamHandler(open("/dev/null", "w"))
        logging.getLogger("empathy_webhooks").addHandler(quiet)
        log.warning("heard_line", value=Watched())
        assert log.enabled_for("warning") and not log.enabled_for("debug")
        print(unheard, len(shown))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    unheard, heard = map(int, done.stdout.split())
    assert (unheard, done.stderr) == (0, "") and heard >= 1
