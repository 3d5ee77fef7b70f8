"""The PagerDuty plugin passes the conformance suite every plugin runs."""

from __future__ import annotations

import json

import empathy_webhooks_pagerduty
from empathy_webhooks_pagerduty import PagerDutyWebhook

from empathy_webhooks_core import OutgoingRequest, Webhook
from empathy_webhooks_core.testing import ReceivedRequest, Reply
from empathy_webhooks_core.testing.conformance import WebhookConformance

ROUTING_KEY = "0123456789abcdef0123456789abcdef"


class TestPagerDutyConformance(WebhookConformance):
    plugin = empathy_webhooks_pagerduty
    secrets = (ROUTING_KEY,)

    def make_webhook(self, url: str) -> Webhook:
        return PagerDutyWebhook(api_key=ROUTING_KEY, events_url=url)

    def success_reply(self, request: ReceivedRequest) -> Reply:
        key = request.json()["dedup_key"]
        return Reply(
            status=202, body={"status": "success", "message": "Event processed", "dedup_key": key}
        )

    def failure_reply(self, request: ReceivedRequest) -> Reply:
        return Reply(
            status=400,
            body={"status": "invalid event", "message": "Event object is invalid", "errors": []},
        )

    def check_limits(self, request: OutgoingRequest, webhook: Webhook) -> None:
        super().check_limits(request, webhook)
        assert len(request.body) <= 512 * 1024
        body = json.loads(request.body)
        assert body["event_action"] in ("trigger", "acknowledge", "resolve")
        assert 0 < len(body["dedup_key"]) <= 255
        if body["event_action"] == "trigger":
            payload = body["payload"]
            assert 0 < len(payload["summary"]) <= 1024
            assert payload["source"]
            assert payload["severity"] in ("critical", "error", "warning", "info")
