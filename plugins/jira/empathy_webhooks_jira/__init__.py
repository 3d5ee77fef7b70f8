"""Jira: findings (`bug_detected`, `security_vulnerability`) become Jira issues, once each.

A delivery searches (JQL) for an open issue carrying the finding's fingerprint label, then
creates the issue only if none is found; a finding reported again comments on its open issue,
and a resolved finding comments on it and moves it through a transition ("Done"); see
`delivery`. Jira Cloud (`*.atlassian.net`) authenticates an API token only with the account's
email (Basic); a Data Center personal access token is sent as a Bearer token when asked for
with `auth="bearer"`.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Awaitable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

import aiohttp
import attrs

from empathy_webhooks_core.plugin import (
    MIN_SECRET_LENGTH,
    REDACTED,
    Event,
    Outcome,
    OutgoingRequest,
    Response,
    Verdict,
    Webhook,
    check_url,
    default_verdict,
    hookimpl,
    lifecycle_action,
    parse_retry_after,
    secret_field,
    url_repr,
)

from ._client import jira_errors
from .delivery import deliver_finding
from .format import (
    DEFAULT_PRIORITIES,
    acknowledge_comment,
    assignee,
    build_body,
    description_adf,
    fingerprint,
    is_account_id,
    repeat_comment,
    resolve_comment,
    search_jql,
    summary,
)
from .state import JiraState

#: The plugin API this plugin is written for (docs/writing-plugins.md, section 7).
PLUGIN_API = "1.2"

__all__ = [
    "DEFAULT_PRIORITIES",
    "JiraWebhook",
    "build_body",
    "description_adf",
    "fingerprint",
    "summary",
]

_SEVERITIES = frozenset(DEFAULT_PRIORITIES)
_AUTH_SCHEMES = ("basic", "bearer")


def _required(name: str, hint: str) -> Any:
    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is None:
            raise ValueError(f"{name} is required ({hint}); is its environment variable set?")
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{name} must be a non-empty string ({hint})")

    return check


def _events(value: Any) -> tuple[str, ...]:
    # The base class's own check, so the narrower default keeps its validation.
    converter: Any = attrs.fields(Webhook).events.converter
    return converter(value)  # type: ignore[no-any-return]


def _site_url(value: Any) -> str:
    return check_url(value, "url").rstrip("/")


def _priorities(value: Mapping[str, str | None] | None) -> Mapping[str, str | None]:
    merged = dict(DEFAULT_PRIORITIES)
    for key, name in (value or {}).items():
        severity = str(key).strip().lower()
        if severity not in _SEVERITIES:
            raise ValueError(
                f"priorities keys are severities ({', '.join(DEFAULT_PRIORITIES)}), got {key!r}"
            )
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise ValueError(f"priorities[{key!r}] must be a Jira priority name or None")
        merged[severity] = name
    return merged


def _labels(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    return tuple(str(item) for item in (value or ()))


def _auth(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and value not in _AUTH_SCHEMES:
        raise ValueError(
            f"auth must be 'basic' (email with api_token) or 'bearer' (a Jira Data Center "
            f"personal access token), got {value!r}"
        )


def _api_version(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value not in (2, 3):
        raise ValueError(
            f"api_version must be 3 (Jira Cloud) or 2 (Jira Data Center), got {value!r}"
        )


@attrs.frozen(kw_only=True, eq=False)
class JiraWebhook(Webhook):
    """Creates one Jira issue per finding (the reference's `JiraWebhook`).

    >>> JiraWebhook(url="https://acme.atlassian.net", email="bot@acme.io", api_token="t0ken",
    ...             project="EMP").create_url
    'https://acme.atlassian.net/rest/api/3/issue'
    """

    kind: ClassVar[str] = "jira"

    url: str = attrs.field(converter=_site_url, repr=url_repr)
    api_token: str = secret_field(
        validator=_required("api_token", "a Jira API token or Data Center PAT")
    )
    project: str = attrs.field(validator=_required("project", "the Jira project key"))
    issue_type: str = "Bug"
    events: tuple[str, ...] = attrs.field(
        default=(
            "bug_detected",
            "security_vulnerability",
            "bug_detected_resolved",
            "security_vulnerability_resolved",
        ),
        converter=_events,
    )
    #: The Atlassian account's email: the token goes as Basic auth `email:api_token` (Jira
    #: Cloud's only way for API tokens, and the default everywhere). Not given, it is read
    #: from the `JIRA_EMAIL` environment variable, as the reference reads `JIRA_URL` and
    #: `JIRA_API_TOKEN` (so its snippet works as written); never with `auth="bearer"`.
    email: str | None = None
    #: "basic" (default: `email` with `api_token`) or "bearer" (`api_token` is a Jira Data
    #: Center personal access token; refused for Jira Cloud hosts, which answer 401).
    auth: str | None = attrs.field(default=None, validator=_auth)
    #: Severity (critical/high/medium/low/info) -> Jira priority name; None leaves it unset.
    priorities: Mapping[str, str | None] = attrs.field(
        factory=lambda: dict(DEFAULT_PRIORITIES), converter=_priorities
    )
    labels: tuple[str, ...] = attrs.field(default=("ai-detected",), converter=_labels)
    #: Who to assign to when the event names no owner: an account id, or an email looked up
    #: with Jira's user search (once per webhook).
    assignee: str | None = None
    #: The transition (or target status) name that closes a ticket when its finding resolves.
    resolve_transition: str = attrs.field(
        default="Done", validator=_required("resolve_transition", "a Jira transition name")
    )
    #: Search for an open issue of the same finding before creating one.
    deduplicate: bool = True
    #: 3 for Jira Cloud (ADF descriptions); 2 for Jira Data Center (wiki-markup descriptions).
    api_version: int = attrs.field(default=3, validator=_api_version)
    #: The `Authorization` header's value, made from `email` and `api_token`: a credential
    #: of its own (base64 of `email:token`), so declared secret too.
    authorization: str = secret_field(
        init=False, default=attrs.Factory(lambda self: self._authorization(), takes_self=True)
    )

    @property
    def create_url(self) -> str:
        return f"{self.url}/rest/api/{self.api_version}/issue"

    @property
    def search_url(self) -> str:
        # Cloud removed /rest/api/3/search in favour of the enhanced /search/jql; Data Center
        # only has the classic one.
        if self.api_version == 3:
            return f"{self.url}/rest/api/3/search/jql"
        return f"{self.url}/rest/api/2/search"

    def browse_url(self, key: str) -> str:
        return f"{self.url}/browse/{key}"

    @property
    def is_cloud(self) -> bool:
        """Whether `url` is a Jira Cloud site (`<site>.atlassian.net`)."""
        host = (urlsplit(self.url).hostname or "").lower()
        return host == "atlassian.net" or host.endswith(".atlassian.net")

    def _authorization(self) -> str:
        # Checked here because this runs at construction: a configuration Jira can only
        # answer with 401 is refused before the first event. The token is never quoted.
        host = urlsplit(self.url).hostname
        if not isinstance(self.api_token, str) or not self.api_token.strip():
            return ""  # api_token's own check says what is missing
        if self.email is None and self.auth != "bearer" and os.environ.get("JIRA_EMAIL"):
            # Frozen, and this runs inside attrs' __init__: the field is still being made.
            object.__setattr__(self, "email", os.environ["JIRA_EMAIL"])
        if self.auth == "bearer":
            if self.email:
                raise ValueError(
                    'email is for Basic auth; with auth="bearer" the api_token (a Jira Data '
                    "Center personal access token) is sent alone: drop one of them"
                )
            if self.is_cloud:
                raise ValueError(
                    f"Jira Cloud ({host}) does not take API tokens as Bearer tokens (it answers "
                    '401): drop auth="bearer" and set email to the Atlassian account\'s email'
                )
            return f"Bearer {self.api_token}"
        if not self.email:
            if self.is_cloud:
                raise ValueError(
                    f"Jira Cloud ({host}) takes an API token only with the Atlassian account's "
                    "email (Basic auth): set email, or JIRA_EMAIL in the environment"
                )
            raise ValueError(
                "email is required with api_token (Basic auth): set email, or JIRA_EMAIL in "
                'the environment; for a Jira Data Center personal access token set auth="bearer"'
            )
        pair = f"{self.email}:{self.api_token}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")


@hookimpl
def webhook_types() -> dict[str, type[Webhook]]:
    return {"jira": JiraWebhook}


@hookimpl
def format_payload(webhook: JiraWebhook, event: Event) -> OutgoingRequest:
    body = build_body(webhook, event)
    fp = fingerprint(event) if webhook.deduplicate else None
    action = lifecycle_action(event)
    extras: dict[str, Any] = {
        "project": webhook.project,
        "event_id": event.event_id,
        "action": action,
        # What goes on the open ticket instead of a second one (a dry run shows it too).
        "comment": {
            "resolve": resolve_comment,
            "acknowledge": acknowledge_comment,
            "trigger": repeat_comment,
        }[action](event),
    }
    if fp:
        extras.update(fingerprint=fp, jql=search_jql(webhook.project, fp))
    owner = assignee(webhook, event)
    if owner and webhook.api_version == 3 and not is_account_id(owner):
        extras["assignee_lookup"] = owner
    return OutgoingRequest.json(
        webhook.create_url,
        body,
        headers={"Authorization": webhook.authorization, "Accept": "application/json"},
        extras=extras,
    )


@hookimpl
def webhook_state(webhook: JiraWebhook) -> JiraState:
    return JiraState()


@hookimpl
def deliver(
    webhook: JiraWebhook, request: OutgoingRequest, session: aiohttp.ClientSession, state: Any
) -> Awaitable[Response]:
    return deliver_finding(
        webhook, request, session, state if isinstance(state, JiraState) else None
    )


def _reset_after(value: str | None) -> float | None:
    """Seconds until Jira's `X-RateLimit-Reset` (an ISO-8601 time), when no Retry-After."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def _masked(webhook: JiraWebhook, text: str) -> str:
    """`text` with the webhook's own credentials masked (the token, `email:token`, the
    `Authorization` value), whether or not a dispatcher has registered them yet:
    `classify_response` may be called on its own."""
    for value in webhook.secret_values():
        if len(value) >= MIN_SECRET_LENGTH:
            text = text.replace(value, REDACTED)
    return text


@hookimpl
def classify_response(
    webhook: JiraWebhook, request: OutgoingRequest, response: Response
) -> Verdict:
    step = response.step or "create"
    details = dict(response.details)
    status = response.status
    key = details.get("jira_key")
    if isinstance(key, str):
        details["jira_url"] = webhook.browse_url(key)
    failure = details.pop("failure", None)
    if failure:
        return Verdict(outcome=Outcome.FAIL, reason=failure, details=details)
    if 200 <= status < 300:
        return Verdict(outcome=Outcome.SUCCESS, details=details)
    what = {
        "search": "the duplicate search",
        "comment": f"the comment on {key}",
        "transitions": f"the transitions of {key}",
        "transition": f"the transition of {key}",
    }.get(step, "the issue")
    if status in (429, 503) or status >= 500 or (status == 409 and step == "transition"):
        retry_after = parse_retry_after(response.header("retry-after"))
        if retry_after is None and status == 429:
            retry_after = _reset_after(response.header("x-ratelimit-reset"))
        reason = {
            429: "rate limited by Jira",
            409: f"Jira is already transitioning {key}",
        }.get(status, "Jira unavailable")
        return Verdict(
            outcome=Outcome.RETRY,
            reason=f"{reason} (HTTP {status})",
            retry_after=retry_after,
            pause_webhook=status == 429,
        )
    said = _masked(webhook, jira_errors(response)) if status in (400, 403, 404) else ""
    if status == 400:
        return Verdict(
            outcome=Outcome.FAIL,
            reason=f"Jira refused {what} (HTTP 400): {said}",
            details=details,
        )
    if status == 401:
        return Verdict(
            outcome=Outcome.FAIL,
            reason="Jira refused the credentials (HTTP 401): Jira Cloud takes an API token only "
            "with the account's email (Basic auth: set email); Jira Data Center a personal "
            'access token with auth="bearer"',
        )
    if status == 403:
        return Verdict(
            outcome=Outcome.FAIL,
            reason=f"no permission for {what} (HTTP 403): {said}",
            details=details,
        )
    if status == 404:
        return Verdict(
            outcome=Outcome.FAIL,
            reason=f"not found (HTTP 404) for {what}: is url the Jira site and "
            f"{webhook.project!r} a project key? {said}",
            details=details,
        )
    return default_verdict(webhook, response)
