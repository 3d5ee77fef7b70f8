"""The reference's snippets, run with only their imports changed (and `interact` replaced by an
`emit`); URLs point at a loopback receiver instead of the example hosts."""

from __future__ import annotations

import logging
import os

import pytest

from empathy_webhooks_core import CustomWebhook, WebhookConfig, WebhookDispatcher, WebhookMonitor
from empathy_webhooks_core.testing import Receiver, Reply


async def test_quick_start_basic_webhook(receiver: Receiver) -> None:
    # Configure webhook
    webhook = WebhookConfig(
        url=receiver.url("/services/YOUR/WEBHOOK/URL"),
        events=["prediction", "alert", "completion"],
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    # Initialize with webhook (EmpathyOS(..., webhooks=[webhook]) in the reference)
    async with WebhookDispatcher(webhooks=[webhook]) as empathy:
        # Webhooks fire automatically on events
        await empathy.emit(
            "prediction",
            {
                "prediction": "Auth deployment may conflict with user-service v2.1",
                "confidence": 0.87,
                "recommendation": "Deploy auth behind feature flag",
                "context": {"service": "authentication", "environment": "production"},
            },
            user_id="developer_123",
            empathy_level=4,
        )
        await empathy.emit("test_failure", {})  # not subscribed: not sent
    [request] = receiver.requests
    assert request.json()["event_type"] == "prediction"
    assert request.json()["data"]["confidence"] == 0.87
    assert request.header("Content-Type") == "application/json"


async def test_custom_webhooks_define_custom_endpoint(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("API_TOKEN", "tok-from-env")
    custom = CustomWebhook(
        url=receiver.url("/webhooks/empathy"),
        method="POST",
        headers={
            "Authorization": f"Bearer {os.getenv('API_TOKEN')}",
            "Content-Type": "application/json",
        },
        events=["*"],  # All events
        retry_policy={"max_retries": 3, "backoff_multiplier": 2, "timeout_seconds": 30},
    )
    async with WebhookDispatcher(webhooks=[custom]) as empathy:
        await empathy.emit("bug_detected", {"file": "auth.py"}, user_id="custom_integration")
    assert receiver.requests[0].header("Authorization") == "Bearer tok-from-env"
    assert custom.retry_policy.max_retries == 3


async def test_error_handling_retry_logic_and_failure_callbacks(receiver: Receiver) -> None:
    receiver.respond(status=503)
    failures: list[str] = []
    logger = logging.getLogger("reference")

    class Database:
        def store_failed_webhook(self, webhook: object, event: object) -> None:
            failures.append(event.event_id)  # type: ignore[attr-defined]

    database = Database()

    def on_webhook_failure(webhook, event, error):  # type: ignore[no-untyped-def]
        logger.error(f"Webhook failed: {webhook.url}")
        logger.error(f"Event: {event.event_type}")
        logger.error(f"Error: {error}")
        # Fallback: Store event for manual retry
        database.store_failed_webhook(webhook, event)

    webhook = CustomWebhook(
        url=receiver.url("/webhook"),
        retry_policy={
            "max_retries": 5,
            "backoff_multiplier": 2,  # 1s, 2s, 4s, 8s, 16s
            "timeout_seconds": 30,
            "retry_on_status": [500, 502, 503, 504],
            "initial_delay_seconds": 0.001,  # (tests do not wait the real schedule)
        },
        on_failure=on_webhook_failure,
        circuit_breaker=False,
    )
    assert [webhook.retry_policy.delay(n) for n in range(1, 6)] == [
        0.001,
        0.002,
        0.004,
        0.008,
        0.016,
    ]
    async with WebhookDispatcher(webhooks=[webhook]) as empathy:
        event = await empathy.emit("alert", {"message": "x"})
    assert len(receiver.requests) == 6
    assert failures == [event.event_id]


async def test_security_authentication_and_hmac(receiver: Receiver) -> None:
    import hashlib
    import hmac

    secret = "from-the-environment"
    webhooks = [
        CustomWebhook(
            name="bearer",
            url=receiver.url("/bearer"),
            headers={"Authorization": f"Bearer {'tok'}"},
        ),
        CustomWebhook(name="apikey", url=receiver.url("/apikey"), headers={"X-API-Key": "k"}),
        CustomWebhook(
            name="hmac", url=receiver.url("/hmac"), signing_secret=secret, sign_payload=True
        ),
    ]
    async with WebhookDispatcher(webhooks=webhooks) as empathy:
        await empathy.emit("alert", {})
    signed = next(r for r in receiver.requests if r.path == "/hmac")
    expected = hmac.new(secret.encode(), signed.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, signed.header("X-Signature") or "")


async def test_filtering_and_routing_compliance(receiver: Receiver) -> None:
    compliance = CustomWebhook(
        url=receiver.url("/webhook"),
        events=["compliance_violation", "phi_access"],
        filter=lambda event: event.classification == "SENSITIVE",
    )
    async with WebhookDispatcher(webhooks=[compliance]) as empathy:
        await empathy.emit("phi_access", {}, classification="SENSITIVE")
        await empathy.emit("phi_access", {}, classification="PUBLIC")
    assert [r.json()["classification"] for r in receiver.requests] == ["SENSITIVE"]


async def test_rate_limiting_and_monitoring(receiver: Receiver) -> None:
    import gc

    gc.collect()  # the process-wide monitor must not see other tests' finished dispatchers
    receiver.queue(Reply(status=500))
    webhook = CustomWebhook(
        name="slack_webhook",
        url=receiver.url("/webhook"),
        rate_limit={
            "max_requests_per_minute": 60,
            "max_requests_per_hour": 1000,
            "strategy": "sliding_window",
        },
        retry_policy={"initial_delay_seconds": 0.001},
    )
    async with WebhookDispatcher(webhooks=[webhook]) as empathy:
        for _ in range(3):
            await empathy.emit("alert", {})
    monitor = WebhookMonitor()
    stats = monitor.get_webhook_stats("slack_webhook")
    lines = [
        f"Total sent: {stats['total_sent']}",
        f"Success rate: {stats['success_rate']:.0%}",
        f"Avg response time: {stats['avg_response_time_ms']}ms",
        f"Failed deliveries: {stats['failed_count']}",
    ]
    assert lines[0] == "Total sent: 3"
    assert lines[1] == "Success rate: 100%"
    assert lines[3] == "Failed deliveries: 0"
    assert stats["retries"] == 1
