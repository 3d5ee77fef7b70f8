"""The routes: `/v1` (events, webhooks, dead letters), health, metrics and the OpenAPI
document. Each handler declares the scope it needs (`auth.requires`) and raises `Problem`
for an error; the middleware in `app.py` does the rest."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from datetime import datetime
from json.encoder import encode_basestring as _json_string
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .._log import get_logger
from .._pipeline.admission import QueueFull
from ..events import Event, EventDataError
from ..history import DELIVERY_STATUSES, MAX_PAGE
from ..monitor import UnknownWebhookError
from ..prometheus import WebhookCollector
from ..redaction import redact_text, redact_value
from ..stores import HasKeyValue
from .auth import public, requires
from .bodies import build_event, event_fields, event_problem, read_json
from .keys import GATEWAY, TOKEN
from .openapi import document
from .operations import enable_webhook as enable
from .operations import replay_all, replay_one, unknown_webhook, webhook_summaries, webhook_summary
from .operations import webhook_stats as stats_with_store
from .problems import Problem, problem_response
from .unrouted import unrouted_note

if TYPE_CHECKING:
    from .app import Gateway

__all__ = ["add_routes"]

log = get_logger()

#: Dead letters one listing returns at most.
MAX_LIST = 1000
#: What a caller told to come back (a full queue, a store that does not answer) waits.
RETRY_SECONDS = "5"


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8"),
        content_type="application/json",
        headers=headers,
    )


def _gateway(request: web.Request) -> Gateway:
    # The application these routes were added to (`request.app`) holds the gateway: one
    # look-up, where `config_dict` builds a chain of the applications on every call.
    return request.app[GATEWAY]


def _query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise Problem(
            422,
            "/problems/invalid-query",
            f"{name} must be an integer from {low} to {high}",
            errors=[{"path": f"query:{name}", "message": f"expected {low} to {high}"}],
        )
    return value


# -- events ----------------------------------------------------------------------------------


#: What admitting an event raises when the code is wrong (the gateway's, the dispatcher's, a
#: plugin's), not the store: retrying cannot help, so it is a 500 with its traceback logged
#: (the middleware does both), never a 503 that would pass a bug off as overload and have
#: every client retry it. Everything else is the store failing the write, whatever its
#: driver raises (OSError and timeouts, sqlite3.Error, RedisError, "the store is not open"):
#: 503 with Retry-After. An unknown third-party error is taken for the store's: retrying an
#: event is safe, giving it up because of a wrong guess is not.
_CODE_ERRORS: tuple[type[Exception], ...] = (
    ArithmeticError,
    AssertionError,
    AttributeError,
    ImportError,
    LookupError,
    NameError,
    NotImplementedError,
    RecursionError,
    TypeError,
    ValueError,
)


async def _admit(gateway: Gateway, event: Event) -> tuple[list[str], list[str]]:
    """The webhooks `event` was queued for, and those that refused it (`max_pending`).
    A 503 when nothing was queued: a 2xx must mean stored, and a caller told to retry
    loses nothing."""
    try:
        webhooks = await gateway.intake.admit(event)
    except QueueFull as full:
        if not full.queued:
            raise _queue_full(full.refused) from None
        return full.queued, full.refused
    except Exception as exc:
        raise _not_admitted(exc, event, "$") from None
    if not webhooks:
        gateway.unrouted.note(event)
    return webhooks, []


def _not_admitted(exc: Exception, event: Event, path: str) -> Problem:
    """The answer for an event whose admission raised `exc` (not `QueueFull`): nothing of
    it is queued. Raises `exc` again when it is a mistake in code (see `_CODE_ERRORS`)."""
    if isinstance(exc, EventDataError):
        # The dispatcher's own check refused the event (its `max_data_depth`, when it was
        # built otherwise): the event's fault, and retrying it cannot help.
        error = event_problem(exc, path)
        return Problem(422, "/problems/invalid-body", _summary([error]), errors=[error])
    if isinstance(exc, _CODE_ERRORS):
        raise exc
    return _store_failed(exc, event_id=event.event_id)


def _store_failed(exc: Exception, **context: str) -> Problem:
    # The store's own text (a connection string, a key) is masked as every log line's is.
    log.error("gateway_store_failed", error=redact_text(f"{type(exc).__name__}: {exc}"), **context)
    return Problem(
        503,
        "/problems/store-unavailable",
        "the store did not answer, so nothing was queued; retry after Retry-After",
        headers={"Retry-After": RETRY_SECONDS},
    )


def _queue_full(refused: list[str]) -> Problem:
    return Problem(
        503,
        "/problems/queue-full",
        f"nothing was queued: {', '.join(map(repr, refused))} already hold max_pending "
        "deliveries; retry after Retry-After",
        headers={"Retry-After": RETRY_SECONDS},
    )


class _PartlyQueued(Problem):
    """A batch some of whose events were queued and others not: an error answer (a 2xx
    would tell a caller that reads only the status that all of it was sent), kept under its
    Idempotency-Key like a success, so a retry with that key queues nothing twice."""


def _names(names: list[str]) -> str:
    if not names:  # `refused`, nearly always
        return "[]"
    return "[" + ",".join(map(_json_string, names)) + "]"


def _accepted(event: Event, webhooks: list[str], refused: list[str]) -> web.Response:
    """The 202 of `POST /v1/events`: the bytes `_json({...}, 202)` gives for its fields, put
    together directly (the same string encoder `json.dumps` uses), as it is the answer
    to every event accepted."""
    body = (
        f'{{"event_id":{_json_string(event.event_id)},"webhooks":{_names(webhooks)},'
        f'"refused":{_names(refused)}}}'
    )
    return web.Response(status=202, body=body.encode("utf-8"), content_type="application/json")


def _building(gateway: Gateway) -> contextlib.AbstractContextManager[object]:
    """What `Event` reads while the gateway builds one: the dispatcher's own settings (its
    `max_data_depth`, its framework version), as `emit` builds it, so an event nested
    deeper than the dispatcher takes is a 422 naming its place here, not a refusal at
    admission."""
    return gateway.dispatcher._event_settings()


def _event(gateway: Gateway, body: Any) -> Event:
    """The event a `POST /v1/events` body describes, or a 422 naming what is wrong."""
    errors: list[dict[str, str]] = []
    fields = event_fields(body, "$", errors)
    if fields is not None:
        with _building(gateway):
            event = build_event(fields, "$", errors)
    else:
        event = None
    if event is None:
        raise Problem(422, "/problems/invalid-body", _summary(errors), errors=errors)
    return event


async def _idempotent(request: web.Request, route: str, answer: Any) -> web.Response:
    """Run `answer(body)` (which returns the 202 body) once per Idempotency-Key."""
    gateway = _gateway(request)
    raw, body = await read_json(request, gateway.settings.max_body_bytes)
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return _json(await answer(body), 202)
    if len(request.headers.getall("Idempotency-Key")) > 1:
        # Which one would count? A proxy may keep the other: refused, as for any header
        # whose value is ambiguous.
        raise Problem(
            422,
            "/problems/invalid-body",
            "send one Idempotency-Key header, not several",
            errors=[{"path": "header:Idempotency-Key", "message": "sent more than once"}],
        )
    token = request[TOKEN].name
    try:
        replay = await gateway.idempotency.begin(token, route, key, raw)
    except Problem:
        raise
    except Exception as exc:  # the store keeping the keys is down: nothing queued yet
        if isinstance(exc, _CODE_ERRORS):
            raise
        raise _store_failed(exc, idempotency_key=key) from None
    if replay is not None:
        headers = {**replay.headers, "Idempotent-Replayed": "true"}
        if replay.status >= 400:  # a batch partly queued (`_PartlyQueued`)
            if replay.status == 503:
                # Every 503 says when to come back; an answer kept before its headers were
                # kept with it gets the gateway's usual wait.
                headers.setdefault("Retry-After", RETRY_SECONDS)
            return problem_response(replay.status, replay.body, headers)
        return _json(replay.body, replay.status, headers)
    try:
        result = await answer(body)
    except _PartlyQueued as partly:
        # Some events are queued: the key keeps this answer, so a retry with it (which
        # GatewayClient makes on a 503) is told the same, and sends none of them twice.
        await _keep(
            gateway,
            token,
            route,
            key,
            raw,
            partly.status,
            partly.body(request.path),
            partly.headers,
        )
        raise
    except BaseException:
        await gateway.idempotency.release(token, route, key)
        raise
    await _keep(gateway, token, route, key, raw, 202, result)
    return _json(result, 202)


async def _keep(
    gateway: Gateway,
    token: str,
    route: str,
    key: str,
    raw: bytes,
    status: int,
    body: Any,
    headers: dict[str, str] | None = None,
) -> None:
    try:
        await gateway.idempotency.finish(token, route, key, raw, status, body, headers)
    except Exception as exc:
        # The events are queued: that is the answer. Only a retry within the claim's
        # lapse is told "in use"; a later one would queue them again, so say so.
        log.warning(
            "idempotency_finish_failed",
            idempotency_key=key,
            error=redact_text(f"{type(exc).__name__}: {exc}"),
        )


@requires("events:write")
async def post_event(request: web.Request) -> web.Response:
    gateway = _gateway(request)
    if "Idempotency-Key" not in request.headers:
        # The common case, without the idempotency bookkeeping: what `_idempotent` does
        # for a request without the header, with the answer made directly.
        _, body = await read_json(request, gateway.settings.max_body_bytes)
        event = _event(gateway, body)
        return _accepted(event, *await _admit(gateway, event))

    async def answer(body: Any) -> dict[str, Any]:
        event = _event(gateway, body)
        webhooks, refused = await _admit(gateway, event)
        return {"event_id": event.event_id, "webhooks": webhooks, "refused": refused}

    return await _idempotent(request, "events", answer)


@requires("events:write")
async def post_events_batch(request: web.Request) -> web.Response:
    gateway = _gateway(request)
    limit = gateway.settings.max_batch

    async def answer(body: Any) -> dict[str, Any]:
        errors: list[dict[str, str]] = []
        if not isinstance(body, dict):
            errors.append({"path": "$", "message": "expected an object with events"})
            raise Problem(422, "/problems/invalid-body", _summary(errors), errors=errors)
        for key in body:
            if key != "events":
                errors.append({"path": f"$.{key}", "message": "unknown field (known: events)"})
        items = body.get("events")
        if not isinstance(items, list) or not 1 <= len(items) <= limit:
            errors.append(
                {"path": "$.events", "message": f"expected an array of 1 to {limit} events"}
            )
            items = []
        events: list[Event] = []
        with _building(gateway):
            for index, item in enumerate(items):
                where = f"$.events[{index}]"
                fields = event_fields(item, where, errors)
                event = build_event(fields, where, errors) if fields is not None else None
                if event is not None:
                    events.append(event)
        if errors:
            raise Problem(422, "/problems/invalid-body", _summary(errors), errors=errors)
        # Together (one group of the intake), so the store commits them at once.
        outcomes = await asyncio.gather(
            *(gateway.intake.admit(event) for event in events), return_exceptions=True
        )
        for event, outcome in zip(events, outcomes, strict=True):
            if isinstance(outcome, list) and not outcome:
                gateway.unrouted.note(event)
        return _batch_answer(events, outcomes)

    return await _idempotent(request, "events:batch", answer)


def _batch_answer(events: list[Event], outcomes: list[Any]) -> dict[str, Any]:
    """The 202 body of a batch every event of which was queued (for at least one webhook, or
    routed to none); else the error: 503 when nothing was queued (retrying all of it is
    safe), 422 when nothing was and some events cannot be, `_PartlyQueued` for the rest."""
    accepted: list[dict[str, Any]] = []
    failed: list[tuple[int, Problem | None]] = []  # None: refused by every webhook it wants
    refused_by: set[str] = set()
    for index, (event, outcome) in enumerate(zip(events, outcomes, strict=True)):
        webhooks: list[str] = []
        refused: list[str] = []
        if isinstance(outcome, QueueFull):
            webhooks, refused = outcome.queued, outcome.refused
        elif isinstance(outcome, Exception):
            failed.append((index, _not_admitted(outcome, event, f"$.events[{index}]")))
        elif isinstance(outcome, BaseException):  # cancelled: the request is going away
            raise outcome
        else:
            webhooks = outcome
        refused_by.update(refused)
        if refused and not webhooks:
            failed.append((index, None))
        accepted.append({"event_id": event.event_id, "webhooks": webhooks, "refused": refused})
    if not failed:
        return {"events": accepted}
    if len(failed) == len(events):  # nothing of it was queued
        invalid = [e for _, p in failed if p is not None and p.status == 422 for e in p.errors]
        if invalid:
            raise Problem(422, "/problems/invalid-body", _summary(invalid), errors=invalid)
        if refused_by:
            raise _queue_full(sorted(refused_by))
        raise next(p for _, p in failed if p is not None)
    missing = [index for index, _ in failed]
    errors = {index: problem for index, problem in failed if problem is not None}
    shown = []
    for index, item in enumerate(accepted):
        item = {**item, "queued": index not in missing}
        problem = errors.get(index)
        if problem is not None:
            item["error"] = {"type": problem.type, "detail": problem.detail}
        shown.append(item)
    raise _PartlyQueued(
        503,
        "/problems/batch-partly-queued",
        f"{len(events) - len(missing)} of the {len(events)} events were queued and must not "
        f"be sent again; events {', '.join(map(str, missing))} (0-based) were not: send only "
        "those again (events[].queued says which)",
        headers={"Retry-After": RETRY_SECONDS},
        extra={"events": shown},
    )


def _summary(errors: list[dict[str, str]]) -> str:
    first = errors[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{first['path']}: {first['message']}{more}"


# -- history ---------------------------------------------------------------------------------


def _no_history(exc: RuntimeError) -> Problem:
    return Problem(501, "/problems/no-history", str(exc))


def _moment(request: web.Request, name: str) -> float | None:
    """A time filter: epoch seconds, or ISO-8601 with a zone (`2026-11-30T12:00:00Z`)."""
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        pass
    else:
        if math.isfinite(seconds):
            return seconds
        raw = ""  # nan, inf: refused below with the other non-times
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None or not math.isfinite(moment.timestamp()):
        raise Problem(
            422,
            "/problems/invalid-query",
            f"{name} must be epoch seconds or ISO-8601 with a zone (2026-11-30T12:00:00Z)",
            errors=[{"path": f"query:{name}", "message": "not a time"}],
        )
    return moment.timestamp()


def _shown_envelope(envelope: dict[str, Any]) -> dict[str, Any]:
    """An envelope as a reader sees it: every field's value with secrets masked, as the
    console shows them (a producer may put a token in any of them: `user_id` showed one
    that `data` masked). Masked by value, not by the field's own name, which is the
    envelope's (a field named like a secret, `ordering_key`, is not one)."""
    for key, value in envelope.items():
        envelope[key] = redact_value(value)
    return envelope


