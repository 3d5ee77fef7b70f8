"""empathy-webhooks: deliver Empathy Framework events to Slack, Jira, Datadog and any HTTP endpoint.

Importing this package loads no plugin and opens no socket; the plugin manager is built on
first use.
"""

from ._version import __version__
from .breaker import BreakerPolicy
from .converter import ConfigError
from .dispatcher import USER_AGENT, WebhookDispatcher
from .events import Event, EventDataError, EventType
from .monitor import WebhookMonitor
from .plugins import hookimpl
from .ratelimit import RateLimit
from .retry import RetryPolicy
from .signing import sign_request
from .stores import DeadLetter, Delivery, DeliveryStore
from .sync import ThreadedDispatcher
from .webhooks import CustomWebhook, Webhook, WebhookConfig
from .wire import DeliveryError, DeliveryResult, Outcome, OutgoingRequest, Response, Verdict

__all__ = [
    "USER_AGENT",
    "BreakerPolicy",
    "ConfigError",
    "CustomWebhook",
    "DeadLetter",
    "Delivery",
    "DeliveryError",
    "DeliveryResult",
    "DeliveryStore",
    "Event",
    "EventDataError",
    "EventType",
    "Outcome",
    "OutgoingRequest",
    "RateLimit",
    "Response",
    "RetryPolicy",
    "ThreadedDispatcher",
    "Verdict",
    "Webhook",
    "WebhookConfig",
    "WebhookDispatcher",
    "WebhookMonitor",
    "__version__",
    "hookimpl",
    "sign_request",
]
