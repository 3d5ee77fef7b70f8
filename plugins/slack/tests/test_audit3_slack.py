"""Audit 3: Slack against its documented wire behaviour and hostile event data.

- a string template's `{data}` shows the event's keys too: they must not ping (`<!channel>`);
- a 2xx answer is a failure only when it holds one of Slack's error strings (all snake_case),
  not when a relay or a Slack-compatible service says `success` or `accepted`;
- terminal colour codes and control characters in event text are left out of the message.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import empathy_webhooks_slack as plugin
import pytest
from empathy_webhooks_slack import SlackWebhook, classify, escape_mrkdwn

from empathy_webhooks_core import Event, WebhookDispatcher
from empathy_webhooks_core.plugin import Outcome, Response
from empathy_webhooks_core.plugins import build_plugin_manager
from empathy_webhooks_core.testing import Receiver, Reply

TOKEN = "xoxbAuditThreeToken0123456789"
PATH = f"/services/T0AUDIT/B0AUDIT/{TOKEN}"
FAST = {"initial_delay_seconds": 0.001, "max_delay_seconds": 0.01}


def hook(url: str = f"https://hooks.slack.com{PATH}", **options: Any) -> SlackWebhook:
    return SlackWebhook(webhook_url=url, **options)


def answer(status: int, body: str) -> Response:
    return Response(status=status, body=body.encode())


# -- hostile event data ----------------------------------------------------------------------


def test_a_string_template_of_a_whole_object_escapes_the_event_keys_too() -> None:
    """Before: `{data}` showed the dict's repr with only its string values escaped; a key
    `<!channel>` reached Slack as written and notified the whole channel."""
    webhook = hook(templates={"alert": "Alert: {data}"})
    event = Event(event_type="alert", data={"<!channel>": "x", "k": "<!here> & <@U024BE7LH>"})
    text = webhook.render(event).json_body()["text"]
    assert "<" not in text and ">" not in text
    assert "&lt;!channel&gt;" in text and "&lt;!here&gt; &amp; &lt;@U024BE7LH&gt;" in text


def test_the_template_own_markup_stays_the_users() -> None:
    webhook = hook(templates={"alert": "<!here> {data[title]} <https://ops.example|runbook>"})
    text = webhook.render(Event(event_type="alert", data={"title": "<!channel>"})).json_body()
    assert text["text"] == "<!here> &lt;!channel&gt; <https://ops.example|runbook>"


def test_terminal_colour_codes_and_controls_are_left_out() -> None:
    """A test failure's output often carries `\\x1b[31m`: the ESC was sent (a control Slack
    shows as nothing or a box) and the `[31m` shown as text."""
    error = "\x1b[31mAssertionError\x1b[0m: got\x00 1\x07\r\nexpected 2"
    body = hook().render(Event(event_type="test_failure", data={"test": "t", "error": error}))
    message = body.json_body()
    section = message["blocks"][1]["text"]["text"]
    assert "*Error:* AssertionError: got 1\nexpected 2" in section
    sent = json.dumps(message, ensure_ascii=False)
    assert "[31m" not in sent and "\x1b" not in sent and "\\u0000" not in sent
    assert escape_mrkdwn("a\tb\nc") == "a\tb\nc"


# -- answers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("said", ["ok", "success", "accepted", "queued", "true", "OK"])
def test_a_2xx_saying_something_else_than_an_error_is_delivered(said: str) -> None:
    """Before: any single word but `ok` in a 200 was a final failure (`Slack refused the
    message: success`), though Slack's error strings are all snake_case."""
    assert classify(hook(), answer(200, said)).outcome is Outcome.SUCCESS


@pytest.mark.parametrize(
    "said", ["invalid_blocks", "no_text", "missing_text_or_fallback_or_attachments"]
)
def test_a_2xx_carrying_a_slack_error_string_is_still_a_failure(said: str) -> None:
    verdict = classify(hook(), answer(200, said))
    assert verdict.outcome is Outcome.FAIL
    assert verdict.reason == f"Slack refused the message: {said}"


def test_a_2xx_naming_a_dead_destination_is_a_failure() -> None:
    assert classify(hook(), answer(200, "no_service")).outcome is Outcome.FAIL


@pytest.fixture
async def relay() -> AsyncIterator[Receiver]:
    async with Receiver() as receiver:
        yield receiver


async def test_a_slack_compatible_relay_answering_accepted_delivers(relay: Receiver) -> None:
    relay.respond(200, "accepted")
    failures: list[Any] = []
    webhook = hook(
        url=relay.url(PATH), retry_policy=FAST, on_failure=lambda w, e, x: failures.append(x)
    )
    manager = build_plugin_manager(load_entry_points=False, extra_plugins=[plugin])
    async with WebhookDispatcher(webhooks=[webhook], plugin_manager=manager) as dispatcher:
        await dispatcher.emit("alert", {"title": "Disk full"})
        await dispatcher.drain()
        stats = dispatcher.get_webhook_stats(webhook.name)
    assert failures == [] and stats["delivered_count"] == 1
    assert [r.answered for r in relay.requests] == [200]


async def test_an_error_word_in_a_200_is_final_and_keeps_the_url_out(relay: Receiver) -> None:
    relay.queue(Reply(status=200, body=f"invalid_blocks {relay.url(PATH)}"))
    failures: list[Any] = []
    webhook = hook(
        url=relay.url(PATH), retry_policy=FAST, on_failure=lambda w, e, x: failures.append(x)
    )
    manager = build_plugin_manager(load_entry_points=False, extra_plugins=[plugin])
    async with WebhookDispatcher(webhooks=[webhook], plugin_manager=manager) as dispatcher:
        await dispatcher.emit("alert", {"title": "Disk full"})
        await dispatcher.drain()
        dead = await dispatcher.dead_letters()
    [failure] = failures
    assert failure.reason == "Slack refused the message: invalid_blocks"
    assert len(relay.requests) == 1
    shown = json.dumps([d.to_dict() for d in dead], default=str) + repr(failure) + str(failure)
    assert TOKEN not in shown
