"""Audit 3: spans and metrics of the operations plugins (PagerDuty, Datadog, Grafana, email)
carry none of their credentials, even when a service echoes them, and an exporter that fails
never fails a delivery nor fails unseen."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import empathy_webhooks_otel
import pytest
from empathy_webhooks_otel import OtelPlugin
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode

from empathy_webhooks_core import CustomWebhook, WebhookDispatcher
from empathy_webhooks_core.plugins import build_plugin_manager
from empathy_webhooks_core.testing import ReceivedRequest, Receiver, Reply

from .conftest import Telemetry

pagerduty = pytest.importorskip("empathy_webhooks_pagerduty")
datadog = pytest.importorskip("empathy_webhooks_datadog")
grafana = pytest.importorskip("empathy_webhooks_grafana")
email = pytest.importorskip("empathy_webhooks_email")
email_testing = pytest.importorskip("empathy_webhooks_email.testing")

ROUTING_KEY = "0123456789abcdef0123456789abcdeZ"
DD_API_KEY = "dd-otel-audit3-api-key-0123456789"
DD_APP_KEY = "dd-otel-audit3-app-key-0123456789"
GRAFANA_TOKEN = "glsa_otel_audit3_0123456789abcdef"
SMTP_LOGIN = "alerts-otel-audit3"
SMTP_PASSWORD = "otel-audit3-smtp-passw0rd"
SECRETS = (ROUTING_KEY, DD_API_KEY, DD_APP_KEY, GRAFANA_TOKEN, SMTP_LOGIN, SMTP_PASSWORD)
ONCE = {"max_retries": 0}


def echo_everything(request: ReceivedRequest) -> Reply:
    """A service that quotes the credentials back in its error, as some have."""
    said = " ".join(SECRETS)
    status = 400 if request.path.startswith("/v2/") else 500
    return Reply(status=status, body={"message": f"refused {said}", "errors": [said]})


async def test_no_credential_of_an_operations_plugin_reaches_a_span_or_metric(
    telemetry: Telemetry, receiver: Receiver
) -> None:
    receiver.handler = echo_everything
    smtp_reply = f"535 5.7.8 bad login {SMTP_LOGIN} {SMTP_PASSWORD}"
    async with email_testing.SMTPTestServer(default_reply=smtp_reply) as smtp:
        hooks = [
            pagerduty.PagerDutyWebhook(
                api_key=ROUTING_KEY, events_url=receiver.url(""), retry_policy=ONCE
            ),
            datadog.DatadogWebhook(
                api_key=DD_API_KEY, app_key=DD_APP_KEY, base_url=receiver.url(""), retry_policy=ONCE
            ),
            grafana.GrafanaWebhook(url=receiver.url(""), api_key=GRAFANA_TOKEN, retry_policy=ONCE),
            email.EmailWebhook(
                host=smtp.host,
                port=smtp.port,
                tls_mode="none",
                sender="alerts@example.com",
                recipients=["oncall@example.com"],
                username=SMTP_LOGIN,
                password=SMTP_PASSWORD,
                allow_insecure_auth=True,
                retry_policy=ONCE,
            ),
        ]
        dispatcher = telemetry.dispatcher(*hooks, load="pagerduty,datadog,grafana,email")
        async with dispatcher as d:
            await d.emit("alert", {"title": "Disk full", "avg_response_time": 850})
            await d.drain()
    spans = telemetry.attempt_spans()
    assert sorted(span.name for span in spans) == [
        "datadog_webhook",
        "email_webhook",
        "grafana_webhook",
        "pagerduty_webhook",
    ]
    assert all(span.status.status_code is StatusCode.ERROR for span in spans)
    exported = json.dumps(
        [
            [json.loads(span.to_json()) for span in spans],
            [dict(p.attributes) for p in telemetry.points(empathy_webhooks_otel.DELIVERIES)],
            [dict(p.attributes) for p in telemetry.points(empathy_webhooks_otel.ATTEMPT_DURATION)],
        ]
    )
    for secret in SECRETS:
        assert secret not in exported, secret
    [mail] = [span for span in spans if span.name == "email_webhook"]
    assert mail.attributes is not None
    assert mail.attributes["url.full"] == f"smtp://{smtp.host}:{smtp.port}"
    assert mail.attributes["server.port"] == smtp.port
    assert mail.attributes["http.request.method"] == "SMTP"


class BrokenExporter(SpanExporter):
    def __init__(self) -> None:
        self.calls = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.calls += 1
        raise ConnectionError("collector unreachable")

    def shutdown(self) -> None:
        pass


async def test_a_failing_exporter_fails_no_delivery_and_is_logged(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    exporter = BrokenExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    pm: Any = build_plugin_manager(
        env={"EMPATHY_WEBHOOKS_LOAD_PLUGINS": ""},
        extra_plugins=[OtelPlugin(tracer_provider=provider)],
    )
    caplog.set_level(logging.ERROR)
    hook = CustomWebhook(name="ops", url=receiver.url("/hook"))
    try:
        async with WebhookDispatcher(webhooks=[hook], plugin_manager=pm) as dispatcher:
            await dispatcher.emit("alert", {"title": "Disk full"})
            await dispatcher.drain()
            stats = dispatcher.get_webhook_stats("ops")
    finally:
        provider.shutdown()
    assert stats["delivered_count"] == 1 and stats["failed_count"] == 0
    assert exporter.calls == 1
    assert "Exception while exporting Span" in caplog.text
