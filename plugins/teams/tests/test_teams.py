"""Teams: golden Adaptive Cards, the size limit under generated events, and delivery through a
real dispatcher to a loopback fake of a Workflows webhook (and of a legacy connector)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import empathy_webhooks_teams as plugin
import pytest
from empathy_webhooks_teams import TeamsWebhook
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from empathy_webhooks_core import Event, OutgoingRequest, Webhook, WebhookDispatcher
from empathy_webhooks_core.delivery import render_request
from empathy_webhooks_core.plugins import Hooks, build_plugin_manager
from empathy_webhooks_core.testing import ReceivedRequest, Receiver, Reply
from empathy_webhooks_core.testing.conformance import WebhookConformance, event_strategy

SIG = "Zm9vYmFyU2lnbmF0dXJlVGhhdElzU2VjcmV0"
WORKFLOW = "0123456789abcdef0123456789abcdef"
PATH = f"/workflows/{WORKFLOW}/triggers/manual/paths/invoke"
QUERY = f"?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={SIG}"
URL = f"https://prod-12.westus.logic.azure.com:443{PATH}{QUERY}"
FAST = {"initial_delay_seconds": 0.001, "max_delay_seconds": 0.01}
WHEN = "2025-11-25T14:30:00Z"
ENVELOPE = {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None}
CARD = {
    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
    "type": "AdaptiveCard",
    "version": "1.4",
}


def teams_problems(body: Any, limit: int = 28_000) -> list[str]:
    """What a Teams Workflows webhook would refuse or silently drop."""
    problems = []
    if len(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()) > limit:
        problems.append("request entity too large")
    if not isinstance(body, dict) or body.get("type") != "message":
        return [*problems, "not a message"]
    attachments = body.get("attachments")
    if not isinstance(attachments, list) or not attachments:
        return [*problems, "no attachments"]
    for attachment in attachments:
        content = attachment.get("content", {})
        if attachment.get("contentType") != ENVELOPE["contentType"]:
            problems.append("not an adaptive card")
        if content.get("type") != "AdaptiveCard" or float(content.get("version", "9")) > 1.5:
            problems.append("card type or version")
        if not isinstance(content.get("body"), list) or not content["body"]:
            problems.append("empty card")
    return problems


def fake_teams(request: ReceivedRequest) -> Reply:
    """A Workflows trigger: 202 and an empty body; Power Automate's JSON errors otherwise."""
    if request.query.get("sig") != SIG:
        return Reply(
            status=401,
            body={"error": {"code": "DirectApiAuthorizationRequired", "message": "No sig"}},
        )
    problems = teams_problems(request.json())
    if problems:
        status = 413 if "request entity too large" in problems else 400
        return Reply(status=status, body={"error": {"code": "BadRequest", "message": problems[0]}})
    return Reply(status=202)


def manager() -> Any:
    return build_plugin_manager(load_entry_points=False, extra_plugins=[plugin])


def hook(url: str = URL, **options: Any) -> TeamsWebhook:
    return TeamsWebhook(webhook_url=url, **options)


@pytest.fixture
async def teams() -> AsyncIterator[Receiver]:
    async with Receiver() as receiver:
        receiver.handler = fake_teams
        yield receiver


def heading(text: str, style: str, color: str, context: str) -> dict[str, Any]:
    return {
        "type": "Container",
        "style": style,
        "bleed": True,
        "items": [
            {
                "type": "TextBlock",
                "text": text,
                "size": "Large",
                "weight": "Bolder",
                "color": color,
                "wrap": True,
            },
            {
                "type": "TextBlock",
                "text": context,
                "size": "Small",
                "isSubtle": True,
                "spacing": "None",
                "wrap": True,
            },
        ],
    }


CONTEXT = "Detected by: developer_123 | Time: 2025-11-25 14:30"


