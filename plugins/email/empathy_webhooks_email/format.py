"""An event as an email: subject, a plain-text part and an HTML part saying the same thing.

Everything here is pure: the same webhook and event always give the same bytes, so a dry run
(`render_request(webhook, event).body`) shows exactly what the SMTP server will receive.

Header safety: every header value built from event data goes through `header_text`, which
collapses line breaks (CR, LF and the Unicode line separators) to spaces and drops other
control characters, so a title holding ``"\\r\\nBcc: attacker@example.com"`` stays inside the
Subject. The stdlib policy refuses CR/LF in header values as a second line of defence.
"""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata
from collections.abc import Mapping
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any

import attrs

from empathy_webhooks_core.plugin import (
    Event,
    Severity,
    chat_message,
    event_title,
    format_template,
    truncate,
)

if TYPE_CHECKING:
    from . import EmailWebhook

__all__ = [
    "EMAIL_POLICY",
    "FACT_MAX_CHARS",
    "SUBJECT_MAX_CHARS",
    "EmailContent",
    "body_text",
    "build_message",
    "default_content",
    "header_text",
    "message_bytes",
    "message_id",
    "readable_event_type",
    "subject_for",
]

#: RFC 5322 with CRLF line ends, and 7-bit clean: non-ASCII bodies go quoted-printable or
#: base64 and non-ASCII headers RFC 2047-encoded, so no server needs 8BITMIME or SMTPUTF8.
EMAIL_POLICY = policy.SMTP.clone(cte_type="7bit")

#: Subjects longer than this are cut (mail clients show far less; RFC 5322 folds the rest).
SUBJECT_MAX_CHARS = 200
#: Each labelled fact is cut to this many characters, so a huge field cannot swell the mail.
FACT_MAX_CHARS = 2000
#: Keys a template mapping may set.
TEMPLATE_KEYS = frozenset({"subject", "text", "html"})

_MSGID_ATEXT = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+")
_SEVERITY_COLOURS = {
    Severity.INFO: "#2da44e",
    Severity.LOW: "#54aeff",
    Severity.MEDIUM: "#d4a72c",
    Severity.HIGH: "#fb8500",
    Severity.CRITICAL: "#cf222e",
}


@attrs.frozen
class EmailContent:
    """What an email says: its subject and its two bodies (plain text and HTML)."""

    subject: str
    text: str
    html: str


def header_text(value: Any, limit: int | None = None) -> str:
    """`value` fit for a header: one line (every line break and run of whitespace becomes
    one space), no control characters, optionally cut to `limit` characters."""
    text = " ".join(str(value).split())
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cc")
    return truncate(text, limit) if limit is not None else text


def body_text(value: Any) -> str:
    """`value` fit for a body: `\\n` line ends, no control characters but newline and tab."""
    text = str(value).replace("\r\n", "\n").replace("\r", "\n")
    return "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch) != "Cc")


def readable_event_type(event_type: str) -> str:
    """`security_vulnerability` -> `Security vulnerability`."""
    words = " ".join(event_type.replace("_", " ").split())
    return (words[:1].upper() + words[1:]) if words else "Event"


def subject_for(event: Event, prefix: str = "[Empathy]") -> str:
    """`[Empathy] Security vulnerability: SQL injection in auth.py:45`; just the readable
    type when the event has no title of its own."""
    kind = readable_event_type(event.event_type)
    title = header_text(event_title(event))
    subject = kind if not title or title.lower() == kind.lower() else f"{kind}: {title}"
    prefix = header_text(prefix)
    return header_text(f"{prefix} {subject}" if prefix else subject, SUBJECT_MAX_CHARS)


def _sender_domain(sender: str) -> str:
    return sender.rpartition("@")[2] or "localhost"


