"""Events accepted with a `202` but routed to no webhook: nothing is queued for them, so the
store keeps no trace of them, and `GET /v1/events/{id}` answered "no event on record" for an
event the gateway had just accepted, which reads as a lost event. The gateway remembers the
newest of them, bounded in number and in bytes, so the answer to "what happened to event X?"
is "accepted, routed nowhere". Kept in this process's memory only: gone after a restart, and
unknown to another gateway on the same store (the 404 says so).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from datetime import UTC, datetime

from ..events import Event
from ..redaction import redact_text

__all__ = ["MAX_BYTES", "MAX_EVENTS", "Unrouted", "unrouted_note"]

#: The most events routed to no webhook the gateway remembers...
MAX_EVENTS = 1000
#: ...and the most bytes of their envelopes (a 256 KiB event counts as such).
MAX_BYTES = 8 * 1024 * 1024


class Unrouted:
    """The newest events accepted and routed to no webhook, with when they were accepted."""

    def __init__(self, max_events: int = MAX_EVENTS, max_bytes: int = MAX_BYTES) -> None:
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._events: OrderedDict[str, tuple[Event, float, int]] = OrderedDict()
        self._bytes = 0

    def note(self, event: Event) -> None:
        size = len(event.envelope_bytes())
        if size > self.max_bytes or event.event_id in self._events:
            return
        self._events[event.event_id] = (event, time.time(), size)
        self._bytes += size
        while len(self._events) > self.max_events or self._bytes > self.max_bytes:
            _, (_, _, gone) = self._events.popitem(last=False)  # the oldest go
            self._bytes -= gone

    def get(self, event_id: str) -> tuple[Event, float] | None:
        """The event and when it was accepted (epoch seconds), or None."""
        found = self._events.get(event_id)
        return None if found is None else (found[0], found[1])


def unrouted_note(event: Event, accepted_at: float) -> str:
    """What happened to an event routed to no webhook, in a sentence."""
    when = datetime.fromtimestamp(accepted_at, UTC).isoformat(timespec="seconds")
    # The type is the producer's text: masked as any shown value is.
    kind = redact_text(event.event_type)
    return (
        f"accepted at {when} and routed to no webhook: no configured webhook takes events of "
        f"type {kind!r} (its events list or its filter), so nothing was queued or sent; this "
        "gateway remembers such events in its memory only, until it restarts"
    )