def test_a_hipaa_compliance_alert_exactly() -> None:
    event = Event(
        event_type="compliance_violation",
        data={
            "title": "PHI written to application logs",
            "regulation": "HIPAA",
            "file": "src/log.py",
            "line": 12,
            "recommendation": "Mask patient identifiers before logging",
            "url": "https://compliance.example.com/findings/42",
        },
        classification="SENSITIVE",
        user_id="developer_123",
        timestamp=WHEN,
    )
    request = render_request(hook(), event, plugin_manager=manager())
    assert request.url == URL
    assert dict(request.headers) == {"Content-Type": "application/json"}
    assert request.json_body() == {
        "type": "message",
        "attachments": [
            {
                **ENVELOPE,
                "content": {
                    **CARD,
                    "body": [
                        heading("⚖️ Compliance violation", "attention", "Attention", CONTEXT),
                        {
                            "type": "TextBlock",
                            "text": "PHI written to application logs",
                            "wrap": True,
                        },
                        {
                            "type": "FactSet",
                            "facts": [
                                {"title": "Regulation", "value": "HIPAA"},
                                {"title": "Classification", "value": "SENSITIVE"},
                                {"title": "Location", "value": "src/log.py:12"},
                                {"title": "Severity", "value": "High"},
                                {
                                    "title": "Required action",
                                    "value": "Mask patient identifiers before logging",
                                },
                            ],
                        },
                    ],
                    "fallbackText": "⚖️ Compliance violation: PHI written to application logs",
                    "actions": [
                        {
                            "type": "Action.OpenUrl",
                            "title": "Open",
                            "url": "https://compliance.example.com/findings/42",
                        }
                    ],
                    "msteams": {"width": "Full"},
                },
            }
        ],
    }


#: event type -> (data, heading, style, summary, facts)
GOLDEN: dict[str, tuple[dict[str, Any], str, str, str, list[tuple[str, str]]]] = {
    "prediction": (
        {
            "prediction": "Auth deployment may conflict with user-service v2.1",
            "confidence": 0.87,
            "recommendation": "Deploy auth behind feature flag",
        },
        "🔮 Level 4 Prediction",
        "accent",
        "Auth deployment may conflict with user-service v2.1",
        [("Confidence", "87%"), ("Recommendation", "Deploy auth behind feature flag")],
    ),
    "alert": (
        {"title": "Error rate above 5%", "service": "checkout-api", "severity": "critical"},
        "🚨 Alert",
        "attention",
        "Error rate above 5%",
        [("Service", "checkout-api"), ("Severity", "Critical")],
    ),
    "bug_detected": (
        {"title": "Null dereference", "file": "src/cart.py", "line": 118, "severity": "low"},
        "🐛 Bug detected",
        "good",
        "Null dereference",
        [("Location", "src/cart.py:118"), ("Severity", "Low")],
    ),
    "security_vulnerability": (
        {"vulnerability": "SQL injection", "file": "auth.py", "line": 45, "cwe": "CWE-89"},
        "🔒 Security vulnerability",
        "attention",
        "SQL injection",
        [("Location", "auth.py:45"), ("Severity", "High"), ("Weakness", "CWE-89")],
    ),
    "performance_issue": (
        {"title": "Slow users API", "endpoint": "/api/users", "value": 850, "threshold": 500},
        "🐢 Performance issue",
        "warning",
        "Slow users API",
        [
            ("Endpoint", "/api/users"),
            ("Value", "850"),
            ("Threshold", "500"),
            ("Severity", "Medium"),
        ],
    ),
    "code_review_complete": (
        {"summary": "Looks good", "repository": "acme/shop", "pr_number": 7, "issues_found": 0},
        "🤖 Code review complete",
        "accent",
        "Looks good",
        [("Repository", "acme/shop"), ("Pull request", "#7"), ("Issues found", "0")],
    ),
    "test_failure": (
        {"test": "test_total", "error": "AssertionError: 41 != 42"},
        "❌ Test failure",
        "warning",
        "test_total",
        [("Error", "AssertionError: 41 != 42"), ("Severity", "Medium")],
    ),
    "deployment_risk": (
        {"title": "Peak-hour deploy", "service": "auth", "risk_score": 0.72},
        "🚀 Deployment risk",
        "warning",
        "Peak-hour deploy",
        [("Service", "auth"), ("Risk score", "72%"), ("Severity", "Medium")],
    ),
    "pattern_discovered": (
        {"pattern": "Retry storms", "occurrences": 7},
        "💡 Pattern discovered",
        "accent",
        "Retry storms",
        [("Occurrences", "7")],
    ),
    "phi_access": (
        {"summary": "Chart opened outside shift", "accessed_by": "nurse_7", "record": "MRN-1"},
        "🏥 PHI access",
        "accent",
        "Chart opened outside shift",
        [("Accessed by", "nurse_7"), ("Record", "MRN-1")],
    ),
    "release_published": (
        {"title": "v1.9.0 is out", "version": "1.9.0"},
        "📣 Release published",
        "accent",
        "v1.9.0 is out",
        [("Version", "1.9.0")],
    ),
}

