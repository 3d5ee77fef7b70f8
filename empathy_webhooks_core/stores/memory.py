"""The default store: in memory, for a library call. Nothing survives the process."""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from .._bounds import check_number
from ..events import Event
from ..history import (
    AttemptRecord,
    DeliveryPage,
    DeliveryQuery,
    DeliveryRecord,
    KeptAttempt,
    RawAttempt,
    page_of,
    record_of,
)
from .base import DeadLetter, Delivery

__all__ = ["DEFAULT_HISTORY_LIMIT", "InProcessKeyValue", "MemoryStore"]

#: Deliveries whose history the memory store keeps by default (the newest).
DEFAULT_HISTORY_LIMIT = 10_000


class _Entry:
    """A delivery's history as the memory store holds it (mutable: an attempt appends)."""

    __slots__ = (
        "attempts",
        "created_at",
        "dead_letter_id",
        "delivery_id",
        "event",
        "status",
        "updated_at",
        "webhook",
    )

    def __init__(self, delivery: Delivery, now: float) -> None:
        self.delivery_id = delivery.delivery_id
        self.event = delivery.event
        self.webhook = delivery.webhook_name
        self.status = "pending"
        self.created_at = delivery.enqueued_at
        self.updated_at = now
        # A tuple, not a list: one container less per delivery for the collector to track.
        self.attempts: tuple[KeptAttempt, ...] = ()
        self.dead_letter_id: str | None = None

    def record(self) -> DeliveryRecord:
        return DeliveryRecord(
            delivery_id=self.delivery_id,
            event_id=self.event.event_id,
            webhook=self.webhook,
            event_type=self.event.event_type,
            status=self.status,
            created_at=self.created_at,
            updated_at=self.updated_at,
            attempts=self._attempts(),
            dead_letter_id=self.dead_letter_id,
        )

    def _attempts(self) -> tuple[AttemptRecord, ...]:
        # Masked when first read, and kept so (a record is read again as it was read first).
        attempts = self.attempts
        if not all(isinstance(kept, AttemptRecord) for kept in attempts):
            attempts = self.attempts = tuple(record_of(self.delivery_id, a) for a in attempts)
        return attempts  # type: ignore[return-value]


#: Entries an in-process memory keeps at most; the oldest go first beyond it, so a plugin
#: that forgets to bound what it remembers cannot grow the process without limit.
MAX_KEYS = 100_000


def _kept(value: _Entry | Delivery) -> _Entry:
    """The record of a history value: a queued delivery's made for the reading."""
    return value if isinstance(value, _Entry) else _Entry(value, value.enqueued_at)


class InProcessKeyValue:
    """`KeyValue` in this process's memory (a dict with expiry times), for stores that do not
    keep one. Namespaces of one instance never see each other's keys."""

    def __init__(self, namespace: str = "", *, now: Callable[[], float] = time.monotonic) -> None:
        self._namespace = namespace
        self._now = now
        self._data: dict[str, tuple[str, float]] = {}

    def key_value(self, namespace: str) -> InProcessKeyValue:
        child = InProcessKeyValue(f"{self._namespace}{namespace}\x00", now=self._now)
        child._data = self._data  # one dict, bounded once, keys kept apart by their prefix
        return child

    def _live(self, key: str) -> str | None:
        found = self._data.get(self._namespace + key)
        if found is None:
            return None
        value, expires = found
        if expires <= self._now():
            del self._data[self._namespace + key]
            return None
        return value

    async def get(self, key: str) -> str | None:
        return self._live(key)

    async def set(self, key: str, value: str, ttl_seconds: float) -> None:
        full = self._namespace + key
        self._data.pop(full, None)  # re-inserted last: the oldest stay first to go
        self._data[full] = (value, self._now() + ttl_seconds)
        while len(self._data) > MAX_KEYS:
            del self._data[next(iter(self._data))]

    async def add(self, key: str, value: str, ttl_seconds: float) -> bool:
        if self._live(key) is not None:
            return False
        await self.set(key, value, ttl_seconds)
        return True

    async def delete(self, key: str) -> None:
        self._data.pop(self._namespace + key, None)


