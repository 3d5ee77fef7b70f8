"""Event -> Datadog event (v1 `/api/v1/events`) and its numbers as gauge series, within limits."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from empathy_webhooks_core.plugin import (
    Event,
    Severity,
    apply_template,
    base_event_type,
    finding_key,
    first_text,
    fit_key,
    json_bytes,
    labelled_title,
    lifecycle_action,
    location,
    severity_of,
    truncate,
)

if TYPE_CHECKING:
    from . import DatadogWebhook

__all__ = [
    "AGGREGATION_KEY_LIMIT",
    "MAX_TAGS",
    "METRIC_NAME_LIMIT",
    "TAG_LIMIT",
    "TEXT_LIMIT",
    "TITLE_LIMIT",
    "alert_type",
    "clean_tags",
    "escape_markdown",
    "event_body",
    "event_series",
    "metric_name",
    "tags_for",
    "title",
]

#: The v1 client validates text at 4000 characters, markdown markers included.
TEXT_LIMIT = 4000
#: The v1 spec gives no title limit; v2 allows 500. The stream shows about 100, so we cut there:
#: a title is a line, the details belong in the text.
TITLE_LIMIT = 100
AGGREGATION_KEY_LIMIT = 100
#: Datadog truncates tags at 200 characters; v2 events accept at most 100 tags.
TAG_LIMIT = 200
MAX_TAGS = 100
METRIC_NAME_LIMIT = 200

_MARK_OPEN = "%%% \n"
_MARK_CLOSE = "\n %%%"
_SEVERITY_TAG = {
    Severity.CRITICAL: "critical",
    Severity.HIGH: "high",
    Severity.MEDIUM: "warning",
    Severity.LOW: "low",
    Severity.INFO: "info",
}
_ALERT_TYPE = {
    Severity.CRITICAL: "error",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "info",
    Severity.INFO: "info",
}
_ALERT_TYPES = frozenset({"error", "warning", "info", "success", "user_update", "recommendation"})
_TEXT_SKIP = frozenset({"title", "summary", "description", "message", "metrics"})
_METRIC_CHARS = re.compile(r"[^A-Za-z0-9_.]+")
#: Said as the last tag when the event had more than Datadog keeps.
DROPPED_TAG = "empathy_tags_dropped"

# Datadog reads the text between `%%%` markers as markdown, and an `@handle` after whitespace
# in it as a notification (a user, a Slack channel, PagerDuty). Event data is escaped with
# markdown's backslash escapes: a `%%%` in it cannot end the block, an escaped `@` follows no
# whitespace so notifies no one, and links, images and HTML show as written.
_MARKUP = str.maketrans({char: "\\" + char for char in "\\`*[]<>|~%@"})
# An underscore inside a word (`developer_123`) never emphasises: only those at an edge are.
_UNDERSCORE = re.compile(r"(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")
# Headings and list items start a line and are followed by a space (`1.9.0` is no list).
_LINE_START = re.compile(r"(?m)^([ \t]*)(#{1,6}|[-+])(?=[ \t]|$)")
_ORDERED = re.compile(r"(?m)^([ \t]*\d{1,9})([.)])(?=[ \t]|$)")
_PLAIN_ID = re.compile(r"[A-Za-z0-9_:-]+")


def title(event: Event) -> str:
    """`Performance: /api/users response time degraded`, at most 100 characters."""
    return truncate(labelled_title(event), TITLE_LIMIT)


def alert_type(event: Event) -> str:
    """`success` for a resolved finding, else error / warning / info from the severity."""
    if lifecycle_action(event) == "resolve":
        return "success"
    return _ALERT_TYPE[severity_of(event)]


def escape_markdown(text: Any) -> str:
    """`text` shown as written inside Datadog's `%%%` markdown (see `_MARKUP`)."""
    text = str(text).translate(_MARKUP)
    if "_" in text:
        text = _UNDERSCORE.sub(lambda found: "\\" + found.group(0), text)
    text = _LINE_START.sub(_escaped_last, text)
    return _ORDERED.sub(_escaped_last, text)