@requires("read")
async def get_event(request: web.Request) -> web.Response:
    gateway = _gateway(request)
    event_id = request.match_info["event_id"]
    unrouted = gateway.unrouted.get(event_id)
    if unrouted is not None:
        # Accepted, and nothing queued: the store has no trace of it, this gateway does.
        found, accepted_at = unrouted
        return _json(
            {
                "event": _shown_envelope(found.to_envelope()),
                "deliveries": [],
                "routed_to": [],
                "note": unrouted_note(found, accepted_at),
            }
        )
    try:
        event = await gateway.dispatcher.event(event_id)
        if event is None:
            raise Problem(
                404,
                "/problems/not-found",
                f"no event {event_id!r} on record: its deliveries may be older than the "
                "store keeps; an event routed to no webhook queues nothing, and only the "
                f"gateway that accepted it remembers it (its newest {gateway.unrouted.max_events}"
                " such events, until it restarts)",
            )
        page = await gateway.dispatcher.deliveries(event_id=event_id, limit=MAX_PAGE)
    except RuntimeError as exc:
        raise _no_history(exc) from None
    return _json(
        {
            "event": _shown_envelope(event.to_envelope()),
            "deliveries": [record.to_dict() for record in page.items],
        }
    )


@requires("read")
async def list_deliveries(request: web.Request) -> web.Response:
    gateway = _gateway(request)
    query = request.query
    webhook = _webhook_filter(request)
    status = query.get("status")
    if status is not None and status not in DELIVERY_STATUSES:
        raise Problem(
            422,
            "/problems/invalid-query",
            f"status must be one of {', '.join(DELIVERY_STATUSES)}",
            errors=[{"path": "query:status", "message": "unknown status"}],
        )
    limit = _query_int(request, "limit", 50, 1, MAX_PAGE)
    try:
        page = await gateway.dispatcher.deliveries(
            webhook=webhook,
            status=status,
            event_type=query.get("event_type"),
            since=_moment(request, "since"),
            until=_moment(request, "until"),
            limit=limit,
            cursor=query.get("cursor"),
        )
    except ValueError as exc:
        raise Problem(
            422,
            "/problems/invalid-query",
            str(exc),
            errors=[{"path": "query:cursor", "message": str(exc)}],
        ) from None
    except RuntimeError as exc:
        raise _no_history(exc) from None
    return _json(
        {
            "deliveries": [record.to_dict() for record in page.items],
            "next_cursor": page.next_cursor,
        }
    )


