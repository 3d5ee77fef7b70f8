"""Redaction: registered values, secret-shaped keys and URLs masked wherever they appear."""

from __future__ import annotations

import base64
import io
import json
import logging
import secrets
from collections.abc import Iterator

import pytest
import structlog

from empathy_webhooks_core._log import get_logger
from empathy_webhooks_core.redaction import (
    REDACTED,
    bounded,
    is_secret_name,
    redact_processor,
    redact_text,
    redact_url,
    redact_value,
    register_secrets,
    url_secrets,
)
from empathy_webhooks_core.wire import DeliveryError, Response


@pytest.fixture
def secret() -> str:
    value = "s3c/" + secrets.token_hex(10) + "+q"
    register_secrets([value])
    return value


@pytest.fixture
def fresh_structlog() -> Iterator[None]:
    structlog.reset_defaults()
    try:
        yield
    finally:
        structlog.reset_defaults()


def test_registered_values_are_masked_anywhere_in_text(secret: str) -> None:
    assert redact_text(f"token={secret}; again {secret}!") == f"token={REDACTED}; again {REDACTED}!"


def test_url_encoded_and_json_escaped_forms_are_masked_too(secret: str) -> None:
    from urllib.parse import quote

    assert secret not in redact_text(quote(secret, safe=""))
    assert quote(secret, safe="") not in redact_text(f"?t={quote(secret, safe='')}")
    escaped = json.dumps({"t": secret})
    assert redact_text(escaped) == json.dumps({"t": REDACTED})


def test_short_values_are_not_registered() -> None:
    register_secrets(["abc", "", None])  # type: ignore[list-item]
    assert redact_text("abc and a cab") == "abc and a cab"


def test_processor_masks_nested_values_keys_bytes_and_objects(secret: str) -> None:
    class Holder:
        def __repr__(self) -> str:
            return f"Holder({secret})"

    event = {
        "event": f"failed with {secret}",
        "headers": {"Authorization": "Bearer abc", "DD-API-KEY": "k", "Accept": "json"},
        "nested": {"list": [f"x{secret}x", {"deep": secret}], "set": {secret}},
        "raw": f"body {secret}".encode(),
        "holder": Holder(),
        "error": ValueError(f"bad {secret}"),
        "password": "hunter22",
        "count": 3,
        "ok": True,
    }
    out = redact_processor(None, "info", dict(event))
    assert secret not in repr(out)
    assert out["headers"] == {"Authorization": REDACTED, "DD-API-KEY": REDACTED, "Accept": "json"}
    assert out["password"] == REDACTED
    assert (out["count"], out["ok"]) == (3, True)
    assert out["error"] == f"ValueError: bad {REDACTED}"


def test_processor_renders_exc_info_masked(secret: str) -> None:
    try:
        raise RuntimeError(f"connection string has {secret}")
    except RuntimeError as exc:
        out = redact_processor(None, "error", {"event": "boom", "exc_info": exc})
    assert "exc_info" not in out
    assert "Traceback" in out["exception"] and "RuntimeError" in out["exception"]
    assert secret not in out["exception"]


def test_library_logger_masks_tracebacks_with_stdlib_logging(
    secret: str, caplog: pytest.LogCaptureFixture, fresh_structlog: None
) -> None:
    caplog.set_level(logging.DEBUG, logger="empathy_webhooks")
    try:
        raise RuntimeError(f"oops {secret}")
    except RuntimeError:
        get_logger().exception("it_failed", detail={"token": "abcdef", "note": secret})
    assert "it_failed" in caplog.text and "RuntimeError" in caplog.text
    assert secret not in caplog.text and "abcdef" not in caplog.text


