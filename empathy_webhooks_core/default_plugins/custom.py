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


#: Each webhook's own headers with the JSON content type in front unless it sets one: the
#: same for every event (webhooks compare by identity). Bounded, as webhooks may be made
#: and dropped while a process runs.
_BASE_HEADERS: dict[CustomWebhook, tuple[dict[str, str], dict[str, str]]] = {}
_BASE_LIMIT = 4096


def _base_headers(webhook: CustomWebhook) -> tuple[dict[str, str], dict[str, str]]:
    """The headers before the event's own: for the envelope, and for a template's body."""
    base = _BASE_HEADERS.get(webhook)
    if base is None:
        own = dict(webhook.headers)
        typed = own
        if not any(key.lower() == "content-type" for key in own):
            typed = {"Content-Type": "application/json", **own}
        if len(_BASE_HEADERS) >= _BASE_LIMIT:
            _BASE_HEADERS.clear()
        base = _BASE_HEADERS[webhook] = (typed, own)
    return base


@hookimpl
def format_payload(webhook: CustomWebhook, event: Event) -> OutgoingRequest:
    typed, own = _base_headers(webhook)
    if webhook.template_for(event) is None:
        # The common case: the envelope, encoded once per event however many webhooks get it.
        headers = {**typed, EVENT_ID_HEADER: event.event_id, EVENT_TYPE_HEADER: event.event_type}
        return OutgoingRequest(
            url=webhook.url, method=webhook.method, headers=headers, body=event.envelope_bytes()
        )
    headers = {**own, EVENT_ID_HEADER: event.event_id, EVENT_TYPE_HEADER: event.event_type}
    return OutgoingRequest.json(
        webhook.url, render_body(webhook, event), method=webhook.method, headers=headers
    )


__all__ = ["EVENT_ID_HEADER", "EVENT_TYPE_HEADER", "WebhookConfig", "render_body"]
