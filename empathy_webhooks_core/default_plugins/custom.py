"""The generic target: the reference's envelope, as JSON, to any HTTP endpoint."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..events import Event
from ..plugins import hookimpl
from ..webhooks import CustomWebhook, Webhook, WebhookConfig
from ..wire import OutgoingRequest

EVENT_ID_HEADER = "X-Empathy-Event-Id"
EVENT_TYPE_HEADER = "X-Empathy-Event-Type"


def render_body(webhook: Webhook, event: Event) -> Any:
    """The envelope, or the user's template for this event type."""
    template = webhook.template_for(event)
    if template is None:
        return event.to_envelope()
    if callable(template):
        return template(event)
    if isinstance(template, Mapping):
        return dict(template)
    return {"text": str(template).format(**event.to_envelope())}


@hookimpl
def webhook_types() -> dict[str, type[Webhook]]:
    return {"custom": CustomWebhook}


@hookimpl
def format_payload(webhook: CustomWebhook, event: Event) -> OutgoingRequest:
    headers = {
        **webhook.headers,
        EVENT_ID_HEADER: event.event_id,
        EVENT_TYPE_HEADER: event.event_type,
    }
    if webhook.template_for(event) is None:
        # The common case: the envelope, encoded once per event however many webhooks get it.
        if not any(key.lower() == "content-type" for key in headers):
            headers = {"Content-Type": "application/json", **headers}
        return OutgoingRequest(
            url=webhook.url, method=webhook.method, headers=headers, body=event.envelope_bytes()
        )
    return OutgoingRequest.json(
        webhook.url, render_body(webhook, event), method=webhook.method, headers=headers
    )


__all__ = ["EVENT_ID_HEADER", "EVENT_TYPE_HEADER", "WebhookConfig", "render_body"]
