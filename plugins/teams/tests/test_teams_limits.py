"""Teams' real rules for every body the plugin makes: at most 28 KB (Teams answers 413 above),
valid against Microsoft's Adaptive Card schema (a fixture, see schemas/README.md), and event
text that cannot format, link or ping. Sample events and hostile edge cases alike: 10,000-
character strings, 500 fields, markdown and HTML in values, mentions, templates."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import empathy_webhooks_teams as plugin
import jsonschema
import pytest
from empathy_webhooks_teams import TRUNCATED, TeamsWebhook, escape_markdown

from empathy_webhooks_core import Event, EventType
from empathy_webhooks_core.delivery import render_request
from empathy_webhooks_core.plugins import build_plugin_manager
from empathy_webhooks_core.testing.conformance import SAMPLE_DATA

URL = "https://prod-12.westus.logic.azure.com/workflows/0a/triggers/manual/paths/invoke?sig=s3"
#: "28 KB" read the strict way: 28,000 bytes of encoded body.
TEAMS_LIMIT = 28_000
SCHEMA = Path(__file__).parent / "schemas" / "adaptive-card.json"
UPN = "adele.vance@contoso.onmicrosoft.com"
OBJECT_ID = "87d349ed-44d7-43e1-9a83-5f2406dee5bd"

#: Teams' own `msteams` card property, which the Adaptive Card schema leaves to hosts: the
#: width and `<at>` mention entities (learn.microsoft.com, "Format cards in Teams").
MSTEAMS_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "width": {"enum": ["Full"]},
        "entities": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["type", "text", "mentioned"],
                "additionalProperties": False,
                "properties": {
                    "type": {"const": "mention"},
                    "text": {"type": "string", "pattern": "^<at>[^<>]+</at>$"},
                    "mentioned": {
                        "type": "object",
                        "required": ["id", "name"],
                        "properties": {"id": {"type": "string"}, "name": {"type": "string"}},
                    },
                },
            },
        },
    },
}

MARKUP = (
    "**bold** _it_ [click here](https://evil.example/login) <b>html</b> <a href='x'>a</a> "
    "<at>Everyone</at> {{DATE(2017-02-14T06:00:00Z, SHORT)}} https://bare.example www.bare.example "
    "`code`\n- list item\n1. numbered\n# heading"
)


@cache
def card_validator() -> jsonschema.Draft6Validator:
    return jsonschema.Draft6Validator(json.loads(SCHEMA.read_text(encoding="utf-8")))


def manager() -> Any:
    return build_plugin_manager(load_entry_points=False, extra_plugins=[plugin])


def card_problems(body: bytes) -> list[str]:
    """What Teams would refuse: size, envelope, and the card against the schema."""
    problems = []
    if len(body) > TEAMS_LIMIT:
        problems.append(f"{len(body)} bytes, over {TEAMS_LIMIT}")
    message = json.loads(body)
    if message.get("type") != "message" or len(message.get("attachments", [])) != 1:
        return [*problems, "not a message with one attachment"]
    attachment = message["attachments"][0]
    if attachment.get("contentType") != "application/vnd.microsoft.card.adaptive":
        problems.append("not an adaptive card")
    content = dict(attachment["content"])
    msteams = content.pop("msteams", {})
    if float(content.get("version", "9")) > 1.5:
        problems.append("card version above what Teams renders")
    problems += [
        f"card {error.json_path}: {error.message[:200]}"
        for error in card_validator().iter_errors(content)
    ]
    problems += [
        f"msteams {error.json_path}: {error.message[:200]}"
        for error in jsonschema.Draft202012Validator(MSTEAMS_SCHEMA).iter_errors(msteams)
    ]
    mentioned = {entity["text"] for entity in msteams.get("entities", [])}
    tags = set(re.findall(r"<at>[^<>]*</at>", json.dumps(content["body"], ensure_ascii=False)))
    if tags != mentioned:
        problems.append(f"mention tags {sorted(tags)} do not match entities {sorted(mentioned)}")
    return problems


def texts(body: bytes) -> list[str]:
    """Every text Teams reads as markdown: TextBlock texts, fact titles and values."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if value.get("type") == "TextBlock" and value.get("id") != "mentions":
                found.append(value["text"])
            if value.get("type") == "FactSet":
                found.extend(t for fact in value["facts"] for t in (fact["title"], fact["value"]))
            for key, item in value.items():
                if key != "msteams":
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(json.loads(body)["attachments"][0]["content"]["body"])
    return found