@requires("read")
async def get_delivery(request: web.Request) -> web.Response:
    gateway = _gateway(request)
    delivery_id = request.match_info["delivery_id"]
    try:
        record = await gateway.dispatcher.delivery(delivery_id)
    except RuntimeError as exc:
        raise _no_history(exc) from None
    if record is None:
        raise Problem(404, "/problems/not-found", f"no delivery {delivery_id!r} on record")
    return _json(record.to_dict())


# -- webhooks --------------------------------------------------------------------------------


@requires("read")
async def list_webhooks(request: web.Request) -> web.Response:
    gateway = _gateway(request)
    names = gateway.dispatcher.webhook_names()
    return _json({"webhooks": await webhook_summaries(gateway, names)})


@requires("read")
async def webhook_stats(request: web.Request) -> web.Response:
    gateway = _gateway(request)
    name = request.match_info["name"]
    try:
        return _json(await stats_with_store(gateway, name))
    except UnknownWebhookError:
        raise unknown_webhook(gateway, name) from None


@requires("admin")
async def enable_webhook(request: web.Request) -> web.Response:
    gateway = _gateway(request)
    name = request.match_info["name"]
    enable(gateway, name)
    return _json(await webhook_summary(gateway, name))


# -- dead letters ----------------------------------------------------------------------------


