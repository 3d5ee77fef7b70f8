"""Event -> Jira issue (REST API v3 create body), within Jira's limits.

The shape follows the reference's "JIRA Ticket Format": a `[AI Detected] <title> in <file>:<line>`
summary, an Atlassian Document Format description with bold labels and the recommended fix as a
code block, a priority mapped from the event's severity, and labels without whitespace (Jira
refuses them). One label is the finding's fingerprint, which is how a second event of the same
finding finds the ticket the first one opened.
"""

from __future__ import annotations

import heapq
import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from empathy_webhooks_core.plugin import (
    ELLIPSIS,
    Event,
    apply_template,
    base_event_type,
    finding_basis,
    first_text,
    fit_escaped,
    location,
    severity_of,
    utf16_len,
)

if TYPE_CHECKING:
    from . import JiraWebhook

__all__ = [
    "DEFAULT_PRIORITIES",
    "DESCRIPTION_LIMIT",
    "FINGERPRINT_PREFIX",
    "LABEL_LIMIT",
    "SUMMARY_LIMIT",
    "SUMMARY_PREFIX",
    "TRUNCATED_NOTE",
    "acknowledge_comment",
    "assignee",
    "build_body",
    "comment_body",
    "description_adf",
    "description_wiki",
    "fingerprint",
    "is_account_id",
    "label_of",
    "labels",
    "repeat_comment",
    "resolve_comment",
    "search_jql",
    "slug",
    "summary",
    "text_adf",
    "unassigned_comment",
    "wiki_text",
]

#: Jira refuses longer summaries ("Summary can't exceed 255 characters.").
SUMMARY_LIMIT = 255
#: Jira Cloud's cap for a description ("It exceeds the allowed limit of 32,767 characters");
#: applied to the serialized ADF so the document itself always fits.
DESCRIPTION_LIMIT = 32_767
LABEL_LIMIT = 255
SUMMARY_PREFIX = "[AI Detected] "
#: The last paragraph of a description too long for Jira even with its longest texts cut.
TRUNCATED_NOTE = "… (truncated)"
FINGERPRINT_PREFIX = "empathy-fp-"

#: The core's severity names -> Jira's default priority scheme.
DEFAULT_PRIORITIES: Mapping[str, str | None] = {
    "critical": "Highest",
    "high": "High",
    "medium": "Medium",
    "low": "Low",
    "info": "Lowest",
}

_NAME_KEYS = ("title", "summary", "vulnerability", "bug", "name", "message", "description")
_ISSUE_KEYS = ("issue", "description", "details", "message", "explanation")
_FIX_KEYS = ("fix", "recommended_fix", "recommendation", "suggestion", "remediation")
_ASSIGNEE_KEYS = (
    "assignee_account_id",
    "owner_account_id",
    "file_owner_account_id",
    "assignee",
    "file_owner",
    "owner",
    "assignee_email",
    "owner_email",
)
#: Atlassian account ids: the legacy 24 hex digits (`5b10ac8d82e05b22cc7d4ef5`) or
#: `<prefix>:<uuid>` (`557058:f58131cb-...`, `qm:<uuid>:<hex>` for service-desk customers).
_ACCOUNT_ID = re.compile(
    r"(?i)^(?:[0-9a-f]{24}|[0-9a-z]+:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-"
    r"[0-9a-f]{12}(?::[0-9a-z]+)?)$"
)
_CATEGORY = {"security_vulnerability": "security", "bug_detected": "bug"}
#: C0 controls but tab and newline: not allowed in Jira text and invisible anyway.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
#: Terminal colour codes (`\x1b[31m`, common in test output): without its ESC (a control,
#: removed) the rest (`[31m`) would show in the ticket.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
_NOT_LABEL = re.compile(r"[^a-z0-9._-]+")
# Data Center's v2 text is wiki markup: `[~user]` mentions (and notifies), `[text|url]` links,
# `!url!` embeds an image, `{code}` opens a macro. Event text is escaped as Jira's renderer
# reads escapes (its BackslashEscapeRendererComponent): a backslash before one of these.
_WIKI_SPECIAL = re.compile(r"[-#*_+?^~|%{}\[\]()!@]")
# The text's own backslash before one of them (or before another: `\\` is a line break)
# would undo that escape: a zero-width space after it keeps both as written.
_WIKI_OWN_BACKSLASH = re.compile(r"\\(?=[-#*_+?^~|%{}\[\]()!@\\])")
# Headings and quotes (`h1. `, `bq. `) start a line and take no escape.
_WIKI_BLOCK = re.compile(r"(?im)^([ \t]*(?:h[1-6]|bq))\.")
# Inside `{noformat}` nothing is markup but its own end, in any case.
_NOFORMAT = re.compile(r"(?i)\{(?=noformat)")
_ZWSP = "\u200b"
#: How many times `_fit` cuts the longest text before it keeps the start instead.
_PASSES = 20


