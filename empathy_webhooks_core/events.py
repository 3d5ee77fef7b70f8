"""The event: what the Empathy Framework emits, and its envelope on the wire."""

from __future__ import annotations

import binascii
import contextlib
import contextvars
import functools
import importlib.metadata
import math
import os
import re
import struct
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import attrs

from ._bounds import check_number
from .wire import json_bytes, json_text

__all__ = [
    "DEFAULT_MAX_DATA_DEPTH",
    "EVENT_FIELDS",
    "MAX_DATA_DEPTH_LIMIT",
    "MAX_SAFE_INTEGER",
    "Event",
    "EventDataError",
    "EventType",
    "data_depth_limit",
    "format_timestamp",
    "framework_version",
    "installed_framework_version",
    "new_event_id",
]

#: How deeply event data (and metadata) may nest, by default: the data object is level 1,
#: each dict or list inside adds one. Real events use a handful of levels.
DEFAULT_MAX_DATA_DEPTH = 64
#: The most a dispatcher may allow (`max_data_depth`). Everything `emit` accepts must be
#: readable by a fresh process with default settings (a store resuming, a Redis worker), whose
#: JSON decoder and recursion limit allow about a thousand levels: this stays far below.
MAX_DATA_DEPTH_LIMIT = 256
#: The largest integer every JSON receiver reads exactly (JavaScript's
#: `Number.MAX_SAFE_INTEGER`, RFC 8259 section 6): larger ones arrive rounded.
MAX_SAFE_INTEGER = 2**53 - 1
#: The longest event type: it travels in a header, which receivers cap at about 8 KB.
MAX_EVENT_TYPE_CHARS = 1024
#: The envelope's fields a producer chooses, in the envelope's order: what an event given as
#: JSON may hold (the gateway's bodies; the CLI's also `event_id` and `timestamp`, for a replay).
EVENT_FIELDS = (
    "event_type",
    "data",
    "user_id",
    "empathy_level",
    "severity",
    "classification",
    "metadata",
    "ordering_key",
)

_DEPTH_LIMIT: contextvars.ContextVar[int] = contextvars.ContextVar(
    "empathy_webhooks_data_depth", default=DEFAULT_MAX_DATA_DEPTH
)
# Control characters: in an event type or id they would end up in a header line.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


#: The Empathy Framework's distributions, newest name first: what `framework_version` reads.
FRAMEWORK_DISTRIBUTIONS = ("attune-ai", "empathy-framework")
# What `metadata.framework_version` says for events built now: DETECT (the installed
# framework's version, or nothing), a version string, or None (left out).
DETECT: Any = object()
_FRAMEWORK_VERSION: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "empathy_webhooks_framework_version", default=DETECT
)


@functools.cache
def installed_framework_version() -> str | None:
    """The installed Empathy Framework's version (`attune-ai` or `empathy-framework`
    distribution metadata), or None when neither is installed. Read once per process."""
    for name in FRAMEWORK_DISTRIBUTIONS:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def check_framework_version(value: Any) -> Any:
    """`value` if it is DETECT, None or a non-empty one-line string; else ValueError."""
    if value is DETECT or value is None:
        return value
    if not isinstance(value, str) or not value.strip() or _CONTROL.search(value):
        raise ValueError(
            "framework_version must be a non-empty string without line breaks, or None to "
            f"leave it out of the envelope, got {value!r}"
        )
    return value


@contextlib.contextmanager
def framework_version(value: Any) -> Iterator[None]:
    """Build events whose `metadata.framework_version` is `value` (None: left out; DETECT:
    the installed framework's, as by default). What `WebhookDispatcher(framework_version=)`
    does; an event's own `metadata["framework_version"]` always wins."""
    token = _FRAMEWORK_VERSION.set(check_framework_version(value))
    try:
        yield
    finally:
        _FRAMEWORK_VERSION.reset(token)


