"""Audit 3: GitHub comments from hostile event text, and GitHub's rate-limit and outage
answers.

- `@user` after a backtick or a slash still notifies on GitHub (the text cannot know a code
  span is closed; `dir/@octocat` is a mention), and so did one in an event type's heading;
- the older wording of a secondary rate limit ("abuse detection mechanism", a 403 without
  `retry-after`) was a final failure ("the token lacks permission");
- a 5xx's `Retry-After` was not honoured;
- terminal colour codes and control characters went into the comment.
"""

from __future__ import annotations

import json
from typing import Any

import empathy_webhooks_github as plugin
import pytest
from empathy_webhooks_github import GitHubWebhook

from empathy_webhooks_core import Event
from empathy_webhooks_core.plugin import Outcome, OutgoingRequest, Response

TOKEN = "ghp_AuditThreeFAKE0123456789abcdefABCDEF"
REPO = "Smart-AI-Memory/empathy"
ZWSP = "\u200b"


def rendered(data: dict[str, Any], event_type: str = "bug_detected") -> str:
    hook = GitHubWebhook(token=TOKEN, repository=REPO, comment_events=[event_type])
    return str(json.loads(hook.render(Event(event_type=event_type, data=data)).body)["body"])


@pytest.mark.parametrize(
    ("text", "pinged"),
    [
        ("unexpected token `@octocat in line 3", "@octocat"),
        ("see packages/@acme/security-team for owners", "@acme/security-team"),
        ("see dir/@octocat now", "@octocat"),
        ("`@Override` missing", "@Override"),
    ],
)
def test_no_mention_after_a_backtick_or_a_slash_either(text: str, pinged: str) -> None:
    body = rendered({"pr": 3, "title": "Bug", "message": text})
    assert pinged not in body
    assert pinged.replace("@", "@" + ZWSP) in body


def test_an_email_is_still_shown_as_written() -> None:
    assert "ops@acme.io" in rendered({"pr": 3, "title": "Mail ops@acme.io"})


def test_an_event_type_heading_cannot_ping_or_hide_the_comment() -> None:
    body = rendered({"pr": 3, "title": "x"}, event_type="deploy_@acme/oncall_<!--")
    heading = body.splitlines()[0]
    assert "@acme/oncall" not in heading and "<!--" not in heading
    assert heading == f"## 🤖 Deploy @{ZWSP}acme/oncall &lt;!--"


def test_terminal_colour_codes_and_controls_stay_out_of_the_comment() -> None:
    body = rendered({"pr": 3, "title": "\x1b[31mCrash\x1b[0m", "message": "got\x00 1\x07"})
    assert "**Crash**" in body and "got 1" in body
    assert "[31m" not in body and "\x00" not in body and "\x07" not in body


# -- answers ---------------------------------------------------------------------------------


def classify(status: int, body: Any = None, **headers: str) -> Any:
    hook = GitHubWebhook(token=TOKEN, repository=REPO)
    request = OutgoingRequest(url="https://api.github.com/x", method="POST")
    response = Response(
        status=status,
        body=json.dumps(body).encode() if body is not None else b"",
        headers={key.replace("_", "-").lower(): value for key, value in headers.items()},
    )
    return plugin.classify_response(hook, request, response)


def test_an_abuse_detection_403_waits_as_a_secondary_rate_limit() -> None:
    """GitHub's older wording of a secondary limit; without `retry-after`, GitHub's advice is
    to wait at least a minute, not to give up."""
    verdict = classify(
        403,
        {
            "message": "You have triggered an abuse detection mechanism. Please wait a few "
            "minutes before you try again.",
            "documentation_url": "https://docs.github.com/rest/overview/rate-limits",
        },
    )
    assert verdict.outcome is Outcome.RETRY and verdict.pause_webhook
    assert verdict.retry_after == 60.0


def test_a_permission_403_is_still_final() -> None:
    verdict = classify(403, {"message": "Resource not accessible by integration"})
    assert verdict.outcome is Outcome.FAIL
    assert verdict.reason.startswith("the token lacks permission (HTTP 403)")


def test_a_5xx_retry_after_is_honoured() -> None:
    verdict = classify(503, {"message": "Service unavailable"}, Retry_After="17")
    assert verdict.outcome is Outcome.RETRY and verdict.retry_after == 17.0
    assert verdict.reason == "GitHub unavailable (HTTP 503) on the comment"
    assert classify(502).retry_after is None


@pytest.mark.parametrize("status", [401, 403, 404, 422])
def test_a_refusal_echoing_the_token_never_shows_it_even_classified_alone(status: int) -> None:
    """`classify_response` called on its own (no dispatcher has registered the token):
    before, the echoed token was in the reason."""
    verdict = classify(status, {"message": f"Bad credentials {TOKEN}"})
    assert verdict.outcome is Outcome.FAIL
    assert TOKEN not in str(verdict.reason) and "***" in str(verdict.reason)
