"""Discord: golden embeds, every Discord limit under generated events, and delivery through a
real dispatcher to a loopback fake of Discord's webhook endpoint."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import empathy_webhooks_discord as plugin
import pytest
from empathy_webhooks_discord import DiscordWebhook
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from empathy_webhooks_core import Event, OutgoingRequest, Webhook, WebhookDispatcher
from empathy_webhooks_core.delivery import render_request
from empathy_webhooks_core.plugin import utf16_len
from empathy_webhooks_core.plugins import Hooks, build_plugin_manager
from empathy_webhooks_core.testing import FakeClock, ReceivedRequest, Receiver, Reply
from empathy_webhooks_core.testing.conformance import WebhookConformance, event_strategy

TOKEN = "dWebhookToken_0123456789abcdefABCDEF"
PATH = f"/api/webhooks/112233445566778899/{TOKEN}"
FAST = {"initial_delay_seconds": 0.001, "max_delay_seconds": 0.01}
WHEN = "2025-11-25T14:30:00Z"
REFERENCE_DATA = {
    "prediction": "Auth deployment may conflict with user-service v2.1",
    "confidence": 0.87,
    "recommendation": "Deploy auth behind feature flag",
}


def discord_problems(body: Any) -> list[str]:
    """What Discord would answer 400 to: its documented message and embed limits."""
    if not isinstance(body, dict):
        return ["not a JSON object"]
    problems = []

    def size(text: Any) -> int:
        return utf16_len(text.strip()) if isinstance(text, str) else 0

    def text(value: Any, limit: int, where: str) -> None:
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{where}: must be 1 or more in length")
        elif size(value) > limit:
            problems.append(f"{where}: must be {limit} or fewer in length")

    if "content" in body:
        text(body["content"], 2000, "content")
    embeds = body.get("embeds", [])
    if "content" not in body and not embeds:
        problems.append("cannot send an empty message")
    if len(embeds) > 10:
        problems.append("embeds: too many")
    total = 0
    for n, embed in enumerate(embeds):
        for key, limit in (("title", 256), ("description", 4096)):
            if key in embed:
                text(embed[key], limit, f"embeds.{n}.{key}")
                total += size(embed[key])
        if "footer" in embed:
            text(embed["footer"].get("text"), 2048, f"embeds.{n}.footer.text")
            total += size(embed["footer"].get("text"))
        if "author" in embed:
            text(embed["author"].get("name"), 256, f"embeds.{n}.author.name")
            total += size(embed["author"].get("name"))
        fields = embed.get("fields", [])
        if len(fields) > 25:
            problems.append(f"embeds.{n}.fields: too many")
        for m, field in enumerate(fields):
            text(field.get("name"), 256, f"embeds.{n}.fields.{m}.name")
            text(field.get("value"), 1024, f"embeds.{n}.fields.{m}.value")
            total += size(field.get("name")) + size(field.get("value"))
        color = embed.get("color", 0)
        if isinstance(color, bool) or not isinstance(color, int) or not 0 <= color <= 0xFFFFFF:
            problems.append(f"embeds.{n}.color: invalid")
    if total > 6000:
        problems.append(f"embeds: {total} characters over 6000")
    if "username" in body:
        name = body["username"]
        text(name, 80, "username")
        if isinstance(name, str) and ("clyde" in name.lower() or "discord" in name.lower()):
            problems.append("username: contains a forbidden word")
    mentions = body.get("allowed_mentions", {})
    for kind in ("users", "roles"):
        if kind in mentions.get("parse", []) and mentions.get(kind):
            problems.append(f"allowed_mentions: parse and {kind} are mutually exclusive")
    return problems


def fake_discord(request: ReceivedRequest) -> Reply:
    """Answers as Discord's execute-webhook endpoint does with `?wait=true`."""
    if not request.path.endswith(TOKEN):
        return Reply(status=404, body={"message": "Unknown Webhook", "code": 10015})
    body = request.json()
    problems = discord_problems(body)
    if problems:
        return Reply(
            status=400,
            body={
                "code": 50035,
                "message": "Invalid Form Body",
                "errors": {"payload": {"_errors": [{"message": p} for p in problems]}},
            },
        )
    if request.query.get("wait") != "true":
        return Reply(status=204)
    return Reply(status=200, body={"id": "1300000000000000001", "type": 0, **body})


def manager() -> Any:
    return build_plugin_manager(load_entry_points=False, extra_plugins=[plugin])