@contextlib.contextmanager
def data_depth_limit(limit: int) -> Iterator[None]:
    """Build events under another nesting limit (what `WebhookDispatcher(max_data_depth=)`
    does). `limit` is 1 to `MAX_DATA_DEPTH_LIMIT`."""

    check_number("max_data_depth", limit, at_least=1, at_most=MAX_DATA_DEPTH_LIMIT, integer=True)
    token = _DEPTH_LIMIT.set(limit)
    try:
        yield
    finally:
        _DEPTH_LIMIT.reset(token)


class EventType(StrEnum):
    """The event types the reference names. Any other non-empty name is accepted too."""

    PREDICTION = "prediction"
    ALERT = "alert"
    BUG_DETECTED = "bug_detected"
    SECURITY_VULNERABILITY = "security_vulnerability"
    PERFORMANCE_ISSUE = "performance_issue"
    CODE_REVIEW_COMPLETE = "code_review_complete"
    TEST_FAILURE = "test_failure"
    DEPLOYMENT_RISK = "deployment_risk"
    COMPLIANCE_VIOLATION = "compliance_violation"
    PATTERN_DISCOVERED = "pattern_discovered"


class EventDataError(TypeError, ValueError):
    """Event data that cannot travel as JSON. The message names the offending key."""


# An event id is `evt_` and 22 URL-safe characters: 8 of the time it was made, in milliseconds,
# then 14 random ones (84 bits; a million ids in one millisecond share one with a chance of
# 1 in 10^13). The time comes first, in an alphabet whose ASCII order is its values' order,
# so ids sort by when they were made: the SQLite store's history is indexed by event id, and
# random ids put each new one at a random place in that index. With 300,000 records kept (a
# default hour's retention at 83 events/s) a record cost 17-20 µs to write against 5.5 when
# the ids come in order, and the store delivered 7.6k events/s against 9.5k in a new file.
# Ids given by the application (`event_id=`) are kept as they are.
#
# The random bytes are read a batch at a time: one `os.urandom` call (a system call) for 16
# ids rather than one per emit, and each id is encoded when it is handed out. Encoding the
# whole batch at once made every 64th emit 20 µs slower than the others: the largest part of
# emit's p99 with a backlog queued (issue 20). A forked child drops the batch it inherited, so
# two processes never hand out the same id.
_ID_BATCH = 16
_SPLIT_IDS = struct.Struct("16s" * _ID_BATCH).unpack  # the batch cut in 16-byte ids, in C
_URLSAFE = bytes.maketrans(b"+/", b"-_")
_random_ids: list[bytes] = []
os.register_at_fork(after_in_child=_random_ids.clear)
#: URL-safe base64's 64 characters in ASCII order: a digit's place is its value.
_SORTABLE = "-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
_LAST_STAMP = 64**8 - 1  # the year 10889
#: The millisecond of the last id made, and its 8 characters (one tuple: threads may share it).
_stamp: tuple[int, str] = (-1, "")


def _stamp_text(ms: int) -> str:
    """`ms` as 8 characters of `_SORTABLE` (before 1970 or after 10889: the first or last)."""
    ms = min(max(ms, 0), _LAST_STAMP)
    return "".join(_SORTABLE[(ms >> shift) & 63] for shift in range(42, -1, -6))


def new_event_id() -> str:
    """`evt_` and 22 URL-safe characters: the time in milliseconds (8), so ids sort by when
    they were made, then 84 random bits (14): unique without coordination."""
    global _stamp
    ms = time.time_ns() // 1_000_000
    stamp = _stamp
    if stamp[0] != ms:
        stamp = _stamp = (ms, _stamp_text(ms))
    try:
        raw = _random_ids.pop()  # atomic under the GIL, as `extend` is: threads may share it
    except IndexError:
        raw, *rest = _SPLIT_IDS(os.urandom(16 * _ID_BATCH))
        _random_ids.extend(rest)
    # URL-safe base64 without its padding, as `secrets.token_urlsafe` gives: 14 characters.
    return (
        "evt_"
        + stamp[1]
        + binascii.b2a_base64(raw, newline=False)[:14].translate(_URLSAFE).decode()
    )