_COLORS = {"accent": "Accent", "good": "Good", "warning": "Warning", "attention": "Attention"}


@pytest.mark.parametrize("event_type", sorted(GOLDEN))
def test_golden_card_per_event_type(event_type: str) -> None:
    data, title, style, summary, facts = GOLDEN[event_type]
    event = Event(
        event_type=event_type,
        data=data,
        user_id="developer_123",
        empathy_level=4 if event_type == "prediction" else None,
        timestamp=WHEN,
    )
    content = hook().render(event).json_body()["attachments"][0]["content"]
    assert content["body"] == [
        heading(title, style, _COLORS[style], CONTEXT),
        {"type": "TextBlock", "text": summary, "wrap": True},
        {"type": "FactSet", "facts": [{"title": t, "value": v} for t, v in facts]},
    ]
    assert content["fallbackText"].endswith(f": {summary}")
    assert "actions" not in content


# -- size limit -----------------------------------------------------------------------------

_PROPERTY = settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
)


@_PROPERTY
@given(event=event_strategy())
def test_any_event_renders_a_card_within_the_size_limit(event: Event) -> None:
    assert teams_problems(json.loads(hook().render(event).body)) == []


@_PROPERTY
@given(
    texts=st.lists(
        st.one_of(st.text(max_size=20), st.just("\x00" * 9000), st.just("界" * 9000)),
        max_size=40,
    ),
    limit=st.sampled_from([21_000, 28_000]),
)
def test_a_template_card_is_fitted_too(texts: list[str], limit: int) -> None:
    card = {
        "type": "AdaptiveCard",
        "version": "1.5",
        "body": [{"type": "TextBlock", "text": text or "-"} for text in texts] or [],
    }
    webhook = hook(max_message_bytes=limit, templates={"*": lambda event: card})
    body = webhook.render(Event(event_type="alert")).json_body()
    if texts:
        assert teams_problems(body, limit) == []
    assert card["body"] == [{"type": "TextBlock", "text": t or "-"} for t in texts]  # untouched


def test_huge_values_are_cut_with_a_visible_marker_keeping_the_card() -> None:
    event = Event(event_type="bug_detected", data={"title": "é" * 40_000, "fix": "x" * 40_000})
    content = hook().render(event).json_body()["attachments"][0]["content"]
    assert content["body"][1]["text"].endswith("…truncated")
    assert [f["title"] for f in content["body"][2]["facts"]] == ["Severity", "Suggested fix"]


# -- templates and dry runs ---------------------------------------------------------------


def test_a_string_template_becomes_the_cards_text() -> None:
    webhook = hook(templates={"alert": "Alert from {user_id}: {data[title]}"})
    body = webhook.render("alert", {"title": "Disk full"}, user_id="ops").json_body()
    assert body == {
        "type": "message",
        "attachments": [
            {
                **ENVELOPE,
                "content": {
                    **CARD,
                    "body": [
                        {"type": "TextBlock", "text": "Alert from ops: Disk full", "wrap": True}
                    ],
                },
            }
        ],
    }


