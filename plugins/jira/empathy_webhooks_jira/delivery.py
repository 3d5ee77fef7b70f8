"""One delivery to Jira: find the finding's open ticket, then create, comment or resolve.

- A new finding: its ticket is created. An assignee given as an email (or a name) is looked
  up first (Jira Cloud takes only account ids); fields the project's create screen lacks
  (createmeta, read once) are left out, and a 400 naming a field is retried once without
  it. A ticket whose assignee could not be set is created unassigned, with a comment saying
  who it was meant for: the ticket is never lost over its assignee.
- A finding reported again while its ticket is open: a comment on that ticket.
- A resolved finding (`status: resolved`, `*_resolved` types: the core's lifecycle rule): a
  comment, then the ticket is moved through the webhook's `resolve_transition` ("Done").
  With no open ticket nothing is created: the delivery succeeds as `skipped`, with a warning.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import aiohttp
import attrs

from empathy_webhooks_core.plugin import OutgoingRequest, Response, Sender, get_logger

from ._client import JiraClient, errors_of, jira_errors
from .format import comment_body, unassigned_comment
from .state import JiraState

if TYPE_CHECKING:
    from . import JiraWebhook

__all__ = ["deliver_finding"]

log = get_logger()

#: Fields every create needs: never left out, whatever the metadata or a 400 says.
_ESSENTIAL = frozenset({"project", "issuetype", "summary"})


def _answer(
    response: Response, step: str, elapsed: float, failure: str | None = None, **details: Any
) -> Response:
    """The answer that ends a delivery, as the call it came from (`step`: search, create,
    comment, transitions, transition, skip) with what the delivery did (`details`) and, when
    the answer itself is fine but the delivery cannot go on, why (`failure`, a detail
    `classify_response` takes out)."""
    return response.at_step(step, elapsed_ms=elapsed, failure=failure, **details)


async def deliver_finding(
    webhook: JiraWebhook,
    request: OutgoingRequest,
    session: aiohttp.ClientSession,
    state: JiraState | None,
) -> Response:
    # No state made (no dispatcher started the webhook): nothing remembered, the search and
    # the lookups still run.
    state = state or JiraState()
    jira = JiraClient(webhook, Sender(webhook, session), request.headers, state)
    action = str(request.extras.get("action", "trigger"))
    fp = request.extras.get("fingerprint")
    if not fp:
        if action != "trigger":
            return _skip(jira, action, None, None, "deduplicate is off, so no ticket can be found")
        return await _create(jira, request, None)
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
        found = await jira.send(
            OutgoingRequest.json(webhook.search_url, search, headers=request.headers)
        )
        if not 200 <= found.status < 300:
            return _answer(found, "search", jira.elapsed)
        body = found.json()
        issues = body.get("issues") if isinstance(body, dict) else None
        if not isinstance(issues, list):
            # A 2xx that is not Jira's answer (a proxy's or an SSO login page): read as "no
            # open ticket", every event of the finding would open one more ticket, or be lost
            # to a create answered the same way.
            return _answer(found, "search", jira.elapsed, failure=_not_jira("search", found))
        issue = issues[0] if issues else None
        if isinstance(issue, dict) and issue.get("key"):
            if action == "resolve":
                return await _resolve(jira, request, issue)
            return await _comment_again(jira, request, issue, action)
        if action != "trigger":
            return _skip(jira, action, found, str(fp), "no open ticket has this finding's label")
        answer = await _create(jira, request, str(fp))
        issue_id = answer.details.get("jira_id")
        if issue_id and answer.details.get("created"):
            await state.remember(key, str(issue_id))
        return answer


def _skip(
    jira: JiraClient, action: str, response: Response | None, fp: str | None, why: str
) -> Response:
    """A resolve (or acknowledge) with no open ticket: nothing to close, and opening a ticket
    for a finding that is over would be wrong. Not silent: a warning, and `skipped` in the
    delivery's details and the webhook's stats."""
    log.warning(
        "jira_resolve_without_ticket",
        webhook=jira.webhook.name,
        action=action,
        project=jira.webhook.project,
        fingerprint=fp,
        reason=why,
    )
    answered = response if response is not None else Response(status=200)
    return _answer(answered, "skip", jira.elapsed, skipped=why, fingerprint=fp)


def _issue_details(issue: dict[str, Any]) -> dict[str, Any]:
    return {
        "jira_key": issue.get("key"),
        "jira_id": str(issue["id"]) if issue.get("id") is not None else None,
    }


async def _comment_once(
    jira: JiraClient, request: OutgoingRequest, issue_key: str, step: str, text: str
) -> Response | None:
    """Post `text` on the issue unless this event already did (a retry after a later step
    failed); None when it was already posted."""
    event_id = str(request.extras.get("event_id", ""))
    if event_id and await jira.state.is_done(event_id, step, issue_key):
        return None
    answer = await jira.comment(issue_key, comment_body(jira.webhook, text))
    if 200 <= answer.status < 300 and event_id:
        await jira.state.mark_done(event_id, step, issue_key)
    return answer


async def _comment_again(
    jira: JiraClient, request: OutgoingRequest, issue: dict[str, Any], action: str
) -> Response:
    """The finding is reported again (or acknowledged) while its ticket is open: a comment,
    not a second ticket."""
    key = str(issue["key"])
    text = str(request.extras.get("comment") or "")
    details = {**_issue_details(issue), "deduplicated": True}
    event_id = str(request.extras.get("event_id", ""))
    if event_id and await jira.state.is_done(
        event_id, "create", str(request.extras["fingerprint"])
    ):
        # This event's own create timed out after Jira made the issue: no "again" to say.
        text = ""
    if not text:
        return _answer(Response(status=200), "search", jira.elapsed, **details)
    posted = await _comment_once(jira, request, key, f"{action}-comment", text)
    if posted is not None and not 200 <= posted.status < 300:
        return _answer(posted, "comment", jira.elapsed, **details)
    return _answer(
        posted or Response(status=201), "comment", jira.elapsed, commented=True, **details
    )


async def _resolve(jira: JiraClient, request: OutgoingRequest, issue: dict[str, Any]) -> Response:
    """Comment on the open ticket, then move it through the configured transition."""
    key = str(issue["key"])
    details = _issue_details(issue)
    text = str(request.extras.get("comment") or "")
    if text:
        posted = await _comment_once(jira, request, key, "resolve-comment", text)
        if posted is not None and not 200 <= posted.status < 300:
            return _answer(posted, "comment", jira.elapsed, **details)
    listed = await jira.transitions(key)
    if listed.status != 200:
        return _answer(listed, "transitions", jira.elapsed, **details)
    body = listed.json()
    options = (
        [t for t in (body.get("transitions") or []) if isinstance(t, dict)]
        if isinstance(body, dict)
        else []
    )
    wanted = jira.webhook.resolve_transition.casefold()
    chosen = next(
        (t for t in options if str(t.get("name", "")).casefold() == wanted), None
    ) or next(
        (
            t
            for t in options
            if isinstance(t.get("to"), dict) and str(t["to"].get("name", "")).casefold() == wanted
        ),
        None,
    )
    if chosen is None or chosen.get("id") is None:
        names = ", ".join(repr(str(t.get("name"))) for t in options) or "none"
        return _answer(
            listed,
            "transitions",
            jira.elapsed,
            failure=f"{key} has no transition named {jira.webhook.resolve_transition!r} "
            f"(available: {names}); set resolve_transition to one of them",
            commented=bool(text) or None,
            **details,
        )
    moved = await jira.transition(key, str(chosen["id"]))
    return _answer(
        moved,
        "transition",
        jira.elapsed,
        resolved=True if 200 <= moved.status < 300 else None,
        transition=str(chosen.get("name")),
        commented=bool(text) or None,
        **details,
    )


async def _create(jira: JiraClient, request: OutgoingRequest, fp: str | None) -> Response:
    body = json.loads(request.body)
    fields: dict[str, Any] = body.setdefault("fields", {})
    unassigned: tuple[str, str] | None = None
    who = request.extras.get("assignee_lookup")
    if isinstance(who, str) and who:
        account, why = await jira.account_for(who)
        if account is not None:
            fields["assignee"] = {"accountId": account}
        else:
            unassigned = (who, why)
    dropped: list[str] = []
    screen = await jira.create_fields()
    for name in list(fields):
        if name in _ESSENTIAL:
            continue
        if name in jira.state.refused_fields or (screen is not None and name not in screen):
            del fields[name]
            dropped.append(name)
    event_id = str(request.extras.get("event_id", ""))
    if event_id and fp:
        await jira.state.mark_done(event_id, "create", fp)
    created = await jira.send(_with_body(request, body))
    refused = _refused_fields(created, fields)
    fields_sent = dict(fields)
    if refused:
        for name, message in refused.items():
            del fields[name]
            dropped.append(name)
            if name == "assignee":
                given = fields_sent.get("assignee")
                meant = who if isinstance(who, str) and who else _account_of(given)
                unassigned = (meant, f"Jira refused the assignee ({message})")
            elif "cannot be set" in message:
                # Not on the create screen: a property of the project, not of this event.
                jira.state.refused_fields.add(name)
        created = await jira.send(_with_body(request, body))
    for name in dropped:
        if jira.state.first_warning(f"dropped:{name}"):
            log.warning(
                "jira_field_left_out",
                webhook=jira.webhook.name,
                project=jira.webhook.project,
                field=name,
                why="not on the project's create screen or refused by Jira",
                fingerprint_lost=name == "labels" or None,
            )
    answer = _created(created, jira.elapsed, dropped)
    key = answer.details.get("jira_key")
    if unassigned is not None and isinstance(key, str):
        answer = await _note_unassigned(jira, answer, key, *unassigned)
    return answer


def _account_of(assignee: Any) -> str:
    if isinstance(assignee, dict):
        return str(assignee.get("accountId") or assignee.get("name") or assignee)
    return str(assignee)


def _with_body(request: OutgoingRequest, body: Any) -> OutgoingRequest:
    return OutgoingRequest.json(request.url, body, headers=request.headers, extras=request.extras)


def _refused_fields(created: Response, fields: dict[str, Any]) -> dict[str, str]:
    """The fields a 400 names that the create may go without (any we sent but the project,
    the issue type and the summary)."""
    if created.status != 400:
        return {}
    return {
        name: message
        for name, message in errors_of(created).items()
        if name in fields and name not in _ESSENTIAL
    }


def _not_jira(what: str, response: Response) -> str:
    return (
        f"Jira's {what} answered HTTP {response.status} without Jira's JSON (a login page "
        "or a proxy's answer?): is url the Jira site's base URL?"
    )


def _created(response: Response, elapsed: float, dropped: list[str]) -> Response:
    body = response.json() if 200 <= response.status < 300 else None
    left_out = sorted(set(dropped)) or None
    if 200 <= response.status < 300 and not (isinstance(body, dict) and body.get("key")):
        # Jira answers a create with 201 and the new issue's key: without one, nothing says
        # an issue exists; counted delivered, the finding would be lost without a word.
        failure = _not_jira("create", response)
        return _answer(response, "create", elapsed, failure=failure, fields_left_out=left_out)
    if not isinstance(body, dict):
        return _answer(response, "create", elapsed, fields_left_out=left_out)
    return _answer(
        response,
        "create",
        elapsed,
        jira_key=body.get("key"),
        jira_id=str(body["id"]) if body.get("id") is not None else None,
        created=True,
        fields_left_out=left_out,
    )


async def _note_unassigned(
    jira: JiraClient, answer: Response, key: str, who: str, why: str
) -> Response:
    """The ticket exists: say on it who it was meant for. A failed note is logged, never a
    reason to retry (that would look for, and comment on, the ticket again)."""
    details = {**answer.details, "assignee_unresolved": who}
    try:
        noted = await jira.comment(key, comment_body(jira.webhook, unassigned_comment(who, why)))
        problem = (
            None if 200 <= noted.status < 300 else f"HTTP {noted.status}: {jira_errors(noted)}"
        )
    except (aiohttp.ClientError, TimeoutError) as exc:
        problem = type(exc).__name__
    log.warning(
        "jira_ticket_unassigned",
        webhook=jira.webhook.name,
        issue=key,
        meant_for=who,
        reason=why,
        note_failed=problem,
    )
    if problem is not None:
        details["assignee_note_failed"] = problem
    return attrs.evolve(answer, details=details, elapsed_ms=jira.elapsed)
