"""GitHub: code reviews become a PR comment (updated in place), chosen events trigger CI/CD.

A review delivery lists the PR's comments, then edits this integration's earlier comment (found
by a hidden marker) or creates one. A CI/CD delivery is one `repository_dispatch` (or a named
workflow's `workflow_dispatch`) with the event as its payload. GitHub's rate limits, primary
(`x-ratelimit-remaining: 0` until `x-ratelimit-reset`) and secondary (`retry-after`), make the
webhook wait and try again, never fail outright.
"""

from __future__ import annotations

import asyncio
import re
import time
import weakref
from collections.abc import Awaitable
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

import aiohttp
import attrs

from empathy_webhooks_core.plugin import (
    MIN_SECRET_LENGTH,
    REDACTED,
    Event,
    EventMatcher,
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
    redact_url,
    secret_field,
    url_repr,
)

from .format import (
    COMMENT_LIMIT,
    REVIEW_MARKER,
    clamp_comment,
    comment_body,
    dispatch_body,
    marker_for,
    pr_number,
    review_markdown,
)

#: The plugin API this plugin is written for (docs/writing-plugins.md, section 7).
PLUGIN_API = "1.2"

__all__ = [
    "API_VERSION",
    "COMMENT_LIMIT",
    "DEFAULT_API_URL",
    "REVIEW_MARKER",
    "GitHubWebhook",
    "clamp_comment",
    "pr_number",
    "review_markdown",
]

DEFAULT_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
#: GitHub's advice when a secondary limit names no wait: at least a minute.
SECONDARY_LIMIT_WAIT = 60.0
#: How many pages of 100 comments are read looking for our marker.
MAX_COMMENT_PAGES = 30
_REPOSITORY = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
# A target never holds `<` (RFC 8288): `[^>]+` let each `<` of a hostile header read on to its
# end, time quadratic in its length.
_NEXT_LINK = re.compile(r'<([^<>]+)>\s*;\s*rel="next"')
#: One comment upsert per (API, repository, PR, marker) at a time in this process, so two
#: reviews of one PR delivered together cannot both miss the list and both create.
_LOCKS: weakref.WeakValueDictionary[tuple[str, str, int, str], asyncio.Lock] = (
    weakref.WeakValueDictionary()
)


