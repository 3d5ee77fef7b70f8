"""Slack: golden messages, Block Kit limits under generated events, and delivery through a real
dispatcher to a loopback fake of Slack's incoming webhooks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import empathy_webhooks_slack as plugin
import pytest
from empathy_webhooks_slack import SlackWebhook
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from empathy_webhooks_core import Event, OutgoingRequest, Webhook, WebhookDispatcher
from empathy_webhooks_core.delivery import render_request
from empathy_webhooks_core.plugin import utf16_len
from empathy_webhooks_core.plugins import Hooks, build_plugin_manager
from empathy_webhooks_core.testing import FakeClock, ReceivedRequest, Receiver, Reply
from empathy_webhooks_core.testing.conformance import WebhookConformance, event_strategy

TOKEN = "xoxbHookTokenAbcdef0123456789"
PATH = f"/services/T0EMPATHY/B0EMPATHY/{TOKEN}"
FAST = {"initial_delay_seconds": 0.001, "max_delay_seconds": 0.01}
WHEN = "2025-11-25T14:30:00Z"

REFERENCE_DATA = {
    "prediction": "Auth deployment may conflict with user-service v2.1",
    "confidence": 0.87,
    "recommendation": "Deploy auth behind feature flag",
}


def slack_problems(body: Any) -> list[str]:
    """What Slack would refuse in a message body: Block Kit's documented limits."""
    if not isinstance(body, dict):
        return ["invalid_payload"]
    problems = []
    text, blocks = body.get("text"), body.get("blocks")
    if not (isinstance(text, str) and text.strip()) and not blocks:
        problems.append("no_text")
    if isinstance(text, str) and utf16_len(text) > 40_000:
        problems.append("text over 40,000")

    def text_object(obj: Any, limit: int, where: str, kinds: tuple[str, ...]) -> None:
        if not isinstance(obj, dict) or obj.get("type") not in kinds:
            problems.append(f"{where}: not a {kinds} text object")
        elif not isinstance(obj.get("text"), str) or not obj["text"].strip():
            problems.append(f"{where}: empty text")
        elif utf16_len(obj["text"]) > limit:
            problems.append(f"{where}: {utf16_len(obj['text'])} > {limit}")

    if blocks is not None:
        if not isinstance(blocks, list) or len(blocks) > 50:
            problems.append("blocks: not a list of at most 50")
            blocks = []
        for index, block in enumerate(blocks):
            where = f"blocks[{index}]"
            if len(str(block.get("block_id", ""))) > 255:
                problems.append(f"{where}: block_id over 255")
            kind = block.get("type")
            if kind == "header":
                text_object(block.get("text"), 150, where, ("plain_text",))
            elif kind == "section":
                fields = block.get("fields")
                if "text" in block or not fields:
                    text_object(block.get("text"), 3000, where, ("plain_text", "mrkdwn"))
                if fields is not None:
                    if not 1 <= len(fields) <= 10:
                        problems.append(f"{where}: {len(fields)} fields")
                    for n, field in enumerate(fields):
                        text_object(field, 2000, f"{where}.fields[{n}]", ("plain_text", "mrkdwn"))
            elif kind == "context":
                elements = block.get("elements") or []
                if not 1 <= len(elements) <= 10:
                    problems.append(f"{where}: {len(elements)} context elements")
                for n, element in enumerate(elements):
                    text_object(element, 3000, f"{where}.elements[{n}]", ("plain_text", "mrkdwn"))
            elif kind not in ("divider", "image", "actions", "markdown", "rich_text"):
                problems.append(f"{where}: unknown block type {kind!r}")
    return problems


def fake_slack(request: ReceivedRequest) -> Reply:
    """Answers as an incoming webhook does: `ok`, or an error string with a status."""
    try:
        body = request.json()
    except ValueError:
        return Reply(status=400, body="invalid_payload")
    problems = slack_problems(body)
    if problems:
        return Reply(status=400, body="no_text" if problems == ["no_text"] else "invalid_blocks")
    return Reply(status=200, body="ok")


def manager() -> Any:
    return build_plugin_manager(load_entry_points=False, extra_plugins=[plugin])


