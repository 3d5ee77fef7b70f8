"""Event -> GitHub request: a PR comment (the reference's "AI Code Review") or a CI/CD dispatch,
within GitHub's limits."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from empathy_webhooks_core.plugin import (
    Event,
    apply_template,
    event_title,
    finding_basis,
    first_text,
    json_bytes,
    severity_of,
    truncate,
)

if TYPE_CHECKING:
    from . import GitHubWebhook

__all__ = [
    "CLIENT_PAYLOAD_BYTES",
    "COMMENT_LIMIT",
    "DISPATCH_EVENT_TYPE_LIMIT",
    "REVIEW_MARKER",
    "TRUNCATION_NOTE",
    "clamp_comment",
    "comment_body",
    "dispatch_body",
    "marker_for",
    "pr_number",
    "review_markdown",
]

#: GitHub refuses longer comment bodies ("body is too long (maximum is 65536 characters)").
COMMENT_LIMIT = 65_536
#: repository_dispatch: `event_type` 1-100 characters; `client_payload` under 64 KB of JSON.
DISPATCH_EVENT_TYPE_LIMIT = 100
CLIENT_PAYLOAD_BYTES = 60 * 1024
#: workflow_dispatch inputs share GitHub's 65,535-character payload cap; keep well under it.
WORKFLOW_INPUT_CHARS = 60_000
#: "The maximum payload for inputs is 65,535 characters": counted here as sent, escaped.
WORKFLOW_INPUTS_LIMIT = 65_535
#: The longest `user_id`, `severity` or `classification` a dispatch carries when the event
#: is too large to send whole.
FIELD_CHARS = 1024
_FREE_TEXT_FIELDS = ("user_id", "severity", "classification")
REVIEW_MARKER = "<!-- empathy-webhooks:review -->"
TRUNCATION_NOTE = (
    "_… truncated: the full text was longer than GitHub's 65,536-character comment limit._"
)

_PR_KEYS = ("pr", "pr_number", "pull_request", "pull_request_number", "issue_number")
_HEADINGS = {
    "looks_good": "### ✅ Looks Good",
    "suggestions": "### ⚠️ Suggestions",
    "security": "### 🔒 Security",
}
_REVIEW_KEYS = ("looks_good", "suggestions", "security", "confidence")
#: `@user` and `@org/team` where GitHub would notify them: after anything but a word
#: character (an email's `ops@acme.io` never mentions). After a backtick too, as the text
#: cannot know its code span is closed (`` a `@octocat `` pings), and after a slash
#: (`see dir/@octocat` pings); the zero-width space is invisible in both.
_MENTION = re.compile(r"(?<!\w)@(?=[A-Za-z0-9])")
#: Terminal colour codes (`\x1b[31m`, common in test output) and control characters: garbage
#: or invisible in a comment (whitespace ones are folded to spaces first).
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f]")


def _number(value: Any) -> int | None:
    if isinstance(value, Mapping):
        value = value.get("number")
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value > 0:
        return value
    if isinstance(value, str):
        text = value.strip().lstrip("#")
        if text.isdigit() and int(text) > 0:
            return int(text)
    return None


def pr_number(event: Event) -> int | None:
    """The PR (or issue) number the event names: `pr`, `pr_number`, `pull_request` (a number or
    an object with `number`), also inside `context` as the reference passes it."""
    for where in (event.data, event.data.get("context")):
        if not isinstance(where, Mapping):
            continue
        for key in _PR_KEYS:
            number = _number(where.get(key))
            if number is not None:
                return number
    return None


def marker_for(webhook: GitHubWebhook, event: Event) -> str:
    """The hidden marker that lets a later delivery find this integration's comment.

    A review is the PR's one review comment, which the next review replaces. Any other event
    is a finding of its own: its marker holds the finding's key (the core's one rule, as for
    tickets), so a later event of the same finding updates its comment and a different
    finding on the same PR gets a comment of its own, never overwriting another.
    """
    if event.event_type == "code_review_complete":
        return webhook.comment_marker
    basis = finding_basis(event)
    kind = "".join(c if c.isalnum() or c in "_-" else "-" for c in basis.kind)[:60]
    return f"<!-- empathy-webhooks:{kind}:{basis.digest()[:16]} -->"


def _line(value: Any) -> str:
    """Event text as one line of a comment (a newline would end the Markdown item) that
    pings nobody (`@octocat` notifies its owner: a zero-width space after the `@`) and holds
    no HTML (an unclosed `<!--` hides the rest of the comment; a marker in it would let
    another finding's update overwrite this comment)."""
    text = " ".join(_CONTROL.sub("", _ANSI.sub("", str(value))).split()).replace("<", "&lt;")
    return _MENTION.sub("@\u200b", text)


def _items(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    if isinstance(value, list | tuple):
        return [item for item in value if item not in (None, "", {}, [])]
    return [value]


def _where(item: Mapping[str, Any]) -> str | None:
    line = first_text(item, "line", "line_number")
    file = first_text(item, "file", "path")
    if file and line:
        return f"{_line(file)}:{_line(line)}"
    if line:
        return f"Line {_line(line)}"
    return _line(file) if file else None


def _text_of(item: Any) -> str:
    if isinstance(item, Mapping):
        return _line(
            first_text(item, "message", "text", "suggestion", "description", "title", "issue")
            or json.dumps(item, ensure_ascii=False)
        )
    return _line(item)


def _suggestion(index: int, item: Any) -> str:
    where = _where(item) if isinstance(item, Mapping) else None
    text = _text_of(item)
    return f"{index}. **{where}**: {text}" if where else f"{index}. {text}"


def _security(item: Any) -> str:
    where = _where(item) if isinstance(item, Mapping) else None
    text = _text_of(item)
    return f"- **{where}**: {text}" if where else f"- {text}"


def _confidence(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    percent = value * 100 if 0 <= value <= 1 else value
    return f"{percent:.0f}%"


def is_review(event: Event) -> bool:
    return any(key in event.data for key in _REVIEW_KEYS)


def review_markdown(event: Event) -> str:
    """The reference's review comment: Looks Good, Suggestions with line numbers, Security
    (“No security issues detected” when empty), Confidence."""
    data = event.data
    lines = ["## 🤖 AI Code Review"]
    looks_good = _items(data.get("looks_good"))
    if looks_good:
        lines.append(_HEADINGS["looks_good"])
        lines.extend(f"- {_text_of(item)}" for item in looks_good)
    suggestions = _items(data.get("suggestions"))
    if suggestions:
        lines.append(_HEADINGS["suggestions"])
        lines.extend(_suggestion(n, item) for n, item in enumerate(suggestions, 1))
    lines.append(_HEADINGS["security"])
    security = _items(data.get("security"))
    lines.extend(_security(item) for item in security)
    if not security:
        lines.append("- No security issues detected")
    text = "\n".join(lines)
    confidence = _confidence(data.get("confidence"))
    if confidence:
        # A blank line: without it Markdown would fold the line into the last list item.
        text += f"\n\nConfidence: {confidence}"
    return text


def generic_markdown(event: Event) -> str:
    """Any other event as a short comment: a heading, the title, the scalar facts, a link."""
    if event.event_type == "code_review_complete":
        heading = "## 🤖 AI Code Review"
    else:
        heading = f"## 🤖 {_line(event.event_type.replace('_', ' ').capitalize())}"
    lines = [heading, "", f"**{_line(event_title(event))}**", ""]
    facts = [("Severity", severity_of(event).name.lower())] if event.severity else []
    skip = {*_PR_KEYS, "title", "context", "url", "link"}
    for key, value in event.data.items():
        if key in skip or isinstance(value, Mapping | list | tuple) or value in (None, ""):
            continue
        facts.append((key.replace("_", " ").capitalize(), _line(value)))
    lines.extend(f"- **{_line(label)}**: {truncate(value, 500)}" for label, value in facts[:25])
    link = first_text(event.data, "url", "link")
    if link and link.startswith(("https://", "http://")):
        # Parentheses and spaces would end the link early and let the rest add links of its own.
        href = " ".join(link.split()).replace(" ", "%20").replace("(", "%28").replace(")", "%29")
        lines.extend(["", f"[Details]({href})"])
    return "\n".join(lines).rstrip()


def clamp_comment(text: str, marker: str | None) -> str:
    """`text` with the marker appended, cut with a note to fit GitHub's comment limit."""
    tail = f"\n\n{marker}" if marker else ""
    if len(text) + len(tail) <= COMMENT_LIMIT:
        return text + tail
    room = COMMENT_LIMIT - len(tail) - len(TRUNCATION_NOTE) - 2
    return truncate(text, room) + "\n\n" + TRUNCATION_NOTE + tail


def comment_body(webhook: GitHubWebhook, event: Event) -> dict[str, Any]:
    """`{"body": markdown}` for a PR comment (user template applied, limit enforced)."""
    text = review_markdown(event) if is_review(event) else generic_markdown(event)
    body: dict[str, Any] = {"body": text}
    body = apply_template(webhook, event, body, text=lambda text: {"body": text})
    markdown = str(body.get("body") or "").strip() or text
    marker = marker_for(webhook, event) if webhook.update_comment else None
    body["body"] = clamp_comment(markdown, marker)
    return body


def _client_payload(event: Event, limit: int) -> dict[str, Any]:
    """The event's envelope (9 top-level keys at most, GitHub allows 10), its data cut to an
    excerpt when the whole would be over `limit` bytes; its metadata too, and its free-text
    fields (`user_id`, `severity`, `classification`) cut, when that is not enough."""
    envelope = event.to_envelope()
    if len(json_bytes(envelope)) <= limit:
        return envelope
    data = json_bytes(envelope["data"]).decode("utf-8")
    room = max(0, limit - len(json_bytes({**envelope, "data": {}})) - 1024)
    envelope["data"] = {"truncated": True, "excerpt": _cut_json_text(data, room)}
    if len(json_bytes(envelope)) <= limit:
        return envelope
    # What is left over the limit is the event's own fields: GitHub would refuse the whole
    # dispatch, so they are cut too, the data keeping the larger share of the room.
    for key in _FREE_TEXT_FIELDS:
        if isinstance(envelope.get(key), str):
            envelope[key] = truncate(envelope[key], FIELD_CHARS)
    metadata = json_bytes(envelope["metadata"]).decode("utf-8")
    room = max(0, limit - len(json_bytes({**envelope, "data": {}, "metadata": {}})) - 2048)
    if len(metadata.encode("utf-8")) > room // 4:
        excerpt = _cut_json_text(metadata, room // 4)
        envelope["metadata"] = {"truncated": True, "excerpt": excerpt}
    room -= len(json_bytes(envelope["metadata"]))
    envelope["data"] = {"truncated": True, "excerpt": _cut_json_text(data, max(0, room))}
    return envelope


def _cut_json_text(text: str, limit_bytes: int) -> str:
    """Cut `text` so that, once JSON-escaped, it stays under `limit_bytes`: its longest such
    prefix. (Cutting the text by the escaped form's excess cut each escaped or multi-byte
    character several times over, and often left an empty excerpt.)"""
    if len(json_bytes(text)) <= limit_bytes:
        return text
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if len(json_bytes(text[:middle])) <= limit_bytes:
            low = middle
        else:
            high = middle - 1
    return text[:low]


def _workflow_input(event: Event, name: str) -> str:
    """The envelope as the JSON string input `name`, the inputs within GitHub's cap
    (`WORKFLOW_INPUTS_LIMIT`) as they are sent."""
    limit = WORKFLOW_INPUT_CHARS
    for _ in range(8):
        payload = json.dumps(_client_payload(event, limit), ensure_ascii=False)
        # The budget is in compact UTF-8 bytes; the input has spaces after `,` and `:`, and
        # each quote and line break in it is escaped again in the request's JSON.
        over = len(json.dumps({name: payload}, ensure_ascii=False)) - WORKFLOW_INPUTS_LIMIT
        if over <= 0:
            break
        limit = max(0, limit - over - 1024)
    return payload


def dispatch_body(webhook: GitHubWebhook, event: Event) -> dict[str, Any]:
    """repository_dispatch `{"event_type", "client_payload"}`, or workflow_dispatch
    `{"ref", "inputs"}` when the webhook names a workflow."""
    if webhook.workflow:
        body: dict[str, Any] = {"ref": webhook.workflow_ref}
        if webhook.workflow_input:
            body["inputs"] = {
                webhook.workflow_input: _workflow_input(event, webhook.workflow_input)
            }
        # A workflow dispatch has no text: a string template (a comment's) leaves it as it is.
        return apply_template(webhook, event, body, text=lambda text: {})
    body = {
        "event_type": webhook.dispatch_event_type or event.event_type,
        "client_payload": _client_payload(event, CLIENT_PAYLOAD_BYTES),
    }
    body = apply_template(webhook, event, body, text=lambda text: {"event_type": text})
    body["event_type"] = str(body.get("event_type") or event.event_type)[:DISPATCH_EVENT_TYPE_LIMIT]
    return body