def _webhook_filter(request: web.Request) -> str | None:
    name = request.query.get("webhook")
    if name is not None and name not in _gateway(request).dispatcher.webhook_names():
        raise unknown_webhook(_gateway(request), name)
    return name


@requires("read")
async def list_dead_letters(request: web.Request) -> web.Response:
    gateway = _gateway(request)
    webhook = _webhook_filter(request)
    limit = _query_int(request, "limit", 100, 1, MAX_LIST)
    letters = await gateway.dispatcher.dead_letters(webhook)
    letters.sort(key=lambda letter: letter.failed_at, reverse=True)
    shown = []
    for letter in letters[:limit]:
        item = letter.to_dict()
        item["event"] = _shown_envelope(item["event"])
        shown.append(item)
    return _json(
        {
            "dead_letters": shown,
            "total": len(letters),
        }
    )


@requires("admin")
async def replay_dead_letter(request: web.Request) -> web.Response:
    gateway = _gateway(request)
    dead_letter_id = request.match_info["dead_letter_id"]
    event = await replay_one(gateway, dead_letter_id)
    return _json({"dead_letter_id": dead_letter_id, "event_id": event.event_id}, 202)


@requires("admin")
async def replay_dead_letters(request: web.Request) -> web.Response:
    gateway = _gateway(request)
    replayed, skipped = await replay_all(gateway, _webhook_filter(request))
    return _json({"replayed": replayed, "skipped": skipped}, 202)


