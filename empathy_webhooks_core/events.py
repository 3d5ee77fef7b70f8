"""The event: what the Empathy Framework emits, and its envelope on the wire."""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import attrs

from ._version import __version__
from .wire import json_bytes

__all__ = ["Event", "EventDataError", "EventType", "format_timestamp", "new_event_id"]


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
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


def _now() -> datetime:
    return datetime.now(UTC)


def _path(parent: str, key: object) -> str:
    return f"{parent}[{key!r}]"


def _check_json(value: Any, where: str) -> Any:
    """Return a plain-JSON copy of `value`, or raise naming the first key that is not JSON.

    The copy detaches the event from the caller's objects, so a dict mutated after `emit`
    cannot change what is delivered (or what a retry sends).
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:  # lone surrogates: no receiver could decode them
                raise EventDataError(
                    f"{where} holds text that is not valid Unicode ({exc.reason})"
                ) from None
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise EventDataError(f"{where} is {value!r}, which JSON cannot represent")
        return value
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise EventDataError(
                    f"{where} has a key {key!r} of type {type(key).__name__}; JSON keys are strings"
                )
            _check_json(key, f"{where} key {key!r}")
            out[key] = _check_json(item, _path(where, key))
        return out
    if isinstance(value, list | tuple):
        return [_check_json(item, f"{where}[{index}]") for index, item in enumerate(value)]
    raise EventDataError(
        f"{where} is not JSON-serialisable: {type(value).__name__} "
        "(convert it to a string, number, list or dict before emitting)"
    )


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
    checked = _json_object("metadata")(value)
    return {"framework_version": __version__, **checked}


def _event_type(value: Any) -> str:
    if isinstance(value, EventType):
        return value.value
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"event_type must be a non-empty string, got {value!r}")
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
    # The envelope's JSON, encoded once: an event fanned out to several webhooks shares it.
    _envelope_bytes: list[bytes] = attrs.field(
        factory=list, init=False, repr=False, eq=False, hash=False, alias="_envelope_bytes"
    )

    @event_id.validator
    def _check_id(self, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not isinstance(value, str) or not value or "." in value or len(value) > 255:
            raise ValueError("event_id must be a non-empty string of at most 255 chars without '.'")

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
        """Rebuild an event from its envelope (stores, the CLI, receivers)."""
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
