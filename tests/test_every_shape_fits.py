"""Events of every shape an adversary can give, each just past the service's limits, through
every built-in formatter: the rendering fits the service's documented limits (the reference's
`targets.md` and each plugin's limit constants), starts with the event's text and says it was
cut; or, where no honest fit exists (the custom webhook sends the event itself), the failure
is loud: a dead letter saying why and `on_failure` called.

Before: Jira's description of `"a\\n" * 25000` stayed at 1.2 MB (thousands of short text and
`hardBreak` nodes no cut of the longest text could shrink), and a GitHub dispatch of an event
with a long `user_id` or 10,000 metadata keys went over 64 KB: both refused, the alert lost."""

from __future__ import annotations

import asyncio
import email
import json
from email import policy
from typing import Any

import attrs
import pytest

from empathy_webhooks_core import WebhookDispatcher
from empathy_webhooks_core.delivery import PayloadTooLarge
from empathy_webhooks_core.events import Event
from empathy_webhooks_core.webhooks import Webhook
from empathy_webhooks_core.wire import OutgoingRequest

from ._builtin_webhooks import builtin_webhooks

#: How the event's text starts, to find it in what the service shows.
START = "Start of the text"


WEBHOOKS = {webhook.name: webhook for webhook in builtin_webhooks()}


@pytest.fixture(scope="module")
def dispatcher() -> WebhookDispatcher:
    return WebhookDispatcher(webhooks=list(WEBHOOKS.values()))


def units(text: str) -> int:
    """UTF-16 code units: how Slack, Discord, Teams and Jira count (an emoji is 2)."""
    return len(text.encode("utf-16-le")) // 2


