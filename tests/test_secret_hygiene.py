"""No secret string reaches a log line, a repr, an error's text or a dead letter, through a real
failing delivery to a service that echoes every header it got back in its error body."""

from __future__ import annotations

import io
import json
import logging
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from empathy_webhooks_core import CustomWebhook, DeliveryError, WebhookDispatcher
from empathy_webhooks_core.testing import ReceivedRequest, Receiver, Reply

from .conftest import FAST


class Secrets:
    def __init__(self) -> None:
        self.token = "tok" + secrets.token_hex(12)
        self.api_key = "key" + secrets.token_hex(12)
        self.signing = "sig" + secrets.token_hex(12)
        self.query = "qry" + secrets.token_hex(12)

    def all(self) -> list[str]:
        return [self.token, self.api_key, self.signing, self.query]

    def leaked(self, text: str) -> list[str]:
        return [value for value in self.all() if value in text]


def echo_headers(request: ReceivedRequest) -> Reply:
    """A service that answers 500 and repeats what it was sent (as some error pages do)."""
    body = {"error": "boom", "query": dict(request.query), "you_sent": dict(request.headers)}
    return Reply(status=500, body=json.dumps(body))


class Run:
    def __init__(self, webhook: CustomWebhook) -> None:
        self.webhook = webhook
        self.errors: list[DeliveryError] = []
        self.dead: list[Any] = []


async def failing_delivery(receiver: Receiver, keys: Secrets) -> Run:
    receiver.handler = echo_headers
    run: Run

    def on_failure(webhook: Any, event: Any, error: DeliveryError) -> None:
        run.errors.append(error)

    webhook = CustomWebhook(
        name="hygiene",
        url=receiver.url(f"/hook?token={keys.query}&format=json"),
        headers={"Authorization": f"Bearer {keys.token}", "X-API-Key": keys.api_key},
        signing_secret=keys.signing,
        retry_policy={**FAST, "max_retries": 2},
        on_failure=on_failure,
    )
    run = Run(webhook)
    async with WebhookDispatcher(webhooks=[webhook]) as dispatcher:
        await dispatcher.emit("alert", {"message": "disk full"})
        await dispatcher.drain()
        run.dead = await dispatcher.dead_letters()
    # The service really did receive every credential: the test would prove nothing otherwise.
    assert len(receiver.requests) == 3
    sent = receiver.requests[0]
    assert sent.header("Authorization") == f"Bearer {keys.token}"
    assert sent.header("X-API-Key") == keys.api_key and sent.query["token"] == keys.query
    return run


def assert_clean(keys: Secrets, run: Run, lines: list[str]) -> None:
    assert run.errors and run.dead, "the delivery should have failed finally"
    assert "HTTP 500" in str(run.errors[0])
    assert "boom" in str(run.errors[0]), "the body excerpt should still be shown, masked"
    places = {
        "log lines": "\n".join(lines),
        "repr(webhook)": repr(run.webhook),
        "str(error)": " ".join(str(error) for error in run.errors),
        "repr(error)": " ".join(repr(error) for error in run.errors),
        "error.to_dict()": json.dumps([error.to_dict() for error in run.errors]),
        "dead letters": json.dumps([letter.to_dict() for letter in run.dead], default=str),
    }
    leaks = {place: keys.leaked(text) for place, text in places.items() if keys.leaked(text)}
    assert leaks == {}


@pytest.fixture
def fresh_structlog() -> Iterator[None]:
    """Whatever a test configures, the next one starts with structlog unconfigured."""
    structlog.reset_defaults()
    try:
        yield
    finally:
        structlog.reset_defaults()


async def test_stdlib_debug_logging(
    receiver: Receiver, caplog: pytest.LogCaptureFixture, fresh_structlog: None
) -> None:
    keys = Secrets()
    caplog.set_level(logging.DEBUG, logger="empathy_webhooks")
    run = await failing_delivery(receiver, keys)
    lines = [record.getMessage() for record in caplog.records]
    lines += [caplog.text]
    assert any("delivery_failed" in line for line in lines)
    assert any("delivery_attempt" in line for line in lines), "debug lines should be on"
    assert_clean(keys, run, lines)


async def test_structlog_capture_logs(receiver: Receiver, fresh_structlog: None) -> None:
    keys = Secrets()
    with capture_logs() as entries:
        run = await failing_delivery(receiver, keys)
    assert any(entry["event"] == "delivery_failed" for entry in entries)
    assert_clean(keys, run, [repr(entry) for entry in entries])


async def test_structlog_pipeline_configured_by_the_application(
    receiver: Receiver, fresh_structlog: None
) -> None:
    keys = Secrets()
    out = io.StringIO()
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(default=repr),
        ],
        logger_factory=structlog.PrintLoggerFactory(file=out),
    )
    run = await failing_delivery(receiver, keys)
    assert "delivery_failed" in out.getvalue()
    assert_clean(keys, run, out.getvalue().splitlines())


async def test_nothing_is_printed_when_no_logging_is_configured(
    receiver: Receiver, capsys: pytest.CaptureFixture[str], fresh_structlog: None
) -> None:
    keys = Secrets()
    run = await failing_delivery(receiver, keys)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert keys.leaked(captured.err) == []
    assert_clean(keys, run, [])


def test_reprs_hide_credentials_before_any_dispatcher_exists() -> None:
    keys = Secrets()
    # Credentials in the URL and in an Authorization header cannot both be sent (refused):
    # each is checked in a webhook of its own.
    in_url = CustomWebhook(
        url=f"https://user:{keys.token}@example.com/hook?sig={keys.query}",
        headers={"X-API-Key": keys.api_key},
        signing_secret=[keys.signing, "whsec_" + "A" * 32],
    )
    in_header = CustomWebhook(
        url=f"https://example.com/hook?sig={keys.query}",
        headers={"Authorization": f"Bearer {keys.token}", "X-API-Key": keys.api_key},
        signing_secret=[keys.signing, "whsec_" + "A" * 32],
    )
    for webhook in (in_url, in_header):
        assert keys.leaked(repr(webhook)) == []
        assert "example.com" in repr(webhook)
    assert set(keys.all()) <= set(in_url.secret_values()) | set(in_header.secret_values())
