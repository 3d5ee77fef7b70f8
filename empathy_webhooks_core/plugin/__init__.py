"""The plugin API: everything a plugin imports from the core, and nothing else.

    from empathy_webhooks_core.plugin import Event, OutgoingRequest, Webhook, hookimpl

A plugin's package imports core names from here only (a store backend also from
`empathy_webhooks_core.plugin.store`); its tests may add `empathy_webhooks_core.testing` and the
modules listed in docs/public-api.md. Every name here is covered by `PLUGIN_API_VERSION`: a
minor version adds names, only a major version removes or changes one, and a name on its way
out warns (`DeprecationWarning`) for at least one minor version first (docs/writing-plugins.md).
`tests/test_plugin_api.py` keeps first-party plugins and examples on this boundary.
"""

from __future__ import annotations

import typing
import warnings

from .._bounds import bounded, check_number
from .._chat import ChatMessage, Fact, chat_message, display_value, fit_escaped, percent, utf16_len
from .._contract import PLUGIN_API_ATTRIBUTE, PLUGIN_API_VERSION
from .._findings import (
    FindingBasis,
    Lifecycle,
    base_event_type,
    finding_basis,
    finding_identity,
    finding_key,
    fit_key,
    lifecycle_action,
)
from .._formatting import (
    ELLIPSIS,
    Severity,
    event_title,
    first_text,
    human_time,
    location,
    severity_of,
    truncate,
    truncate_bytes,
)
from .._log import get_logger
from .._netguard import BlockedAddressError, address_refusal
from .._pipeline.state import StateContext, state_for
from .._plugin_kit import LABELS, HttpAnswers, SecretUrlWebhook, apply_template, labelled_title
from .._routing import EventMatcher
from .._sender import Sender
from .._templating import format_template, merge_payload, render_template
from ..claims import service_for_url
from ..default_plugins.http import default_verdict
from ..delivery import TRANSPORT_ERRORS
from ..events import Event, format_timestamp
from ..plugins import hookimpl
from ..prometheus import Count
from ..redaction import (
    MIN_SECRET_LENGTH,
    REDACTED,
    exported_names,
    redact_text,
    redact_url,
    secret_field,
    url_repr,
)
from ..retry import parse_retry_after
from ..stores.base import KeyValue
from ..webhooks import Webhook, check_url
from ..wire import (
    DeliveryError,
    DeliveryResult,
    Outcome,
    OutgoingRequest,
    Response,
    Verdict,
    json_bytes,
)

__all__ = [
    "ELLIPSIS",
    "LABELS",
    "MIN_SECRET_LENGTH",
    "PLUGIN_API_ATTRIBUTE",
    "PLUGIN_API_VERSION",
    "REDACTED",
    "TRANSPORT_ERRORS",
    "BlockedAddressError",
    "ChatMessage",
    "Count",
    "DeliveryError",
    "DeliveryResult",
    "Event",
    "EventMatcher",
    "Fact",
    "FindingBasis",
    "HttpAnswers",
    "KeyValue",
    "Lifecycle",
    "Outcome",
    "OutgoingRequest",
    "Response",
    "SecretUrlWebhook",
    "Sender",
    "Severity",
    "StateContext",
    "Verdict",
    "Webhook",
    "WebhookDispatcher",
    "address_refusal",
    "apply_template",
    "base_event_type",
    "bounded",
    "chat_message",
    "check_number",
    "check_url",
    "default_verdict",
    "display_value",
    "event_title",
    "exported_names",
    "finding_basis",
    "finding_identity",
    "finding_key",
    "first_text",
    "fit_escaped",
    "fit_key",
    "format_template",
    "format_timestamp",
    "get_logger",
    "hookimpl",
    "human_time",
    "json_bytes",
    "labelled_title",
    "lifecycle_action",
    "location",
    "merge_payload",
    "parse_retry_after",
    "percent",
    "redact_text",
    "redact_url",
    "render_template",
    "secret_field",
    "service_for_url",
    "severity_of",
    "state_for",
    "truncate",
    "truncate_bytes",
    "url_repr",
    "utf16_len",
]


#: Names on their way out of the plugin API: old name -> (the name that replaces it, the plugin
#: API version that removes it). Each keeps working, with a DeprecationWarning, for at least one
#: minor version (docs/writing-plugins.md, section 7); the CHANGELOG lists it under Deprecated.
_DEPRECATED: dict[str, tuple[str, str]] = {}


def __getattr__(name: str) -> typing.Any:
    # The dispatcher is what `dispatcher_started` and `flush` receive: a plugin names it in
    # annotations, and importing it here eagerly would load the whole pipeline with any plugin.
    if name == "WebhookDispatcher":
        from ..dispatcher import WebhookDispatcher

        return WebhookDispatcher
    if name in _DEPRECATED:
        replacement, removed_in = _DEPRECATED[name]
        warnings.warn(
            f"{__name__}.{name} is deprecated and will be removed in plugin API {removed_in}; "
            f"use {__name__}.{replacement}",
            DeprecationWarning,
            stacklevel=2,
        )
        return globals()[replacement]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if typing.TYPE_CHECKING:
    from ..dispatcher import WebhookDispatcher