class MemoryStore:
    """The dispatcher's own queues are the queue; this keeps the dead letters, and the
    history of the newest `history_limit` deliveries."""

    remote_workers = False
    #: An emit here never waits for a write: the dispatcher gives the loop a turn every
    #: `TURN_SLICE` seconds of emitting rather than on every emit (see `admit`).
    emits_never_wait = True

    def __init__(self, *, history_limit: int = DEFAULT_HISTORY_LIMIT) -> None:
        check_number("history_limit", history_limit, at_least=0, integer=True)
        self.history_limit = history_limit
        self._dead: dict[str, DeadLetter] = {}
        # A queued delivery is its own record until its first attempt is noted (then an
        # `_Entry`): no object made per emit for it, one fewer for the collector to count.
        self._history: OrderedDict[str, _Entry | Delivery] = OrderedDict()
        self._memory = InProcessKeyValue()

    def __repr__(self) -> str:
        return f"MemoryStore(history_limit={self.history_limit})"

    def key_value(self, namespace: str) -> InProcessKeyValue:
        """Plugins' memory, as long as this store lives (like its dead letters)."""
        return self._memory.key_value(namespace)

    async def open(self) -> Sequence[Delivery]:
        return ()

    async def close(self) -> None:
        return None

    async def enqueue(self, deliveries: Sequence[Delivery]) -> None:
        if self.history_limit:
            history = self._history
            for delivery in deliveries:
                # In line: this runs for every delivery `emit` queues.
                if delivery.delivery_id not in history:
                    history[delivery.delivery_id] = delivery
            while len(history) > self.history_limit:
                history.popitem(last=False)  # the oldest go: the history is bounded

    def _entry(self, delivery: Delivery, now: float) -> _Entry:
        history = self._history
        entry = history.get(delivery.delivery_id)
        if entry is None:
            entry = history[delivery.delivery_id] = _Entry(delivery, now)
            if len(history) > self.history_limit:
                history.popitem(last=False)  # the oldest goes: the history is bounded
        elif not isinstance(entry, _Entry):
            # Queued until now: its record from here on (in its place: the order is kept).
            entry = history[delivery.delivery_id] = _Entry(entry, entry.enqueued_at)
        return entry

    async def record_attempt(self, delivery: Delivery) -> None:
        return None

    async def mark_delivered(self, delivery: Delivery) -> None:
        return None

    async def add_dead_letter(self, delivery: Delivery, error: dict[str, Any]) -> DeadLetter:
        letter = DeadLetter.from_delivery(delivery, error)
        self._dead[letter.dead_letter_id] = letter
        if delivery.delivery_id in self._history:
            entry = self._entry(delivery, letter.failed_at)
            entry.status = "failed"
            entry.dead_letter_id = letter.dead_letter_id
            entry.updated_at = letter.failed_at
        return letter

    async def dead_letters(self, webhook_name: str | None = None) -> list[DeadLetter]:
        return [
            letter
            for letter in self._dead.values()
            if webhook_name is None or letter.webhook_name == webhook_name
        ]

    async def dead_letter_counts(self) -> dict[str, int]:
        """Per webhook: the dead letters `dead_letters` lists (`CountsDeadLetters`)."""
        return dict(Counter(letter.webhook_name for letter in self._dead.values()))

    async def take_dead_letter(self, dead_letter_id: str) -> DeadLetter | None:
        return self._dead.pop(dead_letter_id, None)

    async def return_dead_letter(self, letter: DeadLetter) -> None:
        self._dead[letter.dead_letter_id] = letter

    # -- attempt history (`history.KeepsHistory`) ------------------------------------------

    def note_attempt(self, delivery: Delivery, attempt: RawAttempt, status: str) -> None:
        if not self.history_limit:
            return
        now = attempt.started_at + attempt.duration_s
        entry = self._entry(delivery, now)
        entry.attempts = (*entry.attempts, attempt.kept(delivery.delivery_id))
        entry.status = status
        entry.updated_at = now

    async def delivery_record(self, delivery_id: str) -> DeliveryRecord | None:
        entry = self._history.get(delivery_id)
        return _kept(entry).record() if entry is not None else None

    async def delivery_records(self, query: DeliveryQuery) -> DeliveryPage:
        after = query.after()
        chosen: list[DeliveryRecord] = []
        # Records are built only for the entries that pass, up to one past the page.
        candidates = sorted(
            (
                e
                for e in map(_kept, self._history.values())
                if (query.webhook is None or e.webhook == query.webhook)
                and (query.status is None or e.status == query.status)
                and (query.event_type is None or e.event.event_type == query.event_type)
                and (query.event_id is None or e.event.event_id == query.event_id)
                and (query.since is None or e.created_at >= query.since)
                and (query.until is None or e.created_at < query.until)
                and (after is None or (e.created_at, e.delivery_id) < after)
            ),
            key=lambda e: (e.created_at, e.delivery_id),
            reverse=True,
        )
        chosen = [e.record() for e in candidates[: query.limit + 1]]
        return page_of(chosen, query)

    async def stored_event(self, event_id: str) -> Event | None:
        for entry in reversed(self._history.values()):
            if entry.event.event_id == event_id:
                return entry.event
        return None
