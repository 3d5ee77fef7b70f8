"""The Datadog plugin passes the conformance suite every plugin runs."""

from __future__ import annotations

import json

import empathy_webhooks_datadog
from empathy_webhooks_datadog import DatadogWebhook

from empathy_webhooks_core import OutgoingRequest, Webhook
from empathy_webhooks_core.testing import ReceivedRequest, Reply
from empathy_webhooks_core.testing.conformance import WebhookConformance

API_KEY = "dd-conformance-api-key-0123456789"
APP_KEY = "dd-conformance-app-key-0123456789"


class TestDatadogConformance(WebhookConformance):
    plugin = empathy_webhooks_datadog
    secrets = (API_KEY, APP_KEY)

    def make_webhook(self, url: str) -> Webhook:
        return DatadogWebhook(api_key=API_KEY, app_key=APP_KEY, base_url=url)

    def success_reply(self, request: ReceivedRequest) -> Reply:
        return Reply(status=202, body={"status": "ok", "event": {"id": 1}})

    def failure_reply(self, request: ReceivedRequest) -> Reply:
        return Reply(status=400, body={"errors": ["conformance: rejected"]})

    def check_limits(self, request: OutgoingRequest, webhook: Webhook) -> None:
        super().check_limits(request, webhook)
        body = json.loads(request.body)
        assert 0 < len(body["title"]) <= 100
        assert len(body["text"]) <= 4000
        assert len(body["aggregation_key"]) <= 100
        assert body["alert_type"] in ("error", "warning", "info", "success")
        assert len(body["tags"]) <= 100 and all(len(tag) <= 200 for tag in body["tags"])
        assert API_KEY not in request.url