def _escaped_last(found: re.Match[str]) -> str:
    return found.group(1) + "\\" + found.group(2)


def clean_tags(tags: Iterable[Any]) -> list[str]:
    """Unique `key:value` tags Datadog keeps as given: no whitespace or commas (Datadog would
    split or rewrite them), no trailing colon (Datadog's rule), at most 200 characters each
    and 100 in all; when more were given, the last says how many were left out."""
    out: list[str] = []
    # A set beside the list: searching the list for each of 10,000 tags took seconds.
    seen: set[str] = set()
    for tag in tags:
        clean = re.sub(r"[\s,]+", "_", str(tag)).strip("_")[:TAG_LIMIT].rstrip(":_")
        if clean and clean not in seen:
            seen.add(clean)
            out.append(clean)
    if len(out) > MAX_TAGS:
        return [*out[: MAX_TAGS - 1], f"{DROPPED_TAG}:{len(out) - MAX_TAGS + 1}"]
    return out


def tags_for(webhook: DatadogWebhook, event: Event) -> list[str]:
    """`service:`, `endpoint:`, `severity:` (the reference's three), `event_type:`, then the
    webhook's own tags."""
    tags: list[Any] = []
    service = first_text(event.data, "service") or webhook.service
    if service:
        tags.append(f"service:{service}")
    endpoint = first_text(event.data, "endpoint")
    if endpoint:
        tags.append(f"endpoint:{endpoint}")
    tags.append(f"severity:{_SEVERITY_TAG[severity_of(event)]}")
    tags.append(f"event_type:{base_event_type(event)}")
    environment = first_text(event.data, "environment", "env")
    if environment:
        tags.append(f"env:{environment}")
    # The webhook's own tags (what monitors and dashboards filter on) before the event's,
    # so a flood of data tags can never push them out of the 100 kept.
    tags.extend(webhook.tags)
    tags.extend(_data_tags(event))
    return clean_tags(tags)


def _data_tags(event: Event) -> list[str]:
    """`data["tags"]`, when it is a list of strings (free-form labels the event carries)."""
    value = event.data.get("tags")
    if isinstance(value, list):
        return [tag for tag in value if isinstance(tag, str)]
    return []


def _scalar(value: Any) -> str:
    return value if isinstance(value, str) else json_bytes(value).decode("utf-8")


def _markdown(event: Event) -> str:
    lines = []
    description = first_text(event.data, "description", "message")
    if description:
        lines.extend([escape_markdown(description), ""])
    for key, value in event.data.items():
        if key not in _TEXT_SKIP and value is not None:
            shown = escape_markdown(truncate(_scalar(value), 300))
            lines.append(f"- **{escape_markdown(key)}**: {shown}")
    where = location(event.data)
    if where and not any(escape_markdown(where) in line for line in lines):
        lines.append(f"- **location**: {escape_markdown(where)}")
    metrics = event.data.get("metrics")
    if isinstance(metrics, dict):
        for key, value in metrics.items():
            shown = escape_markdown(truncate(_scalar(value), 100))
            lines.append(f"- **{escape_markdown(key)}**: {shown}")
    # A code span shows backslashes as written, and `%%%` or `@` in one still count.
    event_id = event.event_id
    shown_id = f"`{event_id}`" if _PLAIN_ID.fullmatch(event_id) else escape_markdown(event_id)
    footer = [f"event {shown_id}"]
    if event.user_id:
        footer.append(f"user {escape_markdown(event.user_id)}")
    if event.empathy_level is not None:
        footer.append(f"level {event.empathy_level}")
    if lines:
        lines.append("")
    lines.append(" · ".join(footer))
    return "\n".join(lines)


def wrap_text(markdown: str) -> str:
    """Markdown inside Datadog's `%%%` markers, the whole at most 4000 characters."""
    room = TEXT_LIMIT - len(_MARK_OPEN) - len(_MARK_CLOSE)
    text = truncate(markdown, room)
    if text != markdown:
        # Never half an escape before the ellipsis: a lone backslash would escape it.
        head = text[:-1]
        if (len(head) - len(head.rstrip("\\"))) % 2:
            text = head[:-1] + text[-1]
    return f"{_MARK_OPEN}{text}{_MARK_CLOSE}"


