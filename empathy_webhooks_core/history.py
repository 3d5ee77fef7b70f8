"""Attempt history: what happened to each delivery, attempt by attempt, kept by every store.

"What happened to delivery X, and what did the service answer?" is the first question anyone
operating webhooks asks. Each attempt leaves one `AttemptRecord` (when, how long, the status
or the transport error, the verdict, a redacted excerpt of the answer, the request's headers
with secrets masked, the body's size, when the next attempt goes); each delivery one
`DeliveryRecord` holding them. The dispatcher reads them back with `delivery()`,
`deliveries()` (newest first, a page at a time) and `event()`.

Recording stays cheap: the worker hands the store a `RawAttempt` (the values it already
holds) without awaiting anything; a durable store masks it before it writes it with its next
commit or pipeline (Redis at once, `RawAttempt.record`; SQLite in its writer thread, when
masking may wait, `RawAttempt.may_wait`). The memory store keeps what
`RawAttempt.kept` gives: most attempts as a compact tuple of plain values, masked only when a
record is read (most are never read, and masking was a large part of a delivery's CPU), and
the record itself, masked now, when later could be too late or too costly to keep: a request
carrying credentials the redaction registry knows only for a while (its transient values are
bounded), or an answer too long to keep whole. Registered secrets are never forgotten, so a
record masked when read masks at least what it would have when written.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

from .redaction import REDACTED, bounded, is_secret_name, redact_text, storable

if TYPE_CHECKING:
    from ._pipeline.unit import Delivery
    from .events import Event
    from .wire import Response

__all__ = [
    "DELIVERY_STATUSES",
    "MAX_PAGE",
    "AttemptRecord",
    "DeliveryPage",
    "DeliveryQuery",
    "DeliveryRecord",
    "KeepsHistory",
    "KeptAttempt",
    "RawAttempt",
    "record_of",
]

#: A delivery's status in its record: queued and not tried yet, tried and waiting for its next
#: attempt, accepted by the service, finally failed (a dead letter), or waiting because its
#: webhook was disabled (a 410) until `enable_webhook`.
DELIVERY_STATUSES = ("pending", "retrying", "delivered", "failed", "disabled")
#: The most records one page holds.
MAX_PAGE = 500
#: The furthest `since` or `until` may be from 1970, in seconds (about year 33,658): past
#: it a time is no time, and SQLite refuses integers past 2**63.
_LATEST_MOMENT = 1e12
#: The longest cursor read: one `encode_cursor` made is under 100 characters.
_MAX_CURSOR_CHARS = 1024

#: Headers whose values the core itself sets from the event and the clock (ids, type, time,
#: the content type): kept as they are, sparing each attempt a masking pass over them (the
#: costly part of a record). Any other header is masked by name and by value.
_PLAIN_HEADERS = frozenset(
    {
        "content-type",
        "user-agent",
        "x-empathy-event-id",
        "x-empathy-event-type",
        "webhook-id",
        "webhook-timestamp",
    }
)


#: Bytes of an answer masked for its excerpt: masked before the cut (so no part of a secret
#: shows at it), but on a window, not the 64 KiB a failure's excerpt gets: this runs on every
#: attempt, successes included, and some services echo the whole request back.
_EXCERPT_WINDOW = 8192


def _excerpt(body: bytes) -> str:
    if not body:  # most successes: nothing to decode or mask
        return ""
    return bounded(body[:_EXCERPT_WINDOW].decode("utf-8", errors="replace"))


#: Compact JSON, one encoder made once (`json.dumps` with `separators` builds one per call).
_compact_json = json.JSONEncoder(separators=(",", ":")).encode

#: The longest answer body an attempt kept for masking later holds (longer ones are masked
#: and cut at once: a memory store keeps 10,000 deliveries' history by default).
_KEPT_BODY_BYTES = 512


@functools.lru_cache(maxsize=1024)
def _header_kind(name: str) -> int:
    """0: a secret-named header, 1: one of the core's plain ones, 2: any other. Cached: a
    process sends a handful of header names, and the name pattern is the costly part."""
    if is_secret_name(name):
        return 0
    return 1 if name.lower() in _PLAIN_HEADERS else 2


def masked_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Request headers fit to keep: secret-named ones (signatures, Authorization, tokens)
    `***`, every value masked as `redact_headers` does but for the core's own plain ones."""
    masked = {}
    for name, value in headers.items():
        kind = _header_kind(name)
        if kind == 0:
            masked[name] = REDACTED
        elif kind == 1 and len(value) <= 256:
            masked[name] = value
        else:
            masked[name] = redact_text(str(value))
    return masked


