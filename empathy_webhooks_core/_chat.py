"""What a chat message says about an event, shared by the chat plugins (Slack, Teams, Discord).

Each chat service lays a message out in its own markup, but what it says is the same: a
heading (`🔮 Level 4 Prediction`), a notification line, the labelled facts of the event type
(`Prediction`, `Confidence: 87%`, `Recommendation`), a link and a "who and when" line. This
module decides that once, as plain text; each plugin escapes and fits it to its limits.
`fit_escaped` is the one truncation that is safe for markup with escape sequences.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from ._formatting import ELLIPSIS, Severity, event_title, human_time, location, severity_of
from .events import Event

__all__ = [
    "ChatMessage",
    "Fact",
    "chat_message",
    "display_value",
    "fit_escaped",
    "percent",
    "utf16_len",
]

#: Facts shown for an event type none of the layouts knows.
MAX_UNKNOWN_FACTS = 10


@attrs.frozen
class Fact:
    """One labelled line of a message: `Confidence` / `87%`. Plain text, not escaped."""

    label: str
    value: str


@attrs.frozen
class ChatMessage:
    """An event as a chat message, in plain text (each plugin escapes and truncates it)."""

    emoji: str
    #: `Level 4 Prediction`, `Security vulnerability`: what the header says after the emoji.
    heading: str
    #: One line for notifications and previews: `🔮 Prediction: Auth deployment may ...`.
    notification: str
    #: The event type's facts, the main statement first. Empty when the data says nothing.
    facts: tuple[Fact, ...]
    #: `Detected by: developer_123 | Time: 2025-11-25 14:30` (`Time: ...` without a user).
    context: str
    severity: Severity
    #: An http(s) link from the data (`url`, `link`, ...), or None.
    link: str | None = None
    #: The main statement (the first fact's value, e.g. the prediction), or None when the
    #: data has none; services with a description field show it there.
    summary: str | None = None

    @property
    def details(self) -> tuple[Fact, ...]:
        """The facts after the main statement (all of them when there is none)."""
        return self.facts[1:] if self.summary is not None else self.facts

    @property
    def title(self) -> str:
        """The heading with its emoji: `🔮 Level 4 Prediction`."""
        return f"{self.emoji} {self.heading}"


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units: how JavaScript-side validators count (an emoji is 2).
    Never less than `len(text)`, so a limit met in this unit is met in code points too."""
    return len(text.encode("utf-16-le")) // 2


def fit_escaped(
    text: str,
    limit: int,
    escape: Callable[[str], str] = lambda s: s,
    *,
    length: Callable[[str], int] = len,
    ellipsis: str = ELLIPSIS,
) -> str:
    """`escape(text)` at most `limit` long (measured by `length`), ending in an ellipsis when
    cut. The raw text is cut before escaping, so no escape sequence (`&amp;`, `\\*`) is ever
    split."""
    escaped = escape(text)
    if length(escaped) <= limit:
        return escaped
    room = limit - length(ellipsis)
    if room <= 0:
        return ""
    # The longest prefix whose escaped form fits (escaped length grows with the prefix).
    low, high = 0, min(len(text), room)
    while low < high:
        middle = (low + high + 1) // 2
        if length(escape(text[:middle])) <= room:
            low = middle
        else:
            high = middle - 1
    return escape(text[:low]).rstrip() + ellipsis


def display_value(value: Any) -> str | None:
    """A data value as one piece of text, or None when there is nothing to show. Lists read as
    `a, b`; objects as compact JSON; booleans as yes/no."""
    if value is None or value == "" or value == [] or value == {}:
        return None
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int | float):
        return f"{value:g}" if isinstance(value, float) else str(value)
    if isinstance(value, list | tuple) and all(
        not isinstance(item, list | tuple | Mapping) for item in value
    ):
        parts = [part for part in (display_value(item) for item in value) if part]
        return ", ".join(parts) or None
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)


def _number_sign(value: Any) -> str | None:
    """`#123` for a pull request number; other values as they are."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return f"#{value}"
    return display_value(value)


def percent(value: Any) -> str | None:
    """`87%` from 0.87 (or from 87); other values as they are."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if 0 <= value <= 1:
            return f"{value * 100:.0f}%"
        if 1 < value <= 100:
            return f"{value:.0f}%"
    return display_value(value)


