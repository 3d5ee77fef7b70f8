"""Where queued deliveries and dead letters live: the interface every store implements."""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

from .._pipeline.unit import Delivery, new_delivery_id
from ..events import Event, keep_envelope_bytes
from ..wire import BODY_EXCERPT_CHARS

if TYPE_CHECKING:
    from ..breaker import Breaker
    from ..clock import Clock
    from ..ratelimit import Limiter
    from ..webhooks import Webhook

__all__ = [
    "ConfirmsHolding",
    "CountsDeadLetters",
    "DeadLetter",
    "Delivery",
    "DeliveryStore",
    "HasKeyValue",
    "HasProducerRole",
    "HasWorkerRole",
    "KeyValue",
    "Page",
    "PagedStore",
    "PendingCounts",
    "ReplaysInOneStep",
    "ReturnsDeadLetters",
    "SharedStore",
    "SharesBreakers",
    "SharesRateLimits",
    "StopsConsuming",
    "StoreOpenError",
    "UndecodableEvent",
    "decode_event",
    "new_delivery_id",
]


class StoreOpenError(OSError):
    """A store could not be opened; the message names the store (its file, its server) and
    what to do about it."""


class UndecodableEvent(ValueError):
    """What a store kept for a delivery cannot be turned back into an event (not JSON, a
    field missing, nested deeper than this process can read). The store dead-letters that
    delivery with this reason and goes on with the others."""


#: The dead letter's event type for a delivery whose stored event could not be decoded.
UNDECODABLE_EVENT_TYPE = "undecodable_delivery"

_EVENT_ID = re.compile(r'"event_id"\s*:\s*"([^"\\.]{1,255})"')


def decode_event(stored: str | bytes, *, envelope_bytes: bool = False) -> Event:
    """The event a store kept (`Event.to_json()`), or `UndecodableEvent` saying why not.

    `envelope_bytes=True` says `stored` is exactly the event's `envelope_bytes()` as the
    process that stored it encoded them (the store marked it so when it wrote it): the event
    keeps them, and a delivery sends those bytes as they are instead of encoding the decoded
    event again. Ignored for an event with an ordering key (its stored text carries the key,
    which the envelope does not).

    Whatever decoding raises is caught, `RecursionError` included: one bad entry must never
    stop a store from handing out the others, nor a restart from getting past it.
    """
    try:
        envelope = json.loads(stored)
        if not isinstance(envelope, dict):
            raise ValueError(f"a JSON {type(envelope).__name__}, not an object")
        event = Event.from_envelope(envelope)
        if envelope_bytes and event.ordering_key is None:
            body = stored.encode("utf-8") if isinstance(stored, str) else stored
            keep_envelope_bytes(event, body)
        return event
    except RecursionError:
        raise UndecodableEvent(
            "nested deeper than this process can decode (RecursionError)"
        ) from None
    except KeyError as exc:
        raise UndecodableEvent(f"the field {exc} is missing") from None
    except Exception as exc:
        text = f"{type(exc).__name__}: {exc}"
        if len(text) > BODY_EXCERPT_CHARS:
            text = text[:BODY_EXCERPT_CHARS] + "..."
        raise UndecodableEvent(text) from None


@attrs.frozen(kw_only=True)
class DeadLetter:
    """A delivery that finally failed, kept so it can be inspected and replayed."""

    dead_letter_id: str
    webhook_name: str
    event: Event
    error: dict[str, Any]
    attempts: int
    failed_at: float
    #: The delivery's `context`, given back to the delivery a replay makes.
    context: dict[str, str] = attrs.field(factory=dict)
    #: The id of the delivery that failed (empty when the store did not keep it).
    delivery_id: str = ""

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
            context=dict(delivery.context),
            delivery_id=delivery.delivery_id,
        )

    def replay_delivery(self) -> Delivery:
        """The fresh delivery a replay queues (attempts start over, the context is kept)."""
        return Delivery(
            webhook_name=self.webhook_name, event=self.event, context=dict(self.context)
        )

    @classmethod
    def undecodable(
        cls,
        *,
        webhook_name: str,
        delivery_id: str,
        stored: str,
        reason: str,
        attempts: int = 0,
    ) -> DeadLetter:
        """A dead letter for a delivery whose stored event could not be decoded.

        Its `event` is a stand-in (type `undecodable_delivery`, the original event id when it
        can be read); the stored text is kept whole in `error["stored_event"]`, so nothing is
        lost and an operator can repair and emit it again. It cannot be replayed as it is
        (`replayable` is False).
        """
        found = _EVENT_ID.search(stored[:4096])
        try:
            event = Event(
                event_type=UNDECODABLE_EVENT_TYPE,
                event_id=found.group(1) if found else "",
                data={"delivery_id": delivery_id},
            )
        except (TypeError, ValueError):  # no id in it, or one an event cannot carry
            event = Event(
                event_type=UNDECODABLE_EVENT_TYPE,
                event_id="evt_undecodable_" + secrets.token_urlsafe(9),
                data={"delivery_id": delivery_id},
            )
        return cls(
            dead_letter_id="dl_" + secrets.token_urlsafe(9),
            webhook_name=webhook_name,
            event=event,
            error={
                "reason": f"the stored event cannot be decoded: {reason}",
                "undecodable": True,
                "stored_event": stored,
            },
            attempts=attempts,
            failed_at=time.time(),
        )

    @property
    def replayable(self) -> bool:
        """False for a dead letter whose event could not be decoded (see `undecodable`)."""
        return not self.error.get("undecodable")

    def to_dict(self) -> dict[str, Any]:
        return {
            "dead_letter_id": self.dead_letter_id,
            "webhook_name": self.webhook_name,
            "event": self.event.to_envelope(),
            "error": self.error,
            "attempts": self.attempts,
            "failed_at": self.failed_at,
            "context": dict(self.context),
            "delivery_id": self.delivery_id,
        }


