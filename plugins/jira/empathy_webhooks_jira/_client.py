"""The Jira REST calls one delivery may make besides the create: the user search, the create
metadata, comments and transitions. Every call goes through the delivery's `Sender`."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import aiohttp

from empathy_webhooks_core.plugin import (
    OutgoingRequest,
    Response,
    Sender,
    get_logger,
    redact_text,
)

from .state import JiraState

if TYPE_CHECKING:
    from . import JiraWebhook

__all__ = ["JiraClient", "errors_of", "jira_errors"]

log = get_logger()

#: Pages of createmeta read at most (Cloud pages 50 fields by default; 100 asked per page).
_MAX_PAGES = 20
_PAGE = 100
#: Transport failures of a lookup: the ticket is still created (unassigned, or with every
#: field sent); anything else (the address guard's refusal included) propagates.
_TRANSPORT = (aiohttp.ClientError, asyncio.TimeoutError, TimeoutError)


def errors_of(response: Response) -> dict[str, str]:
    """Jira's `errors` object (`{"priority": "Field 'priority' cannot be set. ..."}`)."""
    body = response.json()
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, dict):
        return {}
    return {str(field): str(message) for field, message in errors.items()}


def jira_errors(response: Response) -> str:
    """Jira's `{"errorMessages": [...], "errors": {"field": "message"}}`, as one line."""
    body = response.json()
    if not isinstance(body, dict):
        return redact_text(response.excerpt(300))
    parts = [str(message) for message in body.get("errorMessages") or []]
    parts.extend(f"{field}: {message}" for field, message in errors_of(response).items())
    # Services echo input back; what reaches reasons and logs must not carry a credential.
    return redact_text("; ".join(parts) or response.excerpt(300))