def hook(url: str = f"https://hooks.slack.com{PATH}", **options: Any) -> SlackWebhook:
    return SlackWebhook(webhook_url=url, **options)


def reference_event(**overrides: Any) -> Event:
    fields: dict[str, Any] = {
        "event_type": "prediction",
        "data": REFERENCE_DATA,
        "user_id": "developer_123",
        "empathy_level": 4,
        "timestamp": WHEN,
    }
    fields.update(overrides)
    return Event(**fields)


@pytest.fixture
async def slack() -> AsyncIterator[Receiver]:
    async with Receiver() as receiver:
        receiver.handler = fake_slack
        yield receiver


# -- golden messages ------------------------------------------------------------------------


def test_the_reference_prediction_alert_exactly() -> None:
    webhook = hook(channel="#ai-alerts", username="Empathy Bot", icon_emoji=":robot_face:")
    request = render_request(webhook, reference_event(), plugin_manager=manager())
    assert request.url == f"https://hooks.slack.com{PATH}"
    assert dict(request.headers) == {"Content-Type": "application/json"}
    assert request.json_body() == {
        "channel": "#ai-alerts",
        "username": "Empathy Bot",
        "icon_emoji": ":robot_face:",
        "text": "🔮 Prediction: Auth deployment may conflict with user-service v2.1",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "🔮 Level 4 Prediction"}},
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "*Prediction:* Auth deployment may conflict with user-service v2.1\n"
                    "*Confidence:* 87%\n*Recommendation:* Deploy auth behind feature flag",
                },
            },
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": "Detected by: developer_123 | Time: 2025-11-25 14:30",
                    }
                ],
            },
        ],
    }


def test_identity_fields_are_left_out_when_not_set() -> None:
    body = hook().render(reference_event()).json_body()
    assert set(body) == {"text", "blocks"}


CONTEXT = "Detected by: developer_123 | Time: 2025-11-25 14:30"

