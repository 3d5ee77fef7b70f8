"""GitHub through a real dispatcher to a loopback fake of the REST API (see conftest.py)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import empathy_webhooks_github as plugin
import pytest
from empathy_webhooks_github import GitHubWebhook, pr_number
from hypothesis import HealthCheck, given, settings

from empathy_webhooks_core import DeliveryError, Event, WebhookDispatcher, hookimpl
from empathy_webhooks_core.delivery import render_request
from empathy_webhooks_core.plugins import Hooks, build_plugin_manager
from empathy_webhooks_core.testing import FakeClock, ReceivedRequest, Reply
from empathy_webhooks_core.testing.conformance import WebhookConformance, event_strategy

TOKEN = "ghp_FAKEfakeFAKEfake0123456789abcdefABCD"
REPO = "Smart-AI-Memory/empathy"
FAST = {"initial_delay_seconds": 0.001, "max_delay_seconds": 0.01}
WHEN = datetime(2025, 11, 25, 14, 30, tzinfo=UTC)
MARKER = "<!-- empathy-webhooks:review -->"

#: The reference's PR comment, line for line.
REFERENCE_COMMENT = """## 🤖 AI Code Review
### ✅ Looks Good
- Clean code structure
- Comprehensive test coverage
### ⚠️ Suggestions
1. **Line 45**: Consider using context manager for file handling
2. **Line 78**: N+1 query detected, use select_related()
### 🔒 Security
- No security issues detected
Confidence: 92%"""

REVIEW = {
    "pr": 123,
    "looks_good": ["Clean code structure", "Comprehensive test coverage"],
    "suggestions": [
        {"line": 45, "message": "Consider using context manager for file handling"},
        {"line": 78, "message": "N+1 query detected, use select_related()"},
    ],
    "security": [],
    "confidence": 0.92,
}


def expected_comment(text: str = REFERENCE_COMMENT) -> str:
    # One blank line before "Confidence" keeps it out of the last list item when rendered;
    # the marker (invisible) is how the next review finds this comment.
    return text.replace("\nConfidence:", "\n\nConfidence:") + "\n\n" + MARKER


class Successes:
    def __init__(self) -> None:
        self.details: list[dict[str, Any]] = []

    @hookimpl
    def on_success(self, webhook: Any, event: Any, result: Any) -> None:
        self.details.append(dict(result.details))


def manager(*extra: Any) -> Any:
    return build_plugin_manager(load_entry_points=False, extra_plugins=[plugin, *extra])


def webhook(github: Any, **options: Any) -> GitHubWebhook:
    settings_: dict[str, Any] = {
        "token": TOKEN,
        "repository": REPO,
        "api_url": github.url(),
        "retry_policy": FAST,
    }
    settings_.update(options)
    return GitHubWebhook(**settings_)


# -- the review comment ------------------------------------------------------------------------


async def test_a_review_posts_the_reference_comment_on_the_pr(github: Any) -> None:
    seen = Successes()
    hook = webhook(github, events=["code_review_complete"])
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager(seen)) as dispatcher:
        await dispatcher.emit("code_review_complete", REVIEW)
        await dispatcher.drain()
        stats = dispatcher.get_webhook_stats(hook.name)
    listing, create = github.receiver.requests
    assert (listing.method, listing.path, listing.query) == (
        "GET",
        f"/repos/{REPO}/issues/123/comments",
        {"per_page": "100"},
    )
    assert (create.method, create.path, create.answered) == (
        "POST",
        f"/repos/{REPO}/issues/123/comments",
        201,
    )
    assert create.json() == {"body": expected_comment()}
    non_empty = [line for line in create.json()["body"].splitlines() if line]
    assert non_empty == [*REFERENCE_COMMENT.splitlines(), MARKER]
    for request in (listing, create):
        assert request.header("Accept") == "application/vnd.github+json"
        assert request.header("X-GitHub-Api-Version") == "2022-11-28"
        assert request.header("Authorization") == f"Bearer {TOKEN}"
        assert request.header("User-Agent").startswith("empathy-webhooks/")
    [comment] = github.on(123)
    assert seen.details == [
        {
            "created": True,
            "comment_id": comment["id"],
            "comment_url": f"https://github.com/{REPO}/pull/123#issuecomment-{comment['id']}",
            "pr": 123,
        }
    ]
    assert stats["details"] == {"created": 1, "comment_id": 1, "comment_url": 1, "pr": 1}
    assert stats["last_details"] == seen.details[0]


async def test_a_second_review_of_the_pr_updates_the_comment(github: Any) -> None:
    seen = Successes()
    hook = webhook(github)
    github.add_comment(123, "LGTM, one nit")  # someone else's comment stays untouched
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager(seen)) as dispatcher:
        await dispatcher.emit("code_review_complete", REVIEW)
        await dispatcher.drain()
        await dispatcher.emit(
            "code_review_complete", {**REVIEW, "suggestions": [], "confidence": 0.97}
        )
        await dispatcher.drain()
    others, ours = github.on(123)
    assert others["body"] == "LGTM, one nit"
    assert ours["body"] == (
        "## 🤖 AI Code Review\n### ✅ Looks Good\n- Clean code structure\n"
        "- Comprehensive test coverage\n### 🔒 Security\n- No security issues detected\n\n"
        f"Confidence: 97%\n\n{MARKER}"
    )
    assert [(r.method, r.answered) for r in github.receiver.requests] == [
        ("GET", 200),
        ("POST", 201),
        ("GET", 200),
        ("PATCH", 200),
    ]
    assert github.receiver.requests[3].path == f"/repos/{REPO}/issues/comments/{ours['id']}"
    assert seen.details[1]["updated"] is True and seen.details[1]["comment_id"] == ours["id"]


async def test_two_reviews_delivered_together_leave_one_comment(github: Any) -> None:
    hook = webhook(github)
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager()) as dispatcher:
        await asyncio.gather(
            dispatcher.emit("code_review_complete", REVIEW),
            dispatcher.emit("code_review_complete", {**REVIEW, "confidence": 0.5}),
            dispatcher.emit("code_review_complete", {**REVIEW, "pr": 124}),
        )
    assert len(github.on(123)) == 1 and len(github.on(124)) == 1


async def test_the_earlier_comment_is_found_past_the_first_page(github: Any) -> None:
    hook = webhook(github)
    for n in range(100):
        github.add_comment(123, f"chatter {n}")
    github.add_comment(123, f"old review\n\n{MARKER}", login="empathy-bot")
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager()) as dispatcher:
        await dispatcher.emit("code_review_complete", REVIEW)
    assert [(r.method, r.query.get("page")) for r in github.receiver.requests] == [
        ("GET", None),
        ("GET", "2"),
        ("PATCH", None),
    ]
    assert len(github.on(123)) == 101
    assert github.on(123)[-1]["body"] == expected_comment()


async def test_two_different_findings_on_one_pr_never_overwrite_each_other(github: Any) -> None:
    """Issue 15: a comment event other than a review is a finding; its comment is its own."""
    hook = webhook(github, events=["test_failure"], comment_events=["test_failure"])
    first = {"pr": 7, "error": "AssertionError: 41 != 42"}
    second = {"pr": 7, "error": "TimeoutError in test_search"}
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager()) as dispatcher:
        await dispatcher.emit("test_failure", first)
        await dispatcher.drain()
        await dispatcher.emit("test_failure", second)
        await dispatcher.drain()
        # A named failure, reported twice with other words: one comment, updated.
        named = {"pr": 7, "test": "tests/test_cart.py::test_total"}
        await dispatcher.emit("test_failure", {**named, "error": "41 != 42"})
        await dispatcher.drain()
        await dispatcher.emit("test_failure", {**named, "error": "40 != 42"})
    bodies = [comment["body"] for comment in github.on(7)]
    assert len(bodies) == 3
    assert "41 != 42" in bodies[0] and "TimeoutError" in bodies[1] and "40 != 42" in bodies[2]
    assert [r.method for r in github.receiver.requests] == ["GET", "POST"] * 3 + ["GET", "PATCH"]


async def test_with_the_guard_on_no_call_reaches_a_loopback_github(github: Any) -> None:
    """Issue 15, item 13: the comment lookup, the create and a dispatch all go through the
    guarded session."""
    errors: list[DeliveryError] = []
    hook = webhook(
        github,
        block_private_addresses=True,
        dispatch_events=["deployment_risk"],
        retry_policy={**FAST, "max_retries": 3},
        on_failure=lambda webhook, event, error: errors.append(error),
    )
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager()) as dispatcher:
        await dispatcher.emit("code_review_complete", REVIEW)  # list comments, then create
        await dispatcher.emit("deployment_risk", {"service": "payments"})
        await dispatcher.drain()
        dead = await dispatcher.dead_letters()
    assert github.receiver.requests == []
    assert len(errors) == len(dead) == 2
    for error in errors:
        assert error.attempts == 1
        assert error.reason.startswith("BlockedAddressError: refused to connect to 127.0.0.1")
        assert TOKEN not in str(error)


async def test_stacking_comments_can_be_chosen(github: Any) -> None:
    hook = webhook(github, update_comment=False)
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager()) as dispatcher:
        await dispatcher.emit("code_review_complete", REVIEW)
        await dispatcher.drain()
        await dispatcher.emit("code_review_complete", REVIEW)
    assert [r.method for r in github.receiver.requests] == ["POST", "POST"]
    assert [c["body"] for c in github.on(123)] == [
        expected_comment().removesuffix("\n\n" + MARKER)
    ] * 2


async def test_a_body_over_githubs_limit_is_truncated_with_a_note(github: Any) -> None:
    hook = webhook(github)
    huge = [{"line": n, "message": "x" * 1000} for n in range(100)]
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager()) as dispatcher:
        await dispatcher.emit("code_review_complete", {**REVIEW, "suggestions": huge})
    create = github.receiver.requests[-1]
    assert create.answered == 201
    body = create.json()["body"]
    assert len(body) <= 65_536
    assert body.startswith("## 🤖 AI Code Review\n### ✅ Looks Good")
    assert body.endswith(
        "\n\n_… truncated: the full text was longer than GitHub's 65,536-character comment "
        f"limit._\n\n{MARKER}"
    )


@pytest.mark.parametrize(
    ("data", "number"),
    [
        ({"pr": 123}, 123),
        ({"pr_number": "#45"}, 45),
        ({"pull_request": {"number": 7, "title": "x"}}, 7),
        ({"context": {"pr": 9}}, 9),
        ({"pr": True}, None),
        ({}, None),
    ],
)
def test_the_pr_number_is_read_from_the_event(data: dict[str, Any], number: int | None) -> None:
    assert pr_number(Event(event_type="code_review_complete", data=data)) == number


async def test_a_review_that_names_no_pr_fails_saying_so(github: Any) -> None:
    failures: list[DeliveryError] = []
    hook = webhook(github, on_failure=lambda w, e, err: failures.append(err))
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager()) as dispatcher:
        await dispatcher.emit("code_review_complete", {"looks_good": ["ok"]})
    [error] = failures
    assert "names no pull request" in error.reason
    assert github.receiver.requests == []


async def test_an_unknown_pr_is_a_final_failure_with_githubs_message(github: Any) -> None:
    failures: list[DeliveryError] = []
    hook = webhook(github, on_failure=lambda w, e, err: failures.append(err))
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager()) as dispatcher:
        await dispatcher.emit("code_review_complete", {**REVIEW, "pr": 99999})
    [error] = failures
    assert error.status == 404 and error.attempts == 1
    assert error.reason.startswith(f"no such repository, PR or workflow in {REPO}")
    assert error.reason.endswith("(HTTP 404) on listing the PR's comments: Not Found")


async def test_a_bad_token_fails_without_showing_it(github: Any) -> None:
    failures: list[DeliveryError] = []
    wrong = "ghp_wrongwrongwrong000000000000000000"
    hook = webhook(github, token=wrong, on_failure=lambda w, e, err: failures.append(err))
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager()) as dispatcher:
        await dispatcher.emit("code_review_complete", REVIEW)
    [error] = failures
    assert error.status == 401 and "Bad credentials" in error.reason
    assert wrong not in str(error) and wrong not in repr(hook)
    assert wrong in hook.secret_values()


# -- CI/CD triggers ----------------------------------------------------------------------------


async def test_a_configured_event_sends_a_repository_dispatch(github: Any) -> None:
    seen = Successes()
    hook = webhook(github, dispatch_events=["deployment_risk"])
    assert hook.events == ("code_review_complete", "deployment_risk")
    event = Event(
        event_type="deployment_risk",
        data={"service": "payments", "risk_score": 0.72},
        event_id="evt_dispatch1",
        timestamp=WHEN,
        user_id="developer_123",
        empathy_level=4,
        severity="high",
    )
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager(seen)) as dispatcher:
        await dispatcher.emit_event(event)
    [request] = github.receiver.requests
    assert (request.method, request.path, request.answered) == (
        "POST",
        f"/repos/{REPO}/dispatches",
        204,
    )
    assert request.json() == {
        "event_type": "deployment_risk",
        "client_payload": {
            "event_type": "deployment_risk",
            "event_id": "evt_dispatch1",
            "timestamp": "2025-11-25T14:30:00.000Z",
            "user_id": "developer_123",
            "empathy_level": 4,
            "data": {"service": "payments", "risk_score": 0.72},
            "metadata": event.metadata,
            "severity": "high",
        },
    }
    assert request.header("X-GitHub-Api-Version") == "2022-11-28"
    assert seen.details == [{"dispatched": "deployment_risk"}]


async def test_a_named_workflow_gets_a_workflow_dispatch(github: Any) -> None:
    hook = webhook(
        github,
        events=["*"],
        dispatch_events=["test_failure", "deployment_*"],
        workflow="ci.yml",
        workflow_ref="release",
    )
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager()) as dispatcher:
        event = await dispatcher.emit("deployment_risk", {"service": "payments"})
    [request] = github.receiver.requests
    assert request.path == f"/repos/{REPO}/actions/workflows/ci.yml/dispatches"
    body = request.json()
    assert body["ref"] == "release" and list(body["inputs"]) == ["event"]
    assert json.loads(body["inputs"]["event"]) == event.to_envelope()
    assert request.answered == 204 and len(github.workflow_runs) == 1


async def test_a_huge_dispatch_payload_is_cut_to_githubs_limit(github: Any) -> None:
    hook = webhook(github, dispatch_events=["alert"], dispatch_event_type="x" * 150)
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager()) as dispatcher:
        await dispatcher.emit("alert", {"log": "y" * 200_000})
    [request] = github.receiver.requests
    assert request.answered == 204
    assert len(request.body) < 64 * 1024
    body = request.json()
    assert body["event_type"] == "x" * 100
    assert body["client_payload"]["data"]["truncated"] is True


# -- rate limits -------------------------------------------------------------------------------


async def _scheduled(clock: FakeClock) -> None:
    for _ in range(500):
        if clock.sleepers:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no retry was scheduled")


@pytest.mark.parametrize(
    ("kind", "wait", "status"), [("primary", 120, 403), ("secondary", 30, 403), ("429", 60, 429)]
)
async def test_a_rate_limit_makes_the_webhook_wait_then_deliver(
    github: Any, kind: str, wait: int, status: int
) -> None:
    clock = FakeClock()
    github.limits = [kind]
    hook = webhook(github)
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager(), clock=clock) as d:
        await d.emit("code_review_complete", REVIEW)
        await _scheduled(clock)
        assert [r.answered for r in github.receiver.requests] == [status]
        await clock.advance(wait - 5)
        await asyncio.sleep(0.05)
        assert len(github.receiver.requests) == 1, "sent again before the limit lifted"
        await clock.advance(10)
        await d.drain(timeout=5)
        stats = d.get_webhook_stats(hook.name)
    assert [r.answered for r in github.receiver.requests] == [status, 200, 201]
    assert len(github.on(123)) == 1
    assert stats["delivered_count"] == 1 and stats["failed_count"] == 0
    assert stats["last_error"].startswith(f"rate limited by GitHub (HTTP {status})")


async def test_a_plain_403_is_a_final_failure(github: Any) -> None:
    failures: list[DeliveryError] = []
    hook = webhook(github, on_failure=lambda w, e, err: failures.append(err))
    github.receiver.queue(
        Reply(status=403, body={"message": "Resource not accessible by integration"})
    )
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager()) as dispatcher:
        await dispatcher.emit("code_review_complete", REVIEW)
    [error] = failures
    assert error.attempts == 1 and error.status == 403
    assert error.reason == (
        "the token lacks permission (HTTP 403) on listing the PR's comments: "
        "Resource not accessible by integration"
    )


# -- templates, dry runs, configuration --------------------------------------------------------


async def test_templates_override_the_comment_and_the_dispatch(github: Any) -> None:
    hook = webhook(
        github,
        dispatch_events=["alert"],
        templates={
            "code_review_complete": "Reviewed by {user_id}: {data[confidence]}",
            "alert": {"event_type": "empathy-alert", "client_payload": {"metadata": None}},
        },
    )
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager()) as dispatcher:
        await dispatcher.emit("code_review_complete", REVIEW, user_id="dev_1")
        await dispatcher.emit("alert", {"title": "x"})
    assert github.on(123)[0]["body"] == f"Reviewed by dev_1: 0.92\n\n{MARKER}"
    [dispatch] = github.dispatches
    assert dispatch["event_type"] == "empathy-alert"
    assert "metadata" not in dispatch["client_payload"]


def test_a_dry_run_renders_for_github_enterprise_without_sending() -> None:
    hook = GitHubWebhook(token=TOKEN, repository=REPO, api_url="https://ghe.acme.io/api/v3/")
    event = Event(event_type="code_review_complete", data=REVIEW)
    rendered = render_request(hook, event, plugin_manager=manager())
    assert rendered.url == f"https://ghe.acme.io/api/v3/repos/{REPO}/issues/123/comments"
    assert rendered.json_body() == {"body": expected_comment()}
    assert dict(rendered.extras) == {"action": "comment", "pr": 123, "marker": MARKER}
    assert TOKEN not in repr(rendered) and TOKEN not in repr(hook)


def test_configuration_is_checked_at_construction() -> None:
    with pytest.raises(ValueError, match="token is required"):
        GitHubWebhook(token=None, repository=REPO)
    with pytest.raises(ValueError, match="owner/name"):
        GitHubWebhook(token=TOKEN, repository="https://github.com/x/y")
    with pytest.raises(ValueError, match="HTML comment"):
        GitHubWebhook(token=TOKEN, repository=REPO, comment_marker="marker")
    hook = GitHubWebhook(token=TOKEN, repository=REPO)
    assert (hook.name, hook.api_url, hook.events) == (
        "github_webhook",
        "https://api.github.com",
        ("code_review_complete",),
    )


def test_the_entry_point_provides_the_github_type() -> None:
    assert Hooks(build_plugin_manager()).webhook_types()["github"] is GitHubWebhook


# -- the conformance suite ---------------------------------------------------------------------


class TestGitHubDispatchConformance(WebhookConformance):
    """Every event type as a repository_dispatch: one request per delivery."""

    plugin = plugin
    secrets = (TOKEN,)

    def make_webhook(self, url: str) -> GitHubWebhook:
        return GitHubWebhook(
            token=TOKEN,
            repository=REPO,
            api_url=url,
            events=["*"],
            comment_events=(),
            dispatch_events=["*"],
        )

    def success_reply(self, request: ReceivedRequest) -> Reply:
        return Reply(status=204)

    def failure_reply(self, request: ReceivedRequest) -> Reply:
        return Reply(
            status=422,
            body={"message": "Validation Failed", "documentation_url": "https://docs.github.com"},
        )

    def check_limits(self, request: Any, webhook: Any) -> None:
        super().check_limits(request, webhook)
        body = request.json_body()
        assert 1 <= len(body["event_type"]) <= 100
        assert len(body["client_payload"]) <= 10
        assert len(request.body) < 64 * 1024


class TestGitHubCommentConformance(WebhookConformance):
    """Every event type as a PR comment (events name their PR): a list, then a create."""

    plugin = plugin
    secrets = (TOKEN,)
    requests_per_delivery = 2

    def make_webhook(self, url: str) -> GitHubWebhook:
        return GitHubWebhook(
            token=TOKEN, repository=REPO, api_url=url, events=["*"], comment_events=["*"]
        )

    def sample_event(self, event_type: str) -> Event:
        event = super().sample_event(event_type)
        return Event(event_type=event.event_type, data={"pr": 7, **event.data})

    def success_reply(self, request: ReceivedRequest) -> Reply:
        if request.method == "GET":
            return Reply(status=200, body=[])
        return Reply(status=201, body={"id": 1, "html_url": "https://github.com/x/y/pull/7"})

    def failure_reply(self, request: ReceivedRequest) -> Reply:
        return Reply(status=404, body={"message": "Not Found"})

    def check_limits(self, request: Any, webhook: Any) -> None:
        super().check_limits(request, webhook)
        body = request.json_body()["body"]
        assert body.strip() and len(body) <= 65_536
        assert body.endswith("-->")

    def test_renders_minimal_event(self) -> None:
        # A comment needs a PR; an event without one is refused (tested above).
        webhook = self.make_webhook("http://127.0.0.1:9/conformance")
        event = Event(event_type="alert", data={"pr": 1})
        self.check_limits(self._render(webhook, event, self.build_plugin_manager()), webhook)

    def test_generated_events_render_within_limits(self) -> None:
        pm = self.build_plugin_manager()
        webhook = self.make_webhook("http://127.0.0.1:9/conformance")

        @settings(
            max_examples=self.max_examples,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(event=event_strategy(self.huge_text_chars))
        def renders(event: Event) -> None:
            with_pr = Event(
                event_type=event.event_type,
                data={**event.data, "pr": 7},
                severity=event.severity,
                user_id=event.user_id,
            )
            self.check_limits(self._render(webhook, with_pr, pm), webhook)

        renders()