def unescaped_markup(text: str) -> list[str]:
    """Markdown, link, tag or function syntax not preceded by a backslash."""
    patterns = {
        "link": r"(?<!\\)\[[^\]]*(?<!\\)\]\(",
        "bold": r"(?<!\\)\*(?<!\\)\*",
        "tag": r"(?<!\\)<",
        "date function": r"(?<!\\)\{(?<!\\)\{",
        "bare url": r"https?://",
        "www": r"www\.",
        "list": r"(?m)^[ \t]*[-+][ \t]",
        "ordered": r"(?m)^[ \t]*\d+[.)][ \t]",
    }
    return [name for name, pattern in patterns.items() if re.search(pattern, text)]


def edge_events() -> list[Event]:
    long = "x" * 10_000
    many = {f"field_{n:03d}": f"value {n} " + "y" * 200 for n in range(500)}
    events = []
    for event_type in [*EventType, "phi_access", "custom_thing", "alert"]:
        events += [
            Event(event_type=event_type, data={key: long for key in _keys()}, user_id=long),
            Event(event_type=event_type, data=many, user_id="developer_123"),
            Event(event_type=event_type, data={key: MARKUP for key in _keys()}, user_id=MARKUP),
            Event(
                event_type=event_type,
                data={**{key: MARKUP * 40 for key in _keys()}, **many},
                severity="critical",
            ),
        ]
    return events


def _keys() -> list[str]:
    # What the layouts read, so every long or hostile value reaches the card.
    return [
        "title",
        "prediction",
        "message",
        "description",
        "issue",
        "fix",
        "recommendation",
        "file",
        "endpoint",
        "service",
        "regulation",
        "accessed_by",
        "record",
        "reason",
        "pattern",
        "summary",
    ]


WEBHOOKS = {
    "default": TeamsWebhook(webhook_url=URL),
    "mentions": TeamsWebhook(webhook_url=URL, mention_users=[UPN, OBJECT_ID]),
    "legacy size": TeamsWebhook(webhook_url=URL, max_message_bytes=21_000),
    "string template": TeamsWebhook(
        webhook_url=URL, templates={"*": "**From** {user_id}: {event_type}"}, mention_users=[UPN]
    ),
    "huge template": TeamsWebhook(
        webhook_url=URL,
        templates={
            "*": lambda event: {
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": [{"type": "TextBlock", "text": f"line {n} " * 30} for n in range(2000)],
            }
        },
    ),
}


def sample_event(event_type: str) -> Event:
    """The testing kit's sample event of a type (the reference's examples)."""
    return Event(
        event_type=event_type,
        data=SAMPLE_DATA.get(event_type, {"title": "Something new", "detail": 1}),
        user_id="developer_123",
        empathy_level=4,
        classification="SENSITIVE",
    )


@pytest.mark.parametrize("event_type", sorted({*SAMPLE_DATA, *EventType, "phi_access"}))
@pytest.mark.parametrize("name", sorted(WEBHOOKS))
def test_every_sample_event_is_a_valid_card_within_28_kb(event_type: str, name: str) -> None:
    request = render_request(WEBHOOKS[name], sample_event(event_type), plugin_manager=manager())
    assert card_problems(request.body) == []


