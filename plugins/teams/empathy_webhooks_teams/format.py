"""Event -> Teams Workflows message: an Adaptive Card per event, within Teams' size limit."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from empathy_webhooks_core.plugin import (
    Event,
    Severity,
    apply_template,
    chat_message,
    fit_escaped,
    format_template,
    json_bytes,
)

if TYPE_CHECKING:
    from . import TeamsWebhook

__all__ = [
    "CARD_CONTENT_TYPE",
    "CARD_VERSION",
    "MESSAGE_LIMIT_BYTES",
    "STYLES",
    "TRUNCATED",
    "build_message",
    "card_message",
    "escape_markdown",
    "fit_message",
    "mention_entities",
    "strip_controls",
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
#: What ends a shortened text: visible, so a reader knows there was more.
TRUNCATED = "…truncated"
#: The element holding the mentions: never shortened (a cut `<at>` tag pings no one).
MENTIONS_ID = "mentions"

# Adaptive Cards read TextBlock and Fact text as CommonMark (a subset): bold, italic, lists,
# links. Event text is escaped with CommonMark's backslash escapes so it shows as written:
# a `[link](https://...)` in an alert is text, not a clickable phishing link. `<` stops `<at>`
# mention tags and HTML, `{` the `{{DATE(...)}}` functions.
_MARKUP = str.maketrans({char: "\\" + char for char in "\\*`~[]<>{}"})
# An underscore inside a word (`developer_123`, `a_b.py`) never emphasises in CommonMark:
# only those at a word's edge are escaped, so names read as written.
_UNDERSCORE = re.compile(r"(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")
# List items and headings start a line and are followed by a space (`1.9.0` is no list).
_LINE_START = re.compile(r"(?m)^([ \t]*)([-+]|#{1,6})(?=[ \t]|$)")
_ORDERED = re.compile(r"(?m)^([ \t]*\d{1,9})([.)])(?=[ \t]|$)")
# Bare URLs are linked by Teams too: an escaped colon or dot breaks the pattern.
_SCHEME = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*):(?=//)")
# `_SCHEME.sub` alone started again at each word of a run of scheme characters (`a-a-a-`) and
# read on to the run's end: text of such a run and a ` ://` took time quadratic in its length
# (6 s for 20,000 characters, on the event loop). A whole run is found once, from its first
# character, and `_SCHEME` then looks only inside it.
_SCHEME_RUN = re.compile(r"(?i)(?<![a-z0-9+.-])[a-z0-9+.-]+(?=://)")
_WWW = re.compile(r"(?i)\b(www)\.")


#: Terminal colour codes (`\x1b[31m`, common in test output) and the other C0/C1 control
#: characters: invisible or garbage in a chat message, and some services refuse a NUL. Tab and
#: line breaks stay (a lone `\r` becomes one).
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
# Bidirectional controls too: in event text they can make a message show its words
# reversed or reordered (`Trojan Source` spoofing), so the reader sees what was not sent.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def strip_controls(text: str) -> str:
    """`text` without terminal escape sequences and control characters, bidirectional ones
    included (tab and newline kept; `\r\n` and `\r` become `\n`)."""
    if text.isprintable():
        return text
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL.sub("", _ANSI.sub("", text))


def escape_markdown(text: str) -> str:
    """`text` shown as written in a TextBlock or Fact: markdown, links, bare URLs, mention
    tags and date functions all made inert with backslash escapes; control characters and
    terminal colour codes left out (`strip_controls`)."""
    text = strip_controls(text).translate(_MARKUP)
    if "_" in text:
        text = _UNDERSCORE.sub(_escaped, text)
    if "\n" in text or text[:1] in "-+#0123456789 \t":
        text = _LINE_START.sub(_escaped_last, text)
        text = _ORDERED.sub(_escaped_last, text)
    if "://" in text:
        text = _SCHEME_RUN.sub(_escaped_scheme, text)
    if "www" in text.lower():
        text = _WWW.sub(lambda found: found.group(1) + "\\.", text)
    return text


def _escaped_scheme(found: re.Match[str]) -> str:
    # The colon after the run is escaped when a word in the run starts a scheme (`_SCHEME`
    # sees the character before the run, for its `\b`).
    if _SCHEME.search(found.string, found.start(), found.end() + 3):
        return found.group(0) + "\\"
    return found.group(0)


def _escaped(found: re.Match[str]) -> str:
    return "\\" + found.group(0)


def _escaped_last(found: re.Match[str]) -> str:
    return found.group(1) + "\\" + found.group(2)


def _fit(text: str, limit: int) -> str:
    return fit_escaped(text, limit, escape_markdown, ellipsis=TRUNCATED)


def _plain(text: str, limit: int) -> str:
    return fit_escaped(text, limit, strip_controls, ellipsis=TRUNCATED)


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
                    "text": _fit(" ".join(message.title.split()), _HEADING_LIMIT),
                    "size": "Large",
                    "weight": "Bolder",
                    "color": color,
                    "wrap": True,
                },
                {
                    "type": "TextBlock",
                    "text": _fit(message.context, _CONTEXT_LIMIT),
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
            {"type": "TextBlock", "text": _fit(message.summary, _SUMMARY_LIMIT), "wrap": True}
        )
    facts = [
        {
            "title": _fit(fact.label, _FACT_TITLE_LIMIT),
            "value": _fit(fact.value, _FACT_VALUE_LIMIT),
        }
        for fact in message.details
    ]
    if facts:
        body.append({"type": "FactSet", "facts": facts})
    # Shown where a card cannot render: plain text, not markdown.
    card: dict[str, Any] = {"fallbackText": _plain(message.notification, 500)}
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


def mention_entities(users: tuple[str, ...]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The TextBlock naming `users` (`<at>...</at>` tags) and Teams' mention entities that
    make each tag ping its user (a UPN or a Microsoft Entra object id)."""
    entities: list[dict[str, Any]] = [
        {"type": "mention", "text": f"<at>{user}</at>", "mentioned": {"id": user, "name": user}}
        for user in users
    ]
    block = {
        "type": "TextBlock",
        "id": MENTIONS_ID,
        "text": " ".join(entity["text"] for entity in entities),
        "wrap": True,
    }
    return block, entities