def message_id(event: Event, sender: str) -> str:
    """`<{event_id}@{sender's domain}>`: the same on every retry, so receivers de-duplicate.

    An event id holding characters a Message-ID may not (any the caller chose) is replaced by
    a digest of it; the exact id still travels in `X-Empathy-Event-Id`."""
    left = event.event_id
    if not _MSGID_ATEXT.fullmatch(left):
        left = "evt-" + hashlib.sha256(left.encode("utf-8")).hexdigest()[:32]
    return f"<{left}@{_sender_domain(sender)}>"


def _thread_id(key: str, sender: str) -> str:
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
    return f"<thread-{digest}@{_sender_domain(sender)}>"


def _text_facts(lines: list[str], label: str, value: str) -> None:
    first, *rest = body_text(truncate(value, FACT_MAX_CHARS)).split("\n")
    lines.append(f"{label}: {first}")
    lines.extend(f"    {line}" for line in rest)


def _html_text(value: str) -> str:
    """Escaped text whose line breaks show as `<br>`."""
    return "<br>\n".join(html.escape(line) for line in body_text(value).split("\n"))


def default_content(event: Event, prefix: str = "[Empathy]") -> EmailContent:
    """The built-in message: the chat layouts' facts (the same facts Slack and Teams show),
    as a plain-text part and an equivalent HTML part with every piece of event text escaped."""
    message = chat_message(event)
    subject = subject_for(event, prefix)
    heading = header_text(message.title)
    facts = [(fact.label, fact.value) for fact in message.facts]
    if not facts:
        title = event_title(event)
        if title.strip() and header_text(title).lower() != header_text(message.heading).lower():
            facts.append(("Summary", title))
    context = f"{message.context} UTC"
    reference = f"Event: {event.event_type} ({event.event_id})"

    text_lines = [heading, ""]
    for label, value in facts:
        _text_facts(text_lines, label, value)
    if facts:
        text_lines.append("")
    if message.link:
        text_lines += [f"Link: {message.link}", ""]
    text_lines += [body_text(context), body_text(reference)]
    text = "\n".join(text_lines) + "\n"

    colour = _SEVERITY_COLOURS[message.severity]
    rows = "".join(
        f'<tr><th align="left" valign="top" style="padding: 4px 12px 4px 0;">'
        f"{html.escape(label)}</th>"
        f'<td style="padding: 4px 0;">{_html_text(truncate(value, FACT_MAX_CHARS))}</td></tr>\n'
        for label, value in facts
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        f'<head><meta charset="utf-8"><title>{html.escape(subject)}</title></head>',
        '<body style="font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif;'
        ' color: #1f2328;">',
        f'<h2 style="border-left: 4px solid {colour}; padding-left: 8px;">'
        f"{html.escape(heading)}</h2>",
    ]
    if rows:
        parts.append(
            f'<table role="presentation" style="border-collapse: collapse;">\n{rows}</table>'
        )
    if message.link:
        link = html.escape(message.link, quote=True)
        parts.append(f'<p>Link: <a href="{link}">{link}</a></p>')
    parts += [
        f'<p style="color: #57606a; font-size: 12px;">{_html_text(context)}<br>\n'
        f"{_html_text(reference)}</p>",
        "</body>",
        "</html>",
    ]
    return EmailContent(subject=subject, text=text, html="\n".join(parts) + "\n")


def html_from_text(subject: str, text: str) -> str:
    """An HTML part saying what a plain-text template says (escaped, line breaks kept)."""
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en">\n<head><meta charset="utf-8"><title>{html.escape(subject)}</title>'
        f"</head>\n<body>\n<p>{_html_text(text.rstrip())}</p>\n</body>\n</html>\n"
    )


