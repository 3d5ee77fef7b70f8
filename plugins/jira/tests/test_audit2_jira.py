"""Audit: event text in Jira Data Center's wiki markup (REST API v2) is inert: no mentions,
links, images, macros or headings made from it, and the fix's `{noformat}` block always
closes."""

from __future__ import annotations

import json
from typing import Any

import empathy_webhooks_jira as plugin
from empathy_webhooks_jira import JiraWebhook

from empathy_webhooks_core import Event, WebhookDispatcher
from empathy_webhooks_core.plugins import build_plugin_manager

PAT = "NjA1ODY3-datacenter-pat-abcdef"
FAST = {"initial_delay_seconds": 0.001, "max_delay_seconds": 0.01}
ZW = "\u200b"
HOSTILE = {
    "vulnerability": "XSS [~admin]",
    "file": "web/[evil|https://evil.example].py",
    "line": 7,
    "issue": "ping [~jsmith] see [click|https://evil.example] !https://evil.example/x.png!\n"
    "h1. Pwned\n{code}x{code} *bold* \\[~escaped] a\\\\b",
    "fix": "use {no{noformat}format} and {NOFORMAT} then h1. x [~admin]",
}


def data_center(**options: Any) -> JiraWebhook:
    return JiraWebhook(
        url="https://jira.acme.internal",
        api_token=PAT,
        auth="bearer",
        project="EMP",
        api_version=2,
        **options,
    )


def description(event: Event) -> str:
    fields = json.loads(data_center().render(event).body)["fields"]
    assert isinstance(fields["description"], str)
    return str(fields["description"])


def test_event_text_in_a_v2_description_is_escaped_wiki_markup() -> None:
    """Before: `[~jsmith]` mentioned (and notified) a user, `[click|url]` was a link,
    `!url!` an embedded image, `h1.` a heading, `{code}` a macro; and the fix's
    `{no{noformat}format}` became `{noformat}` once the inner one was removed, ending the
    block early."""
    text = description(Event(event_type="security_vulnerability", data=HOSTILE))
    assert text == (
        "Empathy Framework detected a potential XSS \\[\\~admin\\] vulnerability:\n\n"
        "*File:* web/\\[evil\\|https://evil.example\\].py:7\n"
        "*Issue:* ping \\[\\~jsmith\\] see \\[click\\|https://evil.example\\] "
        "\\!https://evil.example/x.png\\!\n"
        f"h1{ZW}. Pwned\n\\{{code\\}}x\\{{code\\}} \\*bold\\* \\{ZW}\\[\\~escaped\\] a\\{ZW}\\b\n\n"
        "*Recommended Fix:*\n{noformat}\n"
        f"use {{no{{{ZW}noformat}}format}} and {{{ZW}NOFORMAT}} then h1. x [~admin]\n"
        "{noformat}"
    )
    # Exactly one block, closed: nothing in the event closes it early.
    assert text.count("{noformat}") == 2 and text.endswith("{noformat}")


def test_a_fix_too_long_for_the_description_still_closes_its_block() -> None:
    """Before: the whole description was cut at 32,767 characters, cutting off the closing
    `{noformat}` with it, and the rest of the page rendered as unformatted text."""
    event = Event(event_type="bug_detected", data={"title": "Bug", "fix": "x = 1\n" * 10_000})
    text = description(event)
    assert len(text) <= 32_767
    assert text.endswith("…\n{noformat}") and text.count("{noformat}") == 2


async def test_a_repeat_comment_on_data_center_escapes_the_event_text(jira: Any) -> None:
    """Before: a second report's comment (wiki markup in v2) mentioned `[~jsmith]`."""
    jira.cloud = False
    hook = JiraWebhook(
        url=jira.url(),
        api_token=PAT,
        auth="bearer",
        project="EMP",
        api_version=2,
        retry_policy=FAST,
    )
    manager = build_plugin_manager(load_entry_points=False, extra_plugins=[plugin])
    finding = {"title": "Bug", "file": "a.py", "line": 1}
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager) as dispatcher:
        await dispatcher.emit("bug_detected", finding)
        await dispatcher.drain()
        await dispatcher.emit("bug_detected", {**finding, "issue": "again [~jsmith] h1. x"})
        await dispatcher.drain()
    [comment] = jira.issue("EMP-1")["comments"]
    assert isinstance(comment, str)
    assert comment.startswith("Empathy Framework reported this finding again \\(")
    assert comment.endswith(" UTC\\): Bug in a.py:1\n\nagain \\[\\~jsmith\\] h1. x")


def test_a_string_template_escapes_the_event_values_in_v2_wiki_markup() -> None:
    hook = data_center(templates={"alert": "*Alert:* {data[title]}"})
    event = Event(event_type="alert", data={"title": "ping [~jsmith] [x|https://evil.example]"})
    fields = json.loads(hook.render(event).body)["fields"]
    assert fields["description"] == "*Alert:* ping \\[\\~jsmith\\] \\[x\\|https://evil.example\\]"
