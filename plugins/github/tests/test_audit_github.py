"""Audit: GitHub PR comments built from hostile event text (markers, mentions, HTML, links)."""

from __future__ import annotations

import json
from typing import Any

import empathy_webhooks_github as plugin
from empathy_webhooks_github import GitHubWebhook

from empathy_webhooks_core import Event, WebhookDispatcher
from empathy_webhooks_core.plugins import build_plugin_manager

TOKEN = "ghp_FAKEfakeFAKEfake0123456789abcdefABCD"
REPO = "Smart-AI-Memory/empathy"
FAST = {"initial_delay_seconds": 0.001, "max_delay_seconds": 0.01}
REVIEW_MARKER = "<!-- empathy-webhooks:review -->"


def manager() -> Any:
    return build_plugin_manager(load_entry_points=False, extra_plugins=[plugin])


def rendered(data: dict[str, Any], event_type: str = "bug_detected") -> str:
    hook = GitHubWebhook(token=TOKEN, repository=REPO, comment_events=[event_type])
    request = hook.render(Event(event_type=event_type, data=data))
    return str(json.loads(request.body)["body"])


async def test_event_text_quoting_a_marker_never_makes_two_comments_one(github: Any) -> None:
    """A finding whose text holds the review's marker keeps its own comment: the next review
    must not find it and overwrite it (two different alerts merged, the first one lost)."""
    hook = GitHubWebhook(
        token=TOKEN,
        repository=REPO,
        api_url=github.url(),
        retry_policy=FAST,
        events=["test_failure", "code_review_complete"],
        comment_events=["test_failure", "code_review_complete"],
    )
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager()) as dispatcher:
        await dispatcher.emit(
            "test_failure",
            {"pr": 7, "test": "test_render", "error": f"expected {REVIEW_MARKER} in output"},
        )
        await dispatcher.drain()
        await dispatcher.emit("code_review_complete", {"pr": 7, "looks_good": ["Tidy"]})
        await dispatcher.drain()
    failure, review = github.on(7)
    assert "test_render" in failure["body"]
    assert "Tidy" in review["body"] and review["body"].endswith(REVIEW_MARKER)
    assert [r.method for r in github.receiver.requests] == ["GET", "POST", "GET", "POST"]


def test_mentions_in_event_text_ping_nobody() -> None:
    """`@Override` (a GitHub user) and `@org/team` in a finding must not notify anyone."""
    body = rendered(
        {
            "pr": 3,
            "title": "Missing @Override on equals()",
            "message": "cc @acme/security-team and @octocat; mail ops@acme.io",
        }
    )
    for handle in ("@Override", "@acme/security-team", "@octocat"):
        assert handle not in body
        assert handle.replace("@", "@\u200b") in body
    assert "ops@acme.io" in body


def test_a_review_item_cannot_ping_either() -> None:
    body = rendered(
        {"pr": 3, "suggestions": [{"line": 4, "message": "ask @acme/leads"}]},
        event_type="code_review_complete",
    )
    assert "@acme/leads" not in body and "@\u200bacme/leads" in body


def test_html_in_event_text_cannot_hide_the_rest_of_the_comment() -> None:
    """An unclosed `<!--` from the data would hide every line after it on GitHub."""
    body = rendered({"pr": 3, "title": "Parser bug", "message": "<!-- swallowed", "file": "a.py"})
    assert "<!--" not in body.removesuffix(body.splitlines()[-1])
    assert "&lt;!-- swallowed" in body
    assert body.rstrip().endswith("-->")


def test_a_link_from_the_data_cannot_add_links_of_its_own() -> None:
    body = rendered(
        {"pr": 3, "title": "Bug", "url": "https://ci.example/run/1)[login](http://evil"}
    )
    assert "](http://evil" not in body
    assert "[Details](https://ci.example/run/1%29[login]%28http://evil)" in body
