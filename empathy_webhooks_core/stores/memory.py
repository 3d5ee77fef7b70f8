"""The default store: in memory, for a library call. Nothing survives the process."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .base import DeadLetter, Delivery

__all__ = ["MemoryStore"]


class MemoryStore:
    """The dispatcher's own queues are the queue; this keeps the dead letters."""

    remote_workers = False

    def __init__(self) -> None:
        self._dead: dict[str, DeadLetter] = {}

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