def format_timestamp(moment: datetime) -> str:
    """ISO-8601 in UTC with millisecond precision and a `Z`, as receivers expect."""
    if moment.tzinfo is not UTC:  # an event's own timestamp is UTC already
        moment = moment.astimezone(UTC)
    year = moment.year
    if year >= 1000:
        # What strftime gives, put together from the fields (once per event, in the
        # gateway's intake): half the work of `replace(tzinfo=None).isoformat(...)`, whose
        # keyword parsing was most of it.
        return "%d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (  # noqa: UP031 - faster than an f-string
            year,
            moment.month,
            moment.day,
            moment.hour,
            moment.minute,
            moment.second,
            moment.microsecond // 1000,
        )
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _now() -> datetime:
    return datetime.now(UTC)


_from_timestamp = datetime.fromtimestamp


def _path(parent: str, key: object) -> str:
    # A long key is shortened here, not only when shown: every value below it builds its path
    # from this one, and a 250,000-character key over 25,000 values that each needed a path
    # copied the key each time (time quadratic in the event's size, on the emitter's call).
    shown = repr(key)
    if len(shown) > 80:
        shown = f"{shown[:60]}…{shown[-16:]}"
    return f"{parent}[{shown}]"


def _shown(where: str) -> str:
    """A path fit for an error message: a very deep one keeps its two ends."""
    return where if len(where) <= 200 else f"{where[:90]}…{where[-90:]}"


class _Walk:
    """One check of one value: the depth limit and the containers on the current path."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open: set[int] = set()

    def enter(self, value: Any, where: str, depth: int) -> None:
        if id(value) in self.open:
            raise EventDataError(
                f"{_shown(where)} refers back to a dict or list that contains it "
                "(self-referencing data cannot travel as JSON)"
            )
        if depth > self.limit:
            raise EventDataError(
                f"{_shown(where)} is nested {depth} levels deep; event data may nest at most "
                f"{self.limit} levels (a dispatcher's max_data_depth, up to "
                f"{MAX_DATA_DEPTH_LIMIT})"
            )
        self.open.add(id(value))


def _check_json(value: Any, where: str, walk: _Walk | None = None, depth: int = 1) -> Any:
    """Return a plain-JSON copy of `value`, or raise naming the first key that is not JSON.

    The copy detaches the event from the caller's objects, so a dict mutated after `emit`
    cannot change what is delivered (or what a retry sends). Nesting deeper than the limit,
    and data that contains itself, are refused here: never a `RecursionError` later.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:  # lone surrogates: no receiver could decode them
                raise EventDataError(
                    f"{_shown(where)} holds text that is not valid Unicode ({exc.reason})"
                ) from None
        return value
    if isinstance(value, int):
        if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            return int(value)
        shown = f"{value}" if value.bit_length() <= 128 else f"a {value.bit_length()}-bit integer"
        raise EventDataError(
            f"{_shown(where)} is {shown}, beyond ±(2^53 - 1), the largest integer JSON "
            "receivers read exactly; send it as a string"
        )
    if isinstance(value, float):
        if not math.isfinite(value):
            raise EventDataError(f"{_shown(where)} is {value!r}, which JSON cannot represent")
        return value
    if walk is None:
        walk = _Walk(_DEPTH_LIMIT.get())
    if isinstance(value, Mapping):
        walk.enter(value, where, depth)
        out = _copy_mapping(value, where, walk, depth, walk.limit)
        walk.open.discard(id(value))
        return out
    if isinstance(value, list | tuple):
        walk.enter(value, where, depth)
        copied = [
            item
            if item is None
            or (kind := type(item)) is bool
            or (kind is str and item.isascii())
            or (kind is int and -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER)
            or (kind is float and math.isfinite(item))
            else _check_json(item, f"{where}[{index}]", walk, depth + 1)
            for index, item in enumerate(value)
        ]
        walk.open.discard(id(value))
        return copied
    raise EventDataError(
        f"{_shown(where)} is not JSON-serialisable: {type(value).__name__} "
        "(convert it to a string, number, list or dict before emitting)"
    )