def truncate(text: str, limit: int) -> str:
    """`text` cut (with an ellipsis) to `limit` as Jira counts: Java's `String.length()`, in
    UTF-16 code units, where an emoji is 2 and 255 code points of them are refused."""
    return fit_escaped(text, limit, length=utf16_len)


def _clean(text: str) -> str:
    return _CONTROL.sub("", _ANSI.sub("", text.replace("\r\n", "\n").replace("\r", "\n")))


def _one_line(text: str) -> str:
    return " ".join(_clean(text).split())


def finding_name(event: Event) -> str:
    """What was found (`SQL injection`), without its location."""
    name = first_text(event.data, *_NAME_KEYS)
    if name and _one_line(name):
        return _one_line(name)
    return base_event_type(event).replace("_", " ").capitalize()


def issue_title(event: Event) -> str:
    """`SQL injection in auth.py:45`."""
    name = finding_name(event)
    where = location(event.data)
    if where:
        where = _one_line(where)
    if where and where not in name:
        return f"{name} in {where}"
    return name


def summary(event: Event) -> str:
    """`[AI Detected] SQL injection in auth.py:45`, at most 255 characters."""
    return truncate(SUMMARY_PREFIX + issue_title(event), SUMMARY_LIMIT)


def fingerprint(event: Event) -> str:
    """`empathy-fp-<16 hex>`: the same for every event of one finding, and different for two
    findings.

    The core's one rule names the finding (`empathy_webhooks_core._findings`): an explicit
    `data["fingerprint"]` (or `dedup_key`, `incident_key`, `finding_id`) decides; otherwise
    the event type and the identifying fields (rule, check, cve, title, name, ... and file,
    line, service, ...) do, with the finding's text (message,
    summary, description, ...) joining them when no naming field is present; with neither, the
    event id. Measurements are left out: they change between two reports of one finding.
    """
    return FINGERPRINT_PREFIX + finding_basis(event).digest()[:16]


def slug(text: Any) -> str:
    """`sql-injection` from `SQL injection`: a short lower-case label naming the finding."""
    made = _NOT_LABEL.sub("-", str(text).strip().lower()).strip("-.")
    return made[:60].rstrip("-.")


def _cut_units(text: str, limit: int) -> str:
    """`text`'s longest prefix of at most `limit` UTF-16 code units (no ellipsis)."""
    if utf16_len(text) <= limit:
        return text
    used = 0
    for index, char in enumerate(text):
        used += 2 if ord(char) > 0xFFFF else 1
        if used > limit:
            return text[:index]
    return text


def label_of(text: Any) -> str:
    """A label Jira accepts: whitespace (refused by Jira) replaced by `-`, at most 255
    characters as Jira counts them (UTF-16 code units: an emoji is 2)."""
    return _cut_units(re.sub(r"\s+", "-", _clean(str(text)).strip()), LABEL_LIMIT)


