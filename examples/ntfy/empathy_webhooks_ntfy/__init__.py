"""ntfy (https://ntfy.sh or a self-hosted server): events as push notifications to a topic.

A third-party plugin written only against the core's public API: it declares its webhook
type and renders the request; the core's HTTP delivery sends it and classifies the answer
(ntfy says 429 when rate limited, which the core retries after `Retry-After`).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import attrs

from empathy_webhooks_core.plugin import (
    Event,
    OutgoingRequest,
    Webhook,
    apply_template,
    check_url,
    hookimpl,
    redact_url,
    secret_field,
    truncate_bytes,
)

from .format import MESSAGE_LIMIT_BYTES, TITLE_LIMIT, build_message, priority_for

#: The plugin API this plugin is written for (docs/writing-plugins.md, section 7).
PLUGIN_API = "1.2"

__all__ = ["MESSAGE_LIMIT_BYTES", "TITLE_LIMIT", "NtfyWebhook", "build_message", "priority_for"]

_TOPIC = re.compile(r"[-_A-Za-z0-9]{1,64}")


def _topic(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str) or not _TOPIC.fullmatch(value):
        # The topic is a credential on public servers: never echo it.
        raise ValueError("topic must be 1 to 64 letters, digits, '-' or '_'")


def _priority(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and (isinstance(value, bool) or value not in (1, 2, 3, 4, 5)):
        raise ValueError(f"priority must be 1 to 5 (or None: from the severity), got {value!r}")


def _tags(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    return tuple(str(tag) for tag in value or ())


@attrs.frozen(kw_only=True, eq=False)
class NtfyWebhook(Webhook):
    """Publishes to one ntfy topic.

    >>> NtfyWebhook(topic="empathy-alerts").publish_url
    'https://ntfy.sh/'
    """

    kind: ClassVar[str] = "ntfy"

    # Anyone who knows a topic on a public server can read it: declared a secret.
    topic: str = secret_field(validator=_topic)
    server_url: str = attrs.field(
        default="https://ntfy.sh", validator=lambda _, __, value: check_url(value, "server_url")
    )
    token: str | None = secret_field(default=None)
    priority: int | None = attrs.field(default=None, validator=_priority)
    tags: tuple[str, ...] = attrs.field(default=(), converter=_tags)
    markdown: bool = True

    @property
    def publish_url(self) -> str:
        """ntfy's JSON publishing endpoint is the server's root (the topic is in the body)."""
        return self.server_url.rstrip("/") + "/"

    @property
    def url(self) -> str:
        """Where it posts, fit to show (the reference's `on_failure` logs `webhook.url`)."""
        return redact_url(self.publish_url)


@hookimpl
def webhook_types() -> dict[str, type[Webhook]]:
    return {"ntfy": NtfyWebhook}


@hookimpl
def format_payload(webhook: NtfyWebhook, event: Event) -> OutgoingRequest:
    body = build_message(
        event,
        topic=webhook.topic,
        priority=webhook.priority,
        tags=webhook.tags,
        markdown=webhook.markdown,
    )
    body = apply_template(
        webhook,
        event,
        body,
        text=lambda text: {"message": truncate_bytes(text, MESSAGE_LIMIT_BYTES)},
    )
    headers = {"Authorization": f"Bearer {webhook.token}"} if webhook.token else {}
    return OutgoingRequest.json(webhook.publish_url, body, headers=headers)
