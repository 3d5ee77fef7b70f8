"""Grafana: events recorded as annotations (`POST /api/annotations`), organisation-wide or on a
dashboard panel, found later by their tags."""

from __future__ import annotations

from collections.abc import Sequence
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
    secret_field,
    url_repr,
)

from .format import annotation_body, annotation_text, epoch_ms, tags_for

#: The plugin API this plugin is written for (docs/writing-plugins.md, section 7).
PLUGIN_API = "1.2"

__all__ = [
    "MAX_OWN_TAGS",
    "GrafanaWebhook",
    "annotation_body",
    "annotation_text",
    "epoch_ms",
    "tags_for",
]

_PATH = "/api/annotations"


def _annotations_url(value: Any) -> str:
    parts = urlsplit(check_url(value))
    # `/api/annotations` goes at the end of the path, before a query: appended to the whole
    # address, a browser's `https://grafana.example.com/?orgId=1` became
    # `...?orgId=1/api/annotations`, every annotation posted to `/`. A fragment is never sent.
    path = parts.path.rstrip("/")
    if not path.endswith(_PATH):
        path += _PATH
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def _token(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        raise ValueError("api_key (a Grafana service-account token) is required; is it set?")
    if not isinstance(value, str) or not value.strip() or "\n" in value or "\r" in value:
        raise ValueError("api_key must be a non-empty single-line string")


#: The webhook's own tags at most: an annotation keeps 50, and up to 6 are the event's own
#: (`empathy`, its type, severity, service, endpoint, environment), which come first.
MAX_OWN_TAGS = 44


def _tags(value: Sequence[str] | str | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    tags = tuple(str(tag) for tag in value)
    if len(set(tags)) > MAX_OWN_TAGS:
        # Beyond it some would be left out of every annotation, and a dashboard filtering on
        # one would show nothing, without a word.
        raise ValueError(
            f"tags: at most {MAX_OWN_TAGS} (an annotation keeps 50, 6 are the event's own), "
            f"got {len(set(tags))}"
        )
    return tags


def _panel(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError(f"panel_id must be an integer, got {type(value).__name__}")


@attrs.frozen(kw_only=True, eq=False)
class GrafanaWebhook(Webhook):
    """Records each event as a Grafana annotation.

    `url` is the Grafana base URL (`https://grafana.example.com`; `/api/annotations` is
    appended unless given). Without `dashboard_uid` the annotation is organisation-wide (shown
    by an annotation query filtering on its tags); with it (and `panel_id`), on that dashboard.

    >>> GrafanaWebhook(url="https://grafana.example.com", api_key="glsa_x").annotations_url
    'https://grafana.example.com/api/annotations'
    """

    kind: ClassVar[str] = "grafana"

    url: str = attrs.field(converter=_annotations_url, repr=url_repr)
    api_key: str = secret_field(validator=_token)
    dashboard_uid: str | None = None
    panel_id: int | None = attrs.field(default=None, validator=_panel)
    tags: tuple[str, ...] = attrs.field(default=(), converter=_tags)

    @property
    def annotations_url(self) -> str:
        return self.url


@hookimpl
def webhook_types() -> dict[str, type[Webhook]]:
    return {"grafana": GrafanaWebhook}


@hookimpl
def format_payload(webhook: GrafanaWebhook, event: Event) -> OutgoingRequest:
    return OutgoingRequest.json(
        webhook.annotations_url,
        annotation_body(webhook, event),
        headers={"Authorization": f"Bearer {webhook.api_key}", "Accept": "application/json"},
    )


@hookimpl
def classify_response(
    webhook: GrafanaWebhook, request: OutgoingRequest, response: Response
) -> Verdict:
    body = response.json()
    message = body.get("message") if isinstance(body, dict) else None
    if 200 <= response.status < 300:
        annotation_id = body.get("id") if isinstance(body, dict) else None
        details = {"annotation_id": str(annotation_id)} if annotation_id is not None else {}
        return Verdict(outcome=Outcome.SUCCESS, details=details)
    if response.status in (401, 403):
        reason = f"Grafana refused the token (HTTP {response.status})"
        if message:
            reason += f": {message}"
        return Verdict(outcome=Outcome.FAIL, reason=reason)
    verdict = default_verdict(webhook, response)
    if message and verdict.reason:
        verdict = attrs.evolve(verdict, reason=f"{verdict.reason}: {message}")
    return verdict
