"""Routing: which webhooks want an event."""

from __future__ import annotations

import fnmatch
import inspect
import re
import weakref
from collections.abc import Iterable

from ._log import get_logger
from .events import Event
from .webhooks import Webhook

__all__ = ["EventMatcher", "filter_errors", "passes_filter"]

log = get_logger()
_GLOB = re.compile(r"[*?\[]")


class EventMatcher:
    """A webhook's `events` list, compiled once: exact names, `"*"`, and glob patterns."""

    def __init__(self, patterns: Iterable[str]) -> None:
        patterns = list(patterns)
        self.everything = "*" in patterns
        self.exact = frozenset(p for p in patterns if not _GLOB.search(p))
        globs = [fnmatch.translate(p) for p in patterns if _GLOB.search(p)]
        self._globs = re.compile("|".join(globs)) if globs else None

    def __call__(self, event_type: str) -> bool:
        if self.everything or event_type in self.exact:
            return True
        return bool(self._globs and self._globs.match(event_type))


#: Webhook names whose filter was seen returning None (said once each).
_SAID_NONE: set[str] = set()
#: Times each webhook's filter failed. Kept on the webhook object, which is all routing is
#: given; the monitor reads it as the `filter_errors` figure.
_FILTER_ERRORS: weakref.WeakKeyDictionary[Webhook, int] = weakref.WeakKeyDictionary()


def filter_errors(webhook: Webhook) -> int:
    """How many events `webhook`'s filter failed on (raised, or returned an awaitable)."""
    return _FILTER_ERRORS.get(webhook, 0)


def passes_filter(webhook: Webhook, event: Event) -> bool:
    """The webhook's `filter`, if any. A filter that raises or returns an awaitable skips
    this webhook only (the event is not sent to it), is logged with the webhook and the event
    and counted (`filter_errors` in the webhook's stats); one that returns None skips it too,
    said once per webhook (a forgotten `return` drops every event)."""
    if webhook.filter is None:
        return True
    try:
        verdict = webhook.filter(event)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    else:
        if verdict is True or verdict is False:
            return verdict
        if verdict is None:
            # False, as Python reads it (`lambda e: e.data.get("urgent")` means it), but a
            # forgotten `return` reads the same and drops every event: said once a webhook.
            if webhook.name not in _SAID_NONE:
                _SAID_NONE.add(webhook.name)
                log.warning(
                    "filter_returned_none",
                    webhook=webhook.name,
                    event_id=event.event_id,
                    reason="read as False (the event skips this webhook); return a bool, "
                    "or check the filter has a `return`",
                )
            return False
        if not inspect.isawaitable(verdict):
            return bool(verdict)
        # A coroutine (an async filter behind a lambda) is truthy: every event went through.
        if inspect.iscoroutine(verdict):
            verdict.close()  # never awaited: no RuntimeWarning left behind
        error = "the filter returned an awaitable, not a bool (filter must be a plain function)"
    # Every event this webhook misses is counted: a filter with a typo drops them all, and a
    # log line alone is easy to miss where the figures are watched.
    _FILTER_ERRORS[webhook] = _FILTER_ERRORS.get(webhook, 0) + 1
    log.error(
        "filter_failed",
        webhook=webhook.name,
        event_id=event.event_id,
        event_type=event.event_type,
        error=error,
    )
    return False
