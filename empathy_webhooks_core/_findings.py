"""What a finding is across its events: a stable identity key, and its lifecycle action.

Incident tools (PagerDuty's `dedup_key`, Datadog's `aggregation_key`) need the trigger and the
later resolve of one finding to carry the same key, although the two events differ in id, time,
severity and numbers; and two different alerts must never share one, or the second pages
nobody. Ticket and comment tools (Jira's fingerprint label, GitHub's comment marker) need a
second report of one finding to find the first one's ticket, and two findings never to share
it. Every plugin takes its key from `finding_basis` here, so the rule is one rule:

1. An explicit key in the data (`dedup_key`, `incident_key`, `finding_id`, `fingerprint`).
2. Else the event type (less `_resolved` / `_acknowledged`) and the identifying fields present:
   naming fields (`NAME_FIELDS`: rule, check, alert, test, title, ...) and place fields
   (`PLACE_FIELDS`: host, service, file, line, ...). Prose and numbers are left out, so a
   resolve that carries its trigger's naming fields shares its key. A place alone does not
   name a finding ("Disk full" and "CPU at 100%" on db-1 are two alerts; two bugs in `auth.py`
   are two tickets): with no naming field, the alert's text joins the place fields.
3. Else (no identifying field) the alert's own text (`TEXT_FIELDS`: summary, message,
   description, ...): two alerts saying different things never share a key.
4. Else the event id: an event with nothing to tell it apart is a finding of its own.

So a resolve finds its trigger when both carry the same explicit key, the same naming fields,
or (with places only) the same text; anything else is a finding of its own. Merging two
different alerts would page nobody for the second; an unmatched resolve leaves an incident
open for a person to see, so the rule errs on that side.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

import attrs

from .events import Event

__all__ = [
    "EXPLICIT_KEY_FIELDS",
    "IDENTITY_FIELDS",
    "NAME_FIELDS",
    "PLACE_FIELDS",
    "TEXT_FIELDS",
    "FindingBasis",
    "KeySource",
    "Lifecycle",
    "base_event_type",
    "finding_basis",
    "finding_identity",
    "finding_key",
    "fit_key",
    "lifecycle_action",
]

Lifecycle = Literal["trigger", "acknowledge", "resolve"]
#: What a finding's key was built from (see the module's text).
KeySource = Literal["explicit", "fields", "text", "event_id"]

#: Data fields that, when given, are the finding's key as is (first one present wins).
EXPLICIT_KEY_FIELDS = ("dedup_key", "incident_key", "finding_id", "fingerprint")

#: Data fields that say what was found.
NAME_FIELDS = (
    "rule_id",
    "rule",
    "check",
    "cve",
    "vulnerability",
    "test",
    "test_name",
    "metric",
    "alert",
    "alert_name",
    "name",
    "title",
)
#: Data fields that say where it was found. `source`, `hostname` and the environment are
#: where plugins take an alert's source and group from (PagerDuty's `payload.source`, Datadog's
#: `host` and `env:` tag): left out, "Disk full" on db-1 and on db-2 would share one key.
PLACE_FIELDS = (
    "service",
    "host",
    "hostname",
    "source",
    "environment",
    "env",
    "endpoint",
    "component",
    "file",
    "file_path",
    "path",
    "line",
    "line_number",
)
#: Data fields that name a finding: naming and place fields. Prose (message, description) and
#: measurements are left out on purpose: they change between the trigger and the resolve of
#: the same finding.
IDENTITY_FIELDS = NAME_FIELDS + PLACE_FIELDS
#: The alert's own words: what tells two alerts apart when no identifying field does.
TEXT_FIELDS = (
    "summary",
    "message",
    "description",
    "text",
    "details",
    "detail",
    "issue",
    "error",
    "bug",
    "reason",
    "prediction",
    "pattern",
)

_ACTION_FIELDS = ("action", "event_action", "status", "state")
_RESOLVE_WORDS = frozenset({"resolve", "resolved", "recovered", "fixed", "closed"})
_ACK_WORDS = frozenset({"acknowledge", "acknowledged", "ack", "acked"})
_TRIGGER_WORDS = frozenset({"trigger", "triggered", "open", "opened", "firing"})
_SUFFIXES: tuple[tuple[str, Lifecycle], ...] = (
    ("_resolved", "resolve"),
    ("_acknowledged", "acknowledge"),
)
# Keys of the hashed identity that no data field can collide with.
_TEXT = "~text"
_EVENT_ID = "~event_id"


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


def _present(event: Event, fields: tuple[str, ...]) -> dict[str, Any]:
    return {key: event.data[key] for key in fields if event.data.get(key) not in (None, "")}


def finding_identity(event: Event) -> dict[str, Any]:
    """The identifying fields of the event's data (see `IDENTITY_FIELDS`)."""
    return _present(event, IDENTITY_FIELDS)


