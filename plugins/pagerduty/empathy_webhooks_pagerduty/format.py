"""Event -> PagerDuty Events API v2 alert event, within PagerDuty's limits."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from empathy_webhooks_core.plugin import (
    ELLIPSIS,
    Event,
    Severity,
    apply_template,
    base_event_type,
    finding_basis,
    finding_key,
    first_text,
    fit_key,
    format_timestamp,
    json_bytes,
    labelled_title,
    lifecycle_action,
    location,
    severity_of,
    truncate,
    truncate_bytes,
)

if TYPE_CHECKING:
    from . import PagerDutyWebhook

__all__ = [
    "DEDUP_KEY_LIMIT",
    "EVENT_BYTES_LIMIT",
    "FIELD_LIMIT",
    "SUMMARY_LIMIT",
    "build_body",
    "build_change_body",
    "is_change",
    "pagerduty_severity",
]

SUMMARY_LIMIT = 1024
DEDUP_KEY_LIMIT = 255
#: The whole event must stay under 512 KB; leave room for the envelope around custom details.
EVENT_BYTES_LIMIT = 512 * 1024
_DETAILS_BYTES = EVENT_BYTES_LIMIT - 16 * 1024
#: PagerDuty documents no limit for source/component/group/class; keep them to a readable line.
FIELD_LIMIT = 255

_SEVERITY = {
    Severity.CRITICAL: "critical",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "info",
    Severity.INFO: "info",
}
_PD_SEVERITIES = frozenset(_SEVERITY.values())
#: The core scale's other words, for a severity a template sets: "Critical" or "high" is
#: meant, not PagerDuty's fallback ("error"), which turned a template's critical page into an
#: error and its low one into an error too.
_WORDS = {
    "high": "error",
    "major": "error",
    "severe": "error",
    "medium": "warning",
    "moderate": "warning",
    "warn": "warning",
    "low": "info",
    "minor": "info",
    "informational": "info",
    "notice": "info",
    "debug": "info",
    "fatal": "critical",
    "blocker": "critical",
    "emergency": "critical",
    "p1": "critical",
}


def _template_severity(value: Any) -> str:
    """A severity a template set, as PagerDuty's word; an unknown one pages as `error`."""
    word = value.strip().lower() if isinstance(value, str) else ""
    if word in _PD_SEVERITIES:
        return word
    return _WORDS.get(word, "error")


def pagerduty_severity(event: Event) -> str:
    """critical / error / warning / info: PagerDuty's words for the core's severity scale. An
    event whose own severity is already one of PagerDuty's words keeps it."""
    for raw in (event.severity, event.data.get("severity")):
        if isinstance(raw, str) and raw.strip().lower() in _PD_SEVERITIES:
            return raw.strip().lower()
    return _SEVERITY[severity_of(event)]


def summary(event: Event) -> str:
    """`Performance: /api/users response time degraded`-style one line."""
    return truncate(labelled_title(event), SUMMARY_LIMIT)


def _source(webhook: PagerDutyWebhook, event: Event) -> str:
    # Blank text is no source: PagerDuty requires one ("'payload.source' is missing or
    # blank"), and a page refused for it is a page lost.
    for key in ("source", "host", "hostname", "service"):
        text = first_text(event.data, key)
        if text is not None and text.strip():
            return text.strip()
    return (webhook.source or "").strip() or "empathy-framework"


def _details(event: Event) -> dict[str, Any]:
    details: dict[str, Any] = dict(event.data)
    details.setdefault("event_type", event.event_type)
    details.setdefault("event_id", event.event_id)
    if event.user_id is not None:
        details.setdefault("user_id", event.user_id)
    if event.empathy_level is not None:
        details.setdefault("empathy_level", event.empathy_level)
    if event.classification is not None:
        details.setdefault("classification", event.classification)
    encoded = json_bytes(details).decode("utf-8")
    if len(encoded.encode("utf-8")) > _DETAILS_BYTES:
        # Too big to send whole: keep a readable excerpt rather than be refused.
        return {
            "event_type": event.event_type,
            "event_id": event.event_id,
            "truncated": True,
            "excerpt": truncate_bytes(encoded, _DETAILS_BYTES - 1024),
        }
    return details


def is_change(webhook: PagerDutyWebhook, event: Event) -> bool:
    """Whether `event` goes to Change Events: `data["change"]` says so when it is a boolean;
    otherwise a trigger whose type (without `_resolved`) is in `change_event_types`. A
    ruleset key (`R...`) takes no change events: everything goes as an alert then."""
    if webhook.api_key.startswith("R"):
        return False
    flag = event.data.get("change")
    if isinstance(flag, bool):
        return flag
    return base_event_type(event) in webhook.change_event_types and (
        lifecycle_action(event) == "trigger"
    )


def _links(event: Event) -> list[dict[str, str]]:
    return [
        {"href": href, "text": "Details"}
        for href in [first_text(event.data, "url", "link", "dashboard_url")]
        if href and href.startswith(("https://", "http://"))
    ]