@runtime_checkable
class DeliveryStore(Protocol):
    """The contract between the dispatcher and a store.

    The dispatcher keeps its own in-process queue per webhook; a store makes that queue
    survive: `enqueue` is durable before it returns (so `emit` returning means the delivery
    will be attempted, even after a crash), and raises when the store cannot keep it (never
    returns as if queued); `mark_delivered` happens only after the service said yes, and
    `open` hands back whatever was pending when the last process stopped.

    A store may write marks (`mark_delivered`, `record_attempt`) behind, without the caller
    waiting (SQLite commits them together within 50 ms): a mark that is never written means
    the delivery is sent again by the next process (at least once, same event id), and the
    store says so with the delivery's id; one it could not write yet it keeps and writes when
    it can, rather than drop it.
    """

    #: True for stores where other processes deliver (producer role): `emit` only enqueues.
    remote_workers: bool
    # Optional, read with getattr (not declared here, so a store without it still matches):
    # `emits_never_wait = True` says `enqueue` returns without waiting for a write (the
    # memory store), and the dispatcher then gives the event loop a turn only every
    # `TURN_SLICE` seconds of emitting to a busy webhook, not on every emit.

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


class Page(list[Delivery]):
    """What `PagedStore.take_pending` may return instead of a plain list: the deliveries,
    each one's stored size in bytes (`sizes`, by delivery id), and the webhooks whose page
    stopped at the store's `page_bytes` rather than because nothing more was pending
    (`capped`: ask again as soon as there is room)."""

    def __init__(
        self,
        deliveries: Sequence[Delivery] = (),
        *,
        sizes: Mapping[str, int] | None = None,
        capped: Sequence[str] = (),
    ) -> None:
        super().__init__(deliveries)
        self.sizes: dict[str, int] = dict(sizes or {})
        self.capped: frozenset[str] = frozenset(capped)


@runtime_checkable
class PagedStore(Protocol):
    """A store that hands pending deliveries out a page at a time, instead of all at once
    from `open()` (which then returns nothing), and sees deliveries other processes queue.

    The dispatcher asks for a page whenever a webhook's lane has room, and again every
    `poll_interval` seconds while the last answer was short, so a backlog of any size costs
    a page of memory and new work from other processes (a producer, a process that died) is
    picked up within about `poll_interval`. A page is counted in deliveries (the lane's
    `resume_window`, 256 by default), and in bytes when the store returns a `Page`: a store
    with `page_bytes` stops a webhook's page at that many bytes of stored events, and the
    dispatcher holds at most twice that per webhook ahead of sending, so a backlog of large
    events costs a few megabytes too, not 256 times an event's size.
    """

    #: Seconds between two asks while the store had nothing more to give.
    poll_interval: float

    async def take_pending(self, wanted: Mapping[str, int]) -> Sequence[Delivery]:
        """Up to `wanted[name]` pending deliveries for each webhook name, oldest first.

        Each one returned is claimed for this process: no other process is given it while
        this one lives, and it is not returned again. Deliveries for webhooks not named stay
        for a process that has them. A delivery whose stored event cannot be decoded is moved
        to the dead letters (with the reason), never returned and never in the way.
        """
        ...


@runtime_checkable
class PendingCounts(Protocol):
    """A store that can count what waits in it without taking it (`empathy-webhooks stats`)."""

    async def pending_counts(self) -> dict[str, dict[str, int]]:
        """Per webhook name: `pending` (queued or under way anywhere) and `retrying` (of
        those, the ones attempted at least once)."""
        ...


@runtime_checkable
class CountsDeadLetters(Protocol):
    """A store that counts its dead letters per webhook without reading them whole (the
    gateway's health figures: `GET /v1/webhooks`, the console's overview, `/metrics`)."""

    async def dead_letter_counts(self) -> dict[str, int]:
        """Per webhook name: how many dead letters `dead_letters(name)` would list now (those
        a replay holds are left out, as there). Read-only; a name with none may be absent."""
        ...


