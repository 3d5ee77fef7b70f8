"""Audit 3: Jira's answers that are 2xx without being Jira's, labels counted as Jira counts,
and terminal colour codes in event text.

- a search or a create answered 200 with a page that is not Jira's JSON (an SSO login page,
  a proxy) was read as "no open ticket" and "delivered": a finding lost without a word, or a
  new ticket per event once the site answered again;
- a label is at most 255 characters as Java counts (UTF-16 code units);
- `\\x1b[31m` from a test's output lost only its ESC: `[31m` showed in the ticket.
"""

from __future__ import annotations

import json
from typing import Any

import empathy_webhooks_jira as plugin
from empathy_webhooks_jira import JiraWebhook
from empathy_webhooks_jira.format import label_of

from empathy_webhooks_core import Event, WebhookDispatcher
from empathy_webhooks_core.plugin import Outcome, OutgoingRequest, Response
from empathy_webhooks_core.plugins import build_plugin_manager
from empathy_webhooks_core.testing import ReceivedRequest, Reply

EMAIL = "bot@acme.io"
TOKEN = "ATATT3xFfGF0-jira-api-token-123456"
FAST = {"initial_delay_seconds": 0.001, "max_delay_seconds": 0.01}
LOGIN_PAGE = "<html><head><title>Log in</title></head><body>Sign in with SSO</body></html>"


def units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def webhook(jira: Any, failures: list[Any], **options: Any) -> JiraWebhook:
    return JiraWebhook(
        url=jira.url(),
        email=EMAIL,
        api_token=TOKEN,
        project="EMP",
        retry_policy=FAST,
        on_failure=lambda w, e, error: failures.append(error),
        **options,
    )


async def deliver(jira: Any, hook: JiraWebhook, *events: dict[str, Any]) -> dict[str, Any]:
    manager = build_plugin_manager(load_entry_points=False, extra_plugins=[plugin])
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager) as dispatcher:
        for data in events:
            await dispatcher.emit("bug_detected", data)
            await dispatcher.drain()
        return {
            "stats": dispatcher.get_webhook_stats(hook.name),
            "dead": await dispatcher.dead_letters(),
        }


def login_page_for(jira: Any, suffix: str) -> None:
    real = jira.receiver.handler

    def handler(request: ReceivedRequest) -> Reply:
        if request.method == "POST" and request.path.endswith(suffix):
            return Reply(status=200, body=LOGIN_PAGE, headers={"Content-Type": "text/html"})
        return real(request)  # type: ignore[no-any-return]

    jira.receiver.handler = handler


async def test_a_search_answered_by_a_login_page_fails_and_creates_nothing(jira: Any) -> None:
    """Before: the page was read as "no open ticket" and the create went out; once the site
    answered properly, each event of the finding had opened a ticket of its own."""
    login_page_for(jira, "/search/jql")
    failures: list[Any] = []
    outcome = await deliver(jira, webhook(jira, failures), {"title": "Bug", "file": "a.py"})
    assert jira.creates == [] and jira.issues == []
    [failure] = failures
    assert failure.reason.startswith("Jira's search answered HTTP 200 without Jira's JSON")
    assert "is url the Jira site's base URL?" in failure.reason
    assert len(outcome["dead"]) == 1 and outcome["stats"]["delivered_count"] == 0


async def test_a_create_answered_by_a_login_page_is_not_delivered(jira: Any) -> None:
    """Before: a 200 without an issue key counted as delivered: no ticket, no word."""
    login_page_for(jira, "/rest/api/3/issue")
    failures: list[Any] = []
    outcome = await deliver(jira, webhook(jira, failures), {"title": "Bug", "file": "a.py"})
    [failure] = failures
    assert failure.reason.startswith("Jira's create answered HTTP 200 without Jira's JSON")
    assert outcome["stats"]["delivered_count"] == 0 and len(outcome["dead"]) == 1
    shown = json.dumps([d.to_dict() for d in outcome["dead"]], default=str) + repr(failure)
    assert TOKEN not in shown


async def test_a_real_create_still_delivers_with_its_key(jira: Any) -> None:
    failures: list[Any] = []
    outcome = await deliver(jira, webhook(jira, failures), {"title": "Bug", "file": "a.py"})
    assert failures == [] and outcome["stats"]["delivered_count"] == 1
    assert [issue["key"] for issue in jira.issues] == ["EMP-1"]


def test_an_emoji_label_is_cut_to_255_java_characters() -> None:
    """Before: cut at 255 code points, 510 to Jira."""
    label = label_of("🔥" * 300)
    assert units(label) <= 255 and label == "🔥" * 127
    assert label_of("a" * 300) == "a" * 255
    assert label_of("x" * 254 + "😀") == "x" * 254  # never half an emoji


def test_event_labels_of_emoji_reach_jira_within_its_count() -> None:
    hook = JiraWebhook(url="https://acme.atlassian.net", email=EMAIL, api_token=TOKEN, project="E")
    event = Event(event_type="bug_detected", data={"title": "Bug", "labels": ["🐛" * 200]})
    labels = json.loads(hook.render(event).body)["fields"]["labels"]
    assert labels and all(units(label) <= 255 for label in labels)


def test_terminal_colour_codes_leave_nothing_in_the_ticket() -> None:
    hook = JiraWebhook(url="https://acme.atlassian.net", email=EMAIL, api_token=TOKEN, project="E")
    event = Event(
        event_type="bug_detected",
        data={"title": "\x1b[1;31mCrash\x1b[0m", "issue": "got\x1b[K 1", "fix": "\x1b[32mx=1"},
    )
    fields = json.loads(hook.render(event).body)["fields"]
    assert fields["summary"] == "[AI Detected] Crash"
    text = json.dumps(fields["description"], ensure_ascii=False)
    assert "[31m" not in text and "[K" not in text and "[32m" not in text
    assert "got 1" in text and '"text": "x=1"' in text


def test_a_refusal_echoing_the_token_never_shows_it_even_classified_alone() -> None:
    """`classify_response` called on its own (no dispatcher has registered the webhook's
    secrets): before, the echoed token was in the reason."""
    token = "ATATT3x-audit3-alone-7f3a9c2e51"
    hook = JiraWebhook(url="https://acme.atlassian.net", email=EMAIL, api_token=token, project="E")
    request = OutgoingRequest(url=hook.create_url, method="POST")
    for status in (400, 403, 404):
        body = {"errorMessages": [f"token {token} refused"], "errors": {"x": token}}
        answer = Response(status=status, body=json.dumps(body).encode())
        verdict = plugin.classify_response(hook, request, answer)
        assert verdict.outcome is Outcome.FAIL
        assert token not in str(verdict.reason) and "***" in str(verdict.reason)