#: event type -> (data, header, section lines, notification text)
GOLDEN: dict[str, tuple[dict[str, Any], str, list[str], str]] = {
    "alert": (
        {
            "title": "Error rate above 5%",
            "message": "checkout-api is failing requests",
            "service": "checkout-api",
            "value": 5.4,
            "threshold": 5,
            "severity": "high",
        },
        "🚨 Alert",
        [
            "*Alert:* Error rate above 5%",
            "*Details:* checkout-api is failing requests",
            "*Service:* checkout-api",
            "*Value:* 5.4",
            "*Threshold:* 5",
            "*Severity:* High",
        ],
        "🚨 Alert: Error rate above 5%",
    ),
    "bug_detected": (
        {
            "title": "Null dereference",
            "file": "src/cart.py",
            "line": 118,
            "description": "cart.items may be None after a timeout",
            "fix": "Default to an empty list",
        },
        "🐛 Bug detected",
        [
            "*Bug:* Null dereference",
            "*Location:* src/cart.py:118",
            "*Details:* cart.items may be None after a timeout",
            "*Severity:* Medium",
            "*Suggested fix:* Default to an empty list",
        ],
        "🐛 Bug detected: Null dereference",
    ),
    "security_vulnerability": (
        {
            "vulnerability": "SQL injection",
            "file": "auth.py",
            "line": 45,
            "severity": "critical",
            "cwe": "CWE-89",
            "description": "User input concatenated directly into SQL query",
            "fix": "Use parameterized queries",
        },
        "🔒 Security vulnerability",
        [
            "*Vulnerability:* SQL injection",
            "*Location:* auth.py:45",
            "*Severity:* Critical",
            "*Weakness:* CWE-89",
            "*Details:* User input concatenated directly into SQL query",
            "*Suggested fix:* Use parameterized queries",
        ],
        "🔒 Security vulnerability: SQL injection",
    ),
    "performance_issue": (
        {
            "title": "/api/users response time degraded",
            "endpoint": "/api/users",
            "metric": "p95_response_time",
            "value": 850,
            "threshold": 500,
        },
        "🐢 Performance issue",
        [
            "*Issue:* /api/users response time degraded",
            "*Endpoint:* /api/users",
            "*Metric:* p95_response_time",
            "*Value:* 850",
            "*Threshold:* 500",
            "*Severity:* Medium",
        ],
        "🐢 Performance issue: /api/users response time degraded",
    ),
    "code_review_complete": (
        {
            "summary": "2 suggestions, no security issues",
            "repository": "Smart-AI-Memory/empathy",
            "pr_number": 123,
            "issues_found": 2,
            "confidence": 0.92,
            "url": "https://github.com/Smart-AI-Memory/empathy/pull/123",
        },
        "🤖 Code review complete",
        [
            "*Review:* 2 suggestions, no security issues",
            "*Repository:* Smart-AI-Memory/empathy",
            "*Pull request:* #123",
            "*Issues found:* 2",
            "*Confidence:* 92%",
            "*Link:* <https://github.com/Smart-AI-Memory/empathy/pull/123|Open>",
        ],
        "🤖 Code review complete: 2 suggestions, no security issues",
    ),
    "test_failure": (
        {
            "test": "tests/test_cart.py::test_checkout_total",
            "error": "AssertionError: 41 != 42",
            "file": "tests/test_cart.py",
            "line": 88,
        },
        "❌ Test failure",
        [
            "*Test:* tests/test_cart.py::test_checkout_total",
            "*Error:* AssertionError: 41 != 42",
            "*Location:* tests/test_cart.py:88",
            "*Severity:* Medium",
        ],
        "❌ Test failure: tests/test_cart.py::test_checkout_total",
    ),
    "deployment_risk": (
        {
            "title": "Auth deploy during peak traffic",
            "service": "authentication",
            "environment": "production",
            "risk_score": 0.72,
            "recommendation": "Deploy behind a feature flag",
        },
        "🚀 Deployment risk",
        [
            "*Risk:* Auth deploy during peak traffic",
            "*Service:* authentication",
            "*Environment:* production",
            "*Risk score:* 72%",
            "*Severity:* Medium",
            "*Recommendation:* Deploy behind a feature flag",
        ],
        "🚀 Deployment risk: Auth deploy during peak traffic",
    ),
    "compliance_violation": (
        {
            "title": "PHI written to application logs",
            "regulation": "HIPAA",
            "classification": "SENSITIVE",
            "file": "src/log.py",
            "line": 12,
            "recommendation": "Mask patient identifiers before logging",
        },
        "⚖️ Compliance violation",
        [
            "*Violation:* PHI written to application logs",
            "*Regulation:* HIPAA",
            "*Classification:* SENSITIVE",
            "*Location:* src/log.py:12",
            "*Severity:* High",
            "*Required action:* Mask patient identifiers before logging",
        ],
        "⚖️ Compliance violation: PHI written to application logs",
    ),
    "pattern_discovered": (
        {
            "pattern": "Retry storms after deploys",
            "description": "Clients retry without jitter.",
            "occurrences": 7,
        },
        "💡 Pattern discovered",
        [
            "*Pattern:* Retry storms after deploys",
            "*Description:* Clients retry without jitter.",
            "*Occurrences:* 7",
        ],
        "💡 Pattern discovered: Retry storms after deploys",
    ),
    "release_published": (
        {"title": "v1.9.0 is out", "version": "1.9.0", "highlights": ["Teams", "Discord"]},
        "📣 Release published",
        ["*Summary:* v1.9.0 is out", "*Version:* 1.9.0", "*Highlights:* Teams, Discord"],
        "📣 Release published: v1.9.0 is out",
    ),
}


@pytest.mark.parametrize("event_type", sorted(GOLDEN))
def test_golden_message_per_event_type(event_type: str) -> None:
    data, header, lines, text = GOLDEN[event_type]
    event = Event(event_type=event_type, data=data, user_id="developer_123", timestamp=WHEN)
    assert hook().render(event).json_body() == {
        "text": text,
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": header}},
            {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": CONTEXT}]},
        ],
    }


def test_an_event_without_data_or_user_has_no_empty_section() -> None:
    event = Event(event_type="pattern_discovered", timestamp=WHEN)
    assert hook().render(event).json_body() == {
        "text": "💡 Pattern discovered",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "💡 Pattern discovered"}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": "Time: 2025-11-25 14:30"}]},
        ],
    }


