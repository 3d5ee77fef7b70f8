"""The pipeline's unit of work: one event on its way to one webhook.

Stores persist it (`stores.Delivery` re-exports it for them and for plugins); the lanes queue
it; an attempt renders its request once and counts its attempts.
"""

from __future__ import annotations

import itertools
import secrets
import time
from typing import Any

import attrs

from ..events import Event
from ..wire import OutgoingRequest

__all__ = ["Delivery", "new_delivery_id"]


#: Random per process, then a counter: unique across processes without a syscall per delivery.
_PREFIX = secrets.token_urlsafe(9)
_COUNTER = itertools.count()


def new_delivery_id() -> str:
    return f"dlv_{_PREFIX}{next(_COUNTER):x}"


@attrs.define(kw_only=True, slots=True)
class Delivery:
    """One event on its way to one webhook. Mutable: the pipeline counts its attempts.

    `store_ref` is the store's own handle (a row id, a stream entry id); `request` caches the
    rendered request so every retry sends the same bytes. `context` is opaque per-delivery
    text (a trace parent, say) set when the delivery is made: every store keeps it, a worker
    taking the delivery in another process gets it back unchanged, and so does its dead
    letter and the delivery a replay makes.
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
    context: dict[str, str] = attrs.field(factory=dict)
