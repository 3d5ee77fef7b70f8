"""Jira through a real dispatcher to a loopback fake of Jira Cloud (see conftest.py)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import socket
from datetime import UTC, datetime
from typing import Any

import aiohttp
import aiohttp.abc
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
ALICE_ID = "5b10ac8d82e05b22cc7d4ef5"
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
    assert jira.calls() == [
        "POST /rest/api/3/search/jql",
        # The create screen's fields, read once per webhook: priority is sent only if there.
        "GET /rest/api/3/issue/createmeta/EMP/issuetypes",
        "GET /rest/api/3/issue/createmeta/EMP/issuetypes/10001",
        "POST /rest/api/3/issue",
    ]
    search, types, fields, create = jira.receiver.requests
    assert (search.method, search.path) == ("POST", "/rest/api/3/search/jql")
    assert search.json() == {
        "jql": 'project = "EMP" AND labels = "empathy-fp-4a66462834d255e2" '
        "AND statusCategory != Done ORDER BY created ASC",
        "fields": ["summary", "status"],
        "maxResults": 1,
    }
    assert (create.method, create.path, create.answered) == ("POST", "/rest/api/3/issue", 201)
    assert create.json() == REFERENCE_TICKET
    for request in (search, types, fields, create):
        assert request.header("Authorization") == BASIC
        assert request.header("Accept") == "application/json"
        assert request.header("User-Agent").startswith("empathy-webhooks/")
    assert search.header("Content-Type") == create.header("Content-Type") == "application/json"
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
    hook = JiraWebhook(
        url="https://acme.atlassian.net", email=EMAIL, api_token=TOKEN, project="EMP"
    )
    body = render_request(hook, finding(), plugin_manager=manager())
    assert body.json_body()["fields"]["priority"] == {"name": "High"}
    event = attrs.evolve(finding(), severity=severity)
    assert render_request(hook, event, plugin_manager=manager()).json_body()["fields"][
        "priority"
    ] == {"name": expected}


def test_priorities_are_configurable_and_can_be_left_to_jira() -> None:
    hook = JiraWebhook(
        url="https://acme.atlassian.net",
        email=EMAIL,
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
            url="https://x.atlassian.net",
            email=EMAIL,
            api_token=TOKEN,
            project="E",
            priorities={"urgent": "P0"},
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
    assert jira.calls() == [
        "POST /rest/api/3/search/jql",
        "GET /rest/api/3/issue/createmeta/EMP/issuetypes",
        "GET /rest/api/3/issue/createmeta/EMP/issuetypes/10001",
        "POST /rest/api/3/issue",
        "POST /rest/api/3/search/jql",
        # The second report is a comment on the open ticket, not a second ticket.
        "POST /rest/api/3/issue/EMP-1/comment",
    ]
    assert seen.details[1] == {
        "jira_key": "EMP-1",
        "jira_id": "10001",
        "deduplicated": True,
        "commented": True,
        "jira_url": f"{jira.url()}/browse/EMP-1",
    }
    [comment] = jira.issue("EMP-1")["comments"]
    assert (comment["type"], comment["version"]) == ("doc", 1)  # ADF, as v3 requires
    said = [paragraph["content"][0]["text"] for paragraph in comment["content"]]
    assert said[0].startswith("Empathy Framework reported this finding again (")
    assert said[0].endswith(" UTC): SQL injection in auth.py:45")
    assert said[1:] == ["Still concatenating input"]
    assert stats["details"]["deduplicated"] == 1 and stats["details"]["created"] == 1
    assert stats["details"]["commented"] == 1
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
        ("/rest/api/3/issue/createmeta/EMP/issuetypes", 200),
        ("/rest/api/3/issue/createmeta/EMP/issuetypes/10001", 200),
        ("/rest/api/3/issue", None),
        ("/rest/api/3/search/jql", 200),
    ]
    assert jira.issue("EMP-1")["comments"] == []  # its own ticket: nothing "again" to say
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
    assert jira.calls() == [
        "GET /rest/api/3/issue/createmeta/EMP/issuetypes",
        "GET /rest/api/3/issue/createmeta/EMP/issuetypes/10001",
        "POST /rest/api/3/issue",
        "POST /rest/api/3/issue",
    ]
    assert not any(
        label.startswith("empathy-fp-") for label in jira.creates[0].json()["fields"]["labels"]
    )


# -- auth, Data Center, errors -----------------------------------------------------------------


async def test_data_center_uses_a_bearer_token_and_api_v2(jira: Any) -> None:
    jira.cloud = False
    hook = webhook(jira, email=None, auth="bearer", api_token=PAT, api_version=2)
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager()) as dispatcher:
        await dispatcher.emit("security_vulnerability", SQL_INJECTION, severity="high")
    assert jira.calls() == [
        "POST /rest/api/2/search",
        "GET /rest/api/2/issue/createmeta/EMP/issuetypes",  # Data Center pages as `values`
        "GET /rest/api/2/issue/createmeta/EMP/issuetypes/10001",
        "POST /rest/api/2/issue",
    ]
    create = jira.creates[0]
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
    assert [r.answered for r in jira.receiver.requests] == [429, 429, 200, 200, 200, 201]
    assert len(jira.issues) == 1
    assert stats["retries"] == 2 and stats["delivered_count"] == 1


# -- templates and dry runs --------------------------------------------------------------------


async def test_templates_override_the_body_without_subclassing(jira: Any) -> None:
    jira.screen.add("components")
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
        JiraWebhook(url="https://acme.atlassian.net", email=EMAIL, api_token=None, project="EMP")
    with pytest.raises(ValueError, match="url must be an http"):
        JiraWebhook(url="acme.atlassian.net", email=EMAIL, api_token=TOKEN, project="EMP")
    with pytest.raises(ValueError, match="api_version"):
        JiraWebhook(
            url="https://a.atlassian.net", email=EMAIL, api_token=TOKEN, project="E", api_version=4
        )
    hook = JiraWebhook(
        url="https://acme.atlassian.net/", email=EMAIL, api_token=TOKEN, project="EMP"
    )
    assert hook.events == (
        "bug_detected",
        "security_vulnerability",
        "bug_detected_resolved",
        "security_vulnerability_resolved",
    )
    assert hook.name == "jira_webhook"
    assert TOKEN not in repr(hook)


def test_the_entry_point_provides_the_jira_type() -> None:
    types = Hooks(build_plugin_manager()).webhook_types()
    assert types["jira"] is JiraWebhook


# -- Jira Cloud authentication ----------------------------------------------------------------


class _ToLoopback(aiohttp.abc.AbstractResolver):
    """Resolves every host to 127.0.0.1, so a real `*.atlassian.net` URL reaches the fake."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[dict[str, Any]]:
        return [
            {
                "hostname": host,
                "host": "127.0.0.1",
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        return None


async def test_the_reference_snippet_works_as_written_with_jira_email_in_the_environment(
    jira: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reference's `JiraWebhook(url=..., api_token=..., project=..., issue_type=...,
    events=...)` has no email: read from JIRA_EMAIL, as its URL and token are read from theirs."""
    monkeypatch.setenv("JIRA_URL", jira.url())
    monkeypatch.setenv("JIRA_API_TOKEN", TOKEN)
    monkeypatch.setenv("JIRA_EMAIL", EMAIL)
    jira_hook = JiraWebhook(
        url=os.getenv("JIRA_URL"),
        api_token=os.getenv("JIRA_API_TOKEN"),
        project="EMP",
        issue_type="Bug",
        events=["bug_detected", "security_vulnerability"],
    )
    assert jira_hook.email == EMAIL
    async with WebhookDispatcher(webhooks=[jira_hook], plugin_manager=manager()) as dispatcher:
        await dispatcher.emit("bug_detected", {"title": "Null dereference", "file": "cart.py"})
        await dispatcher.drain()
    [create] = jira.creates
    assert create.header("Authorization") == BASIC
    assert create.json()["fields"]["summary"].endswith("Null dereference in cart.py")
    # A Data Center personal access token never takes the environment's email.
    bearer = JiraWebhook(url=jira.url(), api_token=PAT, auth="bearer", project="EMP")
    assert (bearer.email, bearer.authorization) == (None, f"Bearer {PAT}")


def test_a_cloud_site_needs_the_accounts_email_and_never_a_bearer_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("JIRA_EMAIL", raising=False)
    with pytest.raises(ValueError) as refused:
        JiraWebhook(url="https://acme.atlassian.net", api_token=TOKEN, project="EMP")
    assert str(refused.value) == (
        "Jira Cloud (acme.atlassian.net) takes an API token only with the Atlassian account's "
        "email (Basic auth): set email, or JIRA_EMAIL in the environment"
    )
    with pytest.raises(ValueError, match=r"does not take API tokens as Bearer") as bearer:
        JiraWebhook(url="https://acme.atlassian.net", auth="bearer", api_token=TOKEN, project="E")
    with pytest.raises(ValueError, match=r'personal access token set auth="bearer"') as other:
        JiraWebhook(url="https://jira.acme.io", api_token=PAT, project="EMP")
    with pytest.raises(ValueError, match="email is for Basic auth"):
        JiraWebhook(
            url="https://jira.acme.io", auth="bearer", email=EMAIL, api_token=PAT, project="E"
        )
    with pytest.raises(ValueError, match="auth must be 'basic'"):
        JiraWebhook(
            url="https://jira.acme.io", auth="token", email=EMAIL, api_token=PAT, project="E"
        )
    for error in (refused.value, bearer.value, other.value):
        assert TOKEN not in str(error) and PAT not in str(error)
    cloud = JiraWebhook(url="https://acme.atlassian.net", email=EMAIL, api_token=TOKEN, project="E")
    assert cloud.is_cloud and cloud.authorization == BASIC
    center = JiraWebhook(url="https://jira.acme.io", auth="bearer", api_token=PAT, project="E")
    assert not center.is_cloud and center.authorization == f"Bearer {PAT}"


async def test_a_cloud_site_gets_the_api_token_as_basic_email_token(jira: Any) -> None:
    """The real site name, resolved to the loopback fake: Basic auth on every call."""
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=_ToLoopback()))
    port = jira.url().rsplit(":", 1)[1]
    hook = webhook(jira, url=f"http://acme.atlassian.net:{port}")
    assert hook.is_cloud
    try:
        async with WebhookDispatcher(
            webhooks=[hook], plugin_manager=manager(), session=session
        ) as dispatcher:
            await dispatcher.emit("security_vulnerability", SQL_INJECTION)
            await dispatcher.drain()
            stats = dispatcher.get_webhook_stats(hook.name)
    finally:
        await session.close()
    assert stats["delivered_count"] == 1
    assert {r.header("Host") for r in jira.receiver.requests} == {f"acme.atlassian.net:{port}"}
    assert {r.header("Authorization") for r in jira.receiver.requests} == {BASIC}
    assert [i["key"] for i in jira.issues] == ["EMP-1"]


async def test_jira_cloud_refuses_a_bearer_api_token_and_the_reason_says_why(jira: Any) -> None:
    failures: list[DeliveryError] = []
    hook = webhook(
        jira, email=None, auth="bearer", on_failure=lambda w, e, err: failures.append(err)
    )
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager()) as dispatcher:
        await dispatcher.emit("security_vulnerability", SQL_INJECTION)
    [error] = failures
    assert jira.receiver.requests[0].header("Authorization") == f"Bearer {TOKEN}"
    assert (error.status, error.attempts) == (401, 1)
    assert error.reason == (
        "Jira refused the credentials (HTTP 401): Jira Cloud takes an API token only with the "
        "account's email (Basic auth: set email); Jira Data Center a personal access token "
        'with auth="bearer"'
    )
    assert TOKEN not in str(error) and jira.issues == []


# -- assignees ---------------------------------------------------------------------------------


async def test_an_email_assignee_is_looked_up_once_for_two_tickets(jira: Any) -> None:
    seen = Successes()
    hook = webhook(jira, assignee="alice@acme.io")
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager(seen)) as dispatcher:
        await dispatcher.emit("security_vulnerability", SQL_INJECTION)
        await dispatcher.drain()
        # A second finding, its owner given in the event in another case: the cache answers.
        await dispatcher.emit(
            "bug_detected", {"title": "Leak", "owner": {"email": "ALICE@acme.io"}}
        )
        await dispatcher.drain()
    lookups = [r for r in jira.receiver.requests if r.path == "/rest/api/3/user/search"]
    assert [dict(r.query) for r in lookups] == [{"query": "alice@acme.io", "maxResults": "20"}]
    assert [c.json()["fields"]["assignee"] for c in jira.creates] == [
        {"accountId": ALICE_ID},
        {"accountId": ALICE_ID},
    ]
    assert [c.answered for c in jira.creates] == [201, 201]
    assert sum("createmeta" in call for call in jira.calls()) == 2  # read once, not per ticket
    assert all("assignee_unresolved" not in details for details in seen.details)


async def test_two_tickets_for_one_owner_delivered_at_once_share_one_lookup(jira: Any) -> None:
    hook = webhook(jira, assignee="alice@acme.io")
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager()) as dispatcher:
        await asyncio.gather(
            dispatcher.emit("bug_detected", {"title": "Leak"}),
            dispatcher.emit("bug_detected", {"title": "Race"}),
        )
        await dispatcher.drain()
    assert jira.calls().count("GET /rest/api/3/user/search") == 1
    assert sum("createmeta" in call for call in jira.calls()) == 2
    assert [c.json()["fields"]["assignee"] for c in jira.creates] == [{"accountId": ALICE_ID}] * 2


async def test_an_email_hidden_by_profile_visibility_still_finds_its_only_match(
    jira: Any,
) -> None:
    jira.users[0]["hide_email"] = True
    hook = webhook(jira, assignee="alice@acme.io")
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager()) as dispatcher:
        await dispatcher.emit("bug_detected", {"title": "Leak"})
    assert jira.creates[0].json()["fields"]["assignee"] == {"accountId": ALICE_ID}


async def test_an_assignee_nobody_matches_gets_an_unassigned_ticket_and_a_comment(
    jira: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="empathy_webhooks")
    seen = Successes()
    hook = webhook(jira, assignee="bob@acme.io")
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager(seen)) as dispatcher:
        await dispatcher.emit("security_vulnerability", SQL_INJECTION)
        await dispatcher.drain()
        stats = dispatcher.get_webhook_stats(hook.name)
    [create] = jira.creates
    assert create.answered == 201 and "assignee" not in create.json()["fields"]
    assert jira.calls()[-1] == "POST /rest/api/3/issue/EMP-1/comment"
    assert jira.issue("EMP-1")["comments"] == [
        {
            "version": 1,
            "type": "doc",
            "content": [
                {
                    "type": "paragraph",
                    "content": [
                        text(
                            "Empathy Framework meant to assign this ticket to bob@acme.io, but "
                            "no active Jira user matches it. Please assign it by hand."
                        )
                    ],
                }
            ],
        }
    ]
    assert seen.details[0]["assignee_unresolved"] == "bob@acme.io"
    assert seen.details[0]["created"] is True
    assert stats["details"]["assignee_unresolved"] == 1
    assert "jira_ticket_unassigned" in caplog.text and "bob@acme.io" in caplog.text


async def test_a_failing_user_search_still_creates_the_ticket(jira: Any) -> None:
    jira.browse_users = False
    hook = webhook(jira, assignee="alice@acme.io")
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager()) as dispatcher:
        await dispatcher.emit("security_vulnerability", SQL_INJECTION)
    assert [c.answered for c in jira.creates] == [201]
    [note] = jira.issue("EMP-1")["comments"]
    said = note["content"][0]["content"][0]["text"]
    assert said.startswith(
        "Empathy Framework meant to assign this ticket to alice@acme.io, but Jira's user search "
        "answered HTTP 403"
    )


async def test_an_unknown_account_id_is_dropped_on_a_retry_and_noted(jira: Any) -> None:
    seen = Successes()
    ghost = "5b10ac8d82e05b22cc7d0000"
    hook = webhook(jira)
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager(seen)) as dispatcher:
        await dispatcher.emit("security_vulnerability", {**SQL_INJECTION, "assignee": ghost})
    first, second = jira.creates
    assert first.json()["fields"]["assignee"] == {"accountId": ghost}
    assert (
        first.answered == 400
    )  # Jira Cloud: {"errors": {"assignee": "User '...' does not exist."}}
    assert "assignee" not in second.json()["fields"] and second.answered == 201
    assert jira.calls().count("GET /rest/api/3/user/search") == 0  # an account id is used as is
    [note] = jira.issue("EMP-1")["comments"]
    assert note["content"][0]["content"][0]["text"] == (
        f"Empathy Framework meant to assign this ticket to {ghost}, but Jira refused the "
        f"assignee (User '{ghost}' does not exist.). Please assign it by hand."
    )
    assert seen.details[0]["fields_left_out"] == ["assignee"]


# -- fields the create screen lacks, string descriptions ---------------------------------------


async def test_priority_is_left_out_when_the_create_screen_has_none(jira: Any) -> None:
    jira.screen.discard("priority")
    jira.page_size = 3  # the field list comes in pages, as Cloud's does
    seen = Successes()
    hook = webhook(jira)
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager(seen)) as dispatcher:
        await dispatcher.emit("security_vulnerability", SQL_INJECTION, severity="critical")
        await dispatcher.drain()
        await dispatcher.emit("bug_detected", {"title": "Leak"}, severity="high")
        await dispatcher.drain()
    assert [c.answered for c in jira.creates] == [201, 201]
    assert all("priority" not in c.json()["fields"] for c in jira.creates)
    assert all("labels" in c.json()["fields"] for c in jira.creates)  # on a later page
    pages = [dict(r.query) for r in jira.receiver.requests if r.path.endswith("/10001")]
    assert [page["startAt"] for page in pages] == ["0", "3", "6"]  # read once, every page
    assert seen.details[0]["fields_left_out"] == ["priority"]


async def test_without_create_metadata_a_refused_field_is_dropped_once_and_remembered(
    jira: Any,
) -> None:
    jira.screen.discard("priority")
    jira.createmeta_allowed = False
    failures: list[DeliveryError] = []
    hook = webhook(jira, on_failure=lambda w, e, err: failures.append(err))
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager()) as dispatcher:
        await dispatcher.emit("security_vulnerability", SQL_INJECTION)
        await dispatcher.drain()
        await dispatcher.emit("bug_detected", {"title": "Leak"})
        await dispatcher.drain()
    first, retried, second = jira.creates
    assert first.json()["fields"]["priority"] == {"name": "High"}
    assert first.answered == 400
    assert "priority" not in retried.json()["fields"] and retried.answered == 201
    assert "priority" not in second.json()["fields"] and second.answered == 201
    assert failures == []
    # The metadata is asked for once: a 403 is not asked again for every ticket.
    assert sum("createmeta" in call for call in jira.calls()) == 1


async def test_a_templates_plain_string_description_is_sent_as_adf(jira: Any) -> None:
    hook = webhook(
        jira,
        templates={
            "bug_detected": lambda event: {
                "fields": {"description": f"Found by {event.user_id}\n\nSee the logs."}
            }
        },
    )
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager()) as dispatcher:
        await dispatcher.emit("bug_detected", {"title": "Leak"}, user_id="dev_1")
    [create] = jira.creates
    assert create.json()["fields"]["description"] == {
        "version": 1,
        "type": "doc",
        "content": [
            {"type": "paragraph", "content": [text("Found by dev_1")]},
            {"type": "paragraph", "content": [text("See the logs.")]},
        ],
    }
    assert create.answered == 201


async def test_the_fake_answers_as_jira_cloud_does_to_what_it_refuses(jira: Any) -> None:
    """The fake's refusals, straight from the wire: what the plugin is tested against."""
    url = f"{jira.url()}/rest/api/3/issue"
    fields = {"project": {"key": "EMP"}, "summary": "x", "issuetype": {"name": "Bug"}}
    jira.screen.discard("priority")
    async with aiohttp.ClientSession(headers={"Authorization": BASIC}) as session:
        plain = {**fields, "description": "plain text", "priority": {"name": "High"}}
        async with session.post(url, json={"fields": plain}) as answer:
            assert answer.status == 400
            assert await answer.json() == {
                "errorMessages": [],
                "errors": {
                    "description": "Operation value must be an Atlassian Document (see the "
                    "Atlassian Document Format)",
                    "priority": "Field 'priority' cannot be set. It is not on the appropriate "
                    "screen, or unknown.",
                },
            }
        async with session.post(
            url, json={"fields": fields}, headers={"Authorization": f"Bearer {TOKEN}"}
        ) as answer:
            assert answer.status == 401
        async with session.get(
            f"{jira.url()}/rest/api/3/user/search", params={"query": "alice@"}
        ) as answer:
            assert [user["accountId"] for user in await answer.json()] == [ALICE_ID]


# -- lifecycle: repeat, resolve ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_type", "resolved_type", "extra"),
    [
        ("bug_detected", "bug_detected", {"status": "resolved"}),
        ("security_vulnerability", "security_vulnerability_resolved", {}),
    ],
)
async def test_a_resolved_finding_comments_on_and_transitions_its_ticket(
    jira: Any, event_type: str, resolved_type: str, extra: dict[str, Any]
) -> None:
    seen = Successes()
    hook = webhook(jira)
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager(seen)) as dispatcher:
        await dispatcher.emit(event_type, SQL_INJECTION)
        await dispatcher.drain()
        await dispatcher.emit(
            resolved_type, {**SQL_INJECTION, **extra, "resolution": "Parameterized in #412"}
        )
        await dispatcher.drain()
        stats = dispatcher.get_webhook_stats(hook.name)
    assert jira.calls()[4:] == [
        "POST /rest/api/3/search/jql",
        "POST /rest/api/3/issue/EMP-1/comment",
        "GET /rest/api/3/issue/EMP-1/transitions",
        "POST /rest/api/3/issue/EMP-1/transitions",
    ]
    assert jira.receiver.requests[-1].json() == {"transition": {"id": "31"}}
    assert jira.receiver.requests[-1].answered == 204
    assert len(jira.issues) == 1 and jira.issue("EMP-1")["status"] == "Done"
    [comment] = jira.issue("EMP-1")["comments"]
    said = [paragraph["content"][0]["text"] for paragraph in comment["content"]]
    assert said[1:] == ["Parameterized in #412"]
    assert said[0].startswith("Empathy Framework reports this finding resolved (")
    assert said[0].endswith("): SQL injection in auth.py:45")
    assert seen.details[1] == {
        "jira_key": "EMP-1",
        "jira_id": "10001",
        "commented": True,
        "resolved": True,
        "transition": "Done",
        "jira_url": f"{jira.url()}/browse/EMP-1",
    }
    assert stats["details"]["resolved"] == 1


async def test_a_resolve_with_no_open_ticket_creates_nothing_and_says_so(
    jira: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="empathy_webhooks")
    seen = Successes()
    hook = webhook(jira)
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager(seen)) as dispatcher:
        await dispatcher.emit("security_vulnerability_resolved", SQL_INJECTION)
        await dispatcher.drain()
        stats = dispatcher.get_webhook_stats(hook.name)
    assert jira.calls() == ["POST /rest/api/3/search/jql"]
    assert jira.issues == []
    assert seen.details == [
        {
            "skipped": "no open ticket has this finding's label",
            "fingerprint": "empathy-fp-4a66462834d255e2",
        }
    ]
    assert stats["details"]["skipped"] == 1
    assert "jira_resolve_without_ticket" in caplog.text
    assert "empathy-fp-4a66462834d255e2" in caplog.text


async def test_an_acknowledgement_comments_and_a_resolve_without_deduplication_is_skipped(
    jira: Any,
) -> None:
    seen = Successes()
    hook = webhook(jira)
    blind = webhook(jira, name="blind_jira", deduplicate=False)
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager(seen)) as dispatcher:
        await dispatcher.emit("bug_detected", SQL_INJECTION)
        await dispatcher.drain()
        await dispatcher.emit("bug_detected", {**SQL_INJECTION, "status": "acknowledged"})
        await dispatcher.drain()
    [comment] = jira.issue("EMP-1")["comments"]
    assert comment["content"][0]["content"][0]["text"].startswith(
        "Empathy Framework: this finding was acknowledged ("
    )
    assert jira.issue("EMP-1")["status"] == "To Do"
    assert seen.details[1]["commented"] is True
    sent = len(jira.receiver.requests)
    async with WebhookDispatcher(webhooks=[blind], plugin_manager=manager(seen)) as dispatcher:
        await dispatcher.emit("bug_detected_resolved", SQL_INJECTION)
        await dispatcher.drain()
    assert len(jira.receiver.requests) == sent and len(jira.issues) == 1
    assert seen.details[2] == {"skipped": "deduplicate is off, so no ticket can be found"}


async def test_a_resolve_names_the_transitions_there_are_when_its_own_is_missing(
    jira: Any,
) -> None:
    jira.workflow = [("11", "To Do", "new"), ("41", "Resolve Issue", "done")]
    failures: list[DeliveryError] = []
    hook = webhook(jira, on_failure=lambda w, e, err: failures.append(err))
    custom = webhook(jira, name="custom_jira", resolve_transition="resolve issue")
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager()) as dispatcher:
        await dispatcher.emit("bug_detected", SQL_INJECTION)
        await dispatcher.drain()
        await dispatcher.emit("bug_detected_resolved", SQL_INJECTION)
        await dispatcher.drain()
        dead = await dispatcher.dead_letters()
    [error] = failures
    assert error.reason == (
        "EMP-1 has no transition named 'Done' (available: 'Resolve Issue'); set "
        "resolve_transition to one of them"
    )
    assert len(dead) == 1 and jira.issue("EMP-1")["status"] == "To Do"
    async with WebhookDispatcher(webhooks=[custom], plugin_manager=manager()) as dispatcher:
        await dispatcher.emit("bug_detected_resolved", SQL_INJECTION)
        await dispatcher.drain()
    assert jira.issue("EMP-1")["status"] == "Resolve Issue"
    assert jira.receiver.requests[-1].json() == {"transition": {"id": "41"}}


async def test_a_transition_that_fails_is_retried_without_a_second_comment(jira: Any) -> None:
    hook = webhook(jira)
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager()) as dispatcher:
        await dispatcher.emit("bug_detected", SQL_INJECTION)
        await dispatcher.drain()
        jira.transition_unavailable = 1
        await dispatcher.emit("bug_detected", {**SQL_INJECTION, "status": "fixed"})
        await dispatcher.drain()
        stats = dispatcher.get_webhook_stats(hook.name)
    posts = [r.answered for r in jira.receiver.requests if r.path.endswith("/transitions")]
    assert posts == [200, 503, 200, 204]
    assert len(jira.issue("EMP-1")["comments"]) == 1
    assert jira.issue("EMP-1")["status"] == "Done"
    assert stats["retries"] == 1


# -- the conformance suite ---------------------------------------------------------------------


class TestJiraConformance(WebhookConformance):
    plugin = plugin
    secrets = (TOKEN,)
    # the duplicate search, the create screen's issue types and fields (once), the create
    requests_per_delivery = 4

    def make_webhook(self, url: str) -> JiraWebhook:
        return JiraWebhook(url=url, email=EMAIL, api_token=TOKEN, project="EMP", events=["*"])

    def success_reply(self, request: ReceivedRequest) -> Reply:
        if request.path.endswith("/search/jql"):
            return Reply(status=200, body={"issues": [], "isLast": True})
        if request.path.endswith("/issuetypes"):
            return Reply(status=200, body={"issueTypes": [{"id": "1", "name": "Bug"}], "total": 1})
        if "/createmeta/" in request.path:
            names = ["project", "issuetype", "summary", "description", "priority", "labels"]
            return Reply(status=200, body={"fields": [{"fieldId": n} for n in names], "total": 6})
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
