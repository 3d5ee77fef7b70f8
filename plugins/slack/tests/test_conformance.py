"""The Slack plugin passes the conformance suite every plugin runs: its webhook URL is the
credential (`secret_url = True`), so no part of it may show in any output."""

from __future__ import annotations

import empathy_webhooks_slack
from empathy_webhooks_slack import SlackWebhook

from empathy_webhooks_core import Webhook
from empathy_webhooks_core.testing import ReceivedRequest, Reply
from empathy_webhooks_core.testing.conformance import WebhookConformance

TOKEN = "xoxbConformanceHookToken0123456789"


class TestSlackConformance(WebhookConformance):
    plugin = empathy_webhooks_slack
    secrets = (TOKEN,)

    def make_webhook(self, url: str) -> Webhook:
        # A relay or test server in front of Slack: the path is still the credential.
        return SlackWebhook(webhook_url=f"{url}/services/T0CONF/B0CONF/{TOKEN}")

    def success_reply(self, request: ReceivedRequest) -> Reply:
        return Reply(status=200, body="ok")

    def failure_reply(self, request: ReceivedRequest) -> Reply:
        return Reply(status=400, body="invalid_payload")
