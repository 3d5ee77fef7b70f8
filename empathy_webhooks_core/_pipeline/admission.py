"""Admitting an event: one `Delivery` per webhook that wants it, refused (loudly, with
`QueueFull`) for a webhook already holding `max_pending`, made durable in the store before
`emit` returns, then handed to the lanes of this process (unless other processes' workers
deliver: they take it from the store)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from .._log import get_logger
from ..events import Event
from ..monitor import UnknownWebhookError
from ..plugins import Hooks
from ..stores import DeliveryStore
from .lane import Lane
from .unit import Delivery

__all__ = ["QueueFull", "admit"]

log = get_logger()


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
    full: dict[str, int] = {}
    if not store.remote_workers:
        # Deliveries live in this process's memory until they end: past max_pending a
        # webhook refuses more (loudly), and the others keep theirs.
        for lane in wanting:
            if lane.pending >= lane.webhook.max_pending:
                full[lane.webhook.name] = lane.webhook.max_pending
                lane.recorder.refused += 1
        if full:
            wanting = [lane for lane in wanting if lane.webhook.name not in full]
    if wanting:
        deliveries = [Delivery(webhook_name=lane.webhook.name, event=event) for lane in wanting]
        if hooks is not None and hooks.captures_context:
            # Here, in the emitter's task: what a plugin captures (its current span) is the
            # emitter's, carried by the store to whichever worker makes the attempts.
            for lane, delivery in zip(wanting, deliveries, strict=True):
                delivery.context = hooks.delivery_context(lane.webhook, event)
        await store.enqueue(deliveries)
        if not store.remote_workers:
            for lane, delivery in zip(wanting, deliveries, strict=True):
                lane.enqueue(delivery)
    queued = [lane.webhook.name for lane in wanting]
    if full:
        for name, limit in full.items():
            log.error(
                "queue_full",
                webhook=name,
                event_id=event.event_id,
                max_pending=limit,
                queued_for=queued,
            )
        raise QueueFull(event, full, queued)
    return queued