def test_event_text_can_neither_ping_nor_forge_links() -> None:
    event = reference_event(
        data={"prediction": "<!channel> see <https://evil.example|the docs> & <@U123>"},
        user_id="<!here>",
    )
    body = hook().render(event).json_body()
    section = body["blocks"][1]["text"]["text"]
    assert section == (
        "*Prediction:* &lt;!channel&gt; see &lt;https://evil.example|the docs&gt; "
        "&amp; &lt;@U123&gt;"
    )
    assert body["text"].startswith("🔮 Prediction: &lt;!channel&gt;")
    assert body["blocks"][2]["elements"][0]["text"].startswith("Detected by: &lt;!here&gt;")
    assert "<!" not in json.dumps(body, ensure_ascii=False)


def test_huge_fields_are_cut_with_an_ellipsis_never_mid_entity() -> None:
    event = reference_event(data={"prediction": "&" * 10_000, "recommendation": "x" * 5000})
    body = hook().render(event).json_body()
    section = body["blocks"][1]["text"]["text"]
    assert utf16_len(section) <= 3000
    prediction, recommendation = section.split("\n")
    assert prediction.endswith("&amp;…") and len(prediction) <= len("*Prediction:* ") + 2000
    assert recommendation.endswith("x…")
    assert slack_problems(body) == []


def test_a_long_event_type_gets_a_header_within_150() -> None:
    body = hook().render(Event(event_type="😀" * 200, timestamp=WHEN)).json_body()
    header = body["blocks"][0]["text"]["text"]
    assert utf16_len(header) <= 150 and header.endswith("…")


# -- property tests -----------------------------------------------------------------------

_PROPERTY = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
)


@_PROPERTY
@given(event=event_strategy(), legacy=st.booleans())
def test_any_event_renders_a_message_slack_accepts(event: Event, legacy: bool) -> None:
    identity = {"channel": "#ai-alerts", "username": "Empathy Bot"} if legacy else {}
    request = hook(**identity).render(event)
    body = json.loads(request.body)
    assert slack_problems(body) == []
    assert "<!" not in json.dumps(body, ensure_ascii=False)


_TEXT = st.one_of(st.text(max_size=30), st.just("x" * 5000), st.just("😀" * 3000), st.just(""))


@_PROPERTY
@given(
    blocks=st.lists(
        st.one_of(
            st.fixed_dictionaries(
                {"type": st.just("header"), "text": st.fixed_dictionaries({"text": _TEXT})}
            ),
            st.fixed_dictionaries(
                {
                    "type": st.just("section"),
                    "text": st.fixed_dictionaries(
                        {"type": st.just("mrkdwn"), "text": _TEXT.map(lambda s: "&amp;" + s)}
                    ),
                    "fields": st.lists(
                        st.fixed_dictionaries({"type": st.just("mrkdwn"), "text": _TEXT}),
                        max_size=14,
                    ),
                    "block_id": st.text(max_size=300),
                }
            ),
            st.fixed_dictionaries(
                {
                    "type": st.just("context"),
                    "elements": st.lists(
                        st.fixed_dictionaries({"type": st.just("plain_text"), "text": _TEXT}),
                        max_size=14,
                    ),
                }
            ),
            st.just({"type": "divider"}),
        ),
        max_size=60,
    ),
    text=st.one_of(st.none(), _TEXT),
)
def test_a_template_cannot_break_the_limits_either(blocks: list[Any], text: Any) -> None:
    webhook = hook(templates={"*": lambda event: {"blocks": blocks, "text": text}})
    body = webhook.render(reference_event()).json_body()
    assert slack_problems(body) == []
    for block in body.get("blocks", []):
        for obj in [block.get("text"), *block.get("fields", []), *block.get("elements", [])]:
            if isinstance(obj, dict) and obj["text"].endswith("…"):
                assert not obj["text"][:-1].endswith(("&", "&a", "&am", "&amp"))


# -- templates and dry runs ---------------------------------------------------------------


def test_a_function_template_replaces_the_payload_keeping_the_identity() -> None:
    def mine(event: Event) -> dict[str, Any]:
        return {"text": f"Heads up: {event.data['prediction']}", "blocks": None}

    webhook = hook(channel="#ai-alerts", templates={"prediction": mine})
    assert webhook.render(reference_event()).json_body() == {
        "channel": "#ai-alerts",
        "text": "Heads up: Auth deployment may conflict with user-service v2.1",
    }
    # Other event types keep the default message.
    assert "blocks" in webhook.render(Event(event_type="alert")).json_body()


