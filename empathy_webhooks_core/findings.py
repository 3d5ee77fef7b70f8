"""What a finding is across its events: a stable identity key, and its lifecycle action.

Incident tools (PagerDuty's `dedup_key`, Datadog's `aggregation_key`) need the trigger and the
later resolve of one finding to carry the same key, although the two events differ in id, time,
severity and numbers. The key is therefore built from what names the finding (its type and its
where/what fields), never from what describes its current state.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from .events import Event

__all__ = [
    "EXPLICIT_KEY_FIELDS",
    "IDENTITY_FIELDS",
    "Lifecycle",
    "base_event_type",
    "finding_identity",
    "finding_key",
    "lifecycle_action",
]

Lifecycle = Literal["trigger", "acknowledge", "resolve"]

#: Data fields that, when given, are the finding's key as is (first one present wins).
EXPLICIT_KEY_FIELDS = ("dedup_key", "incident_key", "finding_id", "fingerprint")

#: Data fields that name a finding. Prose (message, description) and measurements are left out
#: on purpose: they change between the trigger and the resolve of the same finding.
IDENTITY_FIELDS = (
    "rule_id",
    "rule",
    "check",
    "cve",
    "vulnerability",
    "service",
    "host",
    "endpoint",
    "component",
    "file",
    "file_path",
    "path",
    "line",
    "line_number",
    "test",
    "test_name",
    "metric",
    "alert",
    "alert_name",
    "name",
    "title",
)

_ACTION_FIELDS = ("action", "event_action", "status", "state")
_RESOLVE_WORDS = frozenset({"resolve", "resolved", "recovered", "fixed", "closed"})
_ACK_WORDS = frozenset({"acknowledge", "acknowledged", "ack", "acked"})
_TRIGGER_WORDS = frozenset({"trigger", "triggered", "open", "opened", "firing"})
_SUFFIXES: tuple[tuple[str, Lifecycle], ...] = (
    ("_resolved", "resolve"),
    ("_acknowledged", "acknowledge"),
)


def lifecycle_action(event: Event) -> Lifecycle:
    """`resolve`, `acknowledge` or `trigger` for `event`.

    The first of `data["action"]`, `data["event_action"]`, `data["status"]`, `data["state"]`
    holding a known word decides (resolved/resolve/recovered/fixed/closed; acknowledged/
    acknowledge/ack; triggered/trigger/open/firing). Otherwise an event type ending in
    `_resolved` or `_acknowledged` decides; otherwise it is a trigger.
    """
    for field in _ACTION_FIELDS:
        value = event.data.get(field)
        if not isinstance(value, str):
            continue
        word = value.strip().lower()
        if word in _RESOLVE_WORDS:
            return "resolve"
        if word in _ACK_WORDS:
            return "acknowledge"
        if word in _TRIGGER_WORDS:
            return "trigger"
    for suffix, action in _SUFFIXES:
        if event.event_type.endswith(suffix) and len(event.event_type) > len(suffix):
            return action
    return "trigger"


def base_event_type(event: Event) -> str:
    """The event type without a `_resolved` / `_acknowledged` suffix (`alert_resolved` is an
    `alert`), so a finding's trigger and resolve share one type."""
    for suffix, _ in _SUFFIXES:
        if event.event_type.endswith(suffix) and len(event.event_type) > len(suffix):
            return event.event_type[: -len(suffix)]
    return event.event_type


def finding_identity(event: Event) -> dict[str, Any]:
    """The identifying fields of the event's data (see `IDENTITY_FIELDS`)."""
    return {key: event.data[key] for key in IDENTITY_FIELDS if event.data.get(key) is not None}


def _digest(value: Any) -> str:
    encoded = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()[:32]


def finding_key(event: Event, *, max_length: int = 255, prefix: str = "empathy") -> str:
    """A key stable across every event of one finding, at most `max_length` characters.

    An explicit `data["dedup_key"]` (or `incident_key`, `finding_id`, `fingerprint`) is used
    as is when it fits, else shortened with a hash of the whole. Otherwise the key is
    `<prefix>:<base event type>:<hash of the identifying fields>`; an event with no identifying
    field at all is identified by its type alone (all such events are one finding).
    """
    if max_length < 40:
        raise ValueError("max_length must be at least 40")
    for field in EXPLICIT_KEY_FIELDS:
        value = event.data.get(field)
        if value is not None and str(value).strip():
            text = str(value)
            if len(text) <= max_length:
                return text
            digest = _digest(text)
            return f"{text[: max_length - len(digest) - 1]}:{digest}"
    kind = base_event_type(event)
    digest = _digest([kind, finding_identity(event)])
    room = max_length - len(prefix) - len(digest) - 2
    return f"{prefix}:{kind[:room]}:{digest}"