@pytest.mark.parametrize("name", sorted(WEBHOOKS))
def test_edge_case_data_stays_a_valid_card_within_28_kb(name: str) -> None:
    webhook = WEBHOOKS[name]
    for event in edge_events():
        body = render_request(webhook, event, plugin_manager=manager()).body
        assert card_problems(body) == [], (name, event.event_type)
        if name != "huge template":
            for text in texts(body):
                text = text.removeprefix("**From** ")  # the template's own markdown
                assert unescaped_markup(text) == [], (name, event.event_type, text[:300])


def test_long_values_end_in_the_visible_marker_and_never_in_half_an_escape() -> None:
    data = {"title": "[x](y) " * 3000, "fix": "*" * 10_000}
    body = render_request(
        TeamsWebhook(webhook_url=URL), Event(event_type="bug_detected", data=data)
    ).body
    cut = [text for text in texts(body) if text.endswith(TRUNCATED)]
    assert len(cut) == 2
    for text in cut:
        head = text[: -len(TRUNCATED)]
        assert (len(head) - len(head.rstrip("\\"))) % 2 == 0  # no dangling backslash


def test_markdown_and_html_in_event_text_show_as_written() -> None:
    event = Event(
        event_type="security_vulnerability",
        data={"title": "[Reset your password](https://evil.example) **now**", "file": "a_b.py"},
        user_id="developer_123",
    )
    content = render_request(TeamsWebhook(webhook_url=URL), event).json_body()
    summary = content["attachments"][0]["content"]["body"][1]["text"]
    assert summary == r"\[Reset your password\](https\://evil.example) \*\*now\*\*"
    # Names keep their underscores as written (an underscore inside a word never emphasises).
    assert "developer_123" in json.dumps(content)
    assert "a_b.py" in json.dumps(content)
    assert "actions" not in content["attachments"][0]["content"]  # no link button either


def test_escaping_keeps_what_is_not_markup() -> None:
    assert escape_markdown("v1.9.0 at 10:30, 3 - 2 = 1, user_id a+b") == (
        "v1.9.0 at 10:30, 3 - 2 = 1, user_id a+b"
    )
    assert escape_markdown("<at>Everyone</at>") == r"\<at\>Everyone\</at\>"


def test_mentions_ping_exactly_the_configured_users() -> None:
    webhook = TeamsWebhook(webhook_url=URL, mention_users=[UPN, OBJECT_ID, UPN])
    event = Event(event_type="alert", data={"title": "<at>Everyone</at> disk full"})
    card = render_request(webhook, event).json_body()["attachments"][0]["content"]
    assert card["body"][1] == {
        "type": "TextBlock",
        "id": "mentions",
        "text": f"<at>{UPN}</at> <at>{OBJECT_ID}</at>",
        "wrap": True,
    }
    assert card["msteams"] == {
        "width": "Full",
        "entities": [
            {"type": "mention", "text": f"<at>{UPN}</at>", "mentioned": {"id": UPN, "name": UPN}},
            {
                "type": "mention",
                "text": f"<at>{OBJECT_ID}</at>",
                "mentioned": {"id": OBJECT_ID, "name": OBJECT_ID},
            },
        ],
    }
    assert (
        card_problems(
            json.dumps(
                {
                    "type": "message",
                    "attachments": [
                        {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}
                    ],
                }
            ).encode()
        )
        == []
    )


@pytest.mark.parametrize(
    "users",
    [
        ["adele"],
        ["<at>x</at>@contoso.com"],
        ["not an id"],
        [f"user{n}@contoso.com" for n in range(21)],
        [42],
    ],
)
def test_mention_users_that_teams_could_not_resolve_are_refused(users: list[Any]) -> None:
    with pytest.raises(ValueError, match="mention_users"):
        TeamsWebhook(webhook_url=URL, mention_users=users)


def test_mention_users_from_a_config_file() -> None:
    from empathy_webhooks_core.config import parse_config

    config = parse_config(
        {"webhooks": [{"type": "teams", "webhook_url": URL, "mention_users": [UPN]}]},
        env={},
        plugin_manager=manager(),
    )
    assert config.webhooks[0].mention_users == (UPN,)