# A layout is the event type's facts, in order: (label, data keys, how to show the value).
# A key already shown by an earlier fact is not shown again.
_Show = Callable[[Any], "str | None"]
_Layout = tuple[tuple[str, tuple[str, ...], _Show], ...]

_TEXT: _Show = display_value
_LOCATION = ("__location__",)
_SEVERITY = ("__severity__",)
_CLASSIFICATION = ("__classification__",)


_LAYOUTS: dict[str, tuple[str, str, _Layout]] = {
    "prediction": (
        "🔮",
        "Prediction",
        (
            ("Prediction", ("prediction", "message", "description", "summary", "title"), _TEXT),
            ("Confidence", ("confidence",), percent),
            ("Timeframe", ("timeframe", "time_horizon", "eta"), _TEXT),
            ("Impact", ("impact",), _TEXT),
            ("Recommendation", ("recommendation", "recommendations", "suggestion"), _TEXT),
        ),
    ),
    "alert": (
        "🚨",
        "Alert",
        (
            ("Alert", ("title", "alert", "summary", "message", "description"), _TEXT),
            ("Details", ("message", "description", "details"), _TEXT),
            ("Service", ("service", "component", "endpoint", "host"), _TEXT),
            ("Metric", ("metric",), _TEXT),
            ("Value", ("value",), _TEXT),
            ("Threshold", ("threshold",), _TEXT),
            ("Severity", _SEVERITY, _TEXT),
        ),
    ),
    "bug_detected": (
        "🐛",
        "Bug detected",
        (
            ("Bug", ("title", "issue", "bug", "summary", "message", "description"), _TEXT),
            ("Location", _LOCATION, _TEXT),
            ("Details", ("description", "details", "message"), _TEXT),
            ("Severity", _SEVERITY, _TEXT),
            ("Suggested fix", ("fix", "suggestion", "recommendation", "recommendations"), _TEXT),
        ),
    ),
    "security_vulnerability": (
        "🔒",
        "Security vulnerability",
        (
            (
                "Vulnerability",
                ("title", "vulnerability", "issue", "summary", "message", "description"),
                _TEXT,
            ),
            ("Location", _LOCATION, _TEXT),
            ("Severity", _SEVERITY, _TEXT),
            ("Weakness", ("cwe", "cve", "vulnerability"), _TEXT),
            ("Details", ("description", "details", "message"), _TEXT),
            ("Suggested fix", ("fix", "remediation", "recommendation", "suggestion"), _TEXT),
        ),
    ),
    "performance_issue": (
        "🐢",
        "Performance issue",
        (
            ("Issue", ("title", "issue", "summary", "message", "description"), _TEXT),
            ("Endpoint", ("endpoint", "service", "component"), _TEXT),
            ("Metric", ("metric",), _TEXT),
            ("Value", ("value", "avg_response_time", "p95_response_time"), _TEXT),
            ("Threshold", ("threshold",), _TEXT),
            ("Location", _LOCATION, _TEXT),
            ("Severity", _SEVERITY, _TEXT),
            ("Recommendation", ("recommendation", "recommendations", "suggestion"), _TEXT),
        ),
    ),
    "code_review_complete": (
        "🤖",
        "Code review complete",
        (
            ("Review", ("title", "summary", "message", "description"), _TEXT),
            ("Repository", ("repository", "repo"), _TEXT),
            ("Pull request", ("pr_number", "pr", "pull_request"), _number_sign),
            ("Issues found", ("issues_found", "issues"), _TEXT),
            ("Confidence", ("confidence",), percent),
        ),
    ),
    "test_failure": (
        "❌",
        "Test failure",
        (
            ("Test", ("test", "test_name", "title", "name", "summary"), _TEXT),
            ("Error", ("error", "message", "description"), _TEXT),
            ("Location", _LOCATION, _TEXT),
            ("Severity", _SEVERITY, _TEXT),
        ),
    ),
    "deployment_risk": (
        "🚀",
        "Deployment risk",
        (
            ("Risk", ("title", "risk", "summary", "message", "description"), _TEXT),
            ("Service", ("service", "component"), _TEXT),
            ("Environment", ("environment", "env"), _TEXT),
            ("Risk score", ("risk_score",), percent),
            ("Severity", _SEVERITY, _TEXT),
            ("Recommendation", ("recommendation", "recommendations", "mitigation"), _TEXT),
        ),
    ),
    "compliance_violation": (
        "⚖️",
        "Compliance violation",
        (
            ("Violation", ("title", "violation", "issue", "summary", "message"), _TEXT),
            ("Regulation", ("regulation", "standard", "framework"), _TEXT),
            ("Classification", _CLASSIFICATION, _TEXT),
            ("Location", _LOCATION, _TEXT),
            ("Details", ("description", "details"), _TEXT),
            ("Severity", _SEVERITY, _TEXT),
            ("Required action", ("remediation", "recommendation", "action"), _TEXT),
        ),
    ),
    "phi_access": (
        "🏥",
        "PHI access",
        (
            ("Access", ("title", "summary", "message", "description"), _TEXT),
            ("Accessed by", ("accessed_by", "actor", "user"), _TEXT),
            ("Record", ("record", "record_id", "resource"), _TEXT),
            ("Reason", ("reason", "purpose"), _TEXT),
            ("Classification", _CLASSIFICATION, _TEXT),
        ),
    ),
    "pattern_discovered": (
        "💡",
        "Pattern discovered",
        (
            ("Pattern", ("pattern", "title", "name", "summary"), _TEXT),
            ("Description", ("description", "message", "details"), _TEXT),
            ("Occurrences", ("occurrences", "count"), _TEXT),
            ("Confidence", ("confidence",), percent),
        ),
    ),
}