# What a store may offer beyond `DeliveryStore`. The dispatcher checks them once, when the
# store opens (`StoreCapabilities`), never by probing attributes on the delivery path.


@runtime_checkable
class SharesRateLimits(Protocol):
    """A store whose rate limiter is shared by every process using it (Redis)."""

    def make_rate_limiter(self, webhook: Webhook, clock: Clock) -> Limiter:
        """The limiter for `webhook` (which has a `rate_limit`)."""
        ...


@runtime_checkable
class SharesBreakers(Protocol):
    """A store whose circuit breaker is shared by every process using it (Redis)."""

    def make_circuit_breaker(self, webhook: Webhook, clock: Clock) -> Breaker:
        """The breaker for `webhook` (whose breaker is enabled)."""
        ...


@runtime_checkable
class ReplaysInOneStep(Protocol):
    """A store that moves a dead letter back to the queue in one atomic step, so a crash
    between taking the letter and queueing it cannot lose it. Used when `remote_workers`."""

    async def requeue_dead_letter(self, dead_letter_id: str) -> Delivery | None:
        """The new delivery now queued for the letter, or None if there is no such letter."""
        ...


@runtime_checkable
class ReturnsDeadLetters(Protocol):
    """A store that takes back a dead letter `take_dead_letter` gave out when the replay
    could not queue it (its webhook unknown to this dispatcher, the store's write failed):
    listed again as it was, instead of gone (memory) or hidden until this process ends."""

    async def return_dead_letter(self, letter: DeadLetter) -> None: ...


@runtime_checkable
class ConfirmsHolding(Protocol):
    """A store shared by processes whose claim on a delivery can run out while this process
    is stopped, asleep or cut off (a lease, a visibility timeout), after which another
    process takes the delivery over. The dispatcher asks before every attempt, so a process
    that comes back sends nothing another process took (the request already on the wire
    when it stopped is the one duplicate left: at least once)."""

    def surely_held(self, delivery: Delivery) -> bool:
        """No I/O, on every attempt: True when this process certainly still holds `delivery`
        (its claim is current by this process's own monotonic clock). False: the dispatcher
        asks `confirm_held` before sending."""
        ...

    async def confirm_held(self, delivery: Delivery) -> bool:
        """Ask the store. True: `delivery` is still this process's to send (claimed again if
        nobody holds it). False: another process holds it, or it has ended there (delivered,
        dead-lettered); the dispatcher drops its copy and says so. Raising means "cannot
        tell": the delivery is sent (a duplicate rather than a loss)."""
        ...


@runtime_checkable
class HasWorkerRole(Protocol):
    """A store opened by producers by default, with a role that takes deliveries for workers."""

    def for_worker(self) -> DeliveryStore: ...


@runtime_checkable
class HasProducerRole(Protocol):
    """A store opened to deliver by default, with a role that only queues (SQLite: rows
    wait for a process in the worker role)."""

    def for_producer(self) -> DeliveryStore: ...


@runtime_checkable
class StopsConsuming(Protocol):
    """A store that hands deliveries to the dispatcher itself, and can stop taking new ones
    (a stopping worker) while those it holds finish."""

    async def stop_consuming(self) -> None: ...


@runtime_checkable
class KeyValue(Protocol):
    """A small memory of strings by key, each kept for a time (a plugin's per-webhook memory:
    what it created, what it looked up). Values are short strings; keys are namespaced by the
    caller. What a store gives is shared by every process using the store."""

    async def get(self, key: str) -> str | None:
        """The value kept for `key`, or None (never kept, deleted, or expired)."""
        ...

    async def set(self, key: str, value: str, ttl_seconds: float) -> None:
        """Keep `value` for `key` for `ttl_seconds`, replacing any value."""
        ...

    async def add(self, key: str, value: str, ttl_seconds: float) -> bool:
        """Keep `value` only if `key` holds nothing: True if it was kept (a claim)."""
        ...

    async def delete(self, key: str) -> None: ...


@runtime_checkable
class HasKeyValue(Protocol):
    """A store that keeps plugins' key-value memory (the Redis store: shared by every worker;
    SQLite: in its file). Without it the core keeps that memory in the process."""

    def key_value(self, namespace: str) -> KeyValue:
        """The memory under `namespace` (keys of other namespaces are never seen)."""
        ...


@runtime_checkable
class SharedStore(
    DeliveryStore,
    SharesRateLimits,
    SharesBreakers,
    ReplaysInOneStep,
    HasWorkerRole,
    StopsConsuming,
    HasKeyValue,
    Protocol,
):
    """Every capability a store shared by many processes offers (the Redis store)."""