def test_a_bare_card_from_a_function_is_put_in_its_envelope() -> None:
    card = {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "hi"}]}
    body = hook(templates={"*": lambda event: card}).render(Event(event_type="x")).json_body()
    assert body["type"] == "message"
    assert body["attachments"] == [{**ENVELOPE, "content": card}]


def test_render_is_a_dry_run_matching_the_dispatcher() -> None:
    event = Event(event_type="alert", data={"title": "x"}, timestamp=WHEN)
    webhook = hook()
    assert (
        webhook.render(event).body == render_request(webhook, event, plugin_manager=manager()).body
    )
    assert SIG not in repr(webhook.render(event))


# -- secrets --------------------------------------------------------------------------------


def test_the_url_and_its_sig_are_secrets_masked_everywhere() -> None:
    webhook = hook()
    # Declared by `secret_url = True`: the URL, its sig and its workflow id are all masked.
    assert {URL, SIG, WORKFLOW} <= set(webhook.secret_values())
    assert "webhook_url='https://prod-12.westus.logic.azure.com:443/workflows/***?***'" in repr(
        webhook
    )
    assert SIG not in webhook.url


# -- delivery through the dispatcher -------------------------------------------------------


async def deliver(receiver: Receiver, url: str, *events: Event, **options: Any) -> dict[str, Any]:
    failures: list[Any] = []
    webhook = hook(
        url=url, retry_policy=FAST, on_failure=lambda w, e, x: failures.append(x), **options
    )
    async with WebhookDispatcher(webhooks=[webhook], plugin_manager=manager()) as dispatcher:
        for event in events:
            await dispatcher.emit_event(event)
        await dispatcher.drain()
        return {
            "failures": failures,
            "dead": await dispatcher.dead_letters(),
            "enabled": dispatcher.is_enabled(webhook.name),
            "stats": dispatcher.get_webhook_stats(webhook.name),
        }


def sample() -> Event:
    return Event(event_type="compliance_violation", data={"title": "PHI in logs"}, timestamp=WHEN)


async def test_delivered_to_a_workflow_with_202(teams: Receiver) -> None:
    outcome = await deliver(teams, teams.url(PATH) + QUERY, sample())
    [request] = teams.requests
    assert (request.path, request.query["sig"], request.answered) == (PATH, SIG, 202)
    assert request.body == hook().render(sample()).body
    assert outcome["failures"] == [] and outcome["stats"]["delivered_count"] == 1


async def test_a_legacy_connector_200_with_1_is_delivered(teams: Receiver) -> None:
    teams.handler = None
    teams.respond(200, "1")
    outcome = await deliver(teams, teams.url("/webhookb2/abc@def/IncomingWebhook/x/y"), sample())
    assert outcome["failures"] == [] and outcome["stats"]["delivered_count"] == 1


async def test_a_legacy_200_delivery_failure_is_a_failure(teams: Receiver) -> None:
    teams.handler = None
    text = (
        "Webhook message delivery failed with error: Microsoft Teams endpoint returned "
        "HTTP error 400 with ContextId tcid=0,server=msgapi,cv=abc"
    )
    teams.respond(200, text)
    outcome = await deliver(teams, teams.url("/webhookb2/x"), sample())
    [failure] = outcome["failures"]
    assert failure.reason.startswith("Teams could not deliver the message: Webhook message")
    assert len(teams.requests) == 1 and len(outcome["dead"]) == 1


async def test_a_legacy_200_throttled_failure_is_retried(teams: Receiver) -> None:
    teams.handler = None
    teams.queue(
        Reply(
            status=200,
            body="Webhook message delivery failed with error: Microsoft Teams endpoint "
            "returned HTTP error 429 with ContextId tcid=0",
        ),
        Reply(status=200, body="1"),
    )
    outcome = await deliver(teams, teams.url("/webhookb2/x"), sample())
    assert len(teams.requests) == 2 and outcome["failures"] == []


