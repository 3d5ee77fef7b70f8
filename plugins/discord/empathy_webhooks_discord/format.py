"""Event -> Discord webhook message: one embed coloured by severity, within every Discord limit.

Lengths are counted in UTF-16 code units (an emoji counts 2), the stricter of the ways a
service may count, so a message that fits here fits Discord.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from empathy_webhooks_core.plugin import (
    Event,
    Severity,
    apply_template,
    chat_message,
    fit_escaped,
    format_template,
    format_timestamp,
    utf16_len,
)

if TYPE_CHECKING:
    from . import DiscordWebhook

__all__ = [
    "AUTHOR_NAME_LIMIT",
    "COLORS",
    "CONTENT_LIMIT",
    "DESCRIPTION_LIMIT",
    "EMBEDS_LIMIT",
    "EMBED_TOTAL_LIMIT",
    "FIELDS_LIMIT",
    "FIELD_NAME_LIMIT",
    "FIELD_VALUE_LIMIT",
    "FOOTER_LIMIT",
    "TITLE_LIMIT",
    "USERNAME_LIMIT",
    "build_message",
    "embed_url_ok",
    "escape_markdown",
    "fit_message",
    "neutralize_mentions",
    "strip_controls",
]

CONTENT_LIMIT = 2000
EMBEDS_LIMIT = 10
TITLE_LIMIT = 256
DESCRIPTION_LIMIT = 4096
FIELDS_LIMIT = 25
FIELD_NAME_LIMIT = 256
FIELD_VALUE_LIMIT = 1024
FOOTER_LIMIT = 2048
AUTHOR_NAME_LIMIT = 256
#: Title, description, field names and values, footer text and author names of all embeds.
EMBED_TOTAL_LIMIT = 6000
USERNAME_LIMIT = 80

#: Embed colour (0xRRGGBB) per severity: blue, green, amber, red, dark red.
COLORS = {
    Severity.INFO: 0x3498DB,
    Severity.LOW: 0x2ECC71,
    Severity.MEDIUM: 0xF1A40F,
    Severity.HIGH: 0xE74C3C,
    Severity.CRITICAL: 0x992D22,
}

#: Short values sit side by side; longer ones take the embed's width.
_INLINE_MAX = 40
_MARKDOWN = re.compile(r"([\\*_~`|>\[\]])")
# The indent is the line's own (`[^\S\n]`, whitespace but a line break): `\s*` ran on past line
# breaks, and text of many blank lines took time quadratic in its length (12 s for 20,000
# characters, on the event loop).
_LINE_START = re.compile(r"(?m)^([^\S\n]*)([#-])")
_MASS_MENTION = re.compile(r"@(everyone|here)")
_ZWSP = "\u200b"


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


def neutralize_mentions(text: str) -> str:
    """`@everyone`, `@here` and `<@id>`-style mentions made inert (a zero-width space after
    the `@`/`<`), whatever `allowed_mentions` says; control characters and terminal colour
    codes left out (`strip_controls`)."""
    text = strip_controls(text)
    return _MASS_MENTION.sub(f"@{_ZWSP}\\1", text).replace("<@", f"<{_ZWSP}@")


def escape_markdown(text: str) -> str:
    """Event text shown as written: Discord markdown escaped with backslashes (masked links,
    bold, spoilers, headings, quotes), mentions made inert, control characters and terminal
    colour codes left out."""
    text = strip_controls(text)
    text = _LINE_START.sub(r"\1\\\2", _MARKDOWN.sub(r"\\\1", text))
    return neutralize_mentions(text)


def _fit(text: str, limit: int) -> str:
    return fit_escaped(text, limit, escape_markdown, length=utf16_len)


def embed_url_ok(url: str) -> bool:
    """Whether Discord takes `url` as an embed's link: http(s) with a host that has a dot
    (a domain with its TLD, or an IPv4 address). Discord answers 400 to a bare host name
    (`http://grafana:3000/...`, `http://localhost/...`), refusing the whole message."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and "." in host.strip(".")


