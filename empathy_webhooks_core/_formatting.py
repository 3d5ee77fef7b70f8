"""What every plugin's formatter needs: truncation, a severity scale, titles and times."""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from typing import Any

from .events import Event, EventType

__all__ = [
    "ELLIPSIS",
    "Severity",
    "event_title",
    "first_text",
    "human_time",
    "location",
    "severity_of",
    "truncate",
    "truncate_bytes",
]

ELLIPSIS = "…"


def truncate(text: Any, limit: int, ellipsis: str = ELLIPSIS) -> str:
    """`text` cut to at most `limit` characters, ending in an ellipsis when cut."""
    text = "" if text is None else str(text)
    if len(text) <= limit:
        return text
    if limit <= len(ellipsis):
        return text[:limit]
    return text[: limit - len(ellipsis)].rstrip() + ellipsis


def truncate_bytes(text: str, limit: int, ellipsis: str = ELLIPSIS) -> str:
    """`text` cut so its UTF-8 encoding is at most `limit` bytes (never mid-character)."""
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text
    room = max(0, limit - len(ellipsis.encode("utf-8")))
    return encoded[:room].decode("utf-8", errors="ignore").rstrip() + ellipsis


class Severity(IntEnum):
    """One scale every plugin maps from. Events say it in many ways; `severity_of` reads them."""

    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4


_SEVERITY_WORDS = {
    "info": Severity.INFO,
    "informational": Severity.INFO,
    "debug": Severity.INFO,
    "ok": Severity.INFO,
    "success": Severity.INFO,
    "notice": Severity.INFO,
    "low": Severity.LOW,
    "minor": Severity.LOW,
    "medium": Severity.MEDIUM,
    "moderate": Severity.MEDIUM,
    "warning": Severity.MEDIUM,
    "warn": Severity.MEDIUM,
    "high": Severity.HIGH,
    "major": Severity.HIGH,
    "error": Severity.HIGH,
    "severe": Severity.HIGH,
    "critical": Severity.CRITICAL,
    "blocker": Severity.CRITICAL,
    "fatal": Severity.CRITICAL,
    "emergency": Severity.CRITICAL,
    "p1": Severity.CRITICAL,
}

_DEFAULT_BY_TYPE = {
    EventType.SECURITY_VULNERABILITY: Severity.HIGH,
    EventType.COMPLIANCE_VIOLATION: Severity.HIGH,
    EventType.BUG_DETECTED: Severity.MEDIUM,
    EventType.TEST_FAILURE: Severity.MEDIUM,
    EventType.DEPLOYMENT_RISK: Severity.MEDIUM,
    EventType.PERFORMANCE_ISSUE: Severity.MEDIUM,
    EventType.ALERT: Severity.MEDIUM,
}


def severity_of(event: Event) -> Severity:
    """The event's severity: its `severity` field, else `data["severity"]`, else a default
    for its type (security and compliance high; bugs, failures, risks medium; else info)."""
    for raw in (event.severity, event.data.get("severity")):
        if isinstance(raw, str) and raw.strip().lower() in _SEVERITY_WORDS:
            return _SEVERITY_WORDS[raw.strip().lower()]
    return _DEFAULT_BY_TYPE.get(event.event_type, Severity.INFO)  # type: ignore[call-overload]


def first_text(data: Mapping[str, Any], *keys: str) -> str | None:
    """The first of `keys` in `data` holding a non-empty value, as text."""
    for key in keys:
        value = data.get(key)
        if value not in (None, "", [], {}):
            return str(value)
    return None


def location(data: Mapping[str, Any]) -> str | None:
    """`file:line` from the event data (`file`/`file_path` and `line`/`line_number`)."""
    file = first_text(data, "file", "file_path", "path")
    line = first_text(data, "line", "line_number")
    if file and line:
        return f"{file}:{line}"
    return file


#: Prose first, then the fields that name what was found (`_findings.NAME_FIELDS`): an event
#: that says only `{"alert": "error budget burn"}` is titled so, not "Alert".
_TITLE_KEYS = (
    *("title", "summary", "name", "message", "prediction", "issue", "description"),
    *("alert", "alert_name", "check", "rule", "test_name", "test", "vulnerability", "cve"),
    *("error", "metric"),
)


def event_title(event: Event) -> str:
    """A one-line title: the data's own title, else a readable event-type name, with the
    location for findings (`SQL injection in auth.py:45`)."""
    data = event.data
    title = first_text(data, *_TITLE_KEYS) or event.event_type.replace("_", " ").capitalize()
    title = title.splitlines()[0] if title.strip() else title
    where = location(data)
    if where and where not in title:
        title = f"{title} in {where}"
    return title


def human_time(event: Event) -> str:
    """`2025-11-25 14:30` (UTC), as the reference's Slack context line shows it."""
    return event.timestamp.strftime("%Y-%m-%d %H:%M")