def test_library_logger_masks_tracebacks_with_structlog_configured(
    secret: str, fresh_structlog: None
) -> None:
    out = io.StringIO()
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.PrintLoggerFactory(file=out),
    )
    try:
        raise RuntimeError(f"oops {secret}")
    except RuntimeError as exc:
        get_logger().error("it_failed", exc_info=exc, url=f"https://x.example/h?k={secret}")
    line = json.loads(out.getvalue())
    assert line["event"] == "it_failed" and "RuntimeError" in line["exception"]
    assert secret not in out.getvalue()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "https://hooks.slack.com/services/T000/B000/XXXXSECRET",
            "https://hooks.slack.com/services/***",
        ),
        (
            "https://discord.com/api/webhooks/123/tokenSECRET",
            "https://discord.com/api/webhooks/***",
        ),
        (
            "https://ptb.discordapp.com/api/webhooks/123/tokenSECRET?wait=true",
            "https://ptb.discordapp.com/api/webhooks/***?***",
        ),
        (
            "https://acme.webhook.office.com/webhookb2/guidSECRET@guid/IncomingWebhook/a/b",
            "https://acme.webhook.office.com/webhookb2/***",
        ),
        (
            "https://prod-1.westus.logic.azure.com:443/workflows/abcSECRET/triggers?sig=SECRET",
            "https://prod-1.westus.logic.azure.com:443/workflows/***?***",
        ),
        ("https://user:SECRET@example.com/hook?token=SECRET", "https://example.com/hook?***"),
        ("http://[::1]:8080/hook?SECRET", "http://[::1]:8080/hook?***"),
        ("https://example.com/plain/path", "https://example.com/plain/path"),
    ],
)
def test_urls_whose_parts_are_credentials_are_masked(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert "SECRET" not in redact_text(f"POST {url} failed")


def test_url_secrets_finds_passwords_and_credential_query_values() -> None:
    url = "https://u:pw123@example.com/h?token=t1&code=c2&sig=s3&api_key=k4&format=json&page=2"
    found = url_secrets(url)
    assert {"pw123", "t1", "c2", "s3", "k4"} <= set(found)
    # What an HTTP client sends for the userinfo: `Authorization: Basic base64(u:pw123)`.
    assert base64.b64encode(b"u:pw123").decode() in found
    assert not {"json", "2", "u"} & set(found)
    assert url_secrets(None) == [] and url_secrets("not a url") == []


def test_delivery_error_text_and_record_are_masked(secret: str) -> None:
    error = DeliveryError(
        f"refused: {secret}",
        webhook_name="w",
        event_id="evt_1",
        attempts=1,
        body_excerpt=f"echo {secret}",
        last_exception=OSError(f"cannot reach https://h.example/?token={secret}"),
    )
    assert secret not in str(error) and secret not in repr(error)
    assert secret not in json.dumps(error.to_dict())
    assert error.to_dict()["exception"].startswith("OSError: cannot reach")


def test_response_excerpt_masks_before_cutting(secret: str) -> None:
    body = ("x" * 490 + secret).encode()
    excerpt = Response(status=500, body=body).excerpt(500)
    assert secret[:6] not in excerpt
    assert excerpt.startswith("x" * 490)


def test_values_from_rendered_requests_are_kept_for_a_while_not_forever() -> None:
    """A plugin that puts a per-event value in a secret-named header must not grow the
    registry (and its pattern) with every delivery: the most recent 512 are kept."""
    from empathy_webhooks_core.redaction import Redactor

    redactor = Redactor(["declared-secret-value"])
    values = [f"per-event-{n:06d}" for n in range(2000)]
    for value in values:
        redactor.add_transient([value])
    assert len(redactor._transient) == 512
    assert redactor.text(f"echo {values[-1]}") == f"echo {REDACTED}"
    assert redactor.text(f"echo {values[0]}") == f"echo {values[0]}"
    assert redactor.text("echo declared-secret-value") == f"echo {REDACTED}"


def test_a_large_answer_full_of_escapes_is_masked_without_backtracking() -> None:
    # 64 KiB of JSON with an escape on every line: the quoted-member pattern once backtracked
    # exponentially on it (minutes for 16 KiB); now a member in it is masked at once.
    lines = "\n".join(f"- line {n}: " + "x" * 1000 for n in range(60))
    text = json.dumps({"body": lines, "api_token": "tok_zyxwvutsrq"})
    assert 60_000 < len(text) < 64 * 1024 and "tok_zyxwvutsrq" in text
    masked = redact_text(text)
    assert "tok_zyxwvutsrq" not in masked
    assert masked.startswith('{"body": "- line 0: xxx')


def test_text_kept_from_an_answer_is_always_storable_as_utf8() -> None:
    # A lone surrogate (an answer's header bytes decoded with surrogateescape) would fail a
    # store's text write, and the attempt's record with it.
    kept = bounded("rejected: x-error=\udcff")
    assert kept == "rejected: x-error=?"
    assert kept.encode("utf-8")
    assert bounded("José ✓") == "José ✓"


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("dedup_key", False),
        ("aggregation_key", False),
        ("ordering_key", False),
        ("Idempotency-Key", False),
        ("routing_key", True),
        ("service_key", True),
        ("integration_key", True),
        ("X-Api-Key", True),
    ],
)
def test_keys_that_group_alerts_are_not_masked_credentials_are(name: str, secret: bool) -> None:
    """A dry run and the logs show the key that decides whether two alerts merge; the key
    that routes to a PagerDuty service stays masked."""
    assert is_secret_name(name) is secret
    assert (redact_value({name: "v4lue-shown-or-not"}) == {name: REDACTED}) is secret


def test_a_header_named_for_auth_is_secret() -> None:
    """`X-Custom-Auth: <token>` showed in full in `deliveries show` (a custom scheme's header)."""
    from empathy_webhooks_core.history import masked_headers

    assert masked_headers({"X-Custom-Auth": "tok-123456789", "Content-Type": "x"}) == {
        "X-Custom-Auth": "***",
        "Content-Type": "x",
    }