def _token(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        raise ValueError("token is required (a GitHub token); is GITHUB_TOKEN set?")
    if not isinstance(value, str) or not value.strip():
        raise ValueError("token must be a non-empty string")


def _repository(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str) or not _REPOSITORY.fullmatch(value):
        raise ValueError(f"repository must be 'owner/name', got {value!r}")


def _api_url(value: Any) -> str:
    return check_url(value, "api_url").rstrip("/")


def _names(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    return tuple(str(getattr(item, "value", item)) for item in (value or ()))


def _events(value: Any) -> tuple[str, ...]:
    converter: Any = attrs.fields(Webhook).events.converter
    return converter(value)  # type: ignore[no-any-return]


def _marker(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str) or not (value.startswith("<!--") and value.endswith("-->")):
        raise ValueError("comment_marker must be an HTML comment, like <!-- my-bot:review -->")


@attrs.frozen(kw_only=True, eq=False)
class GitHubWebhook(Webhook):
    """PR comments and CI/CD triggers (the reference's `GitHubWebhook`).

    >>> GitHubWebhook(token="ghp_x", repository="Smart-AI-Memory/empathy").events
    ('code_review_complete',)
    """

    kind: ClassVar[str] = "github"

    token: str = secret_field(validator=_token)
    repository: str = attrs.field(validator=_repository)
    events: tuple[str, ...] = attrs.field(default=("code_review_complete",), converter=_events)
    #: `https://api.github.com`, or a GitHub Enterprise Server's `https://HOST/api/v3`.
    api_url: str = attrs.field(default=DEFAULT_API_URL, converter=_api_url, repr=url_repr)
    #: Event types posted as PR comments (the PR is named in the event's data).
    comment_events: tuple[str, ...] = attrs.field(
        default=("code_review_complete",), converter=_names
    )
    #: Event types that trigger CI/CD instead (added to `events` if not routed already).
    dispatch_events: tuple[str, ...] = attrs.field(default=(), converter=_names)
    #: Edit this integration's earlier comment on the PR instead of adding another.
    update_comment: bool = True
    comment_marker: str = attrs.field(default=REVIEW_MARKER, validator=_marker)
    #: repository_dispatch `event_type` (default: the event's own type).
    dispatch_event_type: str | None = None
    #: A workflow file name or id: dispatches become that workflow's `workflow_dispatch`.
    workflow: str | None = None
    workflow_ref: str = "main"
    #: The workflow input that receives the event as JSON (None: send no inputs).
    workflow_input: str | None = "event"
    api_version: str = API_VERSION

    def __attrs_post_init__(self) -> None:
        routed = EventMatcher(self.events)
        missing = tuple(p for p in self.dispatch_events if "*" not in self.events and not routed(p))
        if missing:
            # Frozen, but still being built: naming an event in dispatch_events routes it.
            object.__setattr__(self, "events", (*self.events, *missing))

    def action_for(self, event: Event) -> str:
        """`comment` or `dispatch`: what this webhook does with `event`."""
        if EventMatcher(self.comment_events)(event.event_type):
            return "comment"
        if EventMatcher(self.dispatch_events)(event.event_type):
            return "dispatch"
        return "comment"

    @property
    def repo_url(self) -> str:
        return f"{self.api_url}/repos/{self.repository}"

    @property
    def url(self) -> str:
        """The repository's API endpoint, under which comments and dispatches are posted, fit
        to show: what the reference's `on_failure` example logs as `webhook.url`. The token
        travels in a header, never here."""
        return redact_url(self.repo_url)

    def request_headers(self) -> dict[str, str]:
        # User-Agent (required by GitHub) comes from the dispatcher's session.
        return {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": self.api_version,
            "Authorization": f"Bearer {self.token}",
        }


@hookimpl
def webhook_types() -> dict[str, type[Webhook]]:
    return {"github": GitHubWebhook}


@hookimpl
def format_payload(webhook: GitHubWebhook, event: Event) -> OutgoingRequest:
    if webhook.action_for(event) == "dispatch":
        if webhook.workflow:
            workflow = quote(webhook.workflow, safe="")
            url = f"{webhook.repo_url}/actions/workflows/{workflow}/dispatches"
            target = webhook.workflow
        else:
            url = f"{webhook.repo_url}/dispatches"
            target = None
        body = dispatch_body(webhook, event)
        return OutgoingRequest.json(
            url,
            body,
            headers=webhook.request_headers(),
            extras={"action": "dispatch", "target": target or body.get("event_type")},
        )
    number = pr_number(event)
    if number is None:
        raise ValueError(
            f"{event.event_type} event names no pull request: give data['pr'] (or pr_number, "
            "pull_request), or list the event type in dispatch_events"
        )
    return OutgoingRequest.json(
        f"{webhook.repo_url}/issues/{number}/comments",
        comment_body(webhook, event),
        headers=webhook.request_headers(),
        extras={
            "action": "comment",
            "pr": number,
            "marker": marker_for(webhook, event) if webhook.update_comment else None,
        },
    )


@hookimpl
def deliver(
    webhook: GitHubWebhook, request: OutgoingRequest, session: aiohttp.ClientSession
) -> Awaitable[Response]:
    return _deliver(webhook, request, session)


def _answer(response: Response, step: str, elapsed: float, **details: Any) -> Response:
    return response.at_step(step, elapsed_ms=elapsed, **details)


def _comment_details(response: Response) -> dict[str, Any]:
    body = response.json() if 200 <= response.status < 300 else None
    if not isinstance(body, dict):
        return {}
    return {"comment_id": body.get("id"), "comment_url": body.get("html_url")}


def _same_origin(url: str, base: str) -> bool:
    # The token goes with every page: never follow a link to another host.
    a, b = urlsplit(url), urlsplit(base)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)


async def _find_comment(
    webhook: GitHubWebhook,
    request: OutgoingRequest,
    sender: Sender,
    marker: str,
) -> tuple[Response, int | None, float]:
    """This integration's earlier comment on the PR: (last answer, its id or None, ms spent)."""
    headers = {k: v for k, v in request.headers.items() if k.lower() != "content-type"}
    url: str | None = f"{request.url}?per_page=100"
    elapsed = 0.0
    answer: Response | None = None
    for _ in range(MAX_COMMENT_PAGES):
        if url is None:
            break
        answer = await sender.send(OutgoingRequest(url=url, method="GET", headers=headers))
        elapsed += answer.elapsed_ms
        if not 200 <= answer.status < 300:
            return answer, None, elapsed
        comments = answer.json()
        for comment in comments if isinstance(comments, list) else []:
            # Ours ends with the marker; one merely quoting it elsewhere is not ours.
            if isinstance(comment, dict) and str(comment.get("body") or "").rstrip().endswith(
                marker
            ):
                return answer, comment.get("id"), elapsed
        found = _NEXT_LINK.search(answer.header("link") or "")
        url = found.group(1) if found and _same_origin(found.group(1), webhook.api_url) else None
    assert answer is not None
    return answer, None, elapsed


async def _deliver(
    webhook: GitHubWebhook, request: OutgoingRequest, session: aiohttp.ClientSession
) -> Response:
    sender = Sender(webhook, session)
    action = request.extras.get("action")
    if action == "dispatch":
        answer = await sender.send(request)
        body = answer.json() if answer.status == 200 else None
        run = body.get("workflow_run_id") if isinstance(body, dict) else None
        return _answer(
            answer,
            "dispatch",
            answer.elapsed_ms,
            dispatched=request.extras.get("target"),
            workflow_run_id=run,
        )
    marker = request.extras.get("marker")
    if not marker:
        created = await sender.send(request)
        return _answer(
            created, "create", created.elapsed_ms, created=True, **_comment_details(created)
        )
    key = (webhook.api_url, webhook.repository, int(request.extras["pr"]), str(marker))
    lock = _LOCKS.get(key)
    if lock is None:
        lock = _LOCKS[key] = asyncio.Lock()
    async with lock:
        listed, comment_id, elapsed = await _find_comment(webhook, request, sender, str(marker))
        if not 200 <= listed.status < 300:
            return _answer(listed, "list", elapsed)
        if comment_id is not None:
            edit = OutgoingRequest(
                url=f"{webhook.repo_url}/issues/comments/{comment_id}",
                method="PATCH",
                headers=request.headers,
                body=request.body,
            )
            updated = await sender.send(edit)
            elapsed += updated.elapsed_ms
            if updated.status != 404:  # 404: deleted since we listed; post a new one
                details = _comment_details(updated) if updated.status < 300 else {}
                return _answer(updated, "update", elapsed, updated=True, **details)
        created = await sender.send(request)
        elapsed += created.elapsed_ms
        return _answer(created, "create", elapsed, created=True, **_comment_details(created))


def _message(response: Response) -> str:
    """GitHub's `{"message": ..., "errors": [...]}`, as one line (never a credential)."""
    body = response.json()
    if not isinstance(body, dict):
        return redact_text(response.excerpt(300))
    parts = [str(body.get("message") or "")]
    for error in body.get("errors") or []:
        if isinstance(error, dict):
            parts.append(str(error.get("message") or error.get("code") or error))
        else:
            parts.append(str(error))
    return redact_text("; ".join(part for part in parts if part) or response.excerpt(300))


def _masked(webhook: Webhook, text: str) -> str:
    """`text` with the webhook's own credentials masked, whether or not a dispatcher has
    registered them yet: `classify_response` may be called on its own."""
    for value in webhook.secret_values():
        if len(value) >= MIN_SECRET_LENGTH:
            text = text.replace(value, REDACTED)
    return text


def rate_limit_wait(response: Response, now: float | None = None) -> float | None:
    """Seconds GitHub asks us to wait, or None when the answer is not a rate limit.

    `retry-after` (secondary limits) wins; else `x-ratelimit-remaining: 0` waits for
    `x-ratelimit-reset` (primary); else a 429, or a 403 whose message names a secondary rate
    limit, waits a minute as GitHub advises.
    """
    if response.status not in (403, 429):
        return None
    retry_after = parse_retry_after(response.header("retry-after"))
    if retry_after is not None:
        return retry_after
    if (response.header("x-ratelimit-remaining") or "").strip() == "0":
        try:
            reset = float(response.header("x-ratelimit-reset") or "")
        except ValueError:
            return SECONDARY_LIMIT_WAIT
        return max(0.0, reset - (time.time() if now is None else now))
    said = _message(response).lower()
    # "abuse detection mechanism": the older wording of a secondary rate limit.
    if response.status == 429 or "rate limit" in said or "abuse detection" in said:
        return SECONDARY_LIMIT_WAIT
    return None


_STEPS = {
    "list": "listing the PR's comments",
    "update": "updating the comment",
    "create": "the comment",
    "dispatch": "the dispatch",
}


@hookimpl
def classify_response(
    webhook: GitHubWebhook, request: OutgoingRequest, response: Response
) -> Verdict:
    step = response.step or "create"
    details = dict(response.details)
    status = response.status
    if 200 <= status < 300:
        if request.extras.get("action") == "comment":
            details.setdefault("pr", request.extras.get("pr"))
        return Verdict(outcome=Outcome.SUCCESS, details=details)
    what = _STEPS.get(step, step)
    wait = rate_limit_wait(response)
    if wait is not None:
        return Verdict(
            outcome=Outcome.RETRY,
            reason=f"rate limited by GitHub (HTTP {status}) on {what}; waiting {wait:.0f} s",
            retry_after=wait,
            pause_webhook=True,
        )
    if status >= 500:
        return Verdict(
            outcome=Outcome.RETRY,
            reason=f"GitHub unavailable (HTTP {status}) on {what}",
            retry_after=parse_retry_after(response.header("retry-after")),
        )
    said = _masked(webhook, _message(response))
    if status == 401:
        return Verdict(
            outcome=Outcome.FAIL,
            reason=f"GitHub refused the token (HTTP 401): {said}",
        )
    if status in (403, 404, 410, 422):
        hint = {
            403: "the token lacks permission",
            404: f"no such repository, PR or workflow in {webhook.repository}, "
            "or the token cannot see it",
            410: "gone (issues disabled on the repository?)",
            422: "GitHub refused the content",
        }[status]
        return Verdict(
            outcome=Outcome.FAIL,
            reason=f"{hint} (HTTP {status}) on {what}: {said}",
        )
    return default_verdict(webhook, response)