async def test_a_connector_200_without_a_number_is_retried_not_counted_delivered(
    teams: Receiver,
) -> None:
    """Microsoft: a connector's 200 is a success "only if it returns a number in the
    response, else it is a failure even if status is 200" (msteams-docs#9698: a 200 carrying
    a token service's 401). It was counted delivered: the alert lost without a word."""
    teams.handler = None
    teams.queue(
        Reply(
            status=200,
            body="Microsoft.Exchange.Security.TokenIssuer.Common.SubstrateTokenRequestException:"
            " Request failed with status code 401(Unauthorized)",
        ),
        Reply(status=200, body=""),
        Reply(status=200, body="1"),
    )
    outcome = await deliver(teams, teams.url("/webhookb2/x"), sample())
    assert [r.answered for r in teams.requests] == [200, 200, 200]
    assert outcome["failures"] == [] and outcome["stats"]["delivered_count"] == 1


async def test_a_refused_request_is_final_with_power_automates_error(teams: Receiver) -> None:
    outcome = await deliver(teams, teams.url(PATH) + "?sig=wrong_signature_value", sample())
    [failure] = outcome["failures"]
    assert failure.reason == (
        "Teams refused the message: DirectApiAuthorizationRequired: No sig (HTTP 401)"
    )
    assert len(teams.requests) == 1


async def test_429_and_5xx_are_retried(teams: Receiver) -> None:
    teams.queue(Reply(status=429, headers={"Retry-After": "0"}), Reply(status=502))
    outcome = await deliver(teams, teams.url(PATH) + QUERY, sample())
    assert [r.answered for r in teams.requests] == [429, 502, 202]
    assert outcome["failures"] == []


async def test_a_deleted_workflow_404_disables_the_webhook(teams: Receiver) -> None:
    teams.handler = None
    teams.respond(404, {"error": {"code": "WorkflowNotFound", "message": "gone"}})
    outcome = await deliver(teams, teams.url(PATH) + QUERY, sample(), sample(), max_concurrency=1)
    assert outcome["enabled"] is False and len(teams.requests) == 1
    assert outcome["failures"][0].reason.startswith("Teams says the webhook is gone")


# -- discovery ----------------------------------------------------------------------------


def test_the_entry_point_loads_this_plugin() -> None:
    pm = build_plugin_manager(env={"EMPATHY_WEBHOOKS_LOAD_PLUGINS": "teams"})
    assert pm.get_plugin("teams") is plugin
    types = Hooks(pm).webhook_types()
    assert types["teams"] is TeamsWebhook
    assert not {"slack", "discord"} & set(types)


def test_not_loaded_the_dispatcher_refuses_a_teams_webhook_clearly() -> None:
    pm = build_plugin_manager(env={"EMPATHY_WEBHOOKS_LOAD_PLUGINS": ""})
    with pytest.raises(LookupError, match="TeamsWebhook .* no loaded plugin provides it"):
        WebhookDispatcher(webhooks=[hook()], plugin_manager=pm)


# -- the conformance suite ------------------------------------------------------------------


class TestTeamsConformance(WebhookConformance):
    plugin = plugin
    secrets = (SIG,)

    def make_webhook(self, url: str) -> Webhook:
        return TeamsWebhook(webhook_url=url.rstrip("/") + PATH + QUERY)

    def success_reply(self, request: ReceivedRequest) -> Reply:
        return fake_teams(request)

    def failure_reply(self, request: ReceivedRequest) -> Reply:
        return Reply(status=400, body={"error": {"code": "InvalidRequestContent", "message": "x"}})

    def check_limits(self, request: OutgoingRequest, webhook: Webhook) -> None:
        super().check_limits(request, webhook)
        assert teams_problems(json.loads(request.body)) == []
