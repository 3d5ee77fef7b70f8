"""The Discord plugin passes the conformance suite every plugin runs: its webhook URL
(`/api/webhooks/{id}/{token}`) is the credential (`secret_url = True`)."""

from __future__ import annotations

import empathy_webhooks_discord
from empathy_webhooks_discord import DiscordWebhook

from empathy_webhooks_core import Webhook
from empathy_webhooks_core.testing import ReceivedRequest, Reply
from empathy_webhooks_core.testing.conformance import WebhookConformance

TOKEN = "conformanceDiscordToken_0123456789-abcdefABCDEF"


class TestDiscordConformance(WebhookConformance):
    plugin = empathy_webhooks_discord
    secrets = (TOKEN,)

    def make_webhook(self, url: str) -> Webhook:
        return DiscordWebhook(webhook_url=f"{url}/api/webhooks/112233445566778899/{TOKEN}")

    def success_reply(self, request: ReceivedRequest) -> Reply:
        return Reply(status=200, body={"id": "1", "type": 0, "content": ""})

    def failure_reply(self, request: ReceivedRequest) -> Reply:
        return Reply(status=400, body={"code": 50006, "message": "Cannot send an empty message"})