def labels(webhook: JiraWebhook, event: Event, fp: str | None) -> list[str]:
    """The webhook's labels, the category, the finding's slug, the event's own labels, and the
    fingerprint last; whitespace replaced, duplicates dropped."""
    found: list[str] = [*webhook.labels]
    category = _CATEGORY.get(base_event_type(event))
    if category:
        found.append(category)
    name = first_text(event.data, "vulnerability", "category", "rule", "title", "bug")
    if name:
        found.append(slug(name))
    extra = event.data.get("labels") or event.data.get("tags")
    if isinstance(extra, list | tuple):
        found.extend(str(item) for item in extra if isinstance(item, str | int | float))
    elif isinstance(extra, str):
        found.append(extra)
    cleaned = [label_of(item) for item in found]
    if fp:
        cleaned.append(fp)
    return list(dict.fromkeys(label for label in cleaned if label))


def priority(webhook: JiraWebhook, event: Event) -> str | None:
    """The Jira priority name for the event's severity (None: leave Jira's default)."""
    return webhook.priorities.get(severity_of(event).name.lower())


def is_account_id(value: str) -> bool:
    """Whether `value` has the shape of an Atlassian account id (else it is an email or a
    name, looked up with Jira's user search before the create)."""
    return bool(_ACCOUNT_ID.match(value.strip()))


def assignee(webhook: JiraWebhook, event: Event) -> str | None:
    """Who should own it: the event's (the file owner), else the webhook's; an account id, an
    email or a name (`{"accountId": ...}` and `{"email": ...}` mappings are read too)."""
    for key in _ASSIGNEE_KEYS:
        value = event.data.get(key)
        if isinstance(value, Mapping):
            value = (
                value.get("accountId")
                or value.get("account_id")
                or value.get("email")
                or value.get("emailAddress")
            )
        if isinstance(value, str) and value.strip():
            return value.strip()
    return webhook.assignee


def _intro(event: Event) -> str:
    kind = base_event_type(event)
    name = finding_name(event)
    if kind == "security_vulnerability":
        what = first_text(event.data, "vulnerability") or name
        return f"Empathy Framework detected a potential {_one_line(what)} vulnerability:"
    if kind == "bug_detected":
        return f"Empathy Framework detected a potential bug: {name}"
    return f"Empathy Framework reported a {kind.replace('_', ' ')}: {name}"


def _parts(event: Event) -> tuple[str, list[tuple[str, str]], str | None]:
    """The description's pieces: intro line, labelled lines, recommended fix."""
    data = event.data
    lines: list[tuple[str, str]] = []
    where = location(data)
    if where:
        lines.append(("File", _one_line(where)))
    issue = first_text(data, *_ISSUE_KEYS)
    if issue and _one_line(issue) != finding_name(event):
        lines.append(("Issue", _clean(issue).strip()))
    for label, key in (("CWE", "cwe"), ("CVE", "cve"), ("Rule", "rule_id")):
        value = first_text(data, key)
        if value:
            lines.append((label, _one_line(value)))
    confidence = data.get("confidence")
    if isinstance(confidence, int | float) and not isinstance(confidence, bool):
        shown = confidence * 100 if 0 <= confidence <= 1 else confidence
        lines.append(("Confidence", f"{shown:.0f}%"))
    fix = first_text(data, *_FIX_KEYS)
    return _intro(event), [(k, v) for k, v in lines if v], _clean(fix).strip() if fix else None


def _text(text: str, *marks: str) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "text", "text": text}
    if marks:
        node["marks"] = [{"type": mark} for mark in marks]
    return node


def _inline(text: str) -> list[dict[str, Any]]:
    """Text with line breaks as ADF `hardBreak`s (a newline inside a text node does not
    render) and no empty text nodes (ADF forbids them)."""
    nodes: list[dict[str, Any]] = []
    for index, line in enumerate(text.split("\n")):
        if index:
            nodes.append({"type": "hardBreak"})
        if line:
            nodes.append(_text(line))
    return nodes