# -- operations ------------------------------------------------------------------------------


@public
async def healthz(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


@public
async def readyz(request: web.Request) -> web.Response:
    gateway = _gateway(request)
    dispatcher = gateway.dispatcher
    if gateway.stopping:
        raise Problem(503, "/problems/not-ready", "the gateway is stopping")
    if not dispatcher.running:
        raise Problem(503, "/problems/not-ready", "the workers are not running")
    store = dispatcher.store
    if isinstance(store, HasKeyValue):
        try:
            await asyncio.wait_for(store.key_value("gateway:").get("readyz"), 5)
        except Exception as exc:
            raise Problem(
                503,
                "/problems/not-ready",
                f"the store does not answer ({type(exc).__name__})",
            ) from None
    return _json(
        {"status": "ready", "store": "ok", "workers": "running" if gateway.workers else "remote"}
    )


async def metrics(request: web.Request) -> web.Response:
    # Imported here on purpose: prometheus-client is an optional extra, and its absence is
    # a 501 for this route, not a gateway that cannot start.
    try:
        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client.exposition import CONTENT_TYPE_LATEST
    except ImportError:
        raise Problem(
            501,
            "/problems/not-installed",
            "/metrics needs prometheus-client: pip install 'empathy-webhooks-core[gateway]'",
        ) from None
    gateway = _gateway(request)
    # What the store holds, read here: the collector runs in a thread and cannot await it.
    held = await gateway.store_figures.read()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        WebhookCollector(
            gateway.dispatcher.monitor,
            stored={"pending": held.pending, "dead_letters": held.dead_letters},
        )
    )
    body = await asyncio.to_thread(generate_latest, registry)
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


