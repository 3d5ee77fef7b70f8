"""Audit 3: Teams cards built from hostile event text: terminal colour codes and control
characters are left out of every text (the card's and its plain-text fallback), and what is
left is still escaped and within the size limit."""

from __future__ import annotations

import json
from typing import Any

from empathy_webhooks_teams import TeamsWebhook, escape_markdown
from empathy_webhooks_teams.format import strip_controls

from empathy_webhooks_core import Event
from empathy_webhooks_core.plugin import json_bytes

URL = "https://prod-12.westus.logic.azure.com/workflows/0a/triggers/manual/paths/invoke?sig=s3cr3t"
ERROR = "\x1b[31mAssertionError\x1b[0m: got\x00 1\x07\r\nexpected [2]\x1b"


def texts(value: Any) -> list[str]:
    found: list[str] = []
    if isinstance(value, dict):
        for item in value.values():
            found += texts(item)
    elif isinstance(value, list):
        for item in value:
            found += texts(item)
    elif isinstance(value, str):
        found.append(value)
    return found


def card(event: Event, **options: Any) -> dict[str, Any]:
    body = TeamsWebhook(webhook_url=URL, **options).render(event).json_body()
    return dict(body["attachments"][0]["content"])


def test_control_characters_reach_no_text_of_the_card() -> None:
    """Before: `\\x1b[31m` from a test's output went into the TextBlock, the FactSet and the
    fallback text (the ESC a control character, `[31m` shown); a NUL went as `\\u0000`."""
    event = Event(event_type="test_failure", data={"test": f"t {ERROR}", "error": ERROR})
    content = card(event)
    for text in texts(content):
        assert strip_controls(text) == text, text
        assert "[31m" not in text and "[0m" not in text
    assert content["fallbackText"] == "❌ Test failure: t AssertionError: got 1 expected [2]"
    [facts] = [item for item in content["body"] if item["type"] == "FactSet"]
    [error] = [fact for fact in facts["facts"] if fact["title"] == "Error"]
    assert error["value"] == "AssertionError: got 1\nexpected \\[2\\]"


def test_a_string_template_value_loses_its_controls_too() -> None:
    event = Event(event_type="alert", data={"title": "disk\x00 full\x1b[K"})
    content = card(event, templates={"alert": "**Alert:** {data[title]}"})
    assert content["body"][0]["text"] == "**Alert:** disk full"


def test_escape_markdown_keeps_tabs_and_line_breaks() -> None:
    assert escape_markdown("a\tb\r\nc\rd") == "a\tb\nc\nd"
    assert strip_controls("plain text ✓") == "plain text ✓"


def test_a_huge_text_of_controls_and_emoji_still_fits_28_kb() -> None:
    hostile = ("😀\x1b[31m\x00" * 20_000) + "<at>x</at>"
    event = Event(event_type="alert", data={"title": hostile, "message": hostile})
    body = TeamsWebhook(webhook_url=URL).render(event).body
    assert len(body) <= 28_000
    sent = json.loads(body)
    assert "\\u0000" not in body.decode() and "<at>" not in json_bytes(sent).decode()
