"""Jira: findings (`bug_detected`, `security_vulnerability`) become Jira issues, once each.

A delivery is two calls: a JQL search for an open issue carrying the finding's fingerprint
label, then the create (REST API v3) only if none is found. The same search on a retry finds the
issue a timed-out create made, so a finding is never ticketed twice. Jira Cloud authenticates
with the account email and an API token (Basic); without an email the token is sent as a Bearer
token (a Jira Data Center personal access token).
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

import aiohttp
import attrs

from empathy_webhooks_core.plugin import (
    Event,
    Outcome,
    OutgoingRequest,
    Response,
    Sender,
    Verdict,
    Webhook,
    check_url,
    default_verdict,
    hookimpl,
    parse_retry_after,
    redact_text,
    secret_field,
    url_repr,
)

from .format import (
    DEFAULT_PRIORITIES,
    build_body,
    description_adf,
    fingerprint,
    search_jql,
    summary,
)
from .state import JiraState

#: The plugin API this plugin is written for (docs/writing-plugins.md, section 7).
PLUGIN_API = "1.0"

__all__ = [
    "DEFAULT_PRIORITIES",
    "JiraWebhook",
    "build_body",
    "description_adf",
    "fingerprint",
    "summary",
]

_SEVERITIES = frozenset(DEFAULT_PRIORITIES)


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
        default=("bug_detected", "security_vulnerability"),
        converter=_events,
    )
    #: The Atlassian account email: given, the token goes as Basic auth (Jira Cloud).
    email: str | None = None
    #: Severity (critical/high/medium/low/info) -> Jira priority name; None leaves it unset.
    priorities: Mapping[str, str | None] = attrs.field(
        factory=lambda: dict(DEFAULT_PRIORITIES), converter=_priorities
    )
    labels: tuple[str, ...] = attrs.field(default=("ai-detected",), converter=_labels)
    #: Account id to assign to when the event names no owner.
    assignee: str | None = None
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

    def _authorization(self) -> str:
        if self.email:
            pair = f"{self.email}:{self.api_token}".encode()
            return "Basic " + base64.b64encode(pair).decode("ascii")
        return f"Bearer {self.api_token}"


@hookimpl
def webhook_types() -> dict[str, type[Webhook]]:
    return {"jira": JiraWebhook}


@hookimpl
def format_payload(webhook: JiraWebhook, event: Event) -> OutgoingRequest:
    body = build_body(webhook, event)
    fp = fingerprint(event) if webhook.deduplicate else None
    extras: dict[str, Any] = {"project": webhook.project}
    if fp:
        extras.update(fingerprint=fp, jql=search_jql(webhook.project, fp))
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
    return _deliver(webhook, request, session, state if isinstance(state, JiraState) else None)


def _answer(response: Response, step: str, elapsed: float, **details: Any) -> Response:
    return response.at_step(step, elapsed_ms=elapsed, **details)


async def _deliver(
    webhook: JiraWebhook,
    request: OutgoingRequest,
    session: aiohttp.ClientSession,
    state: JiraState | None,
) -> Response:
    sender = Sender(webhook, session)
    fp = request.extras.get("fingerprint")
    if not fp:
        created = await sender.send(request)
        return _created(webhook, created, created.elapsed_ms, None)
    state = state or JiraState()  # no state made: nothing remembered, the search still runs
    key = f"{webhook.project}:{fp}"
    async with state.lock(key):
        search: dict[str, Any] = {
            "jql": request.extras["jql"],
            "fields": ["summary", "status"],
            "maxResults": 1,
        }
        known = await state.created(key) if webhook.api_version == 3 else []
        if known:
            search["reconcileIssues"] = [int(i) if i.isdigit() else i for i in known]
        found = await sender.send(
            OutgoingRequest.json(webhook.search_url, search, headers=request.headers)
        )
        if not 200 <= found.status < 300:
            return _answer(found, "search", found.elapsed_ms)
        body = found.json()
        issues = body.get("issues") if isinstance(body, dict) else None
        if isinstance(issues, list) and issues and isinstance(issues[0], dict):
            issue = issues[0]
            return _answer(
                found,
                "search",
                found.elapsed_ms,
                jira_key=issue.get("key"),
                jira_id=str(issue["id"]) if issue.get("id") is not None else None,
                deduplicated=True,
            )
        created = await sender.send(request)
        answer = _created(webhook, created, found.elapsed_ms + created.elapsed_ms, fp)
        issue_id = answer.details.get("jira_id")
        if issue_id:
            await state.remember(key, str(issue_id))
        return answer


def _created(webhook: JiraWebhook, response: Response, elapsed: float, fp: str | None) -> Response:
    body = response.json() if 200 <= response.status < 300 else None
    if not isinstance(body, dict):
        return _answer(response, "create", elapsed)
    return _answer(
        response,
        "create",
        elapsed,
        jira_key=body.get("key"),
        jira_id=str(body["id"]) if body.get("id") is not None else None,
        created=True,
    )


def _errors(response: Response) -> str:
    """Jira's `{"errorMessages": [...], "errors": {"field": "message"}}`, as one line."""
    body = response.json()
    if not isinstance(body, dict):
        return redact_text(response.excerpt(300))
    parts = [str(message) for message in body.get("errorMessages") or []]
    errors = body.get("errors")
    if isinstance(errors, dict):
        parts.extend(f"{field}: {message}" for field, message in errors.items())
    # Services echo input back; what reaches reasons and logs must not carry a credential.
    return redact_text("; ".join(parts) or response.excerpt(300))


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


@hookimpl
def classify_response(
    webhook: JiraWebhook, request: OutgoingRequest, response: Response
) -> Verdict:
    step = response.step or "create"
    details = dict(response.details)
    status = response.status
    if 200 <= status < 300:
        key = details.get("jira_key")
        if isinstance(key, str):
            details["jira_url"] = webhook.browse_url(key)
        return Verdict(outcome=Outcome.SUCCESS, details=details)
    what = "the duplicate search" if step == "search" else "the issue"
    if status in (429, 503) or status >= 500:
        retry_after = parse_retry_after(response.header("retry-after"))
        if retry_after is None and status == 429:
            retry_after = _reset_after(response.header("x-ratelimit-reset"))
        reason = "rate limited by Jira" if status == 429 else "Jira unavailable"
        return Verdict(
            outcome=Outcome.RETRY,
            reason=f"{reason} (HTTP {status})",
            retry_after=retry_after,
            pause_webhook=status == 429,
        )
    if status == 400:
        return Verdict(
            outcome=Outcome.FAIL, reason=f"Jira refused {what} (HTTP 400): {_errors(response)}"
        )
    if status == 401:
        return Verdict(
            outcome=Outcome.FAIL,
            reason="Jira refused the credentials (HTTP 401): check email and api_token "
            "(Jira Cloud needs the account email; Data Center a personal access token)",
        )
    if status == 403:
        return Verdict(
            outcome=Outcome.FAIL,
            reason=f"no permission for {what} (HTTP 403): {_errors(response)}",
        )
    if status == 404:
        return Verdict(
            outcome=Outcome.FAIL,
            reason=f"not found (HTTP 404) for {what}: is url the Jira site and "
            f"{webhook.project!r} a project key? {_errors(response)}",
        )
    return default_verdict(webhook, response)
