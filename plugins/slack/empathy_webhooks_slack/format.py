"""Event -> Slack incoming-webhook message (Block Kit), within every Block Kit limit.

Lengths are counted in UTF-16 code units (an emoji counts 2), the stricter of the ways a
service may count, so a message that fits here fits Slack.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from empathy_webhooks_core.plugin import (
    ChatMessage,
    Event,
    apply_template,
    chat_message,
    fit_escaped,
    format_template,
    utf16_len,
)

if TYPE_CHECKING:
    from . import SlackWebhook

__all__ = [
    "BLOCK_ID_LIMIT",
    "CONTEXT_ELEMENTS_LIMIT",
    "FALLBACK_LIMIT",
    "HEADER_LIMIT",
    "MARKDOWN_BLOCK_LIMIT",
    "MAX_BLOCKS",
    "SECTION_FIELDS_LIMIT",
    "SECTION_FIELD_LIMIT",
    "SECTION_TEXT_LIMIT",
    "TEXT_LIMIT",
    "TEXT_OBJECT_LIMIT",
    "build_message",
    "escape_mrkdwn",
    "fit_message",
    "strip_controls",
]

MAX_BLOCKS = 50
BLOCK_ID_LIMIT = 255
HEADER_LIMIT = 150
SECTION_TEXT_LIMIT = 3000
SECTION_FIELDS_LIMIT = 10
SECTION_FIELD_LIMIT = 2000
CONTEXT_ELEMENTS_LIMIT = 10
#: Any other text object (context elements included): Block Kit's general 3000.
TEXT_OBJECT_LIMIT = 3000
MARKDOWN_BLOCK_LIMIT = 12_000
#: Slack truncates `text` above 40,000 characters; we cut first, with an ellipsis.
TEXT_LIMIT = 40_000
#: Our own bound for the notification line that accompanies blocks.
FALLBACK_LIMIT = 3000

#: The main statement may take most of the section; other facts are kept short.
_MAIN_FACT_LIMIT = 2000
_FACT_LIMIT = 500
_CONTEXT_LIMIT = 500
_PARTIAL_ENTITY = re.compile(r"&[#a-zA-Z0-9]{0,6}$")


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


def escape_mrkdwn(text: str) -> str:
    """Slack's three control characters escaped, so event text can neither format links nor
    ping (`<!channel>` arrives as text). Slack has no escape for `*_~`; they stay. Control
    characters and terminal colour codes are left out (`strip_controls`)."""
    text = strip_controls(text)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _fit(text: str, limit: int) -> str:
    return fit_escaped(text, limit, escape_mrkdwn, length=utf16_len)


def _section_text(message: ChatMessage) -> str:
    """`*Label:* value` lines, the main fact first; at most SECTION_TEXT_LIMIT in all."""
    lines: list[str] = []
    used = 0
    for index, fact in enumerate(message.facts):
        prefix = f"*{escape_mrkdwn(fact.label)}:* "
        room = SECTION_TEXT_LIMIT - used - (1 if lines else 0) - utf16_len(prefix)
        cap = _MAIN_FACT_LIMIT if index == 0 else _FACT_LIMIT
        if room < 20:
            break
        value = _fit(fact.value, min(cap, room))
        if not value:
            continue
        line = prefix + value
        used += utf16_len(line) + (1 if lines else 0)
        lines.append(line)
    if message.link and SECTION_TEXT_LIMIT - used > utf16_len(message.link) + 30:
        lines.append(f"*Link:* <{escape_mrkdwn(message.link)}|Open>")
    return "\n".join(lines)


def default_message(event: Event) -> tuple[list[dict[str, Any]], str]:
    """The blocks and the notification text for `event` (no identity fields)."""
    message = chat_message(event)
    header = fit_escaped(_one_line(message.title), HEADER_LIMIT, strip_controls, length=utf16_len)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header}}
    ]
    section = _section_text(message)
    if section:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": section}})
    blocks.append(
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": _fit(message.context, _CONTEXT_LIMIT)}],
        }
    )
    return blocks, _fit(message.notification, FALLBACK_LIMIT)


def build_message(webhook: SlackWebhook, event: Event) -> dict[str, Any]:
    """The message for `event`: the user's template for its type if any (a function's dict
    or a dict merged over the default; a string sent as the text, with the event's values
    escaped in it), else the default blocks; then every limit enforced."""
    blocks, notification = default_message(event)
    payload: dict[str, Any] = {}
    for key in ("channel", "username", "icon_emoji", "icon_url"):
        value = getattr(webhook, key)
        if value:
            payload[key] = value
    payload["text"] = notification
    payload["blocks"] = blocks
    template = webhook.template_for(event)
    if isinstance(template, str):
        # The template's own markup (`<!here>`, links) is the user's; each replacement field
        # is escaped once formatted, so data can never ping or forge a link: a whole object
        # (`{data}`) included, whose keys are the event's too (`{"<!channel>": 1}`).
        text = format_template(template, event.to_envelope(), escape=escape_mrkdwn)
        payload = {k: v for k, v in payload.items() if k not in ("text", "blocks")}
        payload["text"] = text
    elif template is not None:
        # A function's string is the message's text, in place of the blocks.
        payload = apply_template(
            webhook, event, payload, text=lambda text: {"blocks": None, "text": text}
        )
    return fit_message(payload, notification)


def _cut_markup(text: str, limit: int) -> str:
    """Cut text that is already markup (a template's): no half entity left at the end."""
    if utf16_len(text) <= limit:
        return text
    cut = fit_escaped(text, limit, length=utf16_len)
    body = cut[:-1] if cut.endswith("…") else cut
    return _PARTIAL_ENTITY.sub("", body).rstrip() + ("…" if cut.endswith("…") else "")


def _fit_text_object(obj: Any, limit: int) -> dict[str, Any] | None:
    """A text object within `limit`, or None when it has no text (Slack rejects empty text)."""
    if not isinstance(obj, Mapping):
        return None
    text = obj.get("text")
    if not isinstance(text, str) or not text.strip():
        return None
    return {**obj, "text": _cut_markup(text, limit)}


def _fit_block(block: Any) -> dict[str, Any] | None:
    if not isinstance(block, Mapping):
        return None
    block = dict(block)
    if isinstance(block.get("block_id"), str):
        block["block_id"] = block["block_id"][:BLOCK_ID_LIMIT]
    kind = block.get("type")
    if kind == "header":
        text = _fit_text_object(block.get("text"), HEADER_LIMIT)
        if text is None:
            return None
        block["text"] = {**text, "type": "plain_text"}
    elif kind == "section":
        text = _fit_text_object(block.get("text"), SECTION_TEXT_LIMIT)
        fields = [
            fitted
            for fitted in (
                _fit_text_object(field, SECTION_FIELD_LIMIT)
                for field in (block.get("fields") or [])
            )
            if fitted is not None
        ][:SECTION_FIELDS_LIMIT]
        block.pop("text", None)
        block.pop("fields", None)
        if text is None and not fields:
            return None
        if text is not None:
            block["text"] = text
        if fields:
            block["fields"] = fields
    elif kind == "context":
        elements = []
        for element in block.get("elements") or []:
            if isinstance(element, Mapping) and element.get("type") in ("mrkdwn", "plain_text"):
                element = _fit_text_object(element, TEXT_OBJECT_LIMIT)
            if element is not None:
                elements.append(element)
        if not elements:
            return None
        block["elements"] = elements[:CONTEXT_ELEMENTS_LIMIT]
    elif kind == "markdown":
        if not isinstance(block.get("text"), str) or not block["text"].strip():
            return None
        block["text"] = _cut_markup(block["text"], MARKDOWN_BLOCK_LIMIT)
    return block


def fit_message(payload: dict[str, Any], notification: str) -> dict[str, Any]:
    """`payload` with every Block Kit limit met by cutting (with an ellipsis), never refused:
    at most 50 blocks; header, section, field, context and markdown texts within their
    limits; empty texts and blocks dropped (Slack answers `invalid_blocks` to those); a
    `text` always present (Slack answers `no_text` without text or blocks)."""
    blocks = payload.get("blocks")
    if isinstance(blocks, list):
        fitted = [block for block in map(_fit_block, blocks) if block is not None]
        payload["blocks"] = fitted[:MAX_BLOCKS]
        if not payload["blocks"]:
            del payload["blocks"]
    text = payload.get("text")
    if not isinstance(text, str) or not text.strip():
        payload["text"] = notification
    else:
        payload["text"] = _cut_markup(text, TEXT_LIMIT)
    return payload
