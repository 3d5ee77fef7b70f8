"""The GitHub plugin passes the conformance suite every plugin runs, as a CI/CD trigger
(`repository_dispatch`: one request per event, whatever the event says). PR comments need a
PR number in the event and are covered by test_github.py."""

from __future__ import annotations

import empathy_webhooks_github
from empathy_webhooks_github import GitHubWebhook

from empathy_webhooks_core import Webhook
from empathy_webhooks_core.testing import ReceivedRequest, Reply
from empathy_webhooks_core.testing.conformance import WebhookConformance

TOKEN = "ghp_ConformanceToken0123456789abcdefABCD"


class TestGitHubConformance(WebhookConformance):
    plugin = empathy_webhooks_github
    secrets = (TOKEN,)

    def make_webhook(self, url: str) -> Webhook:
        return GitHubWebhook(
            token=TOKEN,
            repository="acme/shop",
            api_url=url,
            events=["*"],
            comment_events=[],
            dispatch_events=["*"],
        )

    def success_reply(self, request: ReceivedRequest) -> Reply:
        return Reply(status=204)

    def failure_reply(self, request: ReceivedRequest) -> Reply:
        return Reply(status=422, body={"message": "Validation Failed", "errors": []})