def _from_template(webhook: EmailWebhook, event: Event, default: EmailContent) -> EmailContent:
    template = webhook.template_for(event)
    if template is None:
        return default
    fields: Mapping[str, Any]
    if callable(template):
        # A function's result is used as it is: it already is the user's text.
        result = template(event)
        if result is None:
            return default
        fields = {"text": result} if isinstance(result, str) else result
        formatted = False
    elif isinstance(template, str):
        fields, formatted = {"text": template}, True
    else:
        fields, formatted = template, True
    if not isinstance(fields, Mapping):
        raise TypeError(
            "an email template must give a string (the text part) or a dict with "
            f"'subject', 'text' and/or 'html', got {type(fields).__name__}"
        )
    unknown = set(fields) - TEMPLATE_KEYS
    if unknown:
        raise ValueError(
            f"unknown email template keys {sorted(unknown)}; use 'subject', 'text', 'html'"
        )
    envelope = event.to_envelope() if formatted else {}

    def value(key: str) -> str | None:
        raw = fields.get(key)
        if raw is None:
            return None
        raw = str(raw)
        if not formatted:
            return raw
        # The html part's values are escaped: the template is the user's markup, not the event's.
        return format_template(raw, envelope, escape=html.escape if key == "html" else None)

    subject_raw, text, markup = value("subject"), value("text"), value("html")
    subject = (
        header_text(subject_raw, SUBJECT_MAX_CHARS) if subject_raw is not None else default.subject
    )
    if text is not None:
        text = body_text(text)
        if not text.endswith("\n"):
            text += "\n"
        # Both parts must say the same thing: a text override without markup of its own
        # gets an HTML part made from it, not the default one.
        markup = markup if markup is not None else html_from_text(subject, text)
    return EmailContent(
        subject=subject,
        text=text if text is not None else default.text,
        html=body_text(markup) if markup is not None else default.html,
    )


def content_for(webhook: EmailWebhook, event: Event) -> EmailContent:
    """The webhook's message for `event`: its template for the event type (or `"*"`) laid
    over the default. A template is a function of the event (returning the text part, or a
    dict of `subject`/`text`/`html`, used verbatim), a string (the text part) or a dict of
    `subject`/`text`/`html`; strings are formatted with the event's envelope
    (`"{data[title]}"`), HTML-escaped where they fill the `html` part."""
    default = default_content(event, webhook.subject_prefix)
    return _from_template(webhook, event, default)


def build_message(webhook: EmailWebhook, event: Event) -> EmailMessage:
    """The email `webhook` sends for `event`: multipart/alternative, text then HTML."""
    content = content_for(webhook, event)
    message = EmailMessage(policy=EMAIL_POLICY)
    sender_name = header_text(webhook.sender_name or "")
    message["From"] = Address(display_name=sender_name, addr_spec=webhook.sender)
    message["To"] = [Address(addr_spec=address) for address in webhook.recipients]
    if webhook.reply_to:
        message["Reply-To"] = Address(addr_spec=webhook.reply_to)
    message["Subject"] = content.subject
    message["Date"] = format_datetime(event.timestamp)
    message["Message-ID"] = message_id(event, webhook.sender)
    if event.ordering_key:
        # Events of one ordering key (one finding over time) thread together in mail clients.
        message["References"] = _thread_id(event.ordering_key, webhook.sender)
    message["X-Empathy-Event-Id"] = header_text(event.event_id)
    message["X-Empathy-Event-Type"] = header_text(event.event_type, 200)
    severity = chat_message(event).severity
    message["X-Empathy-Severity"] = severity.name.lower()
    if severity is Severity.CRITICAL:
        message["Importance"] = "high"
        message["X-Priority"] = "1"
    # RFC 3834: tells vacation responders and ticket systems not to answer an alert.
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(content.text, subtype="plain", charset="utf-8")
    message.add_alternative(content.html, subtype="html", charset="utf-8")
    # The stdlib picks a random boundary; one derived from the content keeps rendering pure
    # (a dry run shows the very bytes sent) and cannot occur in the encoded parts.
    digest = hashlib.sha256(
        f"{content.text}\0{content.html}".encode("utf-8", "surrogatepass")
    ).hexdigest()[:32]
    message.set_boundary(f"==empathy-{digest}==")
    return message


def message_bytes(message: EmailMessage) -> bytes:
    """The RFC 5322 bytes of `message` (CRLF line ends, lines within 998 characters)."""
    return message.as_bytes(policy=EMAIL_POLICY)