@attrs.frozen(kw_only=True)
class AttemptRecord:
    """One attempt of one delivery. Nothing in it shows a secret: `error`, `reason` and
    `response_excerpt` are masked and bounded, secret-named request headers are `***`."""

    delivery_id: str
    #: 1 for the first attempt.
    attempt: int
    #: Epoch seconds when the attempt started.
    started_at: float
    duration_s: float
    #: The answer's status (None when there was no answer).
    status: int | None
    #: The transport error when there was no answer (refused, timed out, ...), else None.
    error: str | None
    #: The plugin's verdict on the attempt: "success", "retry", "fail" or "gone".
    verdict: str
    #: Why it did not succeed, in the verdict's words (None for a success).
    reason: str | None
    #: The start of the answer's body, masked and bounded (None when there was no answer).
    response_excerpt: str | None
    request_headers: dict[str, str]
    body_bytes: int
    #: Epoch seconds of the next attempt when one was scheduled, else None.
    next_retry_at: float | None

    def to_dict(self) -> dict[str, Any]:
        # Written out, not `attrs.asdict` (which walks every field and value generically):
        # the durable stores encode one per attempt, and asdict was its largest cost.
        return self._fields(dict(self.request_headers))

    def to_json(self) -> str:
        """`to_dict` as compact JSON: what the durable stores keep for each attempt."""
        return _compact_json(self._fields(self.request_headers))

    def _fields(self, headers: dict[str, str]) -> dict[str, Any]:
        return {
            "delivery_id": self.delivery_id,
            "attempt": self.attempt,
            "started_at": self.started_at,
            "duration_s": self.duration_s,
            "status": self.status,
            "error": self.error,
            "verdict": self.verdict,
            "reason": self.reason,
            "response_excerpt": self.response_excerpt,
            "request_headers": headers,
            "body_bytes": self.body_bytes,
            "next_retry_at": self.next_retry_at,
        }

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> AttemptRecord:
        return cls(
            delivery_id=str(value["delivery_id"]),
            attempt=int(value["attempt"]),
            started_at=float(value["started_at"]),
            duration_s=float(value["duration_s"]),
            status=None if value.get("status") is None else int(value["status"]),
            error=value.get("error"),
            verdict=str(value["verdict"]),
            reason=value.get("reason"),
            response_excerpt=value.get("response_excerpt"),
            request_headers={
                str(k): str(v) for k, v in (value.get("request_headers") or {}).items()
            },
            body_bytes=int(value.get("body_bytes") or 0),
            next_retry_at=(
                None if value.get("next_retry_at") is None else float(value["next_retry_at"])
            ),
        )


#: `AttemptRecord`'s fields in order: the order of `_attempt_values` and of SQLite's columns.
_RECORD_FIELDS = tuple(field.name for field in attrs.fields(AttemptRecord))


@attrs.frozen(kw_only=True)
class DeliveryRecord:
    """One delivery (one event to one webhook) and its attempts, oldest first."""

    delivery_id: str
    event_id: str
    webhook: str
    event_type: str
    #: One of `DELIVERY_STATUSES`.
    status: str
    #: Epoch seconds: queued, and last changed.
    created_at: float
    updated_at: float
    attempts: tuple[AttemptRecord, ...] = ()
    #: The dead letter a failed delivery left (None otherwise, or once it was replayed).
    dead_letter_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "delivery_id": self.delivery_id,
            "event_id": self.event_id,
            "webhook": self.webhook,
            "event_type": self.event_type,
            "status": self.status,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "dead_letter_id": self.dead_letter_id,
            "attempts": [a.to_dict() for a in self.attempts],
        }


@attrs.frozen(kw_only=True)
class DeliveryPage:
    """A page of delivery records, newest first; `next_cursor` asks for the next page (None
    on the last one)."""

    items: tuple[DeliveryRecord, ...]
    next_cursor: str | None = None


def _check_status(value: str | None) -> str | None:
    if value is not None and value not in DELIVERY_STATUSES:
        raise ValueError(f"status must be one of {', '.join(DELIVERY_STATUSES)}, got {value!r}")
    return value


def _check_text(value: Any) -> str | None:
    # Compared for equality by every store (never a pattern: `%` and `_` are themselves);
    # a number here silently matched nothing in any store.
    if value is not None and not isinstance(value, str):
        raise ValueError(f"a filter must be text, got {type(value).__name__} {value!r}")
    return value


def _check_moment(value: Any) -> float | None:
    # Epoch seconds. "2h" raised TypeError in the memory store and matched nothing in SQLite;
    # NaN matched nothing anywhere; 2**64 raised OverflowError in SQLite; True was 1.
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or abs(value) > _LATEST_MOMENT
    ):
        raise ValueError(
            "since and until must be epoch seconds (a finite number, at most 1e12 either "
            f"way), got {value!r}"
        )
    return float(value)


