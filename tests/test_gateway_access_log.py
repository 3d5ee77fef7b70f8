"""The gateway's access line, which it renders itself when the standard library logger takes
the library's lines, is the very text the library's processors make of the same call."""

from __future__ import annotations

import logging
import sys

import pytest
import structlog

from empathy_webhooks_core._log import get_logger
from empathy_webhooks_core.cli._common import _LineFormatter
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


def _records() -> list[logging.LogRecord]:
    logger = logging.getLogger("empathy_webhooks.test_access_format")
    made = [
        logger.makeRecord(logger.name, logging.INFO, __file__, 1, "event=%r n=%r", ("x", 1), None),
        logger.makeRecord(logger.name, logging.WARNING, __file__, 1, "no args %s", (), None),
        logger.makeRecord(logger.name, logging.ERROR, __file__, 1, "100%% sure", None, None),
    ]
    try:
        raise ValueError("boom")
    except ValueError:
        made.append(
            logger.makeRecord(logger.name, logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
        )
    stacked = logger.makeRecord(logger.name, logging.INFO, __file__, 1, "stack", (), None)
    stacked.stack_info = "Stack (most recent call last):\n  here"
    made.append(stacked)
    # Records made in other seconds and milliseconds, in the order a formatter may see them.
    for created in (1_700_000_000.0, 1_700_000_000.999, 1_700_000_001.0005, 1_699_999_999.5):
        record = logger.makeRecord(logger.name, logging.INFO, __file__, 1, "at %s", (1,), None)
        record.created = created
        record.msecs = (created - int(created)) * 1000
        made.append(record)
    return made


def test_the_cli_line_formatter_writes_what_the_stock_formatter_writes() -> None:
    """`serve`'s stderr lines (`configure_logging`) come from a formatter that formats the time
    once a second: each line is byte for byte the stock `%(asctime)s %(levelname)s
    %(message)s` one, tracebacks and stacks included."""
    stock = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    fast = _LineFormatter()
    for record in _records():
        expected = stock.format(record)
        record.exc_text = None  # the stock formatter caches the traceback's text on the record
        assert fast.format(record) == expected
