"""The Grafana plugin passes the conformance suite every plugin runs."""

from __future__ import annotations

import json

import empathy_webhooks_grafana
from empathy_webhooks_grafana import GrafanaWebhook

from empathy_webhooks_core import OutgoingRequest, Webhook
from empathy_webhooks_core.testing import ReceivedRequest, Reply
from empathy_webhooks_core.testing.conformance import WebhookConformance

TOKEN = "glsa_conformance_token_0123456789"


class TestGrafanaConformance(WebhookConformance):
    plugin = empathy_webhooks_grafana
    secrets = (TOKEN,)

    def make_webhook(self, url: str) -> Webhook:
        return GrafanaWebhook(url=url, api_key=TOKEN, dashboard_uid="abc", panel_id=2)

    def success_reply(self, request: ReceivedRequest) -> Reply:
        return Reply(status=200, body={"message": "Annotation added", "id": 7})

    def failure_reply(self, request: ReceivedRequest) -> Reply:
        return Reply(status=400, body={"message": "bad request data"})

    def check_limits(self, request: OutgoingRequest, webhook: Webhook) -> None:
        super().check_limits(request, webhook)
        body = json.loads(request.body)
        assert isinstance(body["time"], int)
        assert 0 < len(body["text"]) <= 10_000
        assert len(body["tags"]) <= 50 and all(0 < len(tag) <= 100 for tag in body["tags"])