def _paragraph(*content: dict[str, Any]) -> dict[str, Any]:
    return {"type": "paragraph", "content": list(content)}


def _size(value: Any) -> int:
    """How long `value` is once serialized, as Jira counts (UTF-16 code units)."""
    return utf16_len(json.dumps(value, ensure_ascii=False))


def _fit(doc: dict[str, Any], limit: int) -> dict[str, Any]:
    """Shorten the longest text until the serialized document fits `limit` characters; when
    that cannot make it fit (thousands of short lines), keep the start and mark the cut."""
    texts = [
        node
        for block in doc["content"]
        for node in block.get("content", [])
        if node.get("type") == "text"
    ]
    originals = [node["text"] for node in texts]
    size = _size(doc)
    # A cut leaves a text at least a character long, so the passes can save at most what
    # their texts take serialized (6 units a character at worst, `\uXXXX`, and 2 quotes):
    # when that is short of the excess, skip them.
    can_save = sum(heapq.nlargest(_PASSES, (6 * utf16_len(t) + 2 for t in originals)))
    for _ in range(_PASSES if size - limit <= can_save else 0):
        if size <= limit or not texts:
            break
        longest = max(texts, key=lambda node: utf16_len(node["text"]))
        # JSON escapes can make a character cost more than one: cut a little extra.
        keep = max(2, utf16_len(longest["text"]) - (size - limit) - 64)
        cut = truncate(longest["text"], keep)
        if cut == longest["text"]:
            break  # every text is already as short as a cut makes it
        longest["text"] = cut
        size = _size(doc)
    if size <= limit:
        return doc
    # Cutting the longest texts cannot make it fit (thousands of short lines) and would have
    # left the intro and the labels a character long: undo the cuts, keep the beginning.
    for node, text in zip(texts, originals, strict=True):
        node["text"] = text
    return _keep_start(doc, limit)


def _keep_start(doc: dict[str, Any], limit: int) -> dict[str, Any]:
    """The document's first blocks and nodes that fit `limit` with a last paragraph saying
    the rest was cut (`TRUNCATED_NOTE`). Sizes add up node by node: serializing the whole
    document once per dropped node would take time quadratic in the number of lines."""
    note = _paragraph(_text(TRUNCATED_NOTE, "em"))
    shell = {**doc, "content": []}
    # `, ` joins items in a serialized list: 2 characters before each but the first.
    room = limit - _size(shell) - _size(note) - 2
    kept: list[dict[str, Any]] = []
    for block in doc["content"]:
        joint = 2 if kept else 0
        cost = _size(block)
        if cost + joint <= room:
            kept.append(block)
            room -= cost + joint
            continue
        if isinstance(block.get("content"), list):
            part = _keep_nodes(block, room - joint)
            if part is not None:
                kept.append(part)
        break
    return {**shell, "content": [*kept, note]}


def _keep_nodes(block: dict[str, Any], room: int) -> dict[str, Any] | None:
    """`block` with the first of its nodes that fit `room`, the last text cut to fit; None
    when not one character of it fits."""
    shell = {**block, "content": []}
    room -= _size(shell)
    nodes: list[dict[str, Any]] = []
    for node in block["content"]:
        joint = 2 if nodes else 0
        cost = _size(node)
        if cost + joint <= room:
            nodes.append(node)
            room -= cost + joint
            continue
        if node.get("type") == "text":
            cut = _cut_text(node, room - joint)
            if cut is not None:
                nodes.append(cut)
        break
    while nodes and nodes[-1].get("type") == "hardBreak":
        nodes.pop()
    return {**shell, "content": nodes} if nodes else None