def _digest(value: Any) -> str:
    encoded = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()[:32]


@attrs.frozen
class FindingBasis:
    """What a finding's key is built from: `source` says which rule applied (see the module's
    text), `kind` is the base event type, `value` the explicit key (a string) or the fields
    hashed into the key (a dict)."""

    source: KeySource
    kind: str
    value: Any

    @property
    def names_the_alert(self) -> bool:
        """Whether a later event could carry the same basis on purpose: an explicit key, a
        naming field or the alert's text. A place alone, or the event id, names nothing a
        resolve could repeat."""
        if self.source in ("explicit", "text"):
            return True
        if self.source == "event_id":
            return False
        return _TEXT in self.value or any(field in self.value for field in NAME_FIELDS)

    def digest(self) -> str:
        """32 hex characters, equal for equal bases and (but for a SHA-256 collision) only
        for them."""
        if self.source == "explicit":
            return _digest(["explicit", self.value])
        return _digest([self.kind, self.value])


def finding_basis(event: Event) -> FindingBasis:
    """Which rule names `event`'s finding, and with what (see the module's text)."""
    for field in EXPLICIT_KEY_FIELDS:
        value = event.data.get(field)
        if value is not None and str(value).strip():
            return FindingBasis("explicit", base_event_type(event), str(value))
    kind = base_event_type(event)
    identity = finding_identity(event)
    texts = _present(event, TEXT_FIELDS)
    if identity:
        named = any(field in identity for field in NAME_FIELDS)
        if texts and not named:
            return FindingBasis("fields", kind, {**identity, _TEXT: texts})
        return FindingBasis("fields", kind, identity)
    if texts:
        return FindingBasis("text", kind, {_TEXT: texts})
    return FindingBasis("event_id", kind, {_EVENT_ID: event.event_id})


def fit_key(text: str, max_length: int) -> str:
    """`text` if it fits in `max_length` characters, else its head and a hash of the whole:
    two keys that differ never become one by being cut."""
    if max_length < 40:
        raise ValueError("max_length must be at least 40")
    if len(text) <= max_length:
        return text
    digest = _digest(text)
    return f"{text[: max_length - len(digest) - 1]}:{digest}"


def finding_key(event: Event, *, max_length: int = 255, prefix: str = "empathy") -> str:
    """A key stable across every event of one finding, different for different findings, at
    most `max_length` characters.

    An explicit `data["dedup_key"]` (or `incident_key`, `finding_id`, `fingerprint`) is used
    as is when it fits, else shortened with a hash of the whole. Otherwise the key is
    `<prefix>:<base event type>:<hash>` of what `finding_basis` found: the identifying fields,
    else the alert's text, else the event id.
    """
    if max_length < 40:
        raise ValueError("max_length must be at least 40")
    basis = finding_basis(event)
    if basis.source == "explicit":
        return fit_key(basis.value, max_length)
    digest = basis.digest()
    room = max_length - len(prefix) - len(digest) - 2
    if room < 1:  # no room for the type: the hash alone still tells findings apart
        return f"{prefix[: max_length - len(digest) - 1]}:{digest}"
    return f"{prefix}:{basis.kind[:room]}:{digest}"