def _copy_mapping(
    value: Mapping[Any, Any], where: str, walk: _Walk | None, depth: int, limit: int
) -> dict[str, Any]:
    """The loop of `_check_json` for a mapping (already entered in `walk`). With `walk` None,
    `value` is an event's `data` or `metadata` itself (depth 1, nothing open): the walk is
    made only when a nested dict or list needs it, so a flat object costs one pass."""
    out = {}
    for key, item in value.items():
        if type(key) is not str or not key.isascii():
            if not isinstance(key, str):
                raise EventDataError(
                    f"{_shown(where)} has a key {key!r} of type {type(key).__name__}; "
                    "JSON keys are strings"
                )
            _check_json(key, f"{where} key {key!r}")
        # Plain values are taken as they are without a call or a path built for them:
        # they were most of an emit's work (the same rules as `_check_json`, in line).
        kind = type(item)
        if (
            item is None
            or kind is bool
            or (kind is str and item.isascii())
            or (kind is int and -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER)
            or (kind is float and math.isfinite(item))
        ):
            out[key] = item
        else:
            if walk is None:
                walk = _Walk(limit)
                walk.enter(value, where, depth)
            out[key] = _check_json(item, _path(where, key), walk, depth + 1)
    return out


def check_depth(event: Event, limit: int) -> None:
    """Raise `EventDataError` naming the path if `event`'s data or metadata nests deeper than
    `limit` (for an event built under a higher limit than the dispatcher's)."""
    if event._depth_limit <= limit:
        return
    _check_json(event.data, "data", _Walk(limit))
    _check_json(event.metadata, "metadata", _Walk(limit))


def _json_object(name: str, value: Any, limit: int) -> dict[str, Any]:
    """`data` or `metadata` (not None) as a plain-JSON copy, else `EventDataError`."""
    if type(value) is not dict and not isinstance(value, Mapping):
        raise EventDataError(f"{name} must be a JSON object (a dict), got {type(value).__name__}")
    return _copy_mapping(value, name, None, 1, limit)


# Event types already found valid (most programs use a handful): checked again by a set
# lookup instead of a strip and a regular expression per emit. Bounded, so a program that
# makes up a type per event holds no more than this many.
_VALID_TYPES: set[str] = set()
_VALID_TYPES_KEPT = 1024


def _event_type(value: Any) -> str:
    if type(value) is str and value in _VALID_TYPES:
        return value
    if isinstance(value, EventType):
        return value.value
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"event_type must be a non-empty string, got {value!r}")
    if _CONTROL.search(value) or len(value) > MAX_EVENT_TYPE_CHARS:
        # It travels in a header (X-Empathy-Event-Type): a line break there would fail every
        # attempt at send time, or split the header, and receivers refuse header lines past
        # 8 KB.
        raise ValueError(
            f"event_type must be at most {MAX_EVENT_TYPE_CHARS} characters, without line "
            f"breaks, NUL or other control characters, got {value[:80]!r}"
        )
    _check_unicode("event_type", value)
    if type(value) is str and len(_VALID_TYPES) < _VALID_TYPES_KEPT:
        _VALID_TYPES.add(value)
    return value


