"""PagerDuty Events API v2: events open, acknowledge and resolve PagerDuty alerts.

The routing key is the reference's `api_key` (an Events API v2 integration key); it travels in
the body, as PagerDuty requires, and is kept out of reprs and logs.
"""

from __future__ import annotations

from typing import Any, ClassVar

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
    redact_url,
    secret_field,
    url_repr,
)

from .format import build_body, pagerduty_severity, summary

#: The plugin API this plugin is written for (docs/writing-plugins.md, section 7).
PLUGIN_API = "1.0"

__all__ = ["DEFAULT_EVENTS_URL", "PagerDutyWebhook", "build_body", "pagerduty_severity", "summary"]

DEFAULT_EVENTS_URL = "https://events.pagerduty.com"
_ENQUEUE_PATH = "/v2/enqueue"


def _routing_key(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        raise ValueError("api_key (the Events API v2 routing key) is required; is it set?")
    if not isinstance(value, str) or not value.strip():
        raise ValueError("api_key must be a non-empty string (the Events API v2 routing key)")


def _events_url(value: Any) -> str:
    url = check_url(value, "events_url").rstrip("/")
    return url if url.endswith(_ENQUEUE_PATH) else url + _ENQUEUE_PATH


@attrs.frozen(kw_only=True, eq=False)
class PagerDutyWebhook(Webhook):
    """Sends `trigger` (or `acknowledge` / `resolve`) alert events with a stable `dedup_key`.

    >>> PagerDutyWebhook(api_key="R0UT1NGKEY", events=["alert"]).enqueue_url
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

    @property
    def enqueue_url(self) -> str:
        return self.events_url

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
def format_payload(webhook: PagerDutyWebhook, event: Event) -> OutgoingRequest:
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
        # webhook, since the limit is per routing key.
        return Verdict(
            outcome=Outcome.RETRY,
            reason="rate limited by PagerDuty (HTTP 429)",
            pause_webhook=True,
        )
    if status >= 500:
        return Verdict(outcome=Outcome.RETRY, reason=f"PagerDuty unavailable (HTTP {status})")
    return default_verdict(webhook, response)