class JiraClient:
    """One delivery's calls to Jira, adding up the time they took."""

    def __init__(
        self, webhook: JiraWebhook, sender: Sender, headers: Mapping[str, str], state: JiraState
    ) -> None:
        self.webhook = webhook
        self.sender = sender
        self.state = state
        self.elapsed = 0.0
        self._auth = {
            key: value
            for key, value in headers.items()
            if key.lower() in ("authorization", "accept", "user-agent")
        }

    @property
    def api(self) -> str:
        return f"{self.webhook.url}/rest/api/{self.webhook.api_version}"

    async def send(self, request: OutgoingRequest) -> Response:
        response = await self.sender.send(request)
        self.elapsed += response.elapsed_ms
        return response

    async def get(self, path: str, **query: Any) -> Response:
        url = f"{self.api}{path}" + (f"?{urlencode(query)}" if query else "")
        return await self.send(OutgoingRequest(url=url, method="GET", headers=self._auth))

    async def post(self, path: str, payload: Any) -> Response:
        return await self.send(
            OutgoingRequest.json(f"{self.api}{path}", payload, headers=self._auth)
        )

    # -- assignees ---------------------------------------------------------------------------

    async def account_for(self, who: str) -> tuple[str | None, str]:
        """`who`'s account id (an email or a name, through Jira's user search), or None and
        why not. Answers are kept per webhook; a transient failure is not."""
        key = who.strip().casefold()
        cached = self.state.accounts.get(key)
        if cached is not None:
            return cached
        # Tickets of two findings for one owner delivered at once: one lookup between them.
        async with self.state.lock(f"account:{key}"):
            cached = self.state.accounts.get(key)
            if cached is not None:
                return cached
            return await self._look_up(who, key)

    async def _look_up(self, who: str, key: str) -> tuple[str | None, str]:
        try:
            answer = await self.get("/user/search", query=who.strip(), maxResults=20)
        except _TRANSPORT as exc:
            return None, f"Jira's user search failed ({type(exc).__name__})"
        if answer.status != 200 or not isinstance(answer.json(), list):
            found: tuple[str | None, str] = (
                None,
                f"Jira's user search answered HTTP {answer.status} ({jira_errors(answer)})",
            )
            if answer.status == 429 or answer.status >= 500:
                return found  # transient: asked again for the next ticket
        else:
            found = _pick_user(answer.json(), key)
        self.state.accounts[key] = found
        return found

    # -- create metadata ---------------------------------------------------------------------

    async def create_fields(self) -> frozenset[str] | None:
        """The field ids the project's create screen has for the webhook's issue type, read
        once per webhook (createmeta); None when Jira would not say."""
        if self.state.create_fields_loaded:
            return self.state.create_fields
        async with self.state.lock("createmeta"):
            if self.state.create_fields_loaded:
                return self.state.create_fields
            return await self._read_create_fields()

    async def _read_create_fields(self) -> frozenset[str] | None:
        state = self.state
        project = quote(self.webhook.project, safe="")
        try:
            type_id, problem = await self._issue_type_id(project)
            fields: set[str] | None = None
            if type_id is not None:
                fields, problem = await self._fields(
                    f"/issue/createmeta/{project}/issuetypes/{type_id}"
                )
        except _TRANSPORT as exc:
            log.warning(
                "jira_createmeta_failed",
                webhook=self.webhook.name,
                error=type(exc).__name__,
                hint="optional fields are sent; one Jira refuses is dropped on a retry",
            )
            return None
        if problem is not None and problem.endswith("(transient)"):
            return None
        state.create_fields_loaded = True
        state.create_fields = frozenset(fields) if fields is not None else None
        if problem is not None:
            log.warning(
                "jira_createmeta_unavailable",
                webhook=self.webhook.name,
                project=self.webhook.project,
                issue_type=self.webhook.issue_type,
                problem=problem,
                hint="optional fields are sent; one Jira refuses is dropped on a retry",
            )
        return state.create_fields

    async def _pages(self, path: str, *keys: str) -> tuple[list[dict[str, Any]], str | None]:
        items: list[dict[str, Any]] = []
        start = 0
        for _ in range(_MAX_PAGES):
            answer = await self.get(path, startAt=start, maxResults=_PAGE)
            if answer.status != 200 or not isinstance(answer.json(), dict):
                transient = answer.status == 429 or answer.status >= 500
                problem = f"HTTP {answer.status} from {path}: {jira_errors(answer)}"
                return items, problem + (" (transient)" if transient else "")
            body = answer.json()
            # Cloud names the list after what it holds; Data Center calls it `values`.
            page: list[Any] = next(
                (body[k] for k in (*keys, "values") if isinstance(body.get(k), list)), []
            )
            items.extend(item for item in page if isinstance(item, dict))
            total = body.get("total")
            if (
                not page
                or body.get("isLast") is True
                or (isinstance(total, int) and start + len(page) >= total)
                or (total is None and "isLast" not in body)
            ):
                break
            start += len(page)
        return items, None

    async def _issue_type_id(self, project: str) -> tuple[str | None, str | None]:
        types, problem = await self._pages(f"/issue/createmeta/{project}/issuetypes", "issueTypes")
        if problem is not None:
            return None, problem
        wanted = self.webhook.issue_type.casefold()
        for item in types:
            if str(item.get("name", "")).casefold() == wanted and item.get("id") is not None:
                return str(item["id"]), None
        names = ", ".join(repr(str(item.get("name"))) for item in types) or "none"
        return None, f"no issue type {self.webhook.issue_type!r} in the project (it has {names})"

    async def _fields(self, path: str) -> tuple[set[str] | None, str | None]:
        items, problem = await self._pages(path, "fields", "results")
        if problem is not None:
            return None, problem
        return {str(item.get("fieldId") or item.get("key")) for item in items}, None

    # -- comments and transitions ------------------------------------------------------------

    async def comment(self, issue_key: str, body: Mapping[str, Any]) -> Response:
        return await self.post(f"/issue/{quote(issue_key, safe='')}/comment", body)

    async def transitions(self, issue_key: str) -> Response:
        return await self.get(f"/issue/{quote(issue_key, safe='')}/transitions")

    async def transition(self, issue_key: str, transition_id: str) -> Response:
        return await self.post(
            f"/issue/{quote(issue_key, safe='')}/transitions", {"transition": {"id": transition_id}}
        )


def _pick_user(users: list[Any], key: str) -> tuple[str | None, str]:
    """The one active user the search meant. An email matches the user's `emailAddress`; one
    whose email is hidden (profile visibility) counts when it is the only user found. A name
    matches one user's display name exactly."""
    people = [
        user
        for user in users
        if isinstance(user, dict)
        and user.get("accountId")
        and user.get("active", True) is not False
        and user.get("accountType", "atlassian") != "app"
    ]
    exact = [u for u in people if str(u.get("emailAddress") or "").casefold() == key]
    if not exact and "@" in key and len(people) == 1 and not people[0].get("emailAddress"):
        exact = people
    if not exact and "@" not in key:
        exact = [u for u in people if str(u.get("displayName") or "").casefold() == key]
    if len(exact) == 1:
        return str(exact[0]["accountId"]), "found"
    if exact:
        return None, f"{len(exact)} Jira users match it"
    return None, "no active Jira user matches it"