def event_body(webhook: DatadogWebhook, event: Event) -> dict[str, Any]:
    """The v1 event for `event` (user template applied, limits enforced)."""
    severity = severity_of(event)
    body: dict[str, Any] = {
        "title": title(event),
        "text": wrap_text(_markdown(event)),
        "alert_type": alert_type(event),
        "priority": "normal" if severity >= Severity.MEDIUM else "low",
        "tags": tags_for(webhook, event),
        "aggregation_key": finding_key(event, max_length=AGGREGATION_KEY_LIMIT),
        "source_type_name": webhook.source_type_name,
        "date_happened": int(event.timestamp.timestamp()),
    }
    host = first_text(event.data, "host", "hostname") or webhook.host
    if host:
        body["host"] = host
    body = apply_template(
        webhook, event, body, text=lambda text: {"text": text}, escape=escape_markdown
    )
    return _within_limits(body)


def _within_limits(body: dict[str, Any]) -> dict[str, Any]:
    """Templates may produce anything: cut what Datadog would refuse."""
    body["title"] = truncate(
        " ".join(str(body.get("title") or "Empathy event").split()), TITLE_LIMIT
    )
    text = str(body.get("text") or body["title"])
    if len(text) > TEXT_LIMIT:
        inner = text.removeprefix(_MARK_OPEN.strip()).removesuffix(_MARK_CLOSE.strip())
        text = wrap_text(inner.strip()) if inner != text else truncate(text, TEXT_LIMIT)
    body["text"] = text
    if body.get("alert_type") not in _ALERT_TYPES:
        body["alert_type"] = "info"
    if isinstance(body.get("tags"), list):
        body["tags"] = clean_tags(body["tags"])
    key = body.get("aggregation_key")
    if key is not None:
        body["aggregation_key"] = fit_key(str(key), AGGREGATION_KEY_LIMIT)
    return body


def metric_name(*parts: str) -> str:
    """A valid Datadog metric name from `parts` joined by dots: starts with a letter, ASCII
    letters, digits, `_` and `.` only, at most 200 characters."""
    name = ".".join(_METRIC_CHARS.sub("_", part).strip("._") for part in parts if part)
    name = re.sub(r"\.{2,}", ".", name).lstrip("._0123456789")
    return (name or "empathy.metric")[:METRIC_NAME_LIMIT].rstrip(".")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def event_series(webhook: DatadogWebhook, event: Event, tags: list[str]) -> list[dict[str, Any]]:
    """The event's numbers as v2 gauge series (type 3), one point each at the event's time:
    the data keys named in `webhook.event_metrics`, and every number in `data["metrics"]`."""
    numbers: dict[str, float] = {}
    for key in webhook.event_metrics:
        number = _number(event.data.get(key))
        if number is not None:
            numbers[key] = number
    # The `{"metric": "p95_latency_ms", "value": 2300}` shape names its own number.
    named, value = event.data.get("metric"), _number(event.data.get("value"))
    if isinstance(named, str) and named.strip() and value is not None:
        numbers.setdefault(named, value)
    extra = event.data.get("metrics")
    if isinstance(extra, dict):
        for key, value in extra.items():
            number = _number(value)
            if number is not None:
                numbers.setdefault(key, number)
    timestamp = int(event.timestamp.timestamp())
    host = first_text(event.data, "host", "hostname") or webhook.host
    series = []
    for key, number in numbers.items():
        entry: dict[str, Any] = {
            "metric": metric_name(webhook.metric_prefix, base_event_type(event), key),
            "type": 3,
            "points": [{"timestamp": timestamp, "value": number}],
            "tags": tags,
        }
        if host:
            entry["resources"] = [{"name": host, "type": "host"}]
        series.append(entry)
    return series