def hook(url: str = f"https://discord.com{PATH}", **options: Any) -> DiscordWebhook:
    return DiscordWebhook(webhook_url=url, **options)


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
async def discord() -> AsyncIterator[Receiver]:
    async with Receiver() as receiver:
        receiver.handler = fake_discord
        yield receiver


# -- golden messages ------------------------------------------------------------------------


def test_the_prediction_as_an_embed_exactly() -> None:
    webhook = hook(username="Empathy Bot", avatar_url="https://example.com/bot.png")
    request = render_request(webhook, reference_event(), plugin_manager=manager())
    assert request.url == f"https://discord.com{PATH}?wait=true"
    assert dict(request.headers) == {"Content-Type": "application/json"}
    assert request.json_body() == {
        "username": "Empathy Bot",
        "avatar_url": "https://example.com/bot.png",
        "embeds": [
            {
                "title": "🔮 Level 4 Prediction",
                "description": "Auth deployment may conflict with user-service v2.1",
                "color": 0x3498DB,
                "fields": [
                    {"name": "Confidence", "value": "87%", "inline": True},
                    {
                        "name": "Recommendation",
                        "value": "Deploy auth behind feature flag",
                        "inline": True,
                    },
                ],
                "footer": {"text": "Detected by: developer_123"},
                "timestamp": "2025-11-25T14:30:00.000Z",
            }
        ],
        "allowed_mentions": {"parse": []},
    }


#: event type -> (data, title, description, colour, fields as (name, value, inline))
GOLDEN: dict[str, tuple[dict[str, Any], str, str, int, list[tuple[str, str, bool]]]] = {
    "alert": (
        {"title": "Error rate above 5%", "service": "checkout-api", "severity": "high"},
        "🚨 Alert",
        "Error rate above 5%",
        0xE74C3C,
        [("Service", "checkout-api", True), ("Severity", "High", True)],
    ),
    "bug_detected": (
        {"title": "Null dereference", "file": "src/cart.py", "line": 118},
        "🐛 Bug detected",
        "Null dereference",
        0xF1A40F,
        [("Location", "src/cart.py:118", True), ("Severity", "Medium", True)],
    ),
    "security_vulnerability": (
        {
            "vulnerability": "SQL injection",
            "file": "auth.py",
            "line": 45,
            "severity": "critical",
            "description": "User input concatenated directly into SQL query",
        },
        "🔒 Security vulnerability",
        "SQL injection",
        0x992D22,
        [
            ("Location", "auth.py:45", True),
            ("Severity", "Critical", True),
            ("Details", "User input concatenated directly into SQL query", False),
        ],
    ),
    "performance_issue": (
        {"title": "Slow users API", "endpoint": "/api/users", "metric": "p95_ms", "value": 850},
        "🐢 Performance issue",
        "Slow users API",
        0xF1A40F,
        [
            ("Endpoint", "/api/users", True),
            ("Metric", "p95\\_ms", True),
            ("Value", "850", True),
            ("Severity", "Medium", True),
        ],
    ),
    "code_review_complete": (
        {"summary": "2 suggestions", "repository": "acme/shop", "pr_number": 123},
        "🤖 Code review complete",
        "2 suggestions",
        0x3498DB,
        [("Repository", "acme/shop", True), ("Pull request", "\\#123", True)],
    ),
    "test_failure": (
        {"test": "test_total", "error": "AssertionError: 41 != 42"},
        "❌ Test failure",
        "test\\_total",
        0xF1A40F,
        [("Error", "AssertionError: 41 != 42", True), ("Severity", "Medium", True)],
    ),
    "deployment_risk": (
        {"title": "Peak-hour deploy", "environment": "production", "risk_score": 0.72},
        "🚀 Deployment risk",
        "Peak-hour deploy",
        0xF1A40F,
        [
            ("Environment", "production", True),
            ("Risk score", "72%", True),
            ("Severity", "Medium", True),
        ],
    ),
    "compliance_violation": (
        {"title": "PHI in logs", "regulation": "HIPAA"},
        "⚖️ Compliance violation",
        "PHI in logs",
        0xE74C3C,
        [("Regulation", "HIPAA", True), ("Severity", "High", True)],
    ),
    "pattern_discovered": (
        {"pattern": "Retry storms", "occurrences": 7},
        "💡 Pattern discovered",
        "Retry storms",
        0x3498DB,
        [("Occurrences", "7", True)],
    ),
    "release_published": (
        {"title": "v1.9.0 is out", "version": "1.9.0"},
        "📣 Release published",
        "v1.9.0 is out",
        0x3498DB,
        [("Version", "1.9.0", True)],
    ),
}


