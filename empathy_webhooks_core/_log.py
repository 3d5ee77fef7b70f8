"""The library's loggers. Silent by default; the application decides what is shown.

structlog's own default prints every line to stdout, so when the application has not
configured structlog, the library's lines go through the standard library logger
``empathy_webhooks`` (which has a NullHandler, as a library's logger should). When the
application has configured structlog, its processors and output are used. Either way the
redaction processor runs first, so no secret reaches any output.

Both outputs are structlog's own lazy proxies (``structlog.wrap_logger``). One proxy cannot
express the choice between them: it takes its processors either from its arguments or from
the configuration, and the application may configure structlog after our modules are
imported (or only for a while, as ``structlog.testing.capture_logs`` does). So a logger
holds the two proxies and picks one per line, after asking the stdlib logger whether the
line's level is wanted, so a line nobody listens to costs one check.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
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

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class _ConfiguredProcessors:
    """The application's processors as they are at each line, with ours around them.

    structlog iterates its processors on every line, so reading the configuration here
    follows a later ``structlog.configure`` without rebuilding anything.
    """

    def __iter__(self) -> Iterator[Any]:
        configured = list(structlog.get_config()["processors"])
        # Masked first (before anything formats a value), and again just before the
        # renderer, in case one of the application's processors added a value of ours
        # (context variables, a traceback of its own making).
        return iter([redact_processor, *configured[:-1], redact_processor, *configured[-1:]])


_CONFIGURED_PROCESSORS = _ConfiguredProcessors()


class _Logger:
    """The library's logger: structlog's lazy proxies for both outputs, chosen per line."""

    def __init__(self, name: str, context: dict[str, Any]) -> None:
        self._name = name
        self._context = context
        self._stdlib = logging.getLogger(name)
        # Everything of this proxy is explicit, so its bound logger is built once.
        self._to_stdlib = structlog.wrap_logger(
            self._stdlib,
            processors=_STDLIB_PROCESSORS,
            wrapper_class=structlog.stdlib.BoundLogger,
            context_class=dict,
            cache_logger_on_first_use=True,
            **context,
        )
        # The application's logger factory, wrapper class and caching choice, our processors
        # around its own.
        self._to_configured = structlog.wrap_logger(
            None, processors=_CONFIGURED_PROCESSORS, **context
        )

    def enabled_for(self, level: str) -> bool:
        """Whether a line at `level` would be seen (always, once structlog is configured:
        the application's processors decide)."""
        return structlog.is_configured() or self._stdlib.isEnabledFor(_LEVELS[level])

    def plain(self, level: str) -> logging.Logger | None:
        """The standard library logger a line at `level` goes to, when it goes there (the
        application has not configured structlog) and is wanted; else None. For the rare
        caller that writes one fixed line very often and renders it itself, exactly as this
        logger's processors would (`key=repr(value)`, `event` first, values masked)."""
        if structlog.is_configured() or not self._stdlib.isEnabledFor(_LEVELS[level]):
            return None
        return self._stdlib

    def bind(self, **context: Any) -> _Logger:
        return _Logger(self._name, {**self._context, **context})

    def _log(self, level: str, event: str, **kw: Any) -> None:
        if structlog.is_configured():
            getattr(self._to_configured, level)(event, **kw)
        elif self._stdlib.isEnabledFor(_LEVELS[level]):
            getattr(self._to_stdlib, level)(event, **kw)

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


def get_logger(name: str = LOGGER_NAME, **context: Any) -> _Logger:
    return _Logger(name, context)
