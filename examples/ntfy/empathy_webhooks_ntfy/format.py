"""Event -> ntfy message (the JSON publish form), within ntfy's limits."""

from __future__ import annotations

from typing import Any

from empathy_webhooks_core.plugin import (
    Event,
    Severity,
    event_title,
    first_text,
    location,
    severity_of,
    truncate,
    truncate_bytes,
)

__all__ = [
    "MESSAGE_LIMIT_BYTES",
    "TAG_LIMIT",
    "TITLE_LIMIT",
    "build_message",
    "priority_for",
    "title_of",
]

#: ntfy's default `message-size-limit`: a longer message becomes an attachment, so it is cut.
MESSAGE_LIMIT_BYTES = 4096
#: ntfy shows one line of title; anything longer is noise on a phone's lock screen.
TITLE_LIMIT = 250
#: Tags show as emoji or words beside the title; a few short ones.
TAG_LIMIT = 5
TAG_CHARS = 64
CLICK_LIMIT = 2000

#: ntfy priorities: 1 min, 2 low, 3 default, 4 high, 5 urgent.
_PRIORITY = {
    Severity.INFO: 3,
    Severity.LOW: 2,
    Severity.MEDIUM: 3,
    Severity.HIGH: 4,
    Severity.CRITICAL: 5,
}

#: An emoji short code per known event type (ntfy turns known tags into emoji).
_EMOJI = {
    "prediction": "crystal_ball",
    "alert": "warning",
    "bug_detected": "bug",
    "security_vulnerability": "rotating_light",
    "performance_issue": "snail",
    "code_review_complete": "white_check_mark",
    "test_failure": "x",
    "deployment_risk": "construction",
    "compliance_violation": "scales",
    "pattern_discovered": "mag",
}

_BODY_KEYS = ("description", "message", "details", "error", "prediction", "summary")
_LINK_KEYS = ("url", "link", "html_url")


def priority_for(event: Event) -> int:
    return _PRIORITY[severity_of(event)]


def title_of(event: Event) -> str:
    """The data's own name for the finding (a vulnerability, a pattern) with its location,
    else the core's `event_title`; one line."""
    data = event.data
    name = first_text(data, "title", "vulnerability", "pattern")
    if name is None or not name.strip():
        title = event_title(event)
    else:
        where = location(data)
        title = f"{name} in {where}" if where and where not in name else name
    return " ".join(title.split())


def _lines(event: Event, title: str) -> list[str]:
    data = event.data
    lines = []
    body = first_text(data, *_BODY_KEYS)
    if body and body != title:
        lines.append(body)
    where = location(data)
    if where and where not in title:
        lines.append(f"Location: `{where}`")
    recommendations = data.get("recommendations")
    if isinstance(recommendations, list) and recommendations:
        lines.append("Recommendations:")
        lines.extend(f"- {item}" for item in recommendations[:10])
    facts = []
    if event.empathy_level is not None:
        facts.append(f"empathy level {event.empathy_level}")
    if event.user_id:
        facts.append(f"user {event.user_id}")
    facts.append(f"event {event.event_id}")
    lines.append(" · ".join(facts))
    return lines


def _click(data: dict[str, Any]) -> str | None:
    link = first_text(data, *_LINK_KEYS)
    if link and link.startswith(("https://", "http://")) and len(link) <= CLICK_LIMIT:
        return link
    return None


def build_message(
    event: Event, *, topic: str, priority: int | None, tags: tuple[str, ...], markdown: bool
) -> dict[str, Any]:
    """The JSON body ntfy's publish endpoint takes (`POST /` with the topic in the body)."""
    title = title_of(event)
    emoji = _EMOJI.get(event.event_type)
    all_tags = [tag for tag in (emoji, *tags, event.event_type) if tag]
    message: dict[str, Any] = {
        "topic": topic,
        "title": truncate(title, TITLE_LIMIT),
        "message": truncate_bytes("\n".join(_lines(event, title)), MESSAGE_LIMIT_BYTES),
        "priority": priority if priority is not None else priority_for(event),
        "tags": [truncate(tag, TAG_CHARS) for tag in all_tags[:TAG_LIMIT]],
        "markdown": markdown,
    }
    click = _click(event.data)
    if click:
        message["click"] = click
    return message