def build_change_body(webhook: PagerDutyWebhook, event: Event) -> dict[str, Any]:
    """The Change Events body (`POST /v2/change/enqueue`): the routing key, a payload of
    summary, source, timestamp and custom details, and links; nothing else is allowed (no
    action, dedup key or severity: a change opens no alert)."""
    body: dict[str, Any] = {
        "routing_key": webhook.api_key,
        "payload": {
            "summary": summary(event),
            "source": _source(webhook, event),
            "timestamp": format_timestamp(event.timestamp),
            "custom_details": _details(event),
        },
    }
    links = _links(event)
    if links:
        body["links"] = links
    body = apply_template(webhook, event, body, text=lambda text: {"payload": {"summary": text}})
    payload = body.get("payload")
    if isinstance(payload, dict):
        payload["summary"] = truncate(payload.get("summary") or "Empathy change", SUMMARY_LIMIT)
        if "source" in payload:
            payload["source"] = truncate(payload["source"], FIELD_LIMIT)
        _shed(body, payload)
    return body


def _shed(body: dict[str, Any], payload: dict[str, Any]) -> None:
    """Over 512 KB PagerDuty refuses the whole event: cut the details' excerpt, else give up
    the details, then the links (a huge URL from the data), rather than the page."""
    over = len(json_bytes(body)) - EVENT_BYTES_LIMIT
    details = payload.get("custom_details")
    if over > 0 and isinstance(details, dict) and isinstance(details.get("excerpt"), str):
        # The excerpt was cut in bytes of its text, which grows when escaped again (each
        # quote and line break of the details' JSON): cut it as it is sent.
        excerpt = details["excerpt"]
        room = len(json_bytes(excerpt)) - over - 1024
        details["excerpt"] = _cut_escaped(excerpt, room) if room > 1024 else ""
    if len(json_bytes(body)) > EVENT_BYTES_LIMIT:
        payload["custom_details"] = {"truncated": True}
    for extra in ("links", "images"):
        if len(json_bytes(body)) > EVENT_BYTES_LIMIT:
            body.pop(extra, None)


def _cut_escaped(text: str, limit_bytes: int) -> str:
    """`text`'s longest prefix, with an ellipsis, whose JSON string is within `limit_bytes`."""
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if len(json_bytes(text[:middle] + ELLIPSIS)) <= limit_bytes:
            low = middle
        else:
            high = middle - 1
    return text[:low] + ELLIPSIS


def build_body(webhook: PagerDutyWebhook, event: Event) -> dict[str, Any]:
    """The Events API v2 alert body for `event` (user template applied, limits enforced)."""
    action = lifecycle_action(event)
    if action != "trigger" and not finding_basis(event).names_the_alert:
        # Its key would be its own event id, or a place alone (which no trigger with a text
        # has): PagerDuty would accept it and change nothing. Fail it loudly instead.
        raise ValueError(
            f"cannot {action} an incident: the event carries no dedup_key and nothing that "
            "names its alert (no naming field such as check, alert or title, and no summary or "
            "message; a place such as host alone names no alert); give data['dedup_key'] (the "
            "trigger's key), or the trigger's naming fields or text"
        )
    body: dict[str, Any] = {
        "routing_key": webhook.api_key,
        "event_action": action,
        "dedup_key": finding_key(event, max_length=DEDUP_KEY_LIMIT),
    }
    if action == "trigger":
        payload: dict[str, Any] = {
            "summary": summary(event),
            "source": _source(webhook, event),
            "severity": pagerduty_severity(event),
            "timestamp": format_timestamp(event.timestamp),
        }
        component = (
            first_text(event.data, "component", "service", "endpoint")
            or location(event.data)
            or webhook.component
        )
        group = first_text(event.data, "group", "environment") or webhook.group
        kind = first_text(event.data, "class", "category") or base_event_type(event)
        for key, value in (("component", component), ("group", group), ("class", kind)):
            if value:
                payload[key] = value
        payload["custom_details"] = _details(event)
        body["payload"] = payload
        if webhook.client:
            body["client"] = webhook.client
        if webhook.client_url:
            body["client_url"] = webhook.client_url
        links = _links(event)
        if links:
            body["links"] = links
    # A string is the alert's summary: only a trigger has one.
    body = apply_template(
        webhook,
        event,
        body,
        text=lambda text: {"payload": {"summary": text}} if action == "trigger" else {},
    )
    return _within_limits(body)


def _within_limits(body: dict[str, Any]) -> dict[str, Any]:
    """Templates may produce anything: cut what PagerDuty would refuse."""
    key = body.get("dedup_key")
    if isinstance(key, str) and len(key) > DEDUP_KEY_LIMIT:
        body["dedup_key"] = fit_key(key, DEDUP_KEY_LIMIT)
    payload = body.get("payload")
    if isinstance(payload, dict):
        payload["summary"] = truncate(payload.get("summary") or "Empathy event", SUMMARY_LIMIT)
        for field in ("source", "component", "group", "class"):
            if field in payload:
                payload[field] = truncate(payload[field], FIELD_LIMIT)
        if payload.get("severity") not in _PD_SEVERITIES:
            payload["severity"] = _template_severity(payload.get("severity"))
        _shed(body, payload)
    return body
