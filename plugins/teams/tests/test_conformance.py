"""The Teams plugin passes the conformance suite every plugin runs: its Workflows URL (its
`sig`, its workflow id) is the credential (`secret_url = True`)."""

from __future__ import annotations

import empathy_webhooks_teams
from empathy_webhooks_teams import TeamsWebhook

from empathy_webhooks_core import Webhook
from empathy_webhooks_core.testing import ReceivedRequest, Reply
from empathy_webhooks_core.testing.conformance import WebhookConformance

WORKFLOW = "0123456789abcdef0123456789abcdef"
SIG = "ConformanceSigValue_0123456789abcdefABCDEF-xyz"


class TestTeamsConformance(WebhookConformance):
    plugin = empathy_webhooks_teams
    secrets = (WORKFLOW, SIG)

    def make_webhook(self, url: str) -> Webhook:
        return TeamsWebhook(
            webhook_url=f"{url}/workflows/{WORKFLOW}/triggers/manual/paths/invoke"
            f"?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={SIG}"
        )

    def success_reply(self, request: ReceivedRequest) -> Reply:
        return Reply(status=202)

    def failure_reply(self, request: ReceivedRequest) -> Reply:
        return Reply(
            status=400,
            body={"error": {"code": "InvalidRequestContent", "message": "bad card"}},
        )
