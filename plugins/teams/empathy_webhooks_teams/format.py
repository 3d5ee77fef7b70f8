"""Event -> Teams Workflows message: an Adaptive Card per event, within Teams' size limit."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from empathy_webhooks_core.plugin import (
    Event,
    Severity,
    apply_template,
    chat_message,
    json_bytes,
    truncate,
)

if TYPE_CHECKING:
    from . import TeamsWebhook

__all__ = [
    "CARD_CONTENT_TYPE",
    "CARD_VERSION",
    "MESSAGE_LIMIT_BYTES",
    "STYLES",
    "build_message",
    "card_message",
    "fit_message",
]

#: Teams refuses messages above about 28 KB, all elements included.
MESSAGE_LIMIT_BYTES = 28_000
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
#: Teams renders Adaptive Cards up to 1.5, older mobile clients less; this card needs only 1.2.
CARD_VERSION = "1.4"
_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"

#: The heading container's style and text colour per severity.
STYLES = {
    Severity.INFO: ("accent", "Accent"),
    Severity.LOW: ("good", "Good"),
    Severity.MEDIUM: ("warning", "Warning"),
    Severity.HIGH: ("attention", "Attention"),
    Severity.CRITICAL: ("attention", "Attention"),
}

# Readable caps per element; the whole message is then fitted to the byte limit.
_HEADING_LIMIT = 200
_CONTEXT_LIMIT = 300
_SUMMARY_LIMIT = 5000
_FACT_TITLE_LIMIT = 100
_FACT_VALUE_LIMIT = 1000
#: Keys whose string values are prose that may be shortened to fit (never types or URLs).
_SHRINKABLE = frozenset({"text", "value", "title", "fallbackText", "speak", "altText", "summary"})


def card_message(body: list[dict[str, Any]], **card: Any) -> dict[str, Any]:
    """The Workflows envelope around an Adaptive Card with `body` (a bare card may be
    accepted and silently not posted)."""
    content = {
        "$schema": _SCHEMA,
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "body": body,
        **card,
    }
    return {
        "type": "message",
        "attachments": [{"contentType": CARD_CONTENT_TYPE, "contentUrl": None, "content": content}],
    }


def default_message(event: Event) -> dict[str, Any]:
    """The card for `event`: a heading in its severity's colour, who and when, the main
    statement, the facts of its type, and a button for its link."""
    message = chat_message(event)
    style, color = STYLES[message.severity]
    body: list[dict[str, Any]] = [
        {
            "type": "Container",
            "style": style,
            "bleed": True,
            "items": [
                {
                    "type": "TextBlock",
                    "text": truncate(" ".join(message.title.split()), _HEADING_LIMIT),
                    "size": "Large",
                    "weight": "Bolder",
                    "color": color,
                    "wrap": True,
                },
                {
                    "type": "TextBlock",
                    "text": truncate(message.context, _CONTEXT_LIMIT),
                    "size": "Small",
                    "isSubtle": True,
                    "spacing": "None",
                    "wrap": True,
                },
            ],
        }
    ]
    if message.summary:
        body.append(
            {"type": "TextBlock", "text": truncate(message.summary, _SUMMARY_LIMIT), "wrap": True}
        )
    facts = [
        {
            "title": truncate(fact.label, _FACT_TITLE_LIMIT),
            "value": truncate(fact.value, _FACT_VALUE_LIMIT),
        }
        for fact in message.details
    ]
    if facts:
        body.append({"type": "FactSet", "facts": facts})
    card: dict[str, Any] = {"fallbackText": truncate(message.notification, 500)}
    if message.link:
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Open", "url": message.link}]
    card["msteams"] = {"width": "Full"}
    return card_message(body, **card)


def _text_message(text: str) -> dict[str, Any]:
    return card_message([{"type": "TextBlock", "text": text, "wrap": True}])


def _in_envelope(override: Mapping[str, Any]) -> Mapping[str, Any]:
    """A bare `AdaptiveCard` template, put in the message envelope it is merged over."""
    if override.get("type") != "AdaptiveCard":
        return override
    return {
        "attachments": [{"contentType": CARD_CONTENT_TYPE, "contentUrl": None, "content": override}]
    }


def build_message(webhook: TeamsWebhook, event: Event) -> dict[str, Any]:
    """The message for `event`: the user's template for its type if any (a string is the
    card's text; a function's dict or a dict is merged over the message, and a bare
    `AdaptiveCard` is put in its envelope), else the default card; then fitted to
    `webhook.max_message_bytes`."""
    payload = apply_template(
        webhook, event, default_message(event), text=_text_message, mapping=_in_envelope
    )
    return fit_message(payload, webhook.max_message_bytes, chat_message(event).notification)


def _size(value: Any) -> int:
    return len(json_bytes(value))


def _shrinkable(value: Any, found: list[tuple[Any, Any]]) -> None:
    """Every (container, key) holding prose that may be cut."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in _SHRINKABLE and isinstance(item, str):
                found.append((value, key))
            else:
                _shrinkable(item, found)
    elif isinstance(value, list):
        for item in value:
            _shrinkable(item, found)


def fit_message(payload: dict[str, Any], limit: int, notification: str) -> dict[str, Any]:
    """`payload` cut to at most `limit` bytes of JSON: the longest texts are shortened first
    (with an ellipsis), never types, versions or URLs; when that is not enough (a template
    with thousands of elements), the card becomes its notification line."""
    # A copy: texts are cut in place, and a template's dict must stay as the user wrote it.
    payload = json.loads(json_bytes(payload))
    for _ in range(200):
        over = _size(payload) - limit
        if over <= 0:
            return payload
        spots: list[tuple[Any, Any]] = []
        _shrinkable(payload, spots)
        if not spots:
            break
        container, key = max(spots, key=lambda spot: _size(spot[0][spot[1]]))
        text = container[key]
        encoded = _size(text)
        if encoded <= 16:
            break
        room = encoded - over
        # Aim straight at the room when this text alone can make it, else halve and go on.
        keep = int(len(text) * room / encoded) - 1 if room > encoded // 2 else len(text) // 2
        container[key] = truncate(text, max(keep, 1))
    return _text_message(truncate(notification, 1000))