@public
async def openapi(request: web.Request) -> web.Response:
    return _json(document(_gateway(request)))


def add_routes(app: web.Application, gateway: Gateway) -> None:
    # /metrics is read-only figures: behind `read` unless the configuration opens it.
    async def metrics_route(request: web.Request) -> web.Response:
        return await metrics(request)

    if gateway.settings.metrics_open:
        public(metrics_route)
    else:
        requires("read")(metrics_route)
    app.router.add_post("/v1/events", post_event)
    app.router.add_post("/v1/events:batch", post_events_batch)
    app.router.add_get("/v1/events/{event_id}", get_event)
    app.router.add_get("/v1/deliveries", list_deliveries)
    app.router.add_get("/v1/deliveries/{delivery_id}", get_delivery)
    app.router.add_get("/v1/webhooks", list_webhooks)
    app.router.add_get("/v1/webhooks/{name}/stats", webhook_stats)
    app.router.add_post("/v1/webhooks/{name}/enable", enable_webhook)
    app.router.add_get("/v1/dead-letters", list_dead_letters)
    app.router.add_post("/v1/dead-letters/replay", replay_dead_letters)
    app.router.add_post("/v1/dead-letters/{dead_letter_id}/replay", replay_dead_letter)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_route)
    app.router.add_get("/openapi.json", openapi)
