"""The default store: in memory, for a library call. Nothing survives the process."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from .base import DeadLetter, Delivery

__all__ = ["MemoryStore"]


class MemoryStore:
    """The dispatcher's own queues are the queue; this keeps the dead letters."""

    remote_workers = False

    def __init__(self) -> None:
        self._dead: dict[str, DeadLetter] = {}
        # Key -> (value, expires at); an expired key is dropped when next read.
        self._keys: dict[str, tuple[str, float]] = {}

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

    # -- KeepsKeys -------------------------------------------------------------------------

    async def add_key(self, key: str, value: str, ttl_seconds: float) -> str | None:
        held = await self.get_key(key)
        if held is not None:
            return held
        await self.set_key(key, value, ttl_seconds)
        return None

    async def set_key(self, key: str, value: str, ttl_seconds: float) -> None:
        self._keys[key] = (value, time.monotonic() + ttl_seconds)
        if len(self._keys) > 1024 and len(self._keys) % 1024 == 0:
            now = time.monotonic()
            for stale in [k for k, (_, until) in self._keys.items() if until <= now]:
                del self._keys[stale]

    async def get_key(self, key: str) -> str | None:
        held = self._keys.get(key)
        if held is None:
            return None
        if held[1] <= time.monotonic():
            del self._keys[key]
            return None
        return held[0]

    async def delete_key(self, key: str) -> None:
        self._keys.pop(key, None)
