"""Text of hostile shape or size, as an adversary would send it, through every built-in
formatter: rendering runs on the event loop, so one render that takes time quadratic in its
input holds every other delivery. The inputs are big enough (40,000 characters) that each
quadratic path found here would take 25 s to a minute, and a linear one well under a second;
the timeout is the guard, never a measured time. Where it matters, the exact output is
asserted too."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest
from empathy_webhooks_discord import DiscordWebhook
from empathy_webhooks_slack import SlackWebhook
from empathy_webhooks_teams import TeamsWebhook
from empathy_webhooks_teams.format import escape_markdown as teams_markdown

from empathy_webhooks_core import WebhookDispatcher
from empathy_webhooks_core.events import Event
from empathy_webhooks_core.redaction import REDACTED, isolated_registry, redact_text
from empathy_webhooks_core.webhooks import MAX_PAYLOAD_LIMIT, Webhook

from ._builtin_webhooks import BASE, builtin_webhooks

SIZE = 40_000


def every_formatter() -> list[Webhook]:
    # No cap on the payload: what is measured is the render, and the email's text and HTML
    # parts of three 40,000-character values are over the default cap.
    return [
        attrs.evolve(webhook, max_payload_bytes=MAX_PAYLOAD_LIMIT) for webhook in builtin_webhooks()
    ]


def run(unit: str, tail: str = "") -> str:
    return (unit * (SIZE // len(unit) + 1))[:SIZE] + tail


#: Each once took (or would take) time quadratic in its length somewhere, or is the shape
#: that makes a pattern of its kind do so: runs a word-start pattern reads to their end, runs
#: of one markup character, many lines, and the shapes the masking of secrets looks for.
HOSTILE = {
    "scheme run without a scheme": run("a-", " ://"),
    "dotted run without a scheme": run("a.", " ://"),
    "blank lines": run("\n"),
    "indented lines": run(" \n"),
    "angle brackets": run("<"),
    "markup characters": run("*_~`|>[]"),
    "underscores at word edges": run("[_", " www."),
    "jwt-shaped run": run("eyJ-"),
    "header-shaped lines": run("x-api-key: a\n "),
    "quoted members": run('"token":"é'),
}


@pytest.fixture(scope="module")
def dispatcher() -> WebhookDispatcher:
    return WebhookDispatcher(webhooks=every_formatter())


@pytest.mark.timeout(20)
@pytest.mark.parametrize("shape", HOSTILE)
@pytest.mark.parametrize("event_type", ["alert", "code_review_complete", "my_event"])
def test_every_formatter_renders_hostile_text_in_linear_time(
    dispatcher: WebhookDispatcher, shape: str, event_type: str
) -> None:
    text = HOSTILE[shape]
    event = Event(
        event_type=event_type,
        data={"title": text, "message": text, "pr": 7, "fix": text},
        user_id=text,
    )
    for webhook in every_formatter():
        assert dispatcher.render(webhook.name, event).body


@pytest.mark.timeout(20)
def test_every_formatter_renders_wide_and_deep_data(dispatcher: WebhookDispatcher) -> None:
    def chain(depth: int) -> Any:
        value: Any = "leaf"
        for _ in range(depth - 1):
            value = {"a": value, "b": ["x"] * 100}
        return value

    shapes = [
        {f"key_{i}": f"value {i}" for i in range(4_000)},
        {"details": chain(63)},
        {"items": ["x"] * 40_000, "objects": [{"a": i} for i in range(4_000)]},
        {f"k{i}": chain(20) for i in range(100)},
    ]
    for data in shapes:
        for event_type in ("bug_detected", "my_event"):
            event = Event(event_type=event_type, data={**data, "pr": 1})
            for webhook in every_formatter():
                assert dispatcher.render(webhook.name, event).body


# -- Teams: bare URLs --------------------------------------------------------------------------


def test_teams_escapes_the_colon_of_each_bare_url_scheme_as_before() -> None:
    # The colon is escaped where a word starting with a letter runs up to `://` (`\b[a-z]`):
    # not after `1a`, whose `a` starts no word, nor in `_x.`, whose `x` does not either.
    assert teams_markdown("see a-b.c+d://x and 1a://y, _x.http://z") == (
        "see a-b.c+d\\://x and 1a://y, \\_x.http\\://z"
    )
    assert teams_markdown("https://evil.example/login") == "https\\://evil.example/login"


@pytest.mark.timeout(20)
def test_teams_escapes_a_long_scheme_run_in_linear_time() -> None:
    # Before: `_SCHEME.sub` started again at each word of the run and read to its end
    # (6 s for 20,000 characters; this one would have taken about 25 s).
    text = run("a-", " ://")
    assert teams_markdown(text) == text
    assert teams_markdown(run("a-", "://x")) == run("a-", "\\://x")


@pytest.mark.timeout(20)
def test_teams_card_of_a_long_scheme_run_is_cut_to_its_limits() -> None:
    webhook = TeamsWebhook(webhook_url=f"{BASE}/workflows/abc/triggers/manual/paths/invoke?x=1")
    dispatcher = WebhookDispatcher(webhooks=[webhook])
    event = Event(event_type="alert", data={"title": run("a-", " ://")})
    request = dispatcher.render(webhook.name, event)
    assert len(request.body) <= webhook.max_message_bytes
    card = json.loads(request.body)["attachments"][0]["content"]
    summary = card["body"][1]["text"]
    assert summary.startswith("a-a-a-") and summary.endswith("…truncated")


@pytest.mark.timeout(20)
def test_a_long_hostile_mention_user_is_refused_at_once() -> None:
    # Before: the check tried every dot of the domain, reading on to the end each time
    # (7 s for 40,000 characters).
    with pytest.raises(ValueError, match="mention_users must list user principal names"):
        TeamsWebhook(
            webhook_url=f"{BASE}/workflows/abc/x?sig=s",
            mention_users=["a@" + "a." * (SIZE // 2) + " "],
        )
    for bad in ("a@.b", "a@b.", "a@bc", "a@b@c.d"):
        with pytest.raises(ValueError):
            TeamsWebhook(webhook_url=f"{BASE}/workflows/abc/x?sig=s", mention_users=[bad])
    for good in ("adele@contoso.com", "a@b.c", "a@..b", "x@sub.domain.co.uk"):
        hook = TeamsWebhook(webhook_url=f"{BASE}/workflows/abc/x?sig=s", mention_users=[good])
        assert hook.mention_users == (good,)


# -- masking secrets -------------------------------------------------------------------------


@pytest.mark.timeout(20)
def test_masking_a_jwt_shaped_run_takes_linear_time_and_masks_what_it_did() -> None:
    # Before: a JWT was tried at each `eyJ` of the run, read to the run's end each time
    # (1.7 s for 64 KiB, so minutes for this megabyte; the gateway masks event data this
    # way when an event is read).
    text = "eyJ-" * 250_000
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlX2hlcmU"
    with isolated_registry():  # masked by shape alone, not by values other tests registered
        assert redact_text(text) == text
        assert redact_text(f"{text} {jwt} and x-{jwt}") == f"{text} {REDACTED} and x-{REDACTED}"
        # The first part runs on through `-`: the token is masked from the run's first `eyJ`.
        assert redact_text(f"a-eyJ-{jwt}.tail") == f"a-{REDACTED}.tail"
        token = "xoxb-" + "1" * 12
        github = "ghp_" + "A1b2" * 9
        assert redact_text(f"eyJ-{token} {github}") == f"eyJ-{REDACTED} {REDACTED}"


# -- bidirectional controls ------------------------------------------------------------------

BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"


@pytest.mark.parametrize("kind", ["slack", "teams", "discord"])
def test_chat_messages_carry_no_bidirectional_controls(kind: str) -> None:
    # `invoice_\u202egnp.exe` shows as `invoice_exe.png` where the controls are honoured.
    spoof = "invoice_\u202egnp.exe"
    webhook = {
        "slack": SlackWebhook(webhook_url=f"{BASE}/services/T0/B0/xoxbBidiText0123456"),
        "teams": TeamsWebhook(webhook_url=f"{BASE}/workflows/abc/triggers/manual/x?sig=s"),
        "discord": DiscordWebhook(webhook_url=f"{BASE}/api/webhooks/1122334455/TOKENabc"),
    }[kind]
    dispatcher = WebhookDispatcher(webhooks=[webhook])
    event = Event(
        event_type="alert",
        data={"title": spoof, "message": f"open {BIDI}it", "service": "a\u2067b"},
        user_id="dev\u202e_123",
    )
    body = dispatcher.render(webhook.name, event).body
    text = body.decode("utf-8")
    payload = json.dumps(json.loads(body), ensure_ascii=False)
    for char in BIDI:
        assert char not in text and char not in payload
        assert json.dumps(char)[1:-1].encode() not in body  # not as a \u escape either
    sent = json.loads(body)
    if kind == "slack":
        assert sent["blocks"][0]["text"]["text"] == "🚨 Alert"
        assert sent["blocks"][1]["text"]["text"].splitlines()[:3] == [
            "*Alert:* invoice_gnp.exe",
            "*Details:* open it",
            "*Service:* ab",
        ]
        assert sent["blocks"][2]["elements"][0]["text"].startswith("Detected by: dev_123 |")
    elif kind == "teams":
        card = sent["attachments"][0]["content"]
        assert card["body"][1]["text"] == "invoice_gnp.exe"
        assert card["body"][2]["facts"][0] == {"title": "Details", "value": "open it"}
        assert card["body"][0]["items"][1]["text"].startswith("Detected by: dev_123 |")
        assert card["fallbackText"] == "🚨 Alert: invoice_gnp.exe"
    else:
        embed = sent["embeds"][0]
        assert embed["description"] == "invoice\\_gnp.exe"
        assert embed["fields"][0]["value"] == "open it"
        assert embed["footer"]["text"] == "Detected by: dev_123"


def test_slack_header_leaves_out_control_characters() -> None:
    webhook = SlackWebhook(webhook_url=f"{BASE}/services/T0/B0/xoxbBidiText0123456")
    dispatcher = WebhookDispatcher(webhooks=[webhook])
    event = Event(event_type="ci_\u202erun", data={"title": "x"})
    sent = json.loads(dispatcher.render(webhook.name, event).body)
    assert sent["blocks"][0]["text"]["text"] == "📣 Ci run"


@pytest.mark.timeout(20)
def test_an_event_with_a_long_key_over_many_values_is_checked_in_linear_time() -> None:
    """Every value below a key builds its path (for an error message) from the key's: a
    4,000,000-character key over 400,000 values that each needed one copied the key each
    time, over 20 s of an emit (under a second now). A long key is shortened in the path,
    in the message too."""
    data = {"k" * 4_000_000: {f"v{i}": "é" for i in range(400_000)}}
    assert Event(event_type="alert", data=data).data == data
    with pytest.raises(TypeError) as raised:
        Event(event_type="alert", data={"k" * 1000: {"x": [1, {"y": object()}]}})
    assert str(raised.value) == (
        f"data['{'k' * 59}…{'k' * 15}']['x'][1]['y'] is not JSON-serialisable: object "
        "(convert it to a string, number, list or dict before emitting)"
    )