@pytest.mark.parametrize("event_type", sorted(GOLDEN))
def test_golden_embed_per_event_type(event_type: str) -> None:
    data, title, description, color, fields = GOLDEN[event_type]
    event = Event(event_type=event_type, data=data, user_id="developer_123", timestamp=WHEN)
    assert hook().render(event).json_body() == {
        "embeds": [
            {
                "title": title,
                "description": description,
                "color": color,
                "fields": [{"name": n, "value": v, "inline": i} for n, v, i in fields],
                "footer": {"text": "Detected by: developer_123"},
                "timestamp": "2025-11-25T14:30:00.000Z",
            }
        ],
        "allowed_mentions": {"parse": []},
    }


def test_a_link_in_the_data_becomes_the_embed_url() -> None:
    event = Event(event_type="code_review_complete", data={"url": "https://example.com/pr/1"})
    assert hook().render(event).json_body()["embeds"][0]["url"] == "https://example.com/pr/1"


def test_event_text_never_pings_and_markdown_shows_as_written() -> None:
    event = reference_event(
        data={"prediction": "@everyone @here <@123> <@&456> **bold** [x](https://evil.example)"}
    )
    body = hook().render(event).json_body()
    assert body["allowed_mentions"] == {"parse": []}
    assert "content" not in body
    description = body["embeds"][0]["description"]
    assert description == (
        "@\u200beveryone @\u200bhere <\u200b@123\\> <\u200b@&456\\> \\*\\*bold\\*\\* "
        "\\[x\\](https://evil.example)"
    )


def test_a_configured_mention_pings_only_what_is_allowed() -> None:
    webhook = hook(content="<@&456>", allowed_mentions={"roles": ["456"]})
    body = webhook.render(reference_event()).json_body()
    assert body["content"] == "<@&456>"
    assert body["allowed_mentions"] == {"roles": ["456"]}
    with pytest.raises(ValueError, match="cannot both parse 'roles' and list roles"):
        hook(allowed_mentions={"parse": ["roles"], "roles": ["456"]})


def test_the_url_keeps_its_query_and_adds_wait_and_thread() -> None:
    webhook = hook(url=f"https://discord.com{PATH}?with_components=true&wait=false", thread_id=99)
    assert webhook.execute_url == (
        f"https://discord.com{PATH}?with_components=true&wait=true&thread_id=99"
    )


def test_usernames_discord_refuses_are_refused_up_front() -> None:
    with pytest.raises(ValueError, match="clyde"):
        hook(username="Clyde bot")
    with pytest.raises(ValueError, match="1 to 80"):
        hook(username="x" * 81)


def test_huge_values_are_cut_within_each_limit_and_the_total() -> None:
    event = Event(
        event_type="security_vulnerability",
        data={
            "title": "😀" * 5000,
            "description": "_" * 5000,
            "fix": "y" * 5000,
            "cwe": "z" * 5000,
            "file": "f" * 5000,
        },
        user_id="u" * 5000,
    )
    body = hook().render(event).json_body()
    assert discord_problems(body) == []
    embed = body["embeds"][0]
    assert embed["description"].endswith("…")
    assert all(not f["value"].rstrip("…").endswith("\\") for f in embed["fields"])


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
@given(event=event_strategy())
def test_any_event_renders_a_message_discord_accepts(event: Event) -> None:
    body = json.loads(hook(username="Empathy Bot").render(event).body)
    assert discord_problems(body) == []
    assert body["allowed_mentions"] == {"parse": []}
    assert "@everyone" not in json.dumps(body, ensure_ascii=False)


_TEXT = st.one_of(st.text(max_size=30), st.just("x" * 5000), st.just("😀" * 3000), st.just(" "))


@_PROPERTY
@given(
    embeds=st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                "title": _TEXT,
                "description": _TEXT,
                "footer": st.fixed_dictionaries({"text": _TEXT}),
                "author": st.fixed_dictionaries({"name": _TEXT}),
                "color": st.integers(min_value=-5, max_value=0x1FFFFFF),
                "fields": st.lists(
                    st.fixed_dictionaries({"name": _TEXT, "value": _TEXT}), max_size=30
                ),
            },
        ),
        max_size=12,
    ),
    content=st.one_of(st.none(), _TEXT),
    username=st.one_of(st.none(), _TEXT, st.just("Discord Bot")),
)
def test_a_template_cannot_break_the_limits_either(
    embeds: list[Any], content: Any, username: Any
) -> None:
    mine = {"embeds": embeds, "content": content, "username": username}
    body = hook(templates={"*": lambda event: mine}).render(reference_event()).json_body()
    assert discord_problems(body) == []


