"""The gateway's access line, which it renders itself when the standard library logger takes
the library's lines, is the very text the library's processors make of the same call."""

from __future__ import annotations

import logging

import pytest
import structlog

from empathy_webhooks_core._log import get_logger
from empathy_webhooks_core.gateway.app import _log_request
from empathy_webhooks_core.redaction import isolated_registry, register_secrets

SECRET = "gw-access-marker-Q7c2VxL9"


@pytest.mark.parametrize(
    "request_line",
    [
        ("POST", "/v1/events", 202, "writer", 1.23),
        ("GET", f"/v1/webhooks/{SECRET}/stats?token=abc", 404, None, 0.5),
        ("PO'ST", "/a\"b'c\\d", 401, "o'ps", 12.0),
    ],
)
def test_the_access_line_is_what_the_processors_make(
    caplog: pytest.LogCaptureFixture, request_line: tuple[str, str, int, str | None, float]
) -> None:
    structlog.reset_defaults()  # the line goes to the standard library logger
    method, path, status, caller, duration_ms = request_line
    with isolated_registry():
        register_secrets([SECRET])
        caplog.set_level(logging.INFO, logger="empathy_webhooks")
        get_logger().info(
            "gateway_request",
            method=method,
            path=path,
            status=status,
            caller=caller,
            duration_ms=duration_ms,
        )
        _log_request(method, path, status, caller, duration_ms)
    processed, direct = (record.getMessage() for record in caplog.records[-2:])
    assert direct == processed
    assert SECRET not in direct
