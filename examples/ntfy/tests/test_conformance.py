"""ntfy passes the conformance suite every plugin runs."""

from __future__ import annotations

import json

import empathy_webhooks_ntfy
from empathy_webhooks_ntfy import MESSAGE_LIMIT_BYTES, TITLE_LIMIT, NtfyWebhook

from empathy_webhooks_core import OutgoingRequest, Webhook
from empathy_webhooks_core.testing.conformance import WebhookConformance

TOKEN = "tk_conformance0token0abcdefghij"
TOPIC = "empathy-conformance-topic"


class TestNtfyConformance(WebhookConformance):
    plugin = empathy_webhooks_ntfy
    secrets = (TOKEN, TOPIC)

    def make_webhook(self, url: str) -> Webhook:
        return NtfyWebhook(server_url=url, topic=TOPIC, token=TOKEN)

    def check_limits(self, request: OutgoingRequest, webhook: Webhook) -> None:
        super().check_limits(request, webhook)
        body = json.loads(request.body)
        assert body["topic"] == TOPIC
        assert len(body["message"].encode()) <= MESSAGE_LIMIT_BYTES
        assert len(body["title"]) <= TITLE_LIMIT and "\n" not in body["title"]
        assert body["priority"] in (1, 2, 3, 4, 5)
