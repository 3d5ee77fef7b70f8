"""Audit: what the plugin exports stays bounded and secret-free whatever users name things."""

from __future__ import annotations

import empathy_webhooks_otel

from empathy_webhooks_core import CustomWebhook
from empathy_webhooks_core.testing import Receiver

from .conftest import Telemetry

SECRET_NAME = "https://hooks.slack.com/services/T0OTEL/B0OTEL/XOXOTELSECRET"


async def test_a_webhook_named_with_its_secret_url_is_masked_in_spans_and_metrics(
    telemetry: Telemetry, receiver: Receiver
) -> None:
    async with telemetry.dispatcher(CustomWebhook(name=SECRET_NAME, url=receiver.url())) as d:
        await d.emit("alert", {})
        await d.drain()
        depth = telemetry.points(empathy_webhooks_otel.QUEUE_DEPTH)
    exported = [
        *(point.attributes for point in telemetry.points(empathy_webhooks_otel.DELIVERIES)),
        *(point.attributes for point in telemetry.points(empathy_webhooks_otel.ATTEMPT_DURATION)),
        *(point.attributes for point in depth),
    ]
    [span] = telemetry.attempt_spans()
    shown = "https://hooks.slack.com/services/***"
    assert span.name == shown and span.attributes is not None
    assert span.attributes["empathy.webhook"] == shown
    assert exported and all(attributes["empathy.webhook"] == shown for attributes in exported)
    assert "XOXOTELSECRET" not in repr([span.to_json(), exported])


async def test_a_flood_of_event_types_adds_no_metric_series(
    telemetry: Telemetry, receiver: Receiver
) -> None:
    async with telemetry.dispatcher(CustomWebhook(name="flood", url=receiver.url())) as d:
        for n in range(200):
            await d.emit(f"custom_event_{n}", {})
        await d.drain()
    for instrument in (empathy_webhooks_otel.DELIVERIES, empathy_webhooks_otel.ATTEMPT_DURATION):
        series = {tuple(sorted(p.attributes.items())) for p in telemetry.points(instrument)}
        assert len(series) == 1, series