def _cut_text(node: dict[str, Any], room: int) -> dict[str, Any] | None:
    """`node` with its text cut (with an ellipsis) to the longest that serializes within
    `room`; None when not even one character and the ellipsis do."""
    text = node["text"]
    low, high = 1, utf16_len(text) - 1
    while low < high:
        middle = (low + high + 1) // 2
        if _size({**node, "text": truncate(text, middle)}) <= room:
            low = middle
        else:
            high = middle - 1
    cut = truncate(text, low)
    if low < 2 or not cut.rstrip(ELLIPSIS) or _size({**node, "text": cut}) > room:
        return None
    return {**node, "text": cut}


def description_adf(event: Event, limit: int = DESCRIPTION_LIMIT) -> dict[str, Any]:
    """The description as an ADF document (bold labels, the fix as a code block)."""
    intro, lines, fix = _parts(event)
    content: list[dict[str, Any]] = [_paragraph(_text(intro))]
    if lines:
        inline: list[dict[str, Any]] = []
        for label, value in lines:
            if inline:
                inline.append({"type": "hardBreak"})
            inline.append(_text(f"{label}: ", "strong"))
            inline.extend(_inline(value))
        content.append(_paragraph(*inline))
    if fix:
        content.append(_paragraph(_text("Recommended Fix:", "strong")))
        content.append({"type": "codeBlock", "content": [_text(fix)]})
    return _fit({"version": 1, "type": "doc", "content": content}, limit)


def wiki_text(text: str) -> str:
    """`text` shown as written in Jira's wiki markup (see `_WIKI_SPECIAL`)."""
    text = _WIKI_OWN_BACKSLASH.sub("\\\\" + _ZWSP, text)
    text = _WIKI_SPECIAL.sub(lambda found: "\\" + found.group(0), text)
    return _WIKI_BLOCK.sub(lambda found: found.group(1) + _ZWSP + ".", text)


