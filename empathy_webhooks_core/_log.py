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
line's level is wanted and some handler (not a NullHandler) would show it, so a line nobody
listens to costs those checks and is never rendered: with logging left unconfigured, the
root logger's default level enables warnings and errors that no handler shows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import structlog

from .redaction import redact_processor

LOGGER_NAME = "empathy_webhooks"
#: The package's own logger namespace: a module that logs through `logging.getLogger(
#: __name__)` (the SQLite store's writer thread) is under it, not under LOGGER_NAME.
PACKAGE_LOGGER_NAME = "empathy_webhooks_core"
# A library's loggers get a NullHandler and nothing else: with no handler on their way up,
# Python's last resort printed their warnings and errors to stderr in an application that
# had configured no logging at all.
for _name in (LOGGER_NAME, PACKAGE_LOGGER_NAME):
    _logger = logging.getLogger(_name)
    if not any(isinstance(handler, logging.NullHandler) for handler in _logger.handlers):
        _logger.addHandler(logging.NullHandler())

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


def _heard(logger: logging.Logger, level: int) -> bool:
    """Whether a record at `level` from `logger` would reach a handler that shows it: one that
    is not a NullHandler, on the logger or an ancestor it propagates to, at or below `level`.

    Logging left unconfigured enables WARNING and above (the root logger's default level)
    with no handler but our NullHandler: every warning and error line was rendered and
    masked (tens of microseconds, on every failure of an outage) to be thrown away. Asked
    on each line, as the application may add a handler at any time; a few attribute reads.
    """
    current: logging.Logger | None = logger
    found = False
    while current is not None:
        for handler in current.handlers:
            found = True
            if level >= handler.level and not isinstance(handler, logging.NullHandler):
                return True
        if not current.propagate:
            break
        current = current.parent
    # No handler at all: Python's last resort would print it (never for our loggers, which
    # have a NullHandler; said for a name outside them).
    return not found and logging.lastResort is not None and level >= logging.lastResort.level


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
        return structlog.is_configured() or self._wanted(_LEVELS[level])

    def _wanted(self, level: int) -> bool:
        """Without a structlog configuration: whether a line at `level` is enabled and some
        handler would show it."""
        stdlib = self._stdlib
        return stdlib.isEnabledFor(level) and _heard(stdlib, level)

    def plain(self, level: str) -> logging.Logger | None:
        """The standard library logger a line at `level` goes to, when it goes there (the
        application has not configured structlog) and is wanted; else None. For the rare
        caller that writes one fixed line very often and renders it itself, exactly as this
        logger's processors would (`key=repr(value)`, `event` first, values masked)."""
        if structlog.is_configured() or not self._wanted(_LEVELS[level]):
            return None
        return self._stdlib

    def bind(self, **context: Any) -> _Logger:
        return _Logger(self._name, {**self._context, **context})

    # A line nobody listens to (no structlog configuration, and the stdlib level below it or
    # no handler but a NullHandler to show it) costs these checks, and is never rendered.

    def debug(self, event: str, **kw: Any) -> None:
        if structlog.is_configured():
            self._to_configured.debug(event, **kw)
        elif self._wanted(logging.DEBUG):
            self._to_stdlib.debug(event, **kw)

    def info(self, event: str, **kw: Any) -> None:
        if structlog.is_configured():
            self._to_configured.info(event, **kw)
        elif self._wanted(logging.INFO):
            self._to_stdlib.info(event, **kw)

    def warning(self, event: str, **kw: Any) -> None:
        if structlog.is_configured():
            self._to_configured.warning(event, **kw)
        elif self._wanted(logging.WARNING):
            self._to_stdlib.warning(event, **kw)

    def error(self, event: str, **kw: Any) -> None:
        if structlog.is_configured():
            self._to_configured.error(event, **kw)
        elif self._wanted(logging.ERROR):
            self._to_stdlib.error(event, **kw)

    def exception(self, event: str, **kw: Any) -> None:
        kw.setdefault("exc_info", True)
        self.error(event, **kw)


def get_logger(name: str = LOGGER_NAME, **context: Any) -> _Logger:
    return _Logger(name, context)
