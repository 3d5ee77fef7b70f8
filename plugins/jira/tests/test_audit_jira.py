"""Audit: Jira's limits counted as Jira (Java) counts them, in UTF-16 code units."""

from __future__ import annotations

import json
from typing import Any

import empathy_webhooks_jira as plugin
from empathy_webhooks_jira import JiraWebhook

from empathy_webhooks_core import Event, WebhookDispatcher
from empathy_webhooks_core.plugins import build_plugin_manager

EMAIL = "bot@acme.io"
TOKEN = "ATATT3xFfGF0-jira-api-token-123456"
FAST = {"initial_delay_seconds": 0.001, "max_delay_seconds": 0.01}


def units(text: str) -> int:
    """Java's `String.length()`: an emoji outside the BMP counts 2."""
    return len(text.encode("utf-16-le")) // 2


def webhook(jira: Any, **options: Any) -> JiraWebhook:
    return JiraWebhook(
        url=jira.url(),
        email=EMAIL,
        api_token=TOKEN,
        project="EMP",
        retry_policy=FAST,
        **options,
    )


async def test_an_emoji_title_is_cut_to_255_java_characters_and_accepted(jira: Any) -> None:
    """Before: 255 code points of emoji were 495 to Jira: 400 "Summary can't exceed 255
    characters", and the finding got no ticket."""
    hook = webhook(jira)
    manager = build_plugin_manager(load_entry_points=False, extra_plugins=[plugin])
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager) as dispatcher:
        await dispatcher.emit("bug_detected", {"title": "🔥 crash " * 100, "file": "a.py"})
    [create] = jira.creates
    summary = create.json()["fields"]["summary"]
    assert create.answered == 201
    assert 250 <= units(summary) <= 255
    assert summary.startswith("[AI Detected] 🔥 crash") and summary.endswith("…")


def test_a_description_of_emoji_fits_32767_java_characters() -> None:
    hook = JiraWebhook(url="https://acme.atlassian.net", email="a@b.c", api_token="t", project="E")
    event = Event(event_type="bug_detected", data={"title": "Bug", "fix": "😀" * 40_000})
    fields = json.loads(hook.render(event).body)["fields"]
    assert units(json.dumps(fields["description"], ensure_ascii=False)) <= 32_767
    code = fields["description"]["content"][-1]["content"][0]["text"]
    assert code.startswith("😀😀") and code.endswith("…") and units(code) > 30_000


def test_a_template_summary_and_a_v2_description_are_cut_the_same_way() -> None:
    hook = JiraWebhook(
        url="https://jira.acme.internal",
        api_token="t",
        auth="bearer",
        project="E",
        api_version=2,
        templates={"bug_detected": {"fields": {"summary": "🐛" * 300}}},
    )
    event = Event(event_type="bug_detected", data={"title": "Bug", "fix": "🐛" * 40_000})
    fields = json.loads(hook.render(event).body)["fields"]
    assert units(fields["summary"]) <= 255 and fields["summary"].endswith("…")
    assert units(fields["description"]) <= 32_767 and "🐛🐛" in fields["description"]