def default_embed(event: Event) -> dict[str, Any]:
    """The embed for `event`: its title, main statement, facts, footer and time."""
    message = chat_message(event)
    embed: dict[str, Any] = {
        "title": fit_escaped(
            " ".join(message.title.split()), TITLE_LIMIT, neutralize_mentions, length=utf16_len
        )
    }
    if message.summary:
        embed["description"] = _fit(message.summary, DESCRIPTION_LIMIT)
    link_field = None
    if message.link and embed_url_ok(message.link):
        embed["url"] = message.link
    elif message.link:
        # Discord refuses the whole message (400 `{"embeds": ["0"]}`) for an embed URL whose
        # host has no dot (`http://jenkins:8080/job/1`, common for internal tools): shown as
        # text instead, so the event is delivered with its link.
        link_field = {"name": "Link", "value": _fit(message.link, FIELD_VALUE_LIMIT)}
    embed["color"] = COLORS[message.severity]
    fields = []
    for fact in message.details[:FIELDS_LIMIT]:
        value = _fit(fact.value, FIELD_VALUE_LIMIT)
        if value.strip():
            short = utf16_len(value) <= _INLINE_MAX
            fields.append(
                {"name": _fit(fact.label, FIELD_NAME_LIMIT), "value": value, "inline": short}
            )
    if link_field is not None:
        fields = [*fields[: FIELDS_LIMIT - 1], {**link_field, "inline": False}]
    if fields:
        embed["fields"] = fields
    # Footers show no markdown: the text goes as it is, mentions made inert. The time is the
    # embed's timestamp.
    who = message.context.rsplit(" | Time: ", 1)[0]
    who = "Empathy Framework" if who.startswith("Time: ") else who
    embed["footer"] = {"text": fit_escaped(who, 300, neutralize_mentions, length=utf16_len)}
    embed["timestamp"] = format_timestamp(event.timestamp)
    return embed


def build_message(webhook: DiscordWebhook, event: Event) -> dict[str, Any]:
    """The message for `event`: the user's template for its type if any (a function's dict
    or a dict merged over the default; a string sent as the content, with the event's values
    made mention-safe), else the default embed; then every limit enforced."""
    payload: dict[str, Any] = {}
    if webhook.username:
        payload["username"] = webhook.username
    if webhook.avatar_url:
        payload["avatar_url"] = webhook.avatar_url
    if webhook.content:
        payload["content"] = webhook.content
    payload["embeds"] = [default_embed(event)]
    payload["allowed_mentions"] = dict(webhook.mentions)
    template = webhook.template_for(event)
    if isinstance(template, str):
        payload.pop("embeds")
        # Each replacement field made mention-safe once formatted: a whole object (`{data}`)
        # too, whose keys are the event's as much as its values are.
        payload["content"] = format_template(
            template, event.to_envelope(), escape=neutralize_mentions
        )
    elif template is not None:
        # A function's string is the message's text, in place of the embed.
        payload = apply_template(
            webhook, event, payload, text=lambda text: {"embeds": None, "content": text}
        )
    return fit_message(payload, chat_message(event).notification)


def _cut(text: Any, limit: int) -> str | None:
    """Text (already markdown) within `limit` once trimmed, or None when empty."""
    if not isinstance(text, str) or not text.strip():
        return None
    return fit_escaped(text.strip(), limit, length=utf16_len)