def test_a_dict_template_is_merged_over_the_default() -> None:
    extra = {"type": "section", "text": {"type": "mrkdwn", "text": "runbook: go/auth"}}
    webhook = hook(templates={"prediction": {"unfurl_links": False, "blocks": [extra]}})
    body = webhook.render(reference_event()).json_body()
    assert body["blocks"] == [extra]
    assert body["unfurl_links"] is False
    assert body["text"] == "🔮 Prediction: Auth deployment may conflict with user-service v2.1"


def test_a_string_template_is_the_text_with_event_values_escaped() -> None:
    webhook = hook(templates={"*": "<!here> {event_type}: {data[prediction]} ({user_id})"})
    event = reference_event(data={"prediction": "<!channel> & more"})
    assert webhook.render(event).json_body() == {
        "text": "<!here> prediction: &lt;!channel&gt; &amp; more (developer_123)"
    }


def test_render_shows_the_request_without_sending() -> None:
    webhook = hook()
    mine = webhook.render("prediction", REFERENCE_DATA, empathy_level=4, timestamp=WHEN)
    same = render_request(webhook, reference_event(user_id=None), plugin_manager=manager())
    assert isinstance(mine, OutgoingRequest)
    assert mine.body == same.body
    assert TOKEN not in repr(mine)


# -- secrets ----------------------------------------------------------------------------


def test_the_url_is_a_secret_masked_everywhere_it_is_shown() -> None:
    webhook = hook()
    # Declared by `secret_url = True`: the whole URL and its token are masked wherever shown.
    assert {f"https://hooks.slack.com{PATH}", TOKEN} <= set(webhook.secret_values())
    assert TOKEN not in repr(webhook)
    assert "webhook_url='https://hooks.slack.com/services/***'" in repr(webhook)
    assert webhook.url == "https://hooks.slack.com/services/***"
    proxied = hook(url=f"https://relay.example.com{PATH}")
    assert proxied.url == "https://relay.example.com/services/***"


def test_a_missing_url_says_which_variable_to_check() -> None:
    with pytest.raises(ValueError, match="webhook_url is required .*environment variable"):
        SlackWebhook(webhook_url=None)  # type: ignore[arg-type]


# -- delivery through the dispatcher -------------------------------------------------------


async def deliver(receiver: Receiver, *events: Event, **options: Any) -> dict[str, Any]:
    failures: list[Any] = []
    webhook = hook(
        url=receiver.url(PATH),
        retry_policy=FAST,
        on_failure=lambda w, e, error: failures.append(error),
        **options,
    )
    async with WebhookDispatcher(webhooks=[webhook], plugin_manager=manager()) as dispatcher:
        for event in events:
            await dispatcher.emit_event(event)
        await dispatcher.drain()
        return {
            "failures": failures,
            "dead": await dispatcher.dead_letters(),
            "stats": dispatcher.get_webhook_stats(webhook.name),
            "enabled": dispatcher.is_enabled(webhook.name),
        }


async def test_delivered_to_slack_exactly_as_rendered(slack: Receiver) -> None:
    event = reference_event()
    outcome = await deliver(slack, event, channel="#ai-alerts", username="Empathy Bot")
    [request] = slack.requests
    assert (request.method, request.path, request.answered) == ("POST", PATH, 200)
    assert request.header("Content-Type") == "application/json"
    assert request.json()["channel"] == "#ai-alerts"
    assert request.body == hook(channel="#ai-alerts", username="Empathy Bot").render(event).body
    assert outcome["failures"] == [] and outcome["stats"]["delivered_count"] == 1


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, "invalid_blocks"), (400, "no_text"), (400, "invalid_payload"), (403, "user_not_found")],
)
async def test_a_text_error_is_a_final_failure_carrying_the_text(
    slack: Receiver, status: int, error: str
) -> None:
    slack.handler = None
    slack.respond(status, error)
    outcome = await deliver(slack, reference_event())
    assert len(slack.requests) == 1  # not retried
    [failure] = outcome["failures"]
    assert failure.reason == f"Slack refused the message: {error} (HTTP {status})"
    assert failure.status == status and failure.body_excerpt == error
    assert [d.event.event_id for d in outcome["dead"]] == [failure.event_id]