def _timestamp(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if not isinstance(value, datetime):
        raise TypeError(f"timestamp must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None:
        raise ValueError("timestamp must be timezone-aware (UTC); got a naive datetime")
    # Kept at the wire's millisecond precision, so an event read back from a store or a
    # receiver equals the one emitted.
    value = value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _check_event_id(value: Any) -> None:
    if (
        not isinstance(value, str)
        or not value
        or "." in value
        or len(value) > 255
        or _CONTROL.search(value)
    ):
        raise ValueError(
            "event_id must be a non-empty string of at most 255 chars without '.' "
            "or control characters"
        )


def _check_level(value: Any) -> None:
    # An int subclass from 1 to 5 passes; a bool does not.
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5
    ):
        raise ValueError(f"empathy_level must be an integer from 1 to 5, got {value!r}")


def _check_optional_str(name: str, value: Any) -> None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be a string or None, got {type(value).__name__}")
    if value is not None:
        _check_unicode(name, value)


def _check_unicode(name: str, value: str) -> None:
    """Text every store and receiver can take: a lone surrogate (what a bad decode leaves)
    cannot be encoded as UTF-8, so the event could be accepted and then never sent."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(
                f"{name} holds text that is not valid Unicode ({exc.reason})"
            ) from None


# What `Event()` is given when the caller leaves out `event_id` or `timestamp` (None is a
# value, and refused, for both).
_MADE_HERE: Any = object()
_set = object.__setattr__


@attrs.frozen(kw_only=True, init=False)
class Event:
    """One thing that happened, as the framework reports it.

    Frozen: the same event is shared by every webhook it is routed to, and a retry sends what
    the first attempt sent.
    """

    # The checks and conversions are `__init__`'s, in one pass (it runs on every emit): the
    # fields below give the defaults their documented meaning for `attrs.fields`/`evolve`.
    event_type: str
    data: dict[str, Any] = attrs.field(factory=dict)
    event_id: str = attrs.field(factory=new_event_id)
    timestamp: datetime = attrs.field(factory=_now)
    user_id: str | None = None
    empathy_level: int | None = None
    severity: str | None = None
    classification: str | None = None
    metadata: dict[str, Any] = attrs.field(factory=dict)
    ordering_key: str | None = None
    # The nesting limit the data was checked against (a dispatcher with a lower one checks again).
    _depth_limit: int = attrs.field(
        default=DEFAULT_MAX_DATA_DEPTH, init=False, repr=False, eq=False, hash=False
    )
    # The envelope's JSON, encoded once (None until asked): an event fanned out to several
    # webhooks shares it. Bytes in a slot rather than a list: one object fewer per queued
    # event for the garbage collector to walk.
    _envelope: bytes | None = attrs.field(
        default=None, init=False, repr=False, eq=False, hash=False
    )

    def __init__(
        self,
        *,
        event_type: str,
        data: Mapping[str, Any] | None = None,
        event_id: str = _MADE_HERE,
        timestamp: datetime | str = _MADE_HERE,
        user_id: str | None = None,
        empathy_level: int | None = None,
        severity: str | None = None,
        classification: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        ordering_key: str | None = None,
    ) -> None:
        """Check and convert every field (in this order: event type, data, timestamp,
        metadata, then the id, user id, level, severity, classification and ordering key),
        raising the first problem found, as attrs' converters and validators did."""
        limit = _DEPTH_LIMIT.get()
        _set_event_type(self, _event_type(event_type))
        _set_data(self, _json_object("data", data, limit) if data is not None else {})
        if timestamp is _MADE_HERE:
            # Now, kept at the wire's millisecond precision as `_timestamp` does; made from
            # the whole milliseconds rather than with `now().replace(microsecond=...)`, whose
            # keyword parsing was a tenth of an emit's work. A float of whole milliseconds
            # always rounds back to exactly them.
            _set_timestamp(self, _from_timestamp(time.time_ns() // 1_000_000 / 1000, UTC))
        else:
            _set_timestamp(self, _timestamp(timestamp))
        checked = _json_object("metadata", metadata, limit) if metadata is not None else {}
        version = _FRAMEWORK_VERSION.get()
        if version is DETECT:
            version = installed_framework_version()
        if version is not None and "framework_version" not in checked:
            # First, as the reference's payload shows it.
            checked = {"framework_version": version, **checked}
        _set_metadata(self, checked)
        if event_id is _MADE_HERE:
            event_id = new_event_id()
        else:
            _check_event_id(event_id)
        if not (
            # ASCII text needs no further check; other text takes the slow path's.
            (user_id is None or (type(user_id) is str and user_id.isascii()))
            and (empathy_level is None or (type(empathy_level) is int and 1 <= empathy_level <= 5))
            and (severity is None or (type(severity) is str and severity.isascii()))
            and (
                classification is None or (type(classification) is str and classification.isascii())
            )
            and (ordering_key is None or (type(ordering_key) is str and ordering_key.isascii()))
        ):
            # Something other than the plain types: the checks one by one, in order.
            _check_optional_str("user_id", user_id)
            _check_level(empathy_level)
            _check_optional_str("severity", severity)
            _check_optional_str("classification", classification)
            _check_optional_str("ordering_key", ordering_key)
        _set_event_id(self, event_id)
        _set_user_id(self, user_id)
        _set_empathy_level(self, empathy_level)
        _set_severity(self, severity)
        _set_classification(self, classification)
        _set_ordering_key(self, ordering_key)
        _set_depth_limit(self, limit)
        _set_envelope(self, None)

    def to_envelope(self) -> dict[str, Any]:
        """The reference's "Webhook Payload": what `CustomWebhook` sends, key for key."""
        envelope: dict[str, Any] = {
            "event_type": self.event_type,
            "event_id": self.event_id,
            "timestamp": format_timestamp(self.timestamp),
            "user_id": self.user_id,
            "empathy_level": self.empathy_level,
            "data": self.data,
            "metadata": self.metadata,
        }
        if self.severity is not None:
            envelope["severity"] = self.severity
        if self.classification is not None:
            envelope["classification"] = self.classification
        return envelope

    def envelope_bytes(self) -> bytes:
        """The envelope as compact UTF-8 JSON: the exact body `CustomWebhook` sends."""
        body = self._envelope
        if body is None:
            body = json_bytes(self.to_envelope())
            _set(self, "_envelope", body)
        return body

    @classmethod
    def from_envelope(cls, envelope: Mapping[str, Any]) -> Event:
        """Rebuild an event from its envelope (stores, the CLI, receivers).

        Read back under the highest nesting limit, so whatever any dispatcher accepted is
        readable by every process, whatever its own settings."""
        token = _DEPTH_LIMIT.set(MAX_DATA_DEPTH_LIMIT)
        # The metadata as it was sent: nothing added by this process's framework version.
        version = _FRAMEWORK_VERSION.set(None)
        try:
            return cls._from_envelope(envelope)
        finally:
            _FRAMEWORK_VERSION.reset(version)
            _DEPTH_LIMIT.reset(token)

    @classmethod
    def _from_envelope(cls, envelope: Mapping[str, Any]) -> Event:
        return cls(
            event_type=envelope["event_type"],
            event_id=envelope["event_id"],
            timestamp=envelope["timestamp"],
            user_id=envelope.get("user_id"),
            empathy_level=envelope.get("empathy_level"),
            data=envelope.get("data") or {},
            metadata=envelope.get("metadata") or {},
            severity=envelope.get("severity"),
            classification=envelope.get("classification"),
            ordering_key=envelope.get("ordering_key"),
        )

    def to_json(self) -> str:
        """The envelope, with the ordering key, as compact JSON (what durable stores keep)."""
        if self.ordering_key is None:
            return self.envelope_bytes().decode("utf-8")  # encoded once, shared with delivery
        envelope = self.to_envelope()
        envelope["ordering_key"] = self.ordering_key
        return json_text(envelope)


def _slot_setter(name: str) -> Any:
    """The setter of `Event`'s slot `name`: how `__init__` sets the fields of a frozen event,
    about twice as fast as `object.__setattr__` (twelve times per emit)."""
    return Event.__dict__[name].__set__


_set_event_type = _slot_setter("event_type")
_set_data = _slot_setter("data")
_set_timestamp = _slot_setter("timestamp")
_set_metadata = _slot_setter("metadata")
_set_event_id = _slot_setter("event_id")
_set_user_id = _slot_setter("user_id")
_set_empathy_level = _slot_setter("empathy_level")
_set_severity = _slot_setter("severity")
_set_classification = _slot_setter("classification")
_set_ordering_key = _slot_setter("ordering_key")
_set_depth_limit = _slot_setter("_depth_limit")
_set_envelope = _slot_setter("_envelope")


def keep_envelope_bytes(event: Event, body: bytes) -> None:
    """Give an event read back from a store the envelope bytes it was stored as, so that
    `envelope_bytes()` returns them instead of encoding the event again (a tenth of a
    worker's CPU per delivery). Only for a body its store vouches for: the exact
    `envelope_bytes()` of this event as the storing process encoded them."""
    _set_envelope(event, body)
