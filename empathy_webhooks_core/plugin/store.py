"""The store-backend plugin API: what a plugin implementing `store_backends` (a delivery store
such as `empathy-webhooks-redis`) imports from the core, beside `empathy_webhooks_core.plugin`.
Covered by the same `PLUGIN_API_VERSION` promise."""

from __future__ import annotations

from ..breaker import BreakerPolicy, BreakerState
from ..clock import Clock
from ..converter import did_you_mean
from ..history import (
    AttemptRecord,
    DeliveryPage,
    DeliveryQuery,
    DeliveryRecord,
    KeepsHistory,
    RawAttempt,
    page_of,
)
from ..ratelimit import RateLimit
from ..stores import (
    ConfirmsHolding,
    DeadLetter,
    Delivery,
    DeliveryStore,
    HasKeyValue,
    HasWorkerRole,
    KeyValue,
    Page,
    PagedStore,
    PendingCounts,
    ReplaysInOneStep,
    ReturnsDeadLetters,
    SharedStore,
    SharesBreakers,
    SharesRateLimits,
    StopsConsuming,
    StoreOpenError,
    UndecodableEvent,
    decode_event,
    new_delivery_id,
)

__all__ = [
    "AttemptRecord",
    "BreakerPolicy",
    "BreakerState",
    "Clock",
    "ConfirmsHolding",
    "DeadLetter",
    "Delivery",
    "DeliveryPage",
    "DeliveryQuery",
    "DeliveryRecord",
    "DeliveryStore",
    "HasKeyValue",
    "HasWorkerRole",
    "KeepsHistory",
    "KeyValue",
    "Page",
    "PagedStore",
    "PendingCounts",
    "RateLimit",
    "RawAttempt",
    "ReplaysInOneStep",
    "ReturnsDeadLetters",
    "SharedStore",
    "SharesBreakers",
    "SharesRateLimits",
    "StopsConsuming",
    "StoreOpenError",
    "UndecodableEvent",
    "decode_event",
    "did_you_mean",
    "new_delivery_id",
    "page_of",
]