# -- templates and dry runs ---------------------------------------------------------------


def test_a_string_template_is_the_content_with_event_values_made_inert() -> None:
    webhook = hook(templates={"prediction": "New prediction: {data[prediction]}"})
    body = webhook.render(reference_event(data={"prediction": "@everyone look"})).json_body()
    assert body == {
        "content": "New prediction: @\u200beveryone look",
        "allowed_mentions": {"parse": []},
    }


def test_a_function_template_is_merged_over_the_default() -> None:
    webhook = hook(templates={"*": lambda event: {"content": f"{event.event_type}!", "tts": True}})
    body = webhook.render(reference_event()).json_body()
    assert body["content"] == "prediction!" and body["tts"] is True
    assert body["embeds"][0]["title"] == "🔮 Level 4 Prediction"


def test_render_is_a_dry_run_matching_the_dispatcher() -> None:
    webhook = hook()
    assert webhook.render(reference_event()).body == (
        render_request(webhook, reference_event(), plugin_manager=manager()).body
    )
    assert TOKEN not in repr(webhook.render(reference_event()))


# -- secrets --------------------------------------------------------------------------------


def test_the_url_is_a_secret_masked_everywhere_it_is_shown() -> None:
    webhook = hook()
    # Declared by `secret_url = True`: the whole URL and its token are masked wherever shown.
    assert {f"https://discord.com{PATH}", TOKEN} <= set(webhook.secret_values())
    assert "webhook_url='https://discord.com/api/webhooks/***'" in repr(webhook)
    assert TOKEN not in webhook.url


# -- delivery through the dispatcher -------------------------------------------------------


async def deliver(receiver: Receiver, *events: Event, **options: Any) -> dict[str, Any]:
    failures: list[Any] = []
    successes: list[Any] = []

    class Listener:
        @plugin.hookimpl
        def on_success(self, webhook: Any, event: Any, result: Any) -> None:
            successes.append(result)

    pm = manager()
    pm.register(Listener())
    webhook = hook(
        url=receiver.url(PATH),
        retry_policy=options.pop("retry_policy", FAST),
        on_failure=lambda w, e, error: failures.append(error),
        **options,
    )
    async with WebhookDispatcher(webhooks=[webhook], plugin_manager=pm) as dispatcher:
        for event in events:
            await dispatcher.emit_event(event)
        await dispatcher.drain()
        return {
            "failures": failures,
            "successes": successes,
            "dead": await dispatcher.dead_letters(),
            "enabled": dispatcher.is_enabled(webhook.name),
        }


async def test_delivered_with_wait_true_and_the_message_id_reported(discord: Receiver) -> None:
    outcome = await deliver(discord, reference_event(), thread_id="77")
    [request] = discord.requests
    assert (request.path, dict(request.query)) == (PATH, {"wait": "true", "thread_id": "77"})
    assert request.answered == 200
    assert request.body == hook(thread_id="77").render(reference_event()).body
    assert [dict(s.details) for s in outcome["successes"]] == [
        {"message_id": "1300000000000000001"}
    ]


async def test_a_400_is_final_with_discords_error_in_the_reason(discord: Receiver) -> None:
    discord.handler = None
    discord.respond(
        400,
        {
            "code": 50035,
            "message": "Invalid Form Body",
            "errors": {
                "embeds": {
                    "0": {
                        "title": {
                            "_errors": [
                                {
                                    "code": "BASE_TYPE_MAX_LENGTH",
                                    "message": "Must be 256 or fewer in length.",
                                }
                            ]
                        }
                    }
                }
            },
        },
    )
    outcome = await deliver(discord, reference_event())
    assert len(discord.requests) == 1
    [failure] = outcome["failures"]
    assert failure.reason == (
        "Discord refused the message: Invalid Form Body (code 50035): "
        "embeds.0.title: Must be 256 or fewer in length. (HTTP 400)"
    )
    assert len(outcome["dead"]) == 1


async def test_a_deleted_webhook_404_disables_it_without_retrying(discord: Receiver) -> None:
    webhook_url = discord.url(PATH.replace(TOKEN, "deleted_token_0000"))
    failures: list[Any] = []
    webhook = hook(
        url=webhook_url, max_concurrency=1, on_failure=lambda w, e, x: failures.append(x)
    )
    async with WebhookDispatcher(webhooks=[webhook], plugin_manager=manager()) as dispatcher:
        await dispatcher.emit_event(reference_event())
        await dispatcher.emit_event(reference_event())
        await dispatcher.drain()
        assert dispatcher.is_enabled(webhook.name) is False
    assert len(discord.requests) == 1
    assert failures[0].reason.startswith(
        "Discord says the webhook is gone: Unknown Webhook (code 10015) (HTTP 404)"
    )


