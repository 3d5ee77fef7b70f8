"""empathy-webhooks: deliver Empathy Framework events to Slack, Jira, Datadog and any HTTP endpoint.

Importing this package loads no plugin, opens no socket and imports nothing heavy: each public
name is imported from its module on first use (so the pytest plugin, loaded in every pytest
run where the core is installed, costs nothing). The plugin manager is built on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import _renderer
from ._version import __version__

_EXPORTS = {
    "BlockedAddressError": "_netguard",
    "BreakerPolicy": "breaker",
    "AttemptRecord": "history",
    "ConfigError": "converter",
    "CustomWebhook": "webhooks",
    "DeadLetter": "stores",
    "Delivery": "stores",
    "DeliveryError": "wire",
    "DeliveryPage": "history",
    "DeliveryRecord": "history",
    "DeliveryResult": "wire",
    "DeliveryStore": "stores",
    "Event": "events",
    "EventDataError": "events",
    "EventType": "events",
    "KeyValue": "stores",
    "OutgoingRequest": "wire",
    "Outcome": "wire",
    "PluginContractError": "plugins",
    "QueueFull": "dispatcher",
    "RateLimit": "ratelimit",
    "Response": "wire",
    "StateContext": "_pipeline.state",
    "RetryPolicy": "retry",
    "ThreadedDispatcher": "sync",
    "USER_AGENT": "dispatcher",
    "UnknownWebhookError": "monitor",
    "Verdict": "wire",
    "Webhook": "webhooks",
    "WebhookConfig": "webhooks",
    "WebhookDispatcher": "dispatcher",
    "WebhookMonitor": "monitor",
    "WebhookVerificationError": "signing",
    "get_logger": "_log",
    "hookimpl": "plugins",
    "render_request": "delivery",
    "secret_field": "redaction",
    "service_for_url": "claims",
    "sign_request": "signing",
    "state_for": "_pipeline.state",
    "verify_standard_webhook": "signing",
    "verify_webhook_signature": "signing",
}

__all__ = [
    "USER_AGENT",
    "AttemptRecord",
    "BlockedAddressError",
    "BreakerPolicy",
    "ConfigError",
    "CustomWebhook",
    "DeadLetter",
    "Delivery",
    "DeliveryError",
    "DeliveryPage",
    "DeliveryRecord",
    "DeliveryResult",
    "DeliveryStore",
    "Event",
    "EventDataError",
    "EventType",
    "KeyValue",
    "Outcome",
    "OutgoingRequest",
    "PluginContractError",
    "QueueFull",
    "RateLimit",
    "Response",
    "RetryPolicy",
    "StateContext",
    "ThreadedDispatcher",
    "UnknownWebhookError",
    "Verdict",
    "Webhook",
    "WebhookConfig",
    "WebhookDispatcher",
    "WebhookMonitor",
    "WebhookVerificationError",
    "__version__",
    "get_logger",
    "hookimpl",
    "render_request",
    "secret_field",
    "service_for_url",
    "sign_request",
    "state_for",
    "verify_standard_webhook",
    "verify_webhook_signature",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'empathy_webhooks_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


def _render_request(webhook: Webhook, event: Event) -> OutgoingRequest:
    render: _renderer.Renderer = __getattr__("render_request")
    return render(webhook, event)


# `Webhook.render` runs the plugins, which `webhooks.py` may not import (see `_renderer`): the
# package, run before any of its modules, binds the renderer, loaded on first use like every name.
_renderer.bind_renderer(_render_request)


if TYPE_CHECKING:
    from ._log import get_logger
    from ._netguard import BlockedAddressError
    from ._pipeline.state import StateContext, state_for
    from .breaker import BreakerPolicy
    from .claims import service_for_url
    from .converter import ConfigError
    from .delivery import render_request
    from .dispatcher import USER_AGENT, QueueFull, WebhookDispatcher
    from .events import Event, EventDataError, EventType
    from .history import AttemptRecord, DeliveryPage, DeliveryRecord
    from .monitor import UnknownWebhookError, WebhookMonitor
    from .plugins import PluginContractError, hookimpl
    from .ratelimit import RateLimit
    from .redaction import secret_field
    from .retry import RetryPolicy
    from .signing import (
        WebhookVerificationError,
        sign_request,
        verify_standard_webhook,
        verify_webhook_signature,
    )
    from .stores import DeadLetter, Delivery, DeliveryStore, KeyValue
    from .sync import ThreadedDispatcher
    from .webhooks import CustomWebhook, Webhook, WebhookConfig
    from .wire import DeliveryError, DeliveryResult, Outcome, OutgoingRequest, Response, Verdict
