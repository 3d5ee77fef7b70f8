"""The default store: in memory, for a library call. Nothing survives the process."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from .base import DeadLetter, Delivery

__all__ = ["InProcessKeyValue", "MemoryStore"]

#: Entries an in-process memory keeps at most; the oldest go first beyond it, so a plugin
#: that forgets to bound what it remembers cannot grow the process without limit.
MAX_KEYS = 100_000


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
    """The dispatcher's own queues are the queue; this keeps the dead letters."""

    remote_workers = False

    def __init__(self) -> None:
        self._dead: dict[str, DeadLetter] = {}
        self._memory = InProcessKeyValue()

    def key_value(self, namespace: str) -> InProcessKeyValue:
        """Plugins' memory, as long as this store lives (like its dead letters)."""
        return self._memory.key_value(namespace)

    async def open(self) -> Sequence[Delivery]:
        return ()

    async def close(self) -> None:
        return None

    async def enqueue(self, deliveries: Sequence[Delivery]) -> None:
        return None

    async def record_attempt(self, delivery: Delivery) -> None:
        return None

    async def mark_delivered(self, delivery: Delivery) -> None:
        return None

    async def add_dead_letter(self, delivery: Delivery, error: dict[str, Any]) -> DeadLetter:
        letter = DeadLetter.from_delivery(delivery, error)
        self._dead[letter.dead_letter_id] = letter
        return letter

    async def dead_letters(self, webhook_name: str | None = None) -> list[DeadLetter]:
        return [
            letter
            for letter in self._dead.values()
            if webhook_name is None or letter.webhook_name == webhook_name
        ]

    async def take_dead_letter(self, dead_letter_id: str) -> DeadLetter | None:
        return self._dead.pop(dead_letter_id, None)
