"""PagerDuty Events API v2: events open, acknowledge and resolve PagerDuty alerts.

The routing key is the reference's `api_key` (an Events API v2 integration key); it travels in
the body, as PagerDuty requires, and is kept out of reprs and logs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

import attrs

from empathy_webhooks_core.plugin import (
    Event,
    Outcome,
    OutgoingRequest,
    Response,
    Verdict,
    Webhook,
    check_url,
    default_verdict,
    hookimpl,
    parse_retry_after,
    redact_url,
    secret_field,
    service_for_url,
    url_repr,
)

from .format import build_body, build_change_body, is_change, pagerduty_severity, summary

#: The plugin API this plugin is written for (docs/writing-plugins.md, section 7).
PLUGIN_API = "1.2"

__all__ = [
    "DEFAULT_CHANGE_EVENT_TYPES",
    "DEFAULT_EVENTS_URL",
    "ROUTING_KEY",
    "PagerDutyWebhook",
    "build_body",
    "build_change_body",
    "is_change",
    "pagerduty_severity",
    "summary",
]

DEFAULT_EVENTS_URL = "https://events.pagerduty.com"
_ENQUEUE_PATH = "/v2/enqueue"
_CHANGE_PATH = "/v2/change/enqueue"
ROUTING_KEY_LENGTH = 32
#: PagerDuty's answer to anything else: "Length of 'routing_key' is incorrect (should be 32
#: characters)"; keys are letters and digits.
ROUTING_KEY = re.compile(r"[A-Za-z0-9]{32}")
#: Event types sent as Change Events by default (a deploy is a change, not an alert).
DEFAULT_CHANGE_EVENT_TYPES = ("deployment",)


def _routing_key(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    # Checked now: PagerDuty would refuse every event with a 400 at send time. The message
    # never shows the key, not even a part of it.
    if value is None:
        raise ValueError("api_key (the Events API v2 routing key) is required; is it set?")
    if not isinstance(value, str) or not value.strip():
        raise ValueError("api_key must be a non-empty string (the Events API v2 routing key)")
    if not ROUTING_KEY.fullmatch(value):
        stripped = value.strip()
        if ROUTING_KEY.fullmatch(stripped):
            problem = "it has spaces or a line break around it"
        elif len(value) != ROUTING_KEY_LENGTH:
            problem = f"it has {len(value)} characters"
        else:
            problem = "it has other characters"
        raise ValueError(
            f"api_key must be a PagerDuty routing key: {ROUTING_KEY_LENGTH} letters and digits "
            f"(an Events API v2 integration key, or a ruleset key starting with R); {problem} "
            "(the key is not shown)"
        )


def _event_types(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    names = tuple(value)
    if any(not isinstance(name, str) or not name.strip() for name in names):
        raise ValueError(f"change_event_types must list event type names, got {value!r}")
    return names


def _events_url(value: Any) -> str:
    parts = urlsplit(check_url(value, "events_url"))
    # `/v2/enqueue` goes at the end of the path, before a query (a relay's `?token=`):
    # appended to the whole address it landed in the query, every page posted to the wrong
    # path. A fragment is never sent.
    path = parts.path.rstrip("/")
    if not path.endswith(_ENQUEUE_PATH):
        path += _ENQUEUE_PATH
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


@attrs.frozen(kw_only=True, eq=False)
class PagerDutyWebhook(Webhook):
    """Sends `trigger` (or `acknowledge` / `resolve`) alert events with a stable `dedup_key`,
    and changes (deployments: `change_event_types`, or `data["change"] = True`) as Change
    Events, which PagerDuty shows beside incidents and which page no one.

    >>> PagerDutyWebhook(api_key="0123456789abcdef0123456789abcdef").enqueue_url
    'https://events.pagerduty.com/v2/enqueue'
    """

    kind: ClassVar[str] = "pagerduty"

    api_key: str = secret_field(validator=_routing_key)
    events_url: str = attrs.field(default=DEFAULT_EVENTS_URL, converter=_events_url, repr=url_repr)
    source: str | None = None
    component: str | None = None
    group: str | None = None
    client: str | None = "Empathy Framework"
    client_url: str | None = None
    #: Event types sent to Change Events (`/v2/change/enqueue`) rather than as alerts; any
    #: event with `data["change"] = True` goes there too (`False` keeps it an alert).
    change_event_types: tuple[str, ...] = attrs.field(
        default=DEFAULT_CHANGE_EVENT_TYPES, converter=_event_types
    )

    @property
    def enqueue_url(self) -> str:
        return self.events_url

    @property
    def change_url(self) -> str:
        """Where change events go: the events host's `/v2/change/enqueue`."""
        parts = urlsplit(self.events_url)
        path = parts.path[: -len(_ENQUEUE_PATH)] + _CHANGE_PATH
        return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))

    @property
    def url(self) -> str:
        """Where events go (the Events API's enqueue endpoint), fit to show: what the
        reference's `on_failure` example logs as `webhook.url`. The routing key travels in the
        body, never here."""
        return redact_url(self.events_url)

    @property
    def routing_key(self) -> str:
        return self.api_key