def description_wiki(event: Event, limit: int = DESCRIPTION_LIMIT) -> str:
    """The same description in wiki markup, for Jira Data Center's REST API v2; the event's
    text escaped, the fix shown as written in a `{noformat}` block nothing in it can end."""
    intro, lines, fix = _parts(event)
    facts = "\n".join(f"*{label}:* {wiki_text(value)}" for label, value in lines)
    text = "\n\n".join(part for part in (wiki_text(intro), facts) if part)
    if not fix:
        return truncate(text, limit)
    opening, closing = "\n\n*Recommended Fix:*\n{noformat}\n", "\n{noformat}"
    code = _NOFORMAT.sub("{" + _ZWSP, fix)
    # The fix is cut, not the block's end: cut short, an unclosed block swallows the page.
    frame = utf16_len(opening) + utf16_len(closing)
    text = truncate(text, max(limit // 2, limit - frame - utf16_len(code)))
    return text + opening + truncate(code, limit - frame - utf16_len(text)) + closing


def text_adf(text: str, limit: int = DESCRIPTION_LIMIT) -> dict[str, Any]:
    """Plain text as an ADF document: blank lines separate paragraphs, line breaks are kept."""
    content = [_paragraph(*_inline(part)) for part in _clean(text).split("\n\n") if part.strip()]
    doc = {"version": 1, "type": "doc", "content": content or [_paragraph(_text(" "))]}
    return _fit(doc, limit)


def _template_description(webhook: JiraWebhook, text: str) -> Any:
    if webhook.api_version == 2:
        return truncate(text, DESCRIPTION_LIMIT)
    return text_adf(text)


def comment_body(webhook: JiraWebhook, text: str) -> dict[str, Any]:
    """The body of `POST /issue/{key}/comment`: ADF in REST API v3 (a plain string is refused
    there), wiki markup in v2."""
    if webhook.api_version == 2:
        return {"body": truncate(wiki_text(text), DESCRIPTION_LIMIT)}
    return {"body": text_adf(text)}


def _when(event: Event) -> str:
    return event.timestamp.strftime("%Y-%m-%d %H:%M UTC")


def repeat_comment(event: Event) -> str:
    """What a second report of an open finding adds to its ticket."""
    text = f"Empathy Framework reported this finding again ({_when(event)}): {issue_title(event)}"
    issue = first_text(event.data, *_ISSUE_KEYS)
    if issue and _one_line(issue) != finding_name(event):
        text += "\n\n" + _clean(issue).strip()
    return text


def resolve_comment(event: Event) -> str:
    """What a resolved finding says on its ticket before the ticket is transitioned."""
    text = f"Empathy Framework reports this finding resolved ({_when(event)}): {issue_title(event)}"
    why = first_text(event.data, "resolution", "reason", "message", "details")
    if why and _one_line(why) != finding_name(event):
        text += "\n\n" + _clean(why).strip()
    return text


def acknowledge_comment(event: Event) -> str:
    """What an acknowledgement of an open finding adds to its ticket."""
    return (
        f"Empathy Framework: this finding was acknowledged ({_when(event)}): {issue_title(event)}"
    )


def unassigned_comment(who: str, why: str) -> str:
    """The note left on a ticket created unassigned because `who` could not be assigned."""
    return (
        f"Empathy Framework meant to assign this ticket to {who}, but {why}. "
        "Please assign it by hand."
    )


def search_jql(project: str, fp: str) -> str:
    """Open issues of `project` carrying the fingerprint label, oldest first."""
    quoted = project.replace("\\", "\\\\").replace('"', '\\"')
    return (
        f'project = "{quoted}" AND labels = "{fp}" AND statusCategory != Done ORDER BY created ASC'
    )


def build_body(webhook: JiraWebhook, event: Event) -> dict[str, Any]:
    """The create-issue body for `event` (user template applied, Jira's limits enforced)."""
    fp = fingerprint(event) if webhook.deduplicate else None
    description: Any = (
        description_wiki(event) if webhook.api_version == 2 else description_adf(event)
    )
    fields: dict[str, Any] = {
        "project": {"key": webhook.project},
        "summary": summary(event),
        "description": description,
        "issuetype": {"name": webhook.issue_type},
    }
    name = priority(webhook, event)
    if name:
        fields["priority"] = {"name": name}
    fields["labels"] = labels(webhook, event, fp)
    owner = assignee(webhook, event)
    if owner and webhook.api_version == 2:
        fields["assignee"] = {"name": owner}  # Data Center has user names, not account ids
    elif owner and is_account_id(owner):
        fields["assignee"] = {"accountId": owner}
    # An email or a name is looked up (user search) at delivery: Jira Cloud takes account ids.
    body: dict[str, Any] = {"fields": fields}
    body = apply_template(
        webhook,
        event,
        body,
        text=lambda text: {"fields": {"description": _template_description(webhook, text)}},
        # v2's description is wiki markup; v3's template text becomes plain ADF text.
        escape=wiki_text if webhook.api_version == 2 else None,
    )
    return _within_limits(webhook, body, fp)


def _within_limits(webhook: JiraWebhook, body: dict[str, Any], fp: str | None) -> dict[str, Any]:
    """Templates may produce anything: cut what Jira would refuse, keep the fingerprint."""
    fields = body.get("fields")
    if not isinstance(fields, dict):
        fields = body["fields"] = {}
    fields["summary"] = truncate(_one_line(str(fields.get("summary") or "")), SUMMARY_LIMIT) or (
        SUMMARY_PREFIX.strip()
    )
    raw = fields.get("labels")
    items = [raw] if isinstance(raw, str) else list(raw) if isinstance(raw, list | tuple) else []
    cleaned = [label_of(item) for item in items]
    if fp and fp not in cleaned:
        cleaned.append(fp)
    fields["labels"] = list(dict.fromkeys(label for label in cleaned if label))
    for name in ("description", "environment"):
        # REST API v3 refuses a plain string in a rich-text field: a template's string is
        # converted, as a string template's description is.
        value = fields.get(name)
        if isinstance(value, str):
            fields[name] = _template_description(webhook, value)
    return body
