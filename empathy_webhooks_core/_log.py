"""The library's loggers. Silent by default; the application decides what is shown.

structlog's own default prints every line to stdout, so when the application has not
configured structlog, the library's lines go through the standard library logger
``empathy_webhooks`` (which has a NullHandler, as a library's logger should). When the
application has configured structlog, its processors and output are used. Either way the
redaction processor runs first, so no secret reaches any output.
"""

from __future__ import annotations

import logging
from typing import Any

import structlog

from .redaction import redact_processor

LOGGER_NAME = "empathy_webhooks"
logging.getLogger(LOGGER_NAME).addHandler(logging.NullHandler())

_STDLIB_PROCESSORS: list[Any] = [
    structlog.stdlib.filter_by_level,
    structlog.processors.format_exc_info,
    redact_processor,
    structlog.processors.KeyValueRenderer(key_order=["event"], sort_keys=False),
]


class _LazyLogger:
    """Resolves the output on each call, so configuring structlog after import still works."""

    def __init__(self, name: str, context: dict[str, Any]) -> None:
        self._name = name
        self._context = context

    def _target(self) -> Any:
        if structlog.is_configured():
            configured = list(structlog.get_config()["processors"])
            # Masked first (before anything formats a value), and again just before the
            # renderer, in case one of the application's processors added a value of ours
            # (context variables, a traceback of its own making).
            processors = [redact_processor, *configured[:-1], redact_processor, *configured[-1:]]
            return structlog.wrap_logger(None, processors=processors, **self._context)
        return structlog.wrap_logger(
            logging.getLogger(self._name),
            processors=_STDLIB_PROCESSORS,
            wrapper_class=structlog.stdlib.BoundLogger,
            **self._context,
        )

    def bind(self, **context: Any) -> _LazyLogger:
        return _LazyLogger(self._name, {**self._context, **context})

    def _log(self, level: str, event: str, **kw: Any) -> None:
        if not structlog.is_configured() and not logging.getLogger(self._name).isEnabledFor(
            logging.getLevelName(level.upper())
        ):
            return
        getattr(self._target(), level)(event, **kw)

    def debug(self, event: str, **kw: Any) -> None:
        self._log("debug", event, **kw)

    def info(self, event: str, **kw: Any) -> None:
        self._log("info", event, **kw)

    def warning(self, event: str, **kw: Any) -> None:
        self._log("warning", event, **kw)

    def error(self, event: str, **kw: Any) -> None:
        self._log("error", event, **kw)

    def exception(self, event: str, **kw: Any) -> None:
        kw.setdefault("exc_info", True)
        self._log("error", event, **kw)


def get_logger(name: str = LOGGER_NAME, **context: Any) -> _LazyLogger:
    return _LazyLogger(name, context)