def chain(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def text_event(event_type: str, text: str, **fields: Any) -> Event:
    """`text` where each formatter reads the event's prose, after a short title."""
    data = {"title": "Short title", "pr": 7}
    data.update(dict.fromkeys(("description", "message", "details", "prediction"), START + text))
    return Event(event_type=event_type, data=data, **fields)


#: The event's text in shapes that defeat one cut of one string, each just past the largest
#: limit a text has (a GitHub comment's 65,536 characters).
TEXT_SHAPES = {
    "many short lines": text_event("bug_detected", " a\na" * 16_500),
    "many blank lines": text_event("alert", "\n\n x" * 16_500),
    "paragraphs": text_event("my_event", "\n\nb a" * 16_500),
    "one huge string": text_event("security_vulnerability", "x" * 66_000),
    "emoji lines": text_event("prediction", "\n😀" * 33_000, empathy_level=4),
    "emoji (UTF-16 surrogates)": text_event("alert", "😀" * 33_000),
    "combining marks": text_event("test_failure", "e\u0301" * 33_000),
    "CJK": text_event("pattern_discovered", "界" * 66_000),
    "markup and escapes": text_event("alert", '"\\<>&*_`~|@' * 6_000),
}

#: Shapes with no one text: many keys, long keys, many items, deep nesting, long fields.
OTHER_SHAPES = {
    "10,000 data keys": Event(
        event_type="alert", data={"pr": 7, **{f"key_{i}": f"value {i}" for i in range(10_000)}}
    ),
    "10,000 metadata keys": Event(
        event_type="my_event",
        data={"title": "t", "pr": 7},
        metadata={f"key_{i}": f"value {i}" for i in range(10_000)},
    ),
    "long keys": Event(
        event_type="alert", data={"pr": 7, **{"k" * 20_000 + str(i): "v" for i in range(4)}}
    ),
    "many list items": Event(
        event_type="prediction",
        data={
            "pr": 7,
            "recommendations": [f"r{i}" for i in range(10_000)],
            "items": ["x"] * 10_000,
        },
    ),
    "deep nesting": Event(
        event_type="bug_detected",
        data={"pr": 7, "title": chain(63), "details": chain(63), "fix": chain(63)},
    ),
    "10,000 tags and labels": Event(
        event_type="alert",
        data={
            "title": "t",
            "pr": 7,
            "tags": [f"tag number {i}" for i in range(10_000)],
            "labels": [f"label {i}" for i in range(10_000)],
        },
    ),
    "long tags": Event(
        event_type="alert",
        data={"title": "t", "pr": 7, "tags": ["x y" * 2_000] * 60, "labels": "z " * 40_000},
    ),
    "long user, severity, classification": Event(
        event_type="compliance_violation",
        data={"title": "t", "pr": 7},
        user_id="u\n" * 33_000,
        severity="😀" * 33_000,
        classification="c" * 66_000,
    ),
    "long event type": Event(event_type="😀" * 500 + "_x" * 12, data={"title": "t", "pr": 7}),
    "long location": Event(
        event_type="security_vulnerability",
        data={"title": "t", "pr": 7, "file": "f" * 66_000, "line": "1\n" * 20_000},
    ),
    "a mix": Event(
        event_type="my_event",
        data={
            "title": "a\n😀" * 3_000,
            "pr": 7,
            **{f"k{i}": ["x", {"y": "z\n" * 3}] for i in range(2_000)},
            "tags": ["t t"] * 2_000,
        },
        metadata={f"m{i}": "é" * 10 for i in range(2_000)},
        user_id="ü\n" * 3_000,
    ),
}


# -- each service's limits ---------------------------------------------------------------------


def _slack(body: dict[str, Any]) -> None:
    assert units(body["text"]) <= 40_000
    blocks = body.get("blocks", [])
    assert len(blocks) <= 50
    for block in blocks:
        assert len(block.get("block_id", "")) <= 255
        if block["type"] == "header":
            assert 0 < units(block["text"]["text"]) <= 150
        if block["type"] == "section":
            if "text" in block:
                assert 0 < units(block["text"]["text"]) <= 3_000
            fields = block.get("fields", [])
            assert len(fields) <= 10
            assert all(0 < units(field["text"]) <= 2_000 for field in fields)
        if block["type"] == "context":
            assert len(block["elements"]) <= 10
            assert all(0 < units(e.get("text", "image")) <= 3_000 for e in block["elements"])
        if block["type"] == "markdown":
            assert units(block["text"]) <= 12_000


def _discord(body: dict[str, Any]) -> None:
    assert units(body.get("content", "")) <= 2_000
    assert units(body.get("username", "")) <= 80
    embeds = body.get("embeds", [])
    assert len(embeds) <= 10
    total = 0
    for embed in embeds:
        fields = embed.get("fields", [])
        assert len(fields) <= 25
        sizes = {
            "title": (units(embed.get("title", "")), 256),
            "description": (units(embed.get("description", "")), 4_096),
            "footer": (units(embed.get("footer", {}).get("text", "")), 2_048),
            "author": (units(embed.get("author", {}).get("name", "")), 256),
        }
        for name, (size, limit) in sizes.items():
            assert size <= limit, f"embed {name} of {size}"
        for field in fields:
            assert 0 < units(field["name"]) <= 256 and 0 < units(field["value"]) <= 1_024
        total += sum(size for size, _ in sizes.values())
        total += sum(units(f["name"]) + units(f["value"]) for f in fields)
    assert total <= 6_000, f"embeds of {total}"


def _jira(body: dict[str, Any]) -> None:
    fields = body["fields"]
    assert 0 < units(fields["summary"]) <= 255 and "\n" not in fields["summary"]
    description = fields["description"]
    if not isinstance(description, str):
        description = json.dumps(description, ensure_ascii=False)
    assert units(description) <= 32_767, f"description of {units(description)}"
    for label in fields["labels"]:
        assert 0 < units(label) <= 255 and not any(char.isspace() for char in label)


def _github(body: dict[str, Any]) -> None:
    assert body["body"].strip() and len(body["body"]) <= 65_536


def _github_dispatch(body: dict[str, Any]) -> None:
    assert 0 < len(body["event_type"]) <= 100
    payload = body["client_payload"]
    assert len(payload) <= 10
    size = len(json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode())
    assert size < 64 * 1024, f"client_payload of {size} bytes"


def _github_workflow(body: dict[str, Any]) -> None:
    assert len(json.dumps(body["inputs"], ensure_ascii=False)) <= 65_535


def _datadog(body: dict[str, Any]) -> None:
    assert 0 < len(body["title"]) <= 100
    assert len(body["text"]) <= 4_000
    assert len(body["aggregation_key"]) <= 100
    assert len(body["tags"]) <= 100 and all(len(tag) <= 200 for tag in body["tags"])


def _pagerduty(body: dict[str, Any]) -> None:
    assert 0 < len(body["dedup_key"]) <= 255
    payload = body["payload"]
    assert 0 < len(payload["summary"]) <= 1_024
    for name in ("source", "component", "group", "class"):
        assert len(payload.get(name, "")) <= 255, name


def _grafana(body: dict[str, Any]) -> None:
    assert 0 < len(body["text"]) <= 10_000
    assert len(body["tags"]) <= 50 and all(0 < len(tag) <= 100 for tag in body["tags"])


LIMITS = {
    "slack": _slack,
    "teams": lambda body: None,  # its limit is in bytes, checked on the body below
    "discord": _discord,
    "jira": _jira,
    "jira_v2": _jira,
    "github": _github,
    "github_dispatch": _github_dispatch,
    "github_workflow": _github_workflow,
    "datadog": _datadog,
    "pagerduty": _pagerduty,
    "grafana": _grafana,
    "custom": lambda body: None,
}
#: Services that take the event's text whole when the event is within their cap in bytes.
CARRIED_WHOLE = {"pagerduty", "custom"}
#: Whole-message caps in bytes, besides every webhook's `max_payload_bytes`.
BODY_BYTES = {"teams": 28_000, "pagerduty": 512 * 1024}


def shown(request: OutgoingRequest, webhook: Webhook) -> str:
    """Assert `request` is within the service's limits; return the text it shows."""
    assert len(request.body) <= webhook.max_payload_bytes
    assert len(request.body) <= BODY_BYTES.get(webhook.name, len(request.body))
    if webhook.name == "email":
        assert request.body.isascii()
        assert all(len(line) <= 998 for line in request.body.split(b"\r\n"))
        message = email.message_from_bytes(request.body, policy=policy.default)
        assert 0 < len(" ".join(message["Subject"].split())) <= 200
        parts = message.iter_parts()  # type: ignore[attr-defined]
        return "\n".join(part.get_content() for part in parts)
    body = json.loads(request.body)
    LIMITS[webhook.name](body)
    return " ".join(_strings(body))


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for key, item in value.items() for text in (key, *_strings(item))]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    return []