@pytest.mark.parametrize(
    ("status", "error"),
    [(410, "channel_is_archived"), (404, "channel_not_found"), (404, "no_service")],
)
async def test_a_dead_destination_disables_the_webhook(
    slack: Receiver, status: int, error: str
) -> None:
    slack.handler = None
    slack.respond(status, error)
    outcome = await deliver(slack, reference_event(), reference_event(), max_concurrency=1)
    assert len(slack.requests) == 1  # the second event waits, queued, for enable_webhook
    assert outcome["enabled"] is False and outcome["stats"]["queued"] == 2
    [failure] = outcome["failures"]
    assert failure.reason.startswith(f"Slack says the destination is gone: {error} (HTTP {status})")
    assert "webhook disabled until enable_webhook('slack_webhook')" in failure.reason


async def test_a_server_error_is_retried(slack: Receiver) -> None:
    slack.queue(Reply(status=500, body="rollup_error"), Reply(status=503, body="oops"))
    outcome = await deliver(slack, reference_event())
    assert [r.answered for r in slack.requests] == [500, 503, 200]
    assert outcome["failures"] == [] and outcome["stats"]["retries"] == 2


async def until(condition: Any) -> None:
    for _ in range(5000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("the condition never held")


async def test_429_waits_for_retry_after_and_pauses_the_webhook(slack: Receiver) -> None:
    clock = FakeClock()
    slack.queue(Reply(status=429, body="rate_limited", headers={"Retry-After": "30"}))
    webhook = hook(url=slack.url(PATH), max_concurrency=1, circuit_breaker=False)
    dispatcher = WebhookDispatcher(webhooks=[webhook], plugin_manager=manager(), clock=clock)
    try:
        await dispatcher.emit_event(reference_event())
        await dispatcher.emit_event(reference_event())
        await slack.wait_for(1)
        # Both wait on the fake clock: the retry of the first event, the pause for the second.
        await until(lambda: clock.sleepers >= 2)
        await clock.advance(29.9)
        assert clock.sleepers >= 1 and len(slack.requests) == 1
        await clock.advance(0.2)
        await slack.wait_for(3)
    finally:
        await dispatcher.close()
    assert [r.answered for r in slack.requests] == [429, 200, 200]


# -- discovery ----------------------------------------------------------------------------


def test_the_entry_point_loads_this_plugin() -> None:
    pm = build_plugin_manager(env={"EMPATHY_WEBHOOKS_LOAD_PLUGINS": "slack"})
    assert pm.get_plugin("slack") is plugin
    types = Hooks(pm).webhook_types()
    assert types["slack"] is SlackWebhook
    assert not {"teams", "discord", "jira", "pagerduty"} & set(types)
    assert pm.distributions["slack"][0] == "empathy-webhooks-slack"


def test_not_loaded_the_dispatcher_refuses_a_slack_webhook_clearly() -> None:
    pm = build_plugin_manager(env={"EMPATHY_WEBHOOKS_LOAD_PLUGINS": ""})
    assert "slack" not in Hooks(pm).webhook_types()
    with pytest.raises(LookupError, match="no loaded plugin provides it") as caught:
        WebhookDispatcher(webhooks=[hook()], plugin_manager=pm)
    assert "SlackWebhook" in str(caught.value) and TOKEN not in str(caught.value)


# -- the conformance suite ------------------------------------------------------------------


class TestSlackConformance(WebhookConformance):
    plugin = plugin
    secrets = (TOKEN,)

    def make_webhook(self, url: str) -> Webhook:
        return SlackWebhook(webhook_url=url.rstrip("/") + PATH, channel="#conformance")

    def success_reply(self, request: ReceivedRequest) -> Reply:
        return fake_slack(request)

    def failure_reply(self, request: ReceivedRequest) -> Reply:
        return Reply(status=400, body="invalid_blocks")

    def check_limits(self, request: OutgoingRequest, webhook: Webhook) -> None:
        super().check_limits(request, webhook)
        assert slack_problems(json.loads(request.body)) == []
