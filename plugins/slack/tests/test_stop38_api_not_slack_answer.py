"""A 2xx that is not Slack's answer is not a delivery.

Before: a proxy's or an SSO login page answered with 200 (`<html>login</html>`) counted as
delivered; the alert never reached Slack and nobody was told.
"""

from __future__ import annotations

from typing import Any

import empathy_webhooks_slack as plugin
import pytest
from empathy_webhooks_slack import SlackWebhook

from empathy_webhooks_core import WebhookDispatcher
from empathy_webhooks_core.plugins import build_plugin_manager
from empathy_webhooks_core.testing import Receiver, Reply

TOKEN = "stop38SlackPathSecret0123"
PATH = f"/services/T0STOP38/B0STOP38/{TOKEN}"
PM = build_plugin_manager(load_entry_points=False, extra_plugins=[plugin])


async def deliver(receiver: Receiver, max_retries: int = 2) -> dict[str, Any]:
    failures: list[Any] = []
    webhook = SlackWebhook(
        name="stop38_slack",
        webhook_url=receiver.url(PATH),
        retry_policy={
            "max_retries": max_retries,
            "initial_delay_seconds": 0.001,
            "max_delay_seconds": 0.01,
        },
        on_failure=lambda w, e, error: failures.append(error),
    )
    async with WebhookDispatcher(webhooks=[webhook], plugin_manager=PM) as dispatcher:
        await dispatcher.emit("alert", {"message": "disk full"}, severity="high")
        await dispatcher.drain()
        return {
            "failures": failures,
            "dead": await dispatcher.dead_letters(),
            "stats": dispatcher.get_webhook_stats(webhook.name),
        }


async def test_a_login_page_is_retried_then_dead_lettered_saying_what_came_back(
    webhook_receiver: Receiver,
) -> None:
    page = f"<html><body>Please log in to continue to {webhook_receiver.url(PATH)}</body></html>"
    webhook_receiver.respond(200, page + " " * 2000 + "tail-never-shown")
    outcome = await deliver(webhook_receiver)
    assert [r.answered for r in webhook_receiver.requests] == [200, 200, 200]  # retried
    stats = outcome["stats"]
    assert (stats["delivered_count"], stats["failed_count"], stats["dead_letters"]) == (0, 1, 1)
    [failure] = outcome["failures"]
    assert failure.reason.startswith(
        "HTTP 200 without Slack's answer (`ok`): a proxy's or a login page? It said: "
        "<html><body>Please log in to continue to "
    )
    [letter] = outcome["dead"]
    shown = f"{failure.reason} {letter.error} {stats['last_error']}"
    assert "tail-never-shown" not in shown  # a bounded excerpt
    assert TOKEN not in shown  # the webhook URL is the credential: masked


async def test_a_passing_proxy_page_then_ok_is_delivered(webhook_receiver: Receiver) -> None:
    webhook_receiver.queue(Reply(status=200, body="<html>login</html>"), Reply(status=200))
    webhook_receiver.respond(200, "ok")
    outcome = await deliver(webhook_receiver)
    assert [r.answered for r in webhook_receiver.requests] == [200, 200]
    assert outcome["failures"] == [] and outcome["stats"]["delivered_count"] == 1


@pytest.mark.parametrize(
    "body",
    [
        "ok",
        "ok\n",
        "",  # a relay's empty 200 / 204
        "success",  # Slack-compatible services' plain acknowledgements
        "accepted",
        '{"ok": true}',  # Slack's API convention, as its workflow triggers answer
    ],
)
async def test_slacks_answers_and_plain_acknowledgements_are_delivered(
    webhook_receiver: Receiver, body: str
) -> None:
    webhook_receiver.respond(200, body)
    outcome = await deliver(webhook_receiver, max_retries=0)
    assert outcome["failures"] == [] and outcome["stats"]["delivered_count"] == 1