def _fit_embed(embed: Any) -> dict[str, Any] | None:
    if not isinstance(embed, Mapping):
        return None
    embed = dict(embed)
    for key, limit in (("title", TITLE_LIMIT), ("description", DESCRIPTION_LIMIT)):
        if key in embed:
            text = _cut(embed[key], limit)
            if text is None:
                del embed[key]
            else:
                embed[key] = text
    for key, limit in (("footer", FOOTER_LIMIT), ("author", AUTHOR_NAME_LIMIT)):
        part = embed.get(key)
        if isinstance(part, Mapping):
            text_key = "text" if key == "footer" else "name"
            text = _cut(part.get(text_key), limit)
            if text is None:
                del embed[key]
            else:
                embed[key] = {**part, text_key: text}
        elif key in embed:
            del embed[key]
    fields = []
    for field in embed.get("fields") or []:
        if not isinstance(field, Mapping):
            continue
        name = _cut(field.get("name"), FIELD_NAME_LIMIT)
        value = _cut(field.get("value"), FIELD_VALUE_LIMIT)
        if name is not None and value is not None:
            fields.append({**field, "name": name, "value": value})
    if fields:
        embed["fields"] = fields[:FIELDS_LIMIT]
    else:
        embed.pop("fields", None)
    color = embed.get("color")
    if color is not None and (
        isinstance(color, bool) or not isinstance(color, int) or not 0 <= color <= 0xFFFFFF
    ):
        del embed["color"]
    return embed


def _shows(embed: Mapping[str, Any]) -> bool:
    """Whether an embed shows anything (one with only a colour is not worth posting)."""
    return any(key in embed for key in ("title", "description", "fields", "footer", "author"))


def _embed_chars(embed: Mapping[str, Any]) -> int:
    total = utf16_len(embed.get("title", "")) + utf16_len(embed.get("description", ""))
    total += sum(utf16_len(f["name"]) + utf16_len(f["value"]) for f in embed.get("fields", []))
    total += utf16_len(embed.get("footer", {}).get("text", ""))
    total += utf16_len(embed.get("author", {}).get("name", ""))
    return total


def _within_total(embeds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Cut the embeds to 6,000 characters in all: descriptions first, then the last fields,
    then footers, then whole embeds from the end."""

    def over() -> int:
        return sum(_embed_chars(embed) for embed in embeds) - EMBED_TOTAL_LIMIT

    for embed in reversed(embeds):
        if over() > 0 and "description" in embed:
            keep = utf16_len(embed["description"]) - over()
            text = _cut(embed["description"], keep) if keep > 1 else None
            if text is None:
                del embed["description"]
            else:
                embed["description"] = text
    for embed in reversed(embeds):
        while over() > 0 and embed.get("fields"):
            embed["fields"].pop()
        if not embed.get("fields"):
            embed.pop("fields", None)
    for embed in reversed(embeds):
        if over() > 0:
            embed.pop("footer", None)
    while over() > 0 and len(embeds) > 1:
        embeds.pop()
    if over() > 0 and embeds and "title" in embeds[0]:
        embeds[0]["title"] = _cut(embeds[0]["title"], max(2, TITLE_LIMIT - over())) or "…"
    return embeds


def fit_message(payload: dict[str, Any], notification: str) -> dict[str, Any]:
    """`payload` within every Discord limit, cut with an ellipsis rather than refused: content
    2,000; at most 10 embeds; title 256, description 4,096, 25 fields of 256/1,024, footer
    2,048, author 256, and 6,000 over all embeds; empty texts dropped (Discord refuses them);
    a username Discord allows; and always something to post."""
    content = _cut(payload.get("content"), CONTENT_LIMIT)
    if content is not None:
        payload["content"] = content
    else:
        payload.pop("content", None)
    embeds = payload.get("embeds")
    if isinstance(embeds, list):
        fitted = [e for e in map(_fit_embed, embeds[:EMBEDS_LIMIT]) if e and _shows(e)]
        fitted = _within_total(fitted)
        if fitted:
            payload["embeds"] = fitted
        else:
            del payload["embeds"]
    elif "embeds" in payload:
        del payload["embeds"]
    username = payload.get("username")
    if username is not None:
        name = _cut(username, USERNAME_LIMIT)
        if name is None or any(word in name.lower() for word in ("clyde", "discord")):
            del payload["username"]
        else:
            payload["username"] = name
    if "content" not in payload and "embeds" not in payload:
        payload["content"] = fit_escaped(
            neutralize_mentions(notification), CONTENT_LIMIT, length=utf16_len
        )
    return payload