def _with_mentions(payload: dict[str, Any], users: tuple[str, ...]) -> dict[str, Any]:
    if not users:
        return payload
    block, entities = mention_entities(users)
    for attachment in payload.get("attachments") or []:
        content = attachment.get("content") if isinstance(attachment, dict) else None
        if not isinstance(content, dict) or content.get("type") != "AdaptiveCard":
            continue
        body = content.setdefault("body", [])
        if isinstance(body, list):
            body.insert(1 if body else 0, block)
        msteams = content.setdefault("msteams", {})
        if isinstance(msteams, dict):
            msteams["entities"] = [*(msteams.get("entities") or []), *entities]
        break
    return payload


def build_message(webhook: TeamsWebhook, event: Event) -> dict[str, Any]:
    """The message for `event`: the user's template for its type if any (a string is the
    card's text, the event's values in it escaped; a function's dict or a dict is merged over
    the message, and a bare `AdaptiveCard` is put in its envelope), else the default card;
    the webhook's `mention_users` added; then fitted to `webhook.max_message_bytes`."""
    template = webhook.template_for(event)
    if isinstance(template, str):
        # The template's own markdown is the user's; the event's values are escaped.
        text = format_template(template, event.to_envelope(), escape=escape_markdown)
        payload = _text_message(text)
    else:
        payload = apply_template(
            webhook, event, default_message(event), text=_text_message, mapping=_in_envelope
        )
    payload = _with_mentions(payload, webhook.mention_users)
    return fit_message(payload, webhook.max_message_bytes, chat_message(event).notification)


def _size(value: Any) -> int:
    return len(json_bytes(value))


def _shrinkable(value: Any, found: list[tuple[Any, Any]]) -> None:
    """Every (container, key) holding prose that may be cut (never the mentions)."""
    if isinstance(value, dict):
        if value.get("id") == MENTIONS_ID:
            return
        for key, item in value.items():
            if key == "msteams":
                continue
            if key in _SHRINKABLE and isinstance(item, str):
                found.append((value, key))
            else:
                _shrinkable(item, found)
    elif isinstance(value, list):
        for item in value:
            _shrinkable(item, found)


def _cut(text: str, keep: int) -> str:
    """`text` shortened to about `keep` characters, ending in the `…truncated` marker; never
    in the middle of a backslash escape (a stray backslash would show, or escape the marker)."""
    head = text[: max(keep - len(TRUNCATED), 0)].rstrip()
    if (len(head) - len(head.rstrip("\\"))) % 2:
        head = head[:-1]
    return head + TRUNCATED


def _cut_to_size(text: str, size: int) -> str:
    """`text` cut (see `_cut`) so its JSON encoding takes at most `size` bytes."""
    low, high = 0, len(text)
    while low < high:  # the most characters that fit
        middle = (low + high + 1) // 2
        if _size(_cut(text, middle)) <= size:
            low = middle
        else:
            high = middle - 1
    return _cut(text, low)


def fit_message(payload: dict[str, Any], limit: int, notification: str) -> dict[str, Any]:
    """`payload` cut to at most `limit` bytes of JSON: the longest texts are shortened first,
    all to one common length (ending in `…truncated`), never types, versions, URLs or
    mentions; when that is not enough (a template with thousands of elements), the card
    becomes its notification line. A few passes over the message, whatever its size."""
    # A copy: texts are cut in place, and a template's dict must stay as the user wrote it.
    payload = json.loads(json_bytes(payload))
    floor = _size(TRUNCATED) + 8
    for _ in range(4):
        total = _size(payload)
        if total <= limit:
            return payload
        spots: list[tuple[Any, Any]] = []
        _shrinkable(payload, spots)
        sizes = [_size(container[key]) for container, key in spots]
        room = limit - (total - sum(sizes))
        # The largest common cap that makes the texts fit the room left by everything else.
        low, high = 0, max(sizes, default=0)
        while low < high:
            middle = (low + high + 1) // 2
            if sum(min(size, middle) for size in sizes) <= room:
                low = middle
            else:
                high = middle - 1
        if low < floor:
            break  # cutting texts cannot make it: the structure alone is too big
        for (container, key), size in zip(spots, sizes, strict=True):
            if size > low:
                container[key] = _cut_to_size(container[key], low)
    return _text_message(_fit(notification, 1000))