def _check_limit(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PAGE:
        raise ValueError(f"limit must be a whole number from 1 to {MAX_PAGE}, got {value!r}")
    return value


@attrs.frozen(kw_only=True)
class DeliveryQuery:
    """What `deliveries()` asks a store for. `since` and `until` bound `created_at` (epoch
    seconds, `since` included, `until` excluded); `cursor` comes from the previous page."""

    webhook: str | None = attrs.field(default=None, converter=_check_text)
    status: str | None = attrs.field(default=None, converter=_check_status)
    event_type: str | None = attrs.field(default=None, converter=_check_text)
    event_id: str | None = attrs.field(default=None, converter=_check_text)
    since: float | None = attrs.field(default=None, converter=_check_moment)
    until: float | None = attrs.field(default=None, converter=_check_moment)
    limit: int = attrs.field(default=50, converter=_check_limit)
    cursor: str | None = None

    def after(self) -> tuple[float, str] | None:
        """The position the cursor names: records strictly older come next."""
        return decode_cursor(self.cursor) if self.cursor else None

    def matches(self, record: DeliveryRecord) -> bool:
        """Whether a record passes the filters (the cursor aside)."""
        return (
            (self.webhook is None or record.webhook == self.webhook)
            and (self.status is None or record.status == self.status)
            and (self.event_type is None or record.event_type == self.event_type)
            and (self.event_id is None or record.event_id == self.event_id)
            and (self.since is None or record.created_at >= self.since)
            and (self.until is None or record.created_at < self.until)
        )


def encode_cursor(record: DeliveryRecord) -> str:
    """An opaque cursor after `record` (newest first: by `created_at`, then delivery id)."""
    raw = json.dumps([record.created_at, record.delivery_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """The position in a cursor, or `ValueError` for one this module did not make."""
    try:
        if not isinstance(cursor, str) or len(cursor) > _MAX_CURSOR_CHARS:
            raise ValueError
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        position = json.loads(raw)
        # Exactly what `encode_cursor` writes: a NaN or a dict's keys once read as a
        # position, and named no record (an empty page, no error).
        if not isinstance(position, list) or len(position) != 2:
            raise ValueError
        created_at, delivery_id = position
        if (
            isinstance(created_at, bool)
            or not isinstance(created_at, int | float)
            or not math.isfinite(created_at)
            or not isinstance(delivery_id, str)
        ):
            raise ValueError
        return float(created_at), delivery_id
    except (ValueError, TypeError, binascii.Error, RecursionError):
        raise ValueError("not a cursor this API gave (pass next_cursor as it is)") from None


def newest_first(record: DeliveryRecord) -> tuple[float, str]:
    return (record.created_at, record.delivery_id)


def page_of(records: list[DeliveryRecord], query: DeliveryQuery) -> DeliveryPage:
    """The page `query` asks for out of `records` already filtered, any order."""
    after = query.after()
    if after is not None:
        records = [r for r in records if newest_first(r) < after]
    records.sort(key=newest_first, reverse=True)
    items = tuple(records[: query.limit])
    more = len(records) > query.limit
    return DeliveryPage(items=items, next_cursor=encode_cursor(items[-1]) if more else None)


class RawAttempt:
    """An attempt as the worker knows it (no masking yet, no copy): the store turns it into
    an `AttemptRecord` (`record`) when it takes it."""

    __slots__ = (
        "attempt",
        "body_bytes",
        "duration_s",
        "error",
        "headers",
        "next_retry_at",
        "reason",
        "response",
        "started_at",
        "transient",
        "verdict",
    )

    def __init__(
        self,
        *,
        attempt: int,
        started_at: float,
        duration_s: float,
        verdict: str,
        reason: str | None,
        response: Response | None,
        headers: Mapping[str, str],
        body_bytes: int,
        next_retry_at: float | None,
        error: str | None = None,
        transient: bool = True,
    ) -> None:
        """`transient` is False when the request carried no credential the redaction
        registry knows only for a while (`redaction.register_request_secrets`): then the
        values may be masked later, when read (`kept`)."""
        self.attempt = attempt
        self.started_at = started_at
        self.duration_s = duration_s
        self.verdict = verdict
        self.reason = reason
        self.response = response
        self.headers = headers
        self.body_bytes = body_bytes
        self.next_retry_at = next_retry_at
        self.error = error
        self.transient = transient

    def record(self, delivery_id: str) -> AttemptRecord:
        """The attempt fit to keep and show: masked and bounded."""
        return _record_of_values(self.columns(delivery_id))

    def columns(self, delivery_id: str) -> tuple[Any, ...]:
        """`record`'s values in the order of `AttemptRecord`'s fields, without making the
        record: what a store writing a row per attempt (SQLite) needs."""
        response = self.response
        return _attempt_values(
            delivery_id,
            self.attempt,
            self.started_at,
            self.duration_s,
            self.verdict,
            self.reason,
            response.status if response is not None else None,
            response.body if response is not None else None,
            self.headers,
            self.body_bytes,
            self.next_retry_at,
            self.error,
        )

    @property
    def may_wait(self) -> bool:
        """Whether masking may wait until later (when read, or in a store's writer thread):
        the request carried no `transient` credential and the answer is not long (a long
        one is cut at once rather than held)."""
        response = self.response
        return not self.transient and (response is None or len(response.body) <= _KEPT_BODY_BYTES)

    def kept(self, delivery_id: str) -> KeptAttempt:
        """What a store holding records in memory keeps (`record_of` makes the record): the
        values as a tuple, masked when read, or the record masked now when the request
        carried `transient` credentials or the answer is long."""
        if not self.may_wait:
            return self.record(delivery_id)
        response = self.response
        return (
            self.attempt,
            self.started_at,
            self.duration_s,
            self.verdict,
            self.reason,
            response.status if response is not None else None,
            response.body if response is not None else None,
            # Names and values as tuples of strings: with nothing but strings and numbers
            # in it, the collector stops tracking the whole tuple (a memory store keeps
            # 10,000 deliveries' history, which every full collection would walk).
            tuple(self.headers),
            tuple(self.headers.values()),
            self.body_bytes,
            self.next_retry_at,
            self.error,
        )


#: An attempt as the memory store keeps it: its record, or the values `RawAttempt.kept`
#: gave to make it from when read.
KeptAttempt = AttemptRecord | tuple[Any, ...]


def record_of(delivery_id: str, kept: KeptAttempt) -> AttemptRecord:
    """The record of an attempt kept by `RawAttempt.kept`: masked and bounded."""
    if isinstance(kept, AttemptRecord):
        return kept
    (attempt, started_at, duration_s, verdict, reason, status, body, names, values) = kept[:9]
    body_bytes, next_retry_at, error = kept[9:]
    return _attempt_record(
        delivery_id,
        attempt,
        started_at,
        duration_s,
        verdict,
        reason,
        status,
        body,
        dict(zip(names, values, strict=True)),
        body_bytes,
        next_retry_at,
        error,
    )


def _attempt_record(*values: Any) -> AttemptRecord:
    """The record of an attempt's raw values (`_attempt_values`)."""
    return _record_of_values(_attempt_values(*values))


def _attempt_values(
    delivery_id: str,
    attempt: int,
    started_at: float,
    duration_s: float,
    verdict: str,
    reason: str | None,
    status: int | None,
    body: bytes | None,
    headers: Mapping[str, str],
    body_bytes: int,
    next_retry_at: float | None,
    error: str | None,
) -> tuple[Any, ...]:
    """An attempt's values masked and bounded, in the order of `AttemptRecord`'s fields: the
    one place an attempt is made fit to keep. `status` and `body` are None when there was no
    answer."""
    reason = bounded(reason) if reason else None
    if status is None:
        excerpt = None
        error = bounded(error) if error else reason
    else:
        excerpt, error = _excerpt(body or b""), None
    return (
        delivery_id,
        attempt,
        started_at,
        duration_s,
        status,
        error,
        verdict,
        reason,
        excerpt,
        _storable_headers(masked_headers(headers)),
        body_bytes,
        next_retry_at,
    )


def _record_of_values(values: tuple[Any, ...]) -> AttemptRecord:
    return AttemptRecord(**dict(zip(_RECORD_FIELDS, values, strict=True)))


def _storable_headers(headers: dict[str, str]) -> dict[str, str]:
    # Nearly always ASCII: asked of all the text at once (C loops), not of each string.
    if "".join(headers).isascii() and "".join(headers.values()).isascii():
        return headers
    return {storable(name): storable(value) for name, value in headers.items()}


@runtime_checkable
class KeepsHistory(Protocol):
    """A store that keeps attempt history (every store shipped with the project does).

    `note_attempt` is called by the worker after each attempt, with the delivery's status
    after it; it must not block nor raise (a store that cannot write logs it and goes on:
    history never costs a delivery). A store creates a delivery's record when it is queued
    (`enqueue`) and marks it failed with its dead letter id in `add_dead_letter`.
    """

    def note_attempt(self, delivery: Delivery, attempt: RawAttempt, status: str) -> None: ...

    async def delivery_record(self, delivery_id: str) -> DeliveryRecord | None: ...

    async def delivery_records(self, query: DeliveryQuery) -> DeliveryPage: ...

    async def stored_event(self, event_id: str) -> Event | None:
        """The event (its envelope) while any of its deliveries' records is kept."""
        ...
