"""The console's pages: overview, deliveries, one event, dead letters. Each reads what the
gateway's JSON API reads (the dispatcher's history, stats and dead letters) and renders it."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import attrs
from aiohttp import web

from ..gateway.operations import webhook_summaries
from ..gateway.unrouted import unrouted_note
from ..history import DELIVERY_STATUSES, MAX_PAGE
from ..redaction import bounded, redact_text
from .charts import HOUR, hour_chart
from .guard import page
from .keys import CONSOLE
from .render import pretty_json, refuse, render

__all__ = ["dead_letters", "deliveries", "event", "overview"]

#: Rows one page of deliveries shows.
PAGE_ROWS = 50
#: Dead letters one page shows at most.
MAX_LETTERS = 500


def _gateway(request: web.Request) -> Any:
    return request.config_dict[CONSOLE].gateway


@page("read")
async def overview(request: web.Request) -> web.StreamResponse:
    gateway = _gateway(request)
    now = time.time()
    webhooks = []
    history = True
    for summary in await webhook_summaries(gateway, gateway.dispatcher.webhook_names()):
        name = summary["name"]
        chart = None
        if history:
            try:
                recent = await gateway.dispatcher.deliveries(
                    webhook=name, since=now - HOUR, limit=MAX_PAGE
                )
            except RuntimeError:  # a store that keeps no history
                history = False
            else:
                chart = hour_chart(recent.items, now)
        webhooks.append({**summary, "chart": chart})
    return render(request, "overview.html", webhooks=webhooks, history=history, now=now)


@attrs.frozen
class Filters:
    """The deliveries page's filters, as read (and checked) from its query string."""

    webhook: str | None = None
    status: str | None = None
    event_type: str | None = None
    event_id: str | None = None
    since: float | None = None
    until: float | None = None
    cursor: str | None = None
    errors: tuple[str, ...] = ()

    def query(self) -> dict[str, Any]:
        return {
            "webhook": self.webhook,
            "status": self.status,
            "event_type": self.event_type,
            "event_id": self.event_id,
            "since": self.since,
            "until": self.until,
        }

    @property
    def live(self) -> bool:
        """Whether new deliveries may appear on this page (the newest page, no end time)."""
        return self.cursor is None and self.until is None


def _moment(raw: str, label: str, errors: list[str]) -> float | None:
    """A datetime-local input's value, read as UTC (the form says so)."""
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        errors.append(f"{label} is not a time (2026-11-30T15:00)")
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def read_filters(request: web.Request, names: list[str]) -> Filters:
    query = request.query
    errors: list[str] = []

    def text(name: str) -> str | None:
        value = query.get(name, "").strip()
        return value or None

    webhook = text("webhook")
    if webhook is not None and webhook not in names:
        errors.append("no webhook by that name")
        webhook = None
    status = text("status")
    if status is not None and status not in DELIVERY_STATUSES:
        errors.append(f"status is one of {', '.join(DELIVERY_STATUSES)}")
        status = None
    since = text("since")
    until = text("until")
    return Filters(
        webhook=webhook,
        status=status,
        event_type=text("event_type"),
        event_id=text("q"),
        since=_moment(since, "From", errors) if since else None,
        until=_moment(until, "Until", errors) if until else None,
        cursor=text("cursor"),
        errors=tuple(errors),
    )


@page("read")
async def deliveries(request: web.Request) -> web.StreamResponse:
    gateway = _gateway(request)
    names = gateway.dispatcher.webhook_names()
    filters = read_filters(request, names)
    errors = list(filters.errors)
    items: tuple[Any, ...] = ()
    next_cursor = None
    try:
        found = await gateway.dispatcher.deliveries(
            **filters.query(), limit=PAGE_ROWS, cursor=filters.cursor
        )
        items, next_cursor = found.items, found.next_cursor
    except ValueError as exc:  # a cursor this console did not make
        errors.append(str(exc))
    except RuntimeError as exc:
        errors.append(str(exc))
    older = None
    if next_cursor is not None:
        older = request.rel_url.update_query({"cursor": next_cursor})
    return render(
        request,
        "deliveries.html",
        items=items,
        names=names,
        statuses=DELIVERY_STATUSES,
        form=request.query,
        filters=filters,
        errors=errors,
        older=str(older) if older is not None else None,
        live_query=request.rel_url.raw_query_string,
        after=time.time(),
    )


@page("read")
async def event(request: web.Request) -> web.StreamResponse:
    gateway = _gateway(request)
    event_id = request.match_info["event_id"]
    unrouted = gateway.unrouted.get(event_id)
    if unrouted is not None:
        return refuse(request, 404, f"Event {event_id}: {unrouted_note(*unrouted)}.")
    try:
        found = await gateway.dispatcher.event(event_id)
        records = (
            (await gateway.dispatcher.deliveries(event_id=event_id, limit=MAX_PAGE)).items
            if found is not None
            else ()
        )
    except RuntimeError as exc:
        return refuse(request, 501, str(exc))
    if found is None:
        return refuse(
            request,
            404,
            "No event with this id is on record: it may be older than the store keeps, or it "
            "was routed to no webhook (only the gateway that accepted it remembers those, "
            "until it restarts).",
        )
    return render(
        request,
        "event.html",
        event=found,
        envelope=pretty_json(found.to_envelope()),
        records=records,
    )


def _reason(error: dict[str, Any]) -> str:
    reason = error.get("reason") or error.get("error") or error.get("message") or ""
    return bounded(redact_text(str(reason)), 500)


@page("read")
async def dead_letters(request: web.Request) -> web.StreamResponse:
    gateway = _gateway(request)
    dispatcher = gateway.dispatcher
    letters = await dispatcher.dead_letters(None)
    letters.sort(key=lambda letter: letter.failed_at, reverse=True)
    total = len(letters)
    groups: dict[str, list[dict[str, Any]]] = {}
    for letter in letters[:MAX_LETTERS]:
        groups.setdefault(letter.webhook_name, []).append(
            {
                "id": letter.dead_letter_id,
                "event_id": letter.event.event_id,
                "event_type": letter.event.event_type,
                "attempts": letter.attempts,
                "failed_at": letter.failed_at,
                "reason": _reason(letter.error),
                "replayable": letter.replayable,
            }
        )
    sections = []
    for summary in await webhook_summaries(gateway, dispatcher.webhook_names()):
        name = summary["name"]
        if summary["disabled"] or name in groups:
            sections.append({**summary, "letters": groups.pop(name, [])})
    for name, rows in groups.items():  # letters of a webhook no longer configured
        sections.append({"name": name, "type": None, "disabled": False, "letters": rows})
    return render(request, "dead_letters.html", sections=sections, total=total, shown=MAX_LETTERS)
