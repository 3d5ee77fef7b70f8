"""The core's own generic target passes the conformance suite every plugin runs."""

from __future__ import annotations

from empathy_webhooks_core import CustomWebhook
from empathy_webhooks_core.testing.conformance import WebhookConformance

TOKEN = "conformance-bearer-token-31337"
SIGNING = "whsec_conformance_signing_secret"


class TestCustomConformance(WebhookConformance):
    secrets = (TOKEN, SIGNING)

    def make_webhook(self, url: str) -> CustomWebhook:
        return CustomWebhook(
            url=url,
            headers={"Authorization": f"Bearer {TOKEN}"},
            signing_secret=SIGNING,
        )
