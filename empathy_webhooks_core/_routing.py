"""Routing: which webhooks want an event."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable

from ._log import get_logger
from .events import Event
from .webhooks import Webhook

__all__ = ["EventMatcher", "passes_filter"]

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


def passes_filter(webhook: Webhook, event: Event) -> bool:
    """The webhook's `filter`, if any. A filter that raises skips this webhook only."""
    if webhook.filter is None:
        return True
    try:
        return bool(webhook.filter(event))
    except Exception as exc:
        log.error(
            "filter_failed",
            webhook=webhook.name,
            event_id=event.event_id,
            event_type=event.event_type,
            error=f"{type(exc).__name__}: {exc}",
        )
        return False