@hookimpl
def webhook_types() -> dict[str, type[Webhook]]:
    return {"pagerduty": PagerDutyWebhook}


@hookimpl
def webhook_for_url(url: str, options: Mapping[str, Any]) -> PagerDutyWebhook | None:
    """A generic webhook pointed at a pagerduty URL is sent as PagerDutyWebhook sends it."""
    if service_for_url(url) != "pagerduty":
        return None
    # The routing key travels in the body and a URL cannot carry it: the generic envelope
    # would be refused (400), so say what to write instead.
    raise ValueError(
        f"webhook {options.get('name')!r} posts to PagerDuty's Events API, which needs a "
        "routing key the URL cannot carry: use PagerDutyWebhook(api_key=...) (in a config "
        'file: type = "pagerduty" with api_key), or raw=True (type = "custom") to send the '
        "generic envelope anyway"
    )


@hookimpl
def format_payload(webhook: PagerDutyWebhook, event: Event) -> OutgoingRequest:
    if is_change(webhook, event):
        return OutgoingRequest.json(
            webhook.change_url,
            build_change_body(webhook, event),
            headers={"Accept": "application/json"},
            extras={"event_action": "change"},
        )
    body = build_body(webhook, event)
    return OutgoingRequest.json(
        webhook.enqueue_url,
        body,
        headers={"Accept": "application/json"},
        extras={"dedup_key": body.get("dedup_key"), "event_action": body.get("event_action")},
    )


def _errors(response: Response) -> str:
    body = response.json()
    if not isinstance(body, dict):
        return response.excerpt(300)
    parts = [str(body.get("message") or body.get("status") or "")]
    errors = body.get("errors")
    if isinstance(errors, list):
        parts.extend(str(error) for error in errors)
    return "; ".join(part for part in parts if part) or response.excerpt(300)


@hookimpl
def classify_response(
    webhook: PagerDutyWebhook, request: OutgoingRequest, response: Response
) -> Verdict:
    status = response.status
    if 200 <= status < 300:
        body = response.json()
        key = body.get("dedup_key") if isinstance(body, dict) else None
        key = key or request.extras.get("dedup_key")
        action = request.extras.get("event_action")
        details = {name: str(v) for name, v in (("dedup_key", key), ("event_action", action)) if v}
        return Verdict(outcome=Outcome.SUCCESS, details=details)
    if status == 400:
        return Verdict(
            outcome=Outcome.FAIL, reason=f"invalid event (HTTP 400): {_errors(response)}"
        )
    if status == 429:
        # PagerDuty documents no Retry-After: back off by the retry policy and hold the whole
        # webhook, since the limit is per routing key. One that is sent (PagerDuty's edge, a
        # proxy) is honoured rather than retried into the same window.
        return Verdict(
            outcome=Outcome.RETRY,
            reason="rate limited by PagerDuty (HTTP 429)",
            retry_after=parse_retry_after(response.header("retry-after")),
            pause_webhook=True,
        )
    if status >= 500:
        return Verdict(outcome=Outcome.RETRY, reason=f"PagerDuty unavailable (HTTP {status})")
    return default_verdict(webhook, response)