async def test_a_server_error_is_retried(discord: Receiver) -> None:
    discord.queue(Reply(status=502), Reply(status=500, body={"message": "oops"}))
    outcome = await deliver(discord, reference_event())
    assert [r.answered for r in discord.requests] == [502, 500, 200]
    assert outcome["failures"] == []


async def test_a_cloudflare_edge_error_is_retried_whatever_the_retry_list(
    discord: Receiver,
) -> None:
    """520, 522, 524: Cloudflare's page in front of Discord, seen on webhook POSTs (the
    origin unreachable or slow). They were final: dead-lettered on the first attempt as
    "Discord refused the message". Retried even with the reference's [500, 502, 503, 504]."""
    edge = "<html><head><title>520 Origin Error</title></head><body>cloudflare</body></html>"
    discord.queue(
        Reply(status=520, body=edge, headers={"Content-Type": "text/html"}),
        Reply(status=522, body=edge, headers={"Content-Type": "text/html"}),
        Reply(status=524, body=edge, headers={"Content-Type": "text/html"}),
    )
    outcome = await deliver(
        discord,
        reference_event(),
        retry_policy={**FAST, "max_retries": 3, "retry_on_status": [500, 502, 503, 504]},
    )
    assert [r.answered for r in discord.requests] == [520, 522, 524, 200]
    assert outcome["failures"] == [] and outcome["dead"] == []


async def until(condition: Any) -> None:
    for _ in range(5000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("the condition never held")


async def test_429_honours_the_json_retry_after_over_the_header(discord: Receiver) -> None:
    clock = FakeClock()
    discord.queue(
        Reply(
            status=429,
            body={"message": "You are being rate limited.", "retry_after": 1.5, "global": False},
            headers={"Retry-After": "2"},
        )
    )
    webhook = hook(url=discord.url(PATH), max_concurrency=1, circuit_breaker=False)
    dispatcher = WebhookDispatcher(webhooks=[webhook], plugin_manager=manager(), clock=clock)
    try:
        await dispatcher.emit_event(reference_event())
        await dispatcher.emit_event(reference_event())
        await discord.wait_for(1)
        await until(lambda: clock.sleepers >= 2)  # the retry, and the pause for the other
        await clock.advance(1.4)
        assert clock.sleepers >= 1 and len(discord.requests) == 1
        await clock.advance(0.2)  # 1.6 s: past retry_after 1.5, short of the header's 2
        await discord.wait_for(3)
    finally:
        await dispatcher.close()
    assert [r.answered for r in discord.requests] == [429, 200, 200]


# -- discovery ----------------------------------------------------------------------------


def test_the_entry_point_loads_this_plugin() -> None:
    pm = build_plugin_manager(env={"EMPATHY_WEBHOOKS_LOAD_PLUGINS": "discord"})
    assert pm.get_plugin("discord") is plugin
    types = Hooks(pm).webhook_types()
    assert types["discord"] is DiscordWebhook
    assert not {"slack", "teams"} & set(types)


def test_not_loaded_the_dispatcher_refuses_a_discord_webhook_clearly() -> None:
    pm = build_plugin_manager(env={"EMPATHY_WEBHOOKS_LOAD_PLUGINS": "slack"})
    with pytest.raises(LookupError, match="DiscordWebhook .* no loaded plugin provides it"):
        WebhookDispatcher(webhooks=[hook()], plugin_manager=pm)


# -- the conformance suite ------------------------------------------------------------------


class TestDiscordConformance(WebhookConformance):
    plugin = plugin
    secrets = (TOKEN,)

    def make_webhook(self, url: str) -> Webhook:
        return DiscordWebhook(webhook_url=url.rstrip("/") + PATH, username="Empathy Bot")

    def success_reply(self, request: ReceivedRequest) -> Reply:
        return fake_discord(request)

    def failure_reply(self, request: ReceivedRequest) -> Reply:
        return Reply(status=400, body={"code": 50006, "message": "Cannot send an empty message"})

    def check_limits(self, request: OutgoingRequest, webhook: Webhook) -> None:
        super().check_limits(request, webhook)
        assert discord_problems(json.loads(request.body)) == []
