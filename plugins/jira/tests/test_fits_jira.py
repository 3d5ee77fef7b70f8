"""A description of thousands of short lines: before, no cut of the longest text could
shrink it (each line its own text and `hardBreak` node), the request stayed at 1.2 MB and was
refused as `PayloadTooLarge`, and the finding got no ticket. Now its start is kept, within
Jira's 32,767 characters, and its last paragraph says it was cut."""

from __future__ import annotations

import json
from typing import Any

import pytest
from empathy_webhooks_jira import JiraWebhook
from empathy_webhooks_jira.format import DESCRIPTION_LIMIT, TRUNCATED_NOTE, text_adf

from empathy_webhooks_core import Event, WebhookDispatcher


def units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def render(data: dict[str, Any]) -> dict[str, Any]:
    hook = JiraWebhook(
        url="https://acme.atlassian.net", email="bot@acme.io", api_token="tok", project="EMP"
    )
    request = WebhookDispatcher(webhooks=[hook]).render(
        hook.name, Event(event_type="bug_detected", data=data)
    )
    fields: dict[str, Any] = json.loads(request.body)["fields"]
    return fields


NOTE = {
    "type": "paragraph",
    "content": [{"type": "text", "text": TRUNCATED_NOTE, "marks": [{"type": "em"}]}],
}


@pytest.mark.timeout(60)
def test_thousands_of_short_lines_keep_their_start_and_say_they_were_cut() -> None:
    fields = render({"title": "Null dereference", "description": "a\n" * 25_000})
    description = fields["description"]
    assert units(json.dumps(description, ensure_ascii=False)) <= DESCRIPTION_LIMIT
    intro, issue, note = description["content"]
    assert (
        intro["content"][0]["text"]
        == "Empathy Framework detected a potential bug: Null dereference"
    )
    assert issue["content"][:4] == [
        {"type": "text", "text": "Issue: ", "marks": [{"type": "strong"}]},
        {"type": "text", "text": "a"},
        {"type": "hardBreak"},
        {"type": "text", "text": "a"},
    ]
    # As many lines as fit: thousands, not a handful; no trailing line break.
    assert len(issue["content"]) > 1_000 and issue["content"][-1]["type"] == "text"
    assert note == NOTE
    assert fields["summary"] == "[AI Detected] Null dereference"


@pytest.mark.timeout(60)
def test_a_long_fix_after_many_lines_is_left_out_not_the_start() -> None:
    fields = render({"title": "Bug", "description": "é\n" * 10_000, "fix": "x" * 60_000})
    content = fields["description"]["content"]
    assert units(json.dumps(fields["description"], ensure_ascii=False)) <= DESCRIPTION_LIMIT
    assert content[1]["content"][1] == {"type": "text", "text": "é"}
    assert content[-1] == NOTE


@pytest.mark.timeout(60)
def test_one_long_line_is_cut_as_before_without_the_note() -> None:
    fields = render({"title": "Bug", "description": "x" * 40_000})
    content = fields["description"]["content"]
    assert units(json.dumps(fields["description"], ensure_ascii=False)) <= DESCRIPTION_LIMIT
    assert content[-1]["content"][-1]["text"].endswith("x…")
    assert NOTE not in content


@pytest.mark.timeout(60)
def test_plain_text_of_many_paragraphs_is_cut_with_the_note() -> None:
    """Template text and comments go through `text_adf`: blank lines are paragraphs."""
    doc = text_adf("first words\n\n" + "b\n\n" * 20_000)
    assert units(json.dumps(doc, ensure_ascii=False)) <= DESCRIPTION_LIMIT
    assert doc["content"][0] == {
        "type": "paragraph",
        "content": [{"type": "text", "text": "first words"}],
    }
    assert doc["content"][-1] == NOTE
