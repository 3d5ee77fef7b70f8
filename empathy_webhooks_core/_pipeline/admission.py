"""Admitting an event: one `Delivery` per webhook that wants it, refused (loudly, with
`QueueFull`) for a webhook already holding `max_pending`, made durable in the store before
`emit` returns, then handed to the lanes of this process (unless other processes' workers
deliver: they take it from the store)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence

from .._log import get_logger
from ..events import Event
from ..monitor import UnknownWebhookError
from ..plugins import Hooks
from ..stores import DeliveryStore
from .lane import Lane
from .unit import Delivery

__all__ = ["Held", "QueueFull", "admit", "admit_many"]

log = get_logger()

#: Seconds an emitter may keep the loop, emitting to a lane that has work for all its
#: workers, before it gives the workers a turn.
TURN_SLICE = 0.0005
#: Within this many deliveries of its `max_pending`, a lane's emitters take a turn on every
#: emit: a slice of emits on a fast machine queues 100 to 250, so four times that.
TURN_ROOM = 1_000


class QueueFull(Exception):
    """`emit` refused an event for webhooks whose pending deliveries reached `max_pending`.

    The event's deliveries to every other webhook it was routed to were queued as usual
    (`queued` names them), so re-emitting the whole event would send those twice: to try the
    refused ones again, `await dispatcher.emit_event(error.event, webhooks=error.refused)`.
    """

    def __init__(self, event: Event, limits: Mapping[str, int], queued: Sequence[str]) -> None:
        self.event = event
        #: The refused webhooks' names, and each one's `max_pending`.
        self.limits = dict(limits)
        self.refused = list(limits)
        self.queued = list(queued)
        full = ", ".join(f"{name!r} (max_pending={limit})" for name, limit in limits.items())
        others = f"queued for {', '.join(map(repr, queued))}" if queued else "queued for none"
        super().__init__(
            f"queue full: event {event.event_id} ({event.event_type}) refused for webhook "
            f"{full}, which already holds that many pending deliveries; {others}"
        )


async def admit(
    event: Event,
    lanes: Mapping[str, Lane],
    store: DeliveryStore,
    *,
    webhooks: Iterable[str] | None = None,
    hooks: Hooks | None = None,
) -> list[str]:
    """Queue `event` for each lane that wants it (of those named by `webhooks`, if given).
    Returns the names it was queued for; raises `QueueFull` after queueing the others."""
    wanting = [lane for lane in lanes.values() if lane.wants(event)]
    if webhooks is not None:
        names = set(webhooks)
        unknown = names - set(lanes)
        if unknown:
            raise UnknownWebhookError(
                f"no webhook named {', '.join(map(repr, sorted(unknown)))} "
                f"(known: {', '.join(lanes)})"
            )
        wanting = [lane for lane in wanting if lane.webhook.name in names]
    local = not store.remote_workers
    busy = None
    tight = False
    if local:
        for lane in wanting:
            if lane.pending >= 2 * lane.webhook.max_concurrency:
                busy = lane
                if lane.webhook.max_pending - lane.pending <= TURN_ROOM:
                    tight = True
                    break
    if busy is not None and (
        # A store whose emits wait for their write (SQLite's group commit) takes the turn on
        # every emit: the emitters resumed by one commit then emit together in the next turn
        # and share the next commit (measured without: no gain, and in one run of two its
        # CPU per delivery rose by a fifth). So does a lane near `max_pending`: a slice of
        # emits without a turn could fill it, and a backfill would be refused.
        tight or not getattr(store, "emits_never_wait", False) or time.monotonic() >= busy.turn_due
    ):
        # A lane has work enough for all its workers: one turn of the loop first, so they run.
        # Where the store writes at once (memory, SQLite from the loop) an emit never waits,
        # and a task emitting event after event (a backfill) would keep the loop to itself,
        # its lanes' workers idle and, past `max_pending`, its events refused. Not every emit:
        # a turn under load lasts a while, and a producer waiting for one each time would
        # leave the workers short of work. Before the checks below, so `max_pending` is held
        # to what the lanes hold after it, and before the write: cancelled here, nothing is
        # kept. Into the memory store, at most one turn per TURN_SLICE seconds of emitting:
        # a turn on every emit was a third of an emit's cost under a backlog (5 of 15 µs),
        # and a producer holding the loop for half a millisecond delays nobody.
        await asyncio.sleep(0)
        busy.turn_due = time.monotonic() + TURN_SLICE
    # One pass over the lanes that want it (this runs on every emit): refused, or given a
    # delivery. Deliveries live in this process's memory until they end: past max_pending a
    # webhook refuses more (loudly), and the others keep theirs.
    context_of = hooks.delivery_context if hooks is not None and hooks.captures_context else None
    full: dict[str, int] = {}
    taking: list[Lane] = []
    deliveries: list[Delivery] = []
    queued: list[str] = []
    for lane in wanting:
        webhook = lane.webhook
        if local and lane.pending >= webhook.max_pending:
            full[webhook.name] = webhook.max_pending
            lane.recorder.refused += 1
            continue
        delivery = Delivery(webhook_name=webhook.name, event=event)
        if context_of is not None:
            # Here, in the emitter's task: what a plugin captures (its current span) is the
            # emitter's, carried by the store to whichever worker makes the attempts.
            delivery.context = context_of(webhook, event)
        taking.append(lane)
        deliveries.append(delivery)
        queued.append(webhook.name)
    if deliveries:
        if local:
            # Counted from now, not from when the write returns: emits waiting for their
            # writes at the same time (SQLite's group commit, a Redis round trip) each passed
            # the check above while none of them was counted, and 100 emits at once to a
            # webhook with `max_pending` 10 were all accepted.
            _reserve(taking)
        try:
            await store.enqueue(deliveries)
        except BaseException:
            if local:
                _release(taking)  # the caller wakes `drain` (`WebhookDispatcher._wake`)
            raise
        if local:
            _release(taking)  # the reservations, counted again by `enqueue`
            for index, lane in enumerate(taking):
                lane.enqueue(deliveries[index])
    if full:
        raise _refused(event, full, queued)
    return queued


def _reserve(lanes: Iterable[Lane]) -> None:
    for lane in lanes:
        lane.pending += 1


def _release(lanes: Iterable[Lane]) -> None:
    for lane in lanes:
        lane.pending -= 1


def _refused(event: Event, full: dict[str, int], queued: list[str]) -> QueueFull:
    """The `QueueFull` for webhooks that refused `event`, each refusal logged (loud: the
    event does not reach them)."""
    for name, limit in full.items():
        log.error(
            "queue_full",
            webhook=name,
            event_id=event.event_id,
            max_pending=limit,
            queued_for=queued,
        )
    return QueueFull(event, full, queued)


class Held:
    """Deliveries made durable but not handed to their lanes yet: how a gateway keeps its event
    loop for intake while a burst of requests lasts. Each one counts in its lane's `pending`
    from the start, so `max_pending` holds and `drain` waits for it; `release()` hands them
    all over, in the order they were admitted (ordering keys keep emit order). Whoever holds
    deliveries must release them: the rows are in the store meanwhile, so a crash loses
    nothing, but a live process that never released would not deliver them."""

    def __init__(self) -> None:
        self._deliveries: list[tuple[Lane, Delivery]] = []

    def __len__(self) -> int:
        return len(self._deliveries)

    def hold(self, lane: Lane, delivery: Delivery) -> None:
        lane.pending += 1
        self._deliveries.append((lane, delivery))

    def release(self) -> None:
        held, self._deliveries = self._deliveries, []
        for lane, delivery in held:
            lane.pending -= 1  # counted again by `enqueue`
            lane.enqueue(delivery)


async def admit_many(
    events: Sequence[Event],
    lanes: Mapping[str, Lane],
    store: DeliveryStore,
    *,
    hooks: Hooks | None = None,
    held: Held | None = None,
) -> list[list[str] | Exception]:
    """`admit` for several events with ONE `store.enqueue`, so a durable store commits them in
    one transaction (one wake-up of its writer, one answer back) instead of one per event.

    Each event's result is what `admit` would return or raise for it alone: the webhooks it
    was queued for, `QueueFull`, or the store's error. If the grouped write fails, every event
    is written again on its own, so only the one that fails gets the error. With `held`, the
    deliveries go there instead of to the lanes (see `Held`)."""
    local = not store.remote_workers
    plans: list[tuple[Event, list[Lane], list[Delivery], dict[str, int]]] = []
    captures = hooks is not None and hooks.captures_context
    wanting: list[Lane] = []
    try:
        for event in events:
            # One pass over the lanes per event (this runs for every accepted event): refused,
            # or given a delivery, counted for the events after it in this group.
            wanting = []
            deliveries: list[Delivery] = []
            full: dict[str, int] = {}
            for lane in lanes.values():
                if not lane.wants(event):
                    continue
                webhook = lane.webhook
                name = webhook.name
                if local and lane.pending >= webhook.max_pending:
                    full[name] = webhook.max_pending
                    lane.recorder.refused += 1
                    continue
                delivery = Delivery(webhook_name=name, event=event)
                if captures:
                    # Asked before the reservation: a plugin whose context raised had left one
                    # that nothing released (drain then waited for ever, close said it lost it).
                    assert hooks is not None
                    delivery.context = hooks.delivery_context(webhook, event)
                if local:
                    # Reserved until the write returns (see `admit`): the events after this one
                    # in the group, and other groups written meanwhile, count it.
                    lane.pending += 1
                wanting.append(lane)
                deliveries.append(delivery)
            plans.append((event, wanting, deliveries, full))
    except BaseException:
        # A plugin's delivery_context raised: nothing is written, so every reservation made
        # so far goes, this event's included.
        if local:
            for plan in plans:
                _release(plan[1])
            _release(wanting)
        raise
    written: list[Exception | None] = [None] * len(plans)
    try:
        try:
            await store.enqueue([delivery for plan in plans for delivery in plan[2]])
        except Exception:
            # Which event's write failed? Each on its own: only that one gets the error.
            for index, plan in enumerate(plans):
                try:
                    await store.enqueue(plan[2])
                except Exception as exc:
                    written[index] = exc
    except BaseException:
        if local:
            for plan in plans:
                _release(plan[1])
        raise
    results: list[list[str] | Exception] = []
    for (event, wanting, deliveries, full), error in zip(plans, written, strict=True):
        if local:
            _release(wanting)  # the reservations: counted again below if written
        if error is not None:
            results.append(error)
            continue
        if local:
            for lane, delivery in zip(wanting, deliveries, strict=True):
                if held is not None:
                    held.hold(lane, delivery)
                else:
                    lane.enqueue(delivery)
        queued = [lane.webhook.name for lane in wanting]
        results.append(_refused(event, full, queued) if full else queued)
    return results
