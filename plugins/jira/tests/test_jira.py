"""Jira through a real dispatcher to a loopback fake of Jira Cloud (see conftest.py)."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime
from typing import Any

import attrs
import empathy_webhooks_jira as plugin
import pytest
from empathy_webhooks_jira import JiraWebhook, fingerprint

from empathy_webhooks_core import DeliveryError, Event, WebhookDispatcher, hookimpl
from empathy_webhooks_core.delivery import render_request
from empathy_webhooks_core.plugins import Hooks, build_plugin_manager
from empathy_webhooks_core.testing import ReceivedRequest, Reply
from empathy_webhooks_core.testing.conformance import WebhookConformance

EMAIL = "bot@acme.io"
TOKEN = "ATATT3xFfGF0-jira-api-token-123456"
PAT = "NjA1ODY3-datacenter-pat-abcdef"
FAST = {"initial_delay_seconds": 0.001, "max_delay_seconds": 0.01}
WHEN = datetime(2025, 11, 25, 14, 30, tzinfo=UTC)
BASIC = "Basic " + base64.b64encode(f"{EMAIL}:{TOKEN}".encode()).decode()

SQL_INJECTION = {
    "title": "SQL injection",
    "file": "auth.py",
    "line": 45,
    "issue": "User input concatenated directly into SQL query",
    "fix": 'Use parameterized queries: cursor.execute("SELECT * FROM users WHERE id = %s", '
    "(user_id,))",
}


def strong(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text, "marks": [{"type": "strong"}]}


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


#: The reference's "JIRA Ticket Format", in valid ADF: bold labels, the fix as a code block,
#: line breaks as hardBreak nodes, and the fingerprint label that makes it findable again.
REFERENCE_TICKET = {
    "fields": {
        "project": {"key": "EMP"},
        "summary": "[AI Detected] SQL injection in auth.py:45",
        "description": {
            "version": 1,
            "type": "doc",
            "content": [
                {
                    "type": "paragraph",
                    "content": [
                        text("Empathy Framework detected a potential SQL injection vulnerability:")
                    ],
                },
                {
                    "type": "paragraph",
                    "content": [
                        strong("File: "),
                        text("auth.py:45"),
                        {"type": "hardBreak"},
                        strong("Issue: "),
                        text("User input concatenated directly into SQL query"),
                    ],
                },
                {"type": "paragraph", "content": [strong("Recommended Fix:")]},
                {
                    "type": "codeBlock",
                    "content": [
                        text(
                            'Use parameterized queries: cursor.execute("SELECT * FROM users '
                            'WHERE id = %s", (user_id,))'
                        )
                    ],
                },
            ],
        },
        "issuetype": {"name": "Bug"},
        "priority": {"name": "High"},
        "labels": ["ai-detected", "security", "sql-injection", "empathy-fp-4a66462834d255e2"],
    }
}


class Successes:
    """A plugin keeping what `on_success` is told."""

    def __init__(self) -> None:
        self.details: list[dict[str, Any]] = []

    @hookimpl
    def on_success(self, webhook: Any, event: Any, result: Any) -> None:
        self.details.append(dict(result.details))


def manager(*extra: Any) -> Any:
    return build_plugin_manager(load_entry_points=False, extra_plugins=[plugin, *extra])


def webhook(jira: Any, **options: Any) -> JiraWebhook:
    settings: dict[str, Any] = {
        "url": jira.url(),
        "email": EMAIL,
        "api_token": TOKEN,
        "project": "EMP",
        "issue_type": "Bug",
        "events": ["bug_detected", "security_vulnerability"],
        "retry_policy": FAST,
    }
    settings.update(options)
    return JiraWebhook(**settings)


def finding(**data: Any) -> Event:
    return Event(
        event_type="security_vulnerability", data={**SQL_INJECTION, **data}, timestamp=WHEN
    )


# -- the reference's ticket --------------------------------------------------------------------


async def test_the_reference_ticket_is_searched_for_then_created(jira: Any) -> None:
    seen = Successes()
    hook = webhook(jira)
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager(seen)) as dispatcher:
        event = await dispatcher.emit("security_vulnerability", SQL_INJECTION, severity="high")
        await dispatcher.drain()
        stats = dispatcher.get_webhook_stats(hook.name)
    search, create = jira.receiver.requests
    assert (search.method, search.path) == ("POST", "/rest/api/3/search/jql")
    assert search.json() == {
        "jql": 'project = "EMP" AND labels = "empathy-fp-4a66462834d255e2" '
        "AND statusCategory != Done ORDER BY created ASC",
        "fields": ["summary", "status"],
        "maxResults": 1,
    }
    assert (create.method, create.path, create.answered) == ("POST", "/rest/api/3/issue", 201)
    assert create.json() == REFERENCE_TICKET
    for request in (search, create):
        assert request.header("Authorization") == BASIC
        assert request.header("Accept") == "application/json"
        assert request.header("Content-Type") == "application/json"
        assert request.header("User-Agent").startswith("empathy-webhooks/")
    assert seen.details == [
        {
            "jira_key": "EMP-1",
            "jira_id": "10001",
            "created": True,
            "jira_url": f"{jira.url()}/browse/EMP-1",
        }
    ]
    assert stats["delivered_count"] == 1
    assert stats["details"] == {"jira_key": 1, "jira_id": 1, "created": 1, "jira_url": 1}
    assert stats["last_details"] == seen.details[0]  # the created key, in the stats too
    assert fingerprint(event) == "empathy-fp-4a66462834d255e2"


async def test_a_bug_gets_its_own_intro_priority_and_assignee(jira: Any) -> None:
    hook = webhook(jira, labels=["ai-detected", "team backend"])
    data = {
        "title": "Null dereference",
        "file": "src/cart.py",
        "line": 118,
        "description": "cart.owner may be None\nwhen the session expired",
        "assignee_account_id": "5b10ac8d82e05b22cc7d4ef5",
        "labels": ["needs triage", "cart"],
    }
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager()) as dispatcher:
        await dispatcher.emit("bug_detected", data, severity="critical")
    fields = jira.creates[0].json()["fields"]
    assert fields["summary"] == "[AI Detected] Null dereference in src/cart.py:118"
    assert fields["priority"] == {"name": "Highest"}
    assert fields["assignee"] == {"accountId": "5b10ac8d82e05b22cc7d4ef5"}
    assert fields["labels"][:-1] == [
        "ai-detected",
        "team-backend",
        "bug",
        "null-dereference",
        "needs-triage",
        "cart",
    ]
    assert fields["labels"][-1].startswith("empathy-fp-")
    assert fields["description"]["content"] == [
        {
            "type": "paragraph",
            "content": [text("Empathy Framework detected a potential bug: Null dereference")],
        },
        {
            "type": "paragraph",
            "content": [
                strong("File: "),
                text("src/cart.py:118"),
                {"type": "hardBreak"},
                strong("Issue: "),
                text("cart.owner may be None"),
                {"type": "hardBreak"},
                text("when the session expired"),
            ],
        },
    ]
    assert jira.creates[0].answered == 201


@pytest.mark.parametrize(
    ("severity", "expected"),
    [
        ("critical", "Highest"),
        ("high", "High"),
        ("medium", "Medium"),
        ("low", "Low"),
        ("info", "Lowest"),
    ],
)
def test_priority_follows_severity(severity: str, expected: str) -> None:
    hook = JiraWebhook(url="https://acme.atlassian.net", api_token=TOKEN, project="EMP")
    body = render_request(hook, finding(), plugin_manager=manager())
    assert body.json_body()["fields"]["priority"] == {"name": "High"}
    event = attrs.evolve(finding(), severity=severity)
    assert render_request(hook, event, plugin_manager=manager()).json_body()["fields"][
        "priority"
    ] == {"name": expected}


def test_priorities_are_configurable_and_can_be_left_to_jira() -> None:
    hook = JiraWebhook(
        url="https://acme.atlassian.net",
        api_token=TOKEN,
        project="EMP",
        priorities={"high": "P1", "medium": None},
    )
    high = render_request(hook, finding(), plugin_manager=manager()).json_body()["fields"]
    assert high["priority"] == {"name": "P1"}
    medium = render_request(
        hook, attrs.evolve(finding(), severity="medium"), plugin_manager=manager()
    ).json_body()["fields"]
    assert "priority" not in medium
    with pytest.raises(ValueError, match="priorities keys are severities"):
        JiraWebhook(
            url="https://x.atlassian.net", api_token=TOKEN, project="E", priorities={"urgent": "P0"}
        )


async def test_a_huge_title_is_cut_to_jiras_summary_limit_and_accepted(jira: Any) -> None:
    hook = webhook(jira)
    title = "Injection " * 100
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager()) as dispatcher:
        await dispatcher.emit(
            "bug_detected", {"title": title, "file": "a.py", "line": 1, "fix": "x" * 60_000}
        )
    [create] = jira.creates
    fields = create.json()["fields"]
    assert 250 <= len(fields["summary"]) <= 255
    assert fields["summary"].startswith("[AI Detected] Injection Injection")
    assert fields["summary"].endswith("…")
    assert len(json.dumps(fields["description"], ensure_ascii=False)) <= 32_767
    assert create.answered == 201


# -- no duplicate tickets ----------------------------------------------------------------------


async def test_the_same_finding_emitted_twice_makes_one_ticket(jira: Any) -> None:
    seen = Successes()
    hook = webhook(jira)
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager(seen)) as dispatcher:
        await dispatcher.emit("security_vulnerability", SQL_INJECTION)
        await dispatcher.drain()
        # The same finding, reported again in other words.
        await dispatcher.emit(
            "security_vulnerability", {**SQL_INJECTION, "issue": "Still concatenating input"}
        )
        await dispatcher.drain()
        stats = dispatcher.get_webhook_stats(hook.name)
    assert len(jira.issues) == 1
    assert [r.path for r in jira.receiver.requests] == [
        "/rest/api/3/search/jql",
        "/rest/api/3/issue",
        "/rest/api/3/search/jql",
    ]
    assert seen.details[1] == {
        "jira_key": "EMP-1",
        "jira_id": "10001",
        "deduplicated": True,
        "jira_url": f"{jira.url()}/browse/EMP-1",
    }
    assert stats["details"]["deduplicated"] == 1 and stats["details"]["created"] == 1
    assert stats["last_details"]["jira_key"] == "EMP-1"
    assert stats["last_details"]["deduplicated"] is True


async def test_two_different_findings_are_never_merged_into_one_ticket(jira: Any) -> None:
    """Findings named only by their text, in one file, by rule ids, or by nothing at all are
    each a ticket of their own; the same finding again is still deduplicated."""
    hook = webhook(jira)
    pairs = [
        (
            {"file": "auth.py", "issue": "Password compared in plain text"},
            {"file": "auth.py", "issue": "Session token logged"},
        ),
        (
            {"file": "auth.py", "line": 3, "rule_id": "B105"},
            {"file": "auth.py", "line": 3, "rule_id": "B106"},
        ),
        ({"error": "KeyError in checkout"}, {"error": "Timeout in search"}),
        ({}, {}),
    ]
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager()) as dispatcher:
        for first, second in pairs:
            await dispatcher.emit("bug_detected", first)
            await dispatcher.drain()
            await dispatcher.emit("bug_detected", second)
            await dispatcher.drain()
        await dispatcher.emit("bug_detected", pairs[0][0])  # a finding reported again
        await dispatcher.drain()
        stats = dispatcher.get_webhook_stats(hook.name)
    assert len(jira.issues) == 8
    labels = [create.json()["fields"]["labels"][-1] for create in jira.creates]
    assert len(set(labels)) == 8
    assert stats["details"]["created"] == 8 and stats["details"]["deduplicated"] == 1


async def test_the_same_finding_emitted_twice_at_once_makes_one_ticket(jira: Any) -> None:
    hook = webhook(jira)
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager()) as dispatcher:
        await asyncio.gather(
            dispatcher.emit("security_vulnerability", SQL_INJECTION),
            dispatcher.emit("security_vulnerability", SQL_INJECTION),
            dispatcher.emit("security_vulnerability", {**SQL_INJECTION, "line": 46}),
        )
    assert [i["key"] for i in jira.issues] == ["EMP-1", "EMP-2"]
    assert [i["fields"]["summary"] for i in jira.issues] == [
        "[AI Detected] SQL injection in auth.py:45",
        "[AI Detected] SQL injection in auth.py:46",
    ]


async def test_a_timeout_after_jira_created_the_issue_then_a_retry_makes_one_ticket(
    jira: Any,
) -> None:
    seen = Successes()
    hook = webhook(jira, retry_policy={**FAST, "timeout_seconds": 0.2})
    jira.stall_next_create = 0.6  # created, but the answer comes after the client gave up
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager(seen)) as dispatcher:
        await dispatcher.emit("security_vulnerability", SQL_INJECTION)
        await dispatcher.drain()
        stats = dispatcher.get_webhook_stats(hook.name)
    assert len(jira.issues) == 1
    assert [(r.path, r.answered) for r in jira.receiver.requests] == [
        ("/rest/api/3/search/jql", 200),
        ("/rest/api/3/issue", None),
        ("/rest/api/3/search/jql", 200),
    ]
    assert seen.details == [
        {
            "jira_key": "EMP-1",
            "jira_id": "10001",
            "deduplicated": True,
            "jira_url": f"{jira.url()}/browse/EMP-1",
        }
    ]
    assert (stats["attempts"], stats["retries"], stats["delivered_count"]) == (2, 1, 1)
    assert "TimeoutError" in stats["last_error"]


async def test_with_the_guard_on_neither_search_nor_create_reaches_a_loopback_jira(
    jira: Any,
) -> None:
    """Issue 15, item 13: every call of a delivery goes through the guarded session."""
    errors: list[DeliveryError] = []
    hook = webhook(
        jira,
        block_private_addresses=True,
        retry_policy={**FAST, "max_retries": 3},
        on_failure=lambda webhook, event, error: errors.append(error),
    )
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager()) as dispatcher:
        await dispatcher.emit("security_vulnerability", SQL_INJECTION)  # search, then create
        await dispatcher.emit("bug_detected", SQL_INJECTION)
        await dispatcher.drain()
        dead = await dispatcher.dead_letters()
    assert jira.receiver.requests == []
    assert len(errors) == len(dead) == 2
    for error in errors:
        assert error.attempts == 1
        assert error.reason.startswith("BlockedAddressError: refused to connect to 127.0.0.1")
        assert TOKEN not in str(error)


async def test_a_finding_whose_ticket_is_done_is_ticketed_again(jira: Any) -> None:
    hook = webhook(jira)
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager()) as dispatcher:
        await dispatcher.emit("security_vulnerability", SQL_INJECTION)
        await dispatcher.drain()
        jira.close("EMP-1")
        await dispatcher.emit("security_vulnerability", SQL_INJECTION)
    assert [i["key"] for i in jira.issues] == ["EMP-1", "EMP-2"]


async def test_deduplication_can_be_turned_off(jira: Any) -> None:
    hook = webhook(jira, deduplicate=False)
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager()) as dispatcher:
        await dispatcher.emit("security_vulnerability", SQL_INJECTION)
        await dispatcher.drain()
        await dispatcher.emit("security_vulnerability", SQL_INJECTION)
    assert [r.path for r in jira.receiver.requests] == ["/rest/api/3/issue"] * 2
    assert not any(
        label.startswith("empathy-fp-") for label in jira.creates[0].json()["fields"]["labels"]
    )


# -- auth, Data Center, errors -----------------------------------------------------------------


async def test_data_center_uses_a_bearer_token_and_api_v2(jira: Any) -> None:
    hook = webhook(jira, email=None, api_token=PAT, api_version=2)
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager()) as dispatcher:
        await dispatcher.emit("security_vulnerability", SQL_INJECTION, severity="high")
    search, create = jira.receiver.requests
    assert (search.path, create.path) == ("/rest/api/2/search", "/rest/api/2/issue")
    assert create.header("Authorization") == f"Bearer {PAT}"
    assert create.answered == 201
    assert create.json()["fields"]["description"] == (
        "Empathy Framework detected a potential SQL injection vulnerability:\n\n"
        "*File:* auth.py:45\n"
        "*Issue:* User input concatenated directly into SQL query\n\n"
        "*Recommended Fix:*\n{noformat}\n"
        'Use parameterized queries: cursor.execute("SELECT * FROM users WHERE id = %s", '
        "(user_id,))\n{noformat}"
    )


async def test_jiras_validation_errors_are_a_final_failure_with_its_message(jira: Any) -> None:
    failures: list[DeliveryError] = []
    hook = webhook(jira, issue_type="Epic Saga", on_failure=lambda w, e, err: failures.append(err))
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager()) as dispatcher:
        await dispatcher.emit("security_vulnerability", SQL_INJECTION)
        await dispatcher.drain()
        dead = await dispatcher.dead_letters()
    [error] = failures
    assert error.status == 400 and error.attempts == 1
    assert (
        error.reason == "Jira refused the issue (HTTP 400): issuetype: Specify a valid issue type"
    )
    assert len(dead) == 1


async def test_a_wrong_token_is_a_final_failure_that_never_shows_the_token(jira: Any) -> None:
    failures: list[DeliveryError] = []
    wrong = "ATATT-wrong-token-99999"
    hook = webhook(jira, api_token=wrong, on_failure=lambda w, e, err: failures.append(err))
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager()) as dispatcher:
        await dispatcher.emit("bug_detected", {"title": "x"})
    [error] = failures
    assert error.status == 401 and error.attempts == 1
    assert "credentials" in error.reason
    assert jira.issues == []
    assert wrong not in repr(hook) and wrong not in str(error)
    assert wrong in hook.secret_values()
    assert hook.authorization.partition(" ")[2] in hook.secret_values()


async def test_a_rate_limit_is_waited_out_then_delivered(jira: Any) -> None:
    jira.rate_limited = 2
    hook = webhook(jira)
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager()) as dispatcher:
        await dispatcher.emit("security_vulnerability", SQL_INJECTION)
        await dispatcher.drain()
        stats = dispatcher.get_webhook_stats(hook.name)
    assert [r.answered for r in jira.receiver.requests] == [429, 429, 200, 201]
    assert len(jira.issues) == 1
    assert stats["retries"] == 2 and stats["delivered_count"] == 1


# -- templates and dry runs --------------------------------------------------------------------


async def test_templates_override_the_body_without_subclassing(jira: Any) -> None:
    hook = webhook(
        jira,
        templates={
            "bug_detected": "{data[title]} found by {user_id}\n\nPlease look.",
            "security_vulnerability": {
                "fields": {"labels": ["sec ops"], "priority": None, "components": [{"name": "api"}]}
            },
        },
    )
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager()) as dispatcher:
        await dispatcher.emit("bug_detected", {"title": "Leak"}, user_id="dev_1")
        await dispatcher.emit("security_vulnerability", SQL_INJECTION)
    bug, vuln = (r.json()["fields"] for r in jira.creates)
    assert bug["description"] == {
        "version": 1,
        "type": "doc",
        "content": [
            {"type": "paragraph", "content": [text("Leak found by dev_1")]},
            {"type": "paragraph", "content": [text("Please look.")]},
        ],
    }
    assert vuln["labels"] == ["sec-ops", "empathy-fp-4a66462834d255e2"]
    assert "priority" not in vuln and vuln["components"] == [{"name": "api"}]
    assert [r.answered for r in jira.creates] == [201, 201]


async def test_a_dry_run_renders_the_create_request_and_sends_nothing(jira: Any) -> None:
    hook = webhook(jira)
    event = finding()
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager()) as dispatcher:
        rendered = dispatcher.render(hook, event)
    assert rendered.url == f"{jira.url()}/rest/api/3/issue"
    assert rendered.json_body() == REFERENCE_TICKET
    assert rendered.extras["fingerprint"] == "empathy-fp-4a66462834d255e2"
    assert render_request(hook, event, plugin_manager=manager()).body == rendered.body
    assert "Authorization': '***'" in repr(rendered) and TOKEN not in repr(rendered)
    assert jira.receiver.requests == []


def test_configuration_is_checked_at_construction() -> None:
    with pytest.raises(ValueError, match="api_token is required"):
        JiraWebhook(url="https://acme.atlassian.net", api_token=None, project="EMP")
    with pytest.raises(ValueError, match="url must be an http"):
        JiraWebhook(url="acme.atlassian.net", api_token=TOKEN, project="EMP")
    with pytest.raises(ValueError, match="api_version"):
        JiraWebhook(url="https://a.atlassian.net", api_token=TOKEN, project="E", api_version=4)
    hook = JiraWebhook(url="https://acme.atlassian.net/", api_token=TOKEN, project="EMP")
    assert hook.events == ("bug_detected", "security_vulnerability")
    assert hook.name == "jira_webhook"
    assert TOKEN not in repr(hook)


def test_the_entry_point_provides_the_jira_type() -> None:
    types = Hooks(build_plugin_manager()).webhook_types()
    assert types["jira"] is JiraWebhook


# -- the conformance suite ---------------------------------------------------------------------


class TestJiraConformance(WebhookConformance):
    plugin = plugin
    secrets = (TOKEN,)
    requests_per_delivery = 2  # the duplicate search, then the create

    def make_webhook(self, url: str) -> JiraWebhook:
        return JiraWebhook(url=url, email=EMAIL, api_token=TOKEN, project="EMP", events=["*"])

    def success_reply(self, request: ReceivedRequest) -> Reply:
        if request.path.endswith("/search/jql"):
            return Reply(status=200, body={"issues": [], "isLast": True})
        return Reply(status=201, body={"id": "10001", "key": "EMP-1", "self": "x"})

    def failure_reply(self, request: ReceivedRequest) -> Reply:
        return Reply(
            status=400,
            body={"errorMessages": [], "errors": {"project": "valid project is required"}},
        )

    def check_limits(self, request: Any, webhook: Any) -> None:
        super().check_limits(request, webhook)
        fields = request.json_body()["fields"]
        assert 0 < len(fields["summary"]) <= 255 and "\n" not in fields["summary"]
        assert len(json.dumps(fields["description"], ensure_ascii=False)) <= 32_767
        assert all(label and not any(c.isspace() for c in label) for label in fields["labels"])
        assert fields["labels"][-1].startswith("empathy-fp-")
