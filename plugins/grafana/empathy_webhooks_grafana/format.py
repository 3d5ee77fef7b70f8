"""Event -> Grafana annotation (`POST /api/annotations`), within what Grafana stores."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from empathy_webhooks_core.plugin import (
    Event,
    Severity,
    apply_template,
    first_text,
    fit_escaped,
    json_bytes,
    labelled_title,
    location,
    severity_of,
    truncate,
)

if TYPE_CHECKING:
    from . import GrafanaWebhook

__all__ = ["MAX_TAGS", "TAG_LIMIT", "TEXT_LIMIT", "annotation_body", "epoch_ms", "tags_for"]

#: Grafana documents no text limit; the `annotation.text` column is TEXT (64 KB in MySQL).
#: Keep annotations to a readable size well inside it.
TEXT_LIMIT = 10_000
#: Tags are stored split at the first ":" into key and value columns of 100 characters.
TAG_LIMIT = 100
MAX_TAGS = 50

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SEVERITY_TAG = {
    Severity.CRITICAL: "critical",
    Severity.HIGH: "high",
    Severity.MEDIUM: "warning",
    Severity.LOW: "low",
    Severity.INFO: "info",
}
_DETAIL_SKIP = frozenset({"title", "summary", "description", "message"})


def epoch_ms(event: Event) -> int:
    """The event's time as Grafana wants it: integer epoch milliseconds."""
    # Integer arithmetic: a float round trip can be a millisecond off.
    return (event.timestamp - _EPOCH) // timedelta(milliseconds=1)


def _clean_tag(tag: Any) -> str:
    return truncate(re.sub(r"\s+", " ", str(tag)).strip(), TAG_LIMIT, ellipsis="")


def tags_for(webhook: GrafanaWebhook, event: Event) -> list[str]:
    """`empathy`, the event type, `severity:<word>`, the data's service/endpoint, the webhook's
    own tags: unique, each at most 100 characters, at most 50."""
    tags: list[Any] = ["empathy", event.event_type, f"severity:{_SEVERITY_TAG[severity_of(event)]}"]
    for key in ("service", "endpoint", "environment"):
        value = event.data.get(key)
        if isinstance(value, str | int | float) and not isinstance(value, bool) and value != "":
            tags.append(f"{key}:{value}")
    tags.extend(webhook.tags)
    return _unique_tags(tags)


def _unique_tags(tags: list[Any]) -> list[str]:
    out: list[str] = []
    for tag in tags:
        clean = _clean_tag(tag)
        if clean and clean not in out:
            out.append(clean)
    return out[:MAX_TAGS]


def title(event: Event) -> str:
    """`Performance: /api/users response time degraded`: the annotation's first line."""
    return labelled_title(event)


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json_bytes(value).decode("utf-8")


def annotation_text(event: Event) -> str:
    """Title, description, one `key: value` line per data field, and the event's id."""
    lines = [title(event)]
    description = first_text(event.data, "description", "message")
    if description and description not in lines[0]:
        lines.append(description)
    where = location(event.data)
    details = [
        f"{key}: {truncate(_scalar(value), 500)}"
        for key, value in event.data.items()
        if key not in _DETAIL_SKIP and value is not None
    ]
    if details:
        lines.append("")
        lines.extend(details)
    if where and not any(where in line for line in lines):
        lines.append(f"location: {where}")
    footer = [f"event {event.event_id}"]
    if event.user_id:
        footer.append(f"user {event.user_id}")
    if event.empathy_level is not None:
        footer.append(f"level {event.empathy_level}")
    lines.extend(["", " · ".join(footer)])
    return fit_escaped("\n".join(lines), TEXT_LIMIT, _html)


def _html(text: str) -> str:
    # Grafana shows the text as HTML (sanitised, but links and images kept): the event's
    # text is escaped so it shows as written.
    return html.escape(text, quote=False)


def annotation_body(webhook: GrafanaWebhook, event: Event) -> dict[str, Any]:
    """The annotation for `event` (user template applied, limits enforced)."""
    body: dict[str, Any] = {
        "time": epoch_ms(event),
        "tags": tags_for(webhook, event),
        "text": annotation_text(event),
    }
    if webhook.dashboard_uid:
        body["dashboardUID"] = webhook.dashboard_uid
    if webhook.panel_id is not None:
        body["panelId"] = webhook.panel_id
    body = apply_template(webhook, event, body, text=lambda text: {"text": text}, escape=_html)
    body["text"] = truncate(body.get("text") or _html(title(event)), TEXT_LIMIT)
    if isinstance(body.get("tags"), list):
        body["tags"] = _unique_tags(body["tags"])
    return body
