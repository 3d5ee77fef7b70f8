"""Jira passes the conformance suite every plugin runs: search, then create (two requests)."""

from __future__ import annotations

import json

import empathy_webhooks_jira
from empathy_webhooks_jira import JiraWebhook

from empathy_webhooks_core import OutgoingRequest, Webhook
from empathy_webhooks_core.testing import ReceivedRequest, Reply
from empathy_webhooks_core.testing.conformance import WebhookConformance

TOKEN = "ATATT3xFfGF0-conformance-token-0123"


class TestJiraConformance(WebhookConformance):
    plugin = empathy_webhooks_jira
    secrets = (TOKEN,)
    # the de-duplicating search, the create screen's issue types and fields (once), the create
    requests_per_delivery = 4

    def make_webhook(self, url: str) -> Webhook:
        return JiraWebhook(
            url=url, email="bot@acme.io", api_token=TOKEN, project="EMP", events=["*"]
        )

    def success_reply(self, request: ReceivedRequest) -> Reply:
        if request.path.endswith(("/search/jql", "/search")):
            return Reply(status=200, body={"issues": []})
        if request.path.endswith("/issuetypes"):
            return Reply(status=200, body={"issueTypes": [{"id": "1", "name": "Bug"}], "total": 1})
        if "/createmeta/" in request.path:
            names = ["project", "issuetype", "summary", "description", "priority", "labels"]
            return Reply(status=200, body={"fields": [{"fieldId": n} for n in names], "total": 6})
        return Reply(status=201, body={"id": "10001", "key": "EMP-1"})

    def failure_reply(self, request: ReceivedRequest) -> Reply:
        return Reply(status=400, body={"errorMessages": ["conformance: rejected"], "errors": {}})

    def check_limits(self, request: OutgoingRequest, webhook: Webhook) -> None:
        super().check_limits(request, webhook)
        summary = json.loads(request.body)["fields"]["summary"]
        assert 0 < len(summary) <= 255 and "\n" not in summary
