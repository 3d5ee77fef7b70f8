"""Where queued deliveries and dead letters live: the interface every store implements."""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import attrs

from ..events import Event
from ..wire import OutgoingRequest

__all__ = ["DeadLetter", "Delivery", "DeliveryStore", "new_delivery_id"]


#: Random per process, then a counter: unique across processes without a syscall per delivery.
_PREFIX = secrets.token_urlsafe(9)
_COUNTER = itertools.count()


def new_delivery_id() -> str:
    return f"dlv_{_PREFIX}{next(_COUNTER):x}"


@attrs.define(kw_only=True, slots=True)
class Delivery:
    """One event on its way to one webhook. Mutable: the pipeline counts its attempts.

    `store_ref` is the store's own handle (a row id, a stream entry id); `request` caches the
    rendered request so every retry sends the same bytes.
    """

    webhook_name: str
    event: Event
    delivery_id: str = attrs.field(factory=new_delivery_id)
    attempts: int = 0
    #: Attempts answered with a rate limit: they wait, but do not use up the retry budget.
    rate_limited: int = 0
    enqueued_at: float = attrs.field(factory=time.time)
    store_ref: Any = None
    request: OutgoingRequest | None = attrs.field(default=None, repr=False)


@attrs.frozen(kw_only=True)
class DeadLetter:
    """A delivery that finally failed, kept so it can be inspected and replayed."""

    dead_letter_id: str
    webhook_name: str
    event: Event
    error: dict[str, Any]
    attempts: int
    failed_at: float

    @classmethod
    def from_delivery(cls, delivery: Delivery, error: dict[str, Any]) -> DeadLetter:
        """A new dead letter for a delivery that finally failed (what every store keeps)."""
        return cls(
            dead_letter_id="dl_" + secrets.token_urlsafe(9),
            webhook_name=delivery.webhook_name,
            event=delivery.event,
            error=error,
            attempts=delivery.attempts,
            failed_at=time.time(),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "dead_letter_id": self.dead_letter_id,
            "webhook_name": self.webhook_name,
            "event": self.event.to_envelope(),
            "error": self.error,
            "attempts": self.attempts,
            "failed_at": self.failed_at,
        }


@runtime_checkable
class DeliveryStore(Protocol):
    """The contract between the dispatcher and a store.

    The dispatcher keeps its own in-process queue per webhook; a store makes that queue
    survive: `enqueue` is durable before it returns (so `emit` returning means the delivery
    will be attempted, even after a crash), `mark_delivered` happens only after the service
    said yes, and `open` hands back whatever was pending when the last process stopped.
    """

    #: True for stores where other processes deliver (producer role): `emit` only enqueues.
    remote_workers: bool

    async def open(self) -> Sequence[Delivery]:
        """Open the store; return deliveries left pending by an earlier process."""
        ...

    async def close(self) -> None: ...

    async def enqueue(self, deliveries: Sequence[Delivery]) -> None:
        """Persist new deliveries (one event's, to each webhook it was routed to)."""
        ...

    async def record_attempt(self, delivery: Delivery) -> None:
        """Note that an attempt was made (the attempt count survives a restart)."""
        ...

    async def mark_delivered(self, delivery: Delivery) -> None: ...

    async def add_dead_letter(self, delivery: Delivery, error: dict[str, Any]) -> DeadLetter:
        """Move a finally failed delivery to the dead letters."""
        ...

    async def dead_letters(self, webhook_name: str | None = None) -> list[DeadLetter]: ...

    async def take_dead_letter(self, dead_letter_id: str) -> DeadLetter | None:
        """Remove and return a dead letter (for replay), or None if there is none by that id."""
        ...