_UNKNOWN_EMOJI = "📣"
_LINK_KEYS = ("url", "link", "html_url", "dashboard_url", "details_url")


def _link(data: Mapping[str, Any]) -> str | None:
    for key in _LINK_KEYS:
        value = data.get(key)
        if isinstance(value, str) and value.startswith(("https://", "http://")):
            if not any(c.isspace() or c in "<>|\"'" for c in value) and len(value) <= 2000:
                return value
    return None


def _facts(event: Event, layout: _Layout) -> list[Fact]:
    data = event.data
    used: set[str] = set()
    facts: list[Fact] = []
    for label, keys, show in layout:
        value: str | None = None
        if keys == _LOCATION:
            value = location(data)
            used.update({"file", "file_path", "path", "line", "line_number"} if value else ())
        elif keys == _SEVERITY:
            value = severity_of(event).name.capitalize()
            used.add("severity")
        elif keys == _CLASSIFICATION:
            value = event.classification or display_value(data.get("classification"))
            used.add("classification")
        else:
            for key in keys:
                if key in used or key not in data:
                    continue
                value = show(data[key])
                if value:
                    used.add(key)
                    break
        if value:
            facts.append(Fact(label, value))
    return facts


def _humanize(key: str) -> str:
    words = " ".join(key.replace("_", " ").split())
    return (words[:1].upper() + words[1:]) if words else "Detail"


def chat_message(event: Event) -> ChatMessage:
    """What a chat message says about `event`: the layout of its type (the ten reference
    types and `phi_access`), or a generic one (its title and data fields) for other types."""
    layout = _LAYOUTS.get(event.event_type)
    if layout is not None:
        emoji, label, fields = layout
        facts = _facts(event, fields)
    else:
        emoji, label = _UNKNOWN_EMOJI, _humanize(event.event_type)
        title = event_title(event)
        untitled = event.event_type.replace("_", " ").capitalize()
        facts = [Fact("Summary", title)] if title.strip() and title != untitled else []
        for key, value in event.data.items():
            if len(facts) >= MAX_UNKNOWN_FACTS:
                break
            shown = display_value(value)
            if shown and shown != title and key not in _LINK_KEYS:
                facts.append(Fact(_humanize(key), shown))
    heading = label
    if event.event_type == "prediction" and event.empathy_level is not None:
        heading = f"Level {event.empathy_level} {label}"
    # The notification names the main statement (the layout's first fact), else the title.
    main = layout[2][0][0] if layout is not None else "Summary"
    summary = facts[0].value if facts and facts[0].label == main else None
    first = summary if summary is not None else event_title(event)
    line = " ".join(first.split())
    if line.lower() in (label.lower(), event.event_type.replace("_", " ").lower()):
        line = ""
    notification = f"{emoji} {label}: {line}" if line else f"{emoji} {label}"
    when = f"Time: {human_time(event)}"
    user = " ".join((event.user_id or "").split())
    context = f"Detected by: {user} | {when}" if user else when
    return ChatMessage(
        emoji=emoji,
        heading=heading,
        notification=notification,
        facts=tuple(facts),
        context=context,
        severity=severity_of(event),
        link=_link(event.data),
        summary=summary,
    )