# -- the tests ---------------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", WEBHOOKS)
@pytest.mark.parametrize("shape", TEXT_SHAPES)
def test_a_long_text_fits_starts_with_the_text_and_says_it_was_cut(
    dispatcher: WebhookDispatcher, shape: str, name: str
) -> None:
    event = TEXT_SHAPES[shape]
    webhook = WEBHOOKS[name]
    try:
        request = dispatcher.render(name, event)
    except PayloadTooLarge:
        # Only the custom webhook sends the event as it is: nothing to cut (see below).
        assert name == "custom"
        return
    text = shown(request, webhook)
    # The dispatch payloads carry the data as JSON, whose excerpt starts with `{"title"`.
    assert START in text, "the event's text is not shown"
    if name not in CARRIED_WHOLE:
        assert "…" in text or "truncated" in text, "nothing says the text was cut"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", WEBHOOKS)
@pytest.mark.parametrize("shape", OTHER_SHAPES)
def test_every_shape_renders_within_the_service_limits(
    dispatcher: WebhookDispatcher, shape: str, name: str
) -> None:
    try:
        request = dispatcher.render(name, OTHER_SHAPES[shape])
    except PayloadTooLarge:
        assert name == "custom"
        return
    shown(request, WEBHOOKS[name])


@pytest.mark.timeout(60)
async def test_an_event_too_large_for_the_custom_webhook_is_dead_lettered_and_reported() -> None:
    """The custom webhook's receiver gets the event itself, which no cut can honestly keep:
    over `max_payload_bytes` it is never sent, and the failure says why, loudly."""
    failures: list[Any] = []
    webhook = attrs.evolve(
        WEBHOOKS["custom"],
        url="http://127.0.0.1:9/hook",
        max_payload_bytes=16 * 1024,
        on_failure=lambda webhook, event, error: failures.append(error),
    )
    event = TEXT_SHAPES["one huge string"]
    async with WebhookDispatcher(webhooks=[webhook]) as dispatcher:
        await dispatcher.emit_event(event)
        await asyncio.wait_for(dispatcher.drain(timeout=10), 20)
        dead = await dispatcher.dead_letters()
    assert [letter.event.event_id for letter in dead] == [event.event_id]
    assert "max_payload_bytes" in json.dumps(dead[0].error)
    assert len(failures) == 1 and "max_payload_bytes" in failures[0].reason
