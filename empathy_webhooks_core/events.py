"""The event: what the Empathy Framework emits, and its envelope on the wire."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib.metadata
import json
import math
import re
import secrets
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import attrs

from ._bounds import check_number
from .wire import json_bytes

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


def new_event_id() -> str:
    """`evt_` and 22 random URL-safe characters (128 bits): unique without coordination."""
    return "evt_" + secrets.token_urlsafe(16)


def format_timestamp(moment: datetime) -> str:
    """ISO-8601 in UTC with millisecond precision and a `Z`, as receivers expect."""
    moment = moment.astimezone(UTC)
    if moment.year >= 1000:
        # What strftime gives, without its format parsing (once per event): isoformat cuts
        # to milliseconds as `// 1000` does.
        return moment.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _now() -> datetime:
    return datetime.now(UTC)


def _path(parent: str, key: object) -> str:
    return f"{parent}[{key!r}]"


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
            # they were most of an emit's work (the same rules as below, in line).
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
                out[key] = _check_json(item, _path(where, key), walk, depth + 1)
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


def check_depth(event: Event, limit: int) -> None:
    """Raise `EventDataError` naming the path if `event`'s data or metadata nests deeper than
    `limit` (for an event built under a higher limit than the dispatcher's)."""
    if event._depth_limit <= limit:
        return
    _check_json(event.data, "data", _Walk(limit))
    _check_json(event.metadata, "metadata", _Walk(limit))


def _json_object(name: str) -> Any:
    def convert(value: Any) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise EventDataError(
                f"{name} must be a JSON object (a dict), got {type(value).__name__}"
            )
        return _check_json(value, name)  # type: ignore[no-any-return]

    return convert


def _data(value: Any) -> dict[str, Any]:
    return _json_object("data")(value)  # type: ignore[no-any-return]


def _metadata(value: Any) -> dict[str, Any]:
    checked: dict[str, Any] = _json_object("metadata")(value)
    version = _FRAMEWORK_VERSION.get()
    if version is DETECT:
        version = installed_framework_version()
    if version is None or "framework_version" in checked:
        return checked
    # First, as the reference's payload shows it.
    return {"framework_version": version, **checked}


def _event_type(value: Any) -> str:
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


def _level(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
        raise ValueError(f"empathy_level must be an integer from 1 to 5, got {value!r}")


def _optional_str(name: str) -> Any:
    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{name} must be a string or None, got {type(value).__name__}")

    return check


@attrs.frozen(kw_only=True)
class Event:
    """One thing that happened, as the framework reports it.

    Frozen: the same event is shared by every webhook it is routed to, and a retry sends what
    the first attempt sent.
    """

    event_type: str = attrs.field(converter=_event_type)
    data: dict[str, Any] = attrs.field(factory=dict, converter=_data)
    event_id: str = attrs.field(factory=new_event_id)
    timestamp: datetime = attrs.field(factory=_now, converter=_timestamp)
    user_id: str | None = attrs.field(default=None, validator=_optional_str("user_id"))
    empathy_level: int | None = attrs.field(default=None, validator=_level)
    severity: str | None = attrs.field(default=None, validator=_optional_str("severity"))
    classification: str | None = attrs.field(
        default=None, validator=_optional_str("classification")
    )
    metadata: dict[str, Any] = attrs.field(factory=dict, converter=_metadata)
    ordering_key: str | None = attrs.field(default=None, validator=_optional_str("ordering_key"))
    # The nesting limit the data was checked against (a dispatcher with a lower one checks again).
    _depth_limit: int = attrs.field(
        factory=_DEPTH_LIMIT.get, init=False, repr=False, eq=False, hash=False
    )
    # The envelope's JSON, encoded once: an event fanned out to several webhooks shares it.
    _envelope_bytes: list[bytes] = attrs.field(
        factory=list, init=False, repr=False, eq=False, hash=False, alias="_envelope_bytes"
    )

    @event_id.validator
    def _check_id(self, attribute: attrs.Attribute[Any], value: Any) -> None:
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
        if not self._envelope_bytes:
            self._envelope_bytes.append(json_bytes(self.to_envelope()))
        return self._envelope_bytes[0]

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
        return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False)
