"""The OpenAPI 3.1 document (`GET /openapi.json`): every route, body, answer and error.

It is checked against the running gateway (tests/test_gateway_openapi.py: the document
validates, and schemathesis finds no answer that contradicts it), so it stays true. Its
examples are made up: no token, secret or webhook URL of a configuration appears in it.
"""

from __future__ import annotations

from typing import Any

from .._version import __version__
from ..config.serve import ServeConfig
from ..events import MAX_EVENT_TYPE_CHARS
from ..history import DELIVERY_STATUSES, MAX_PAGE
from .bodies import EVENT_FIELDS
from .problems import PROBLEM_TYPES

__all__ = ["document"]

_REF = "#/components/schemas/"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def _nullable(kind: str, **extra: Any) -> dict[str, Any]:
    return {"type": [kind, "null"], **extra}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    401: "No valid bearer token",
    403: "The token lacks the scope this route needs",
    404: "No such webhook, event or dead letter",
    408: "The body did not arrive in time (a trickled or unfinished body)",
    409: "A request with this Idempotency-Key is under way, or the dead letter cannot be replayed",
    413: "The body is larger than the gateway takes",
    415: "The body is not declared application/json",
    422: "The body or a parameter is invalid; `errors` names each JSON path",
    429: "The token's rate limit is reached; retry after `Retry-After` seconds",
    501: "Not available here: prometheus-client is not installed, or the store keeps no "
    "attempt history",
    503: "The gateway is shutting down (or not ready), or nothing was queued (the queues are "
    "full or the store does not answer); retry after `Retry-After` seconds",
}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "string"}}}


def _replayable(answer: dict[str, Any]) -> dict[str, Any]:
    answer["headers"] = {
        "Idempotent-Replayed": {
            "description": "`true` when this is the first answer to the same Idempotency-Key",
            "schema": {"type": "string", "enum": ["true"]},
        }
    }
    return answer


def _problem(status: int) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": _ERRORS[status],
        "content": {"application/problem+json": {"schema": _ref("Problem")}},
    }
    if status in (429, 503):
        answer["headers"] = _RETRY_AFTER
    return answer


def _operation(
    summary: str,
    ok: tuple[int, dict[str, Any]],
    errors: tuple[int, ...],
    *,
    scope: str | None,
    tag: str,
    body: dict[str, Any] | None = None,
    parameters: list[dict[str, Any]] | None = None,
    operation_id: str,
) -> dict[str, Any]:
    status, answer = ok
    codes = set(errors) | {503}
    if scope is not None:
        codes |= {401, 403, 429}
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "tags": [tag],
        "responses": {
            str(status): answer,
            **{str(code): _problem(code) for code in sorted(codes)},
        },
    }
    if scope is None:
        operation["security"] = []
    else:
        operation["description"] = f"Needs a token with the `{scope}` scope (or `admin`)."
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body}},
        }
    if parameters:
        operation["parameters"] = parameters
    return operation


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _path(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": description,
    }


_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "The same key (per token) within the configured time (24 h by default) "
    "returns the first answer and queues nothing new.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
}


def _schemas(settings: ServeConfig) -> dict[str, Any]:
    stat = {"type": ["number", "string", "boolean", "object", "null"]}
    return {
        "Problem": {
            "type": "object",
            "description": "RFC 9457 problem details.",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": {"type": "string", "enum": sorted(PROBLEM_TYPES)},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
                "instance": {"type": "string"},
                "errors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["path", "message"],
                        "properties": {
                            "path": {"type": "string", "examples": ["$.events[0].empathy_level"]},
                            "message": {"type": "string"},
                        },
                    },
                },
                "events": {
                    "type": "array",
                    "description": (
                        "With /problems/batch-partly-queued: each event of the batch, in "
                        "order, and whether it was queued (send only those that were not "
                        "again)."
                    ),
                    "items": {
                        "type": "object",
                        "required": ["event_id", "webhooks", "refused", "queued"],
                        "properties": {
                            "event_id": {"type": "string"},
                            "webhooks": {"type": "array", "items": {"type": "string"}},
                            "refused": {"type": "array", "items": {"type": "string"}},
                            "queued": {"type": "boolean"},
                            "error": {
                                "type": "object",
                                "properties": {
                                    "type": {"type": "string"},
                                    "detail": {"type": "string"},
                                },
                            },
                        },
                    },
                },
            },
        },
        "EventInput": {
            "type": "object",
            "description": "One event; the gateway gives its id and timestamp.",
            "required": ["event_type"],
            "additionalProperties": False,
            "properties": {
                "event_type": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_EVENT_TYPE_CHARS,
                    "examples": ["prediction"],
                },
                "data": _nullable("object", examples=[{"prediction": "build will fail"}]),
                "user_id": _nullable("string"),
                "empathy_level": _nullable("integer", minimum=1, maximum=5),
                "severity": _nullable("string", examples=["high"]),
                "classification": _nullable("string"),
                "metadata": _nullable("object"),
                "ordering_key": _nullable(
                    "string", description="Events with one key reach each webhook in order."
                ),
            },
        },
        "EventBatchInput": {
            "type": "object",
            "required": ["events"],
            "additionalProperties": False,
            "properties": {
                "events": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": settings.max_batch,
                    "items": _ref("EventInput"),
                }
            },
        },
        "EventAccepted": {
            "type": "object",
            "required": ["event_id", "webhooks", "refused"],
            "properties": {
                "event_id": {"type": "string", "examples": ["evt_3q2-7wEYSPIcAvGJqmhOUg"]},
                "webhooks": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "The webhooks the event was queued for.",
                },
                "refused": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "Webhooks whose queue was full (max_pending).",
                },
            },
        },
        "EventBatchAccepted": {
            "type": "object",
            "required": ["events"],
            "properties": {"events": {"type": "array", "items": _ref("EventAccepted")}},
        },
        "Envelope": {
            "type": "object",
            "required": ["event_type", "event_id", "timestamp", "data", "metadata"],
            "properties": {
                "event_type": {"type": "string"},
                "event_id": {"type": "string"},
                "timestamp": {"type": "string"},
                "user_id": _nullable("string"),
                "empathy_level": _nullable("integer"),
                "data": {"type": "object"},
                "metadata": {"type": "object"},
                "severity": {"type": "string"},
                "classification": {"type": "string"},
            },
        },
        "WebhookStats": {
            "type": "object",
            "required": ["total_sent", "delivered_count", "failed_count", "queued"],
            "properties": {
                "total_sent": {"type": "integer"},
                "delivered_count": {"type": "integer"},
                "failed_count": {"type": "integer"},
                "success_rate": {"type": "number"},
                "attempts": {"type": "integer"},
                "retries": {"type": "integer"},
                "queued": {"type": "integer"},
                "in_flight": {"type": "integer"},
                "dead_letters": {"type": "integer"},
                "store_pending": _nullable(
                    "integer",
                    description="Deliveries the store holds not finished, in any process "
                    "(null: the store cannot count them)",
                ),
                "store_dead_letters": _nullable(
                    "integer",
                    description="Dead letters the store holds (null: it cannot count them)",
                ),
                "breaker_state": {"type": "string", "enum": ["closed", "open", "half_open"]},
                "disabled": {"type": "boolean"},
                "last_error": _nullable("string"),
            },
            "additionalProperties": stat,
        },
        "Webhook": {
            "type": "object",
            "required": ["name", "type", "disabled", "breaker_state", "queued", "stats"],
            "properties": {
                "name": {"type": "string"},
                "type": _nullable("string", examples=["slack"]),
                "disabled": {"type": "boolean", "description": "True after a 410 Gone."},
                "breaker_state": {"type": "string", "enum": ["closed", "open", "half_open"]},
                "queued": {
                    "type": "integer",
                    "description": "What the store holds not finished (store_pending), or "
                    "this process's queue when the store cannot count (counted_in)",
                },
                "in_flight": {"type": "integer"},
                "dead_letters": {
                    "type": "integer",
                    "description": "What the store holds (store_dead_letters), or this "
                    "process's count when the store cannot count (counted_in)",
                },
                "counted_in": {
                    "type": "object",
                    "properties": {
                        "queued": {"type": "string", "enum": ["store", "process"]},
                        "dead_letters": {"type": "string", "enum": ["store", "process"]},
                    },
                },
                "stats": _ref("WebhookStats"),
            },
        },
        "WebhookList": {
            "type": "object",
            "required": ["webhooks"],
            "properties": {"webhooks": {"type": "array", "items": _ref("Webhook")}},
        },
        "DeadLetter": {
            "type": "object",
            "required": [
                "dead_letter_id",
                "webhook_name",
                "event",
                "error",
                "attempts",
                "failed_at",
            ],
            "properties": {
                "dead_letter_id": {"type": "string"},
                "webhook_name": {"type": "string"},
                "event": _ref("Envelope"),
                "error": {"type": "object"},
                "attempts": {"type": "integer"},
                "failed_at": {"type": "number"},
            },
        },
        "DeadLetterList": {
            "type": "object",
            "required": ["dead_letters", "total"],
            "properties": {
                "dead_letters": {"type": "array", "items": _ref("DeadLetter")},
                "total": {"type": "integer"},
            },
        },
        "Replayed": {
            "type": "object",
            "required": ["dead_letter_id", "event_id"],
            "properties": {"dead_letter_id": {"type": "string"}, "event_id": {"type": "string"}},
        },
        "ReplayedAll": {
            "type": "object",
            "required": ["replayed", "skipped"],
            "properties": {
                "replayed": {"type": "array", "items": _ref("Replayed")},
                "skipped": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "Dead letters that cannot be replayed as they are.",
                },
            },
        },
        "Attempt": {
            "type": "object",
            "description": "One attempt; nothing in it shows a secret (masked and bounded).",
            "required": [
                "delivery_id",
                "attempt",
                "started_at",
                "duration_s",
                "status",
                "error",
                "verdict",
                "response_excerpt",
                "request_headers",
                "body_bytes",
                "next_retry_at",
            ],
            "properties": {
                "delivery_id": {"type": "string"},
                "attempt": {"type": "integer", "minimum": 1},
                "started_at": {"type": "number", "description": "Epoch seconds"},
                "duration_s": {"type": "number"},
                "status": _nullable("integer", description="The answer's status"),
                "error": _nullable("string", description="The transport error, if no answer"),
                "verdict": {"type": "string", "examples": ["success", "retry", "fail", "gone"]},
                "reason": _nullable("string"),
                "response_excerpt": _nullable("string"),
                "request_headers": {"type": "object", "additionalProperties": {"type": "string"}},
                "body_bytes": {"type": "integer"},
                "next_retry_at": _nullable("number"),
            },
        },
        "Delivery": {
            "type": "object",
            "required": [
                "delivery_id",
                "event_id",
                "webhook",
                "event_type",
                "status",
                "created_at",
                "updated_at",
                "attempts",
            ],
            "properties": {
                "delivery_id": {"type": "string"},
                "event_id": {"type": "string"},
                "webhook": {"type": "string"},
                "event_type": {"type": "string"},
                "status": {"type": "string", "enum": list(DELIVERY_STATUSES)},
                "created_at": {"type": "number"},
                "updated_at": {"type": "number"},
                "dead_letter_id": _nullable("string"),
                "attempts": {"type": "array", "items": _ref("Attempt")},
            },
        },
        "DeliveryPage": {
            "type": "object",
            "required": ["deliveries", "next_cursor"],
            "properties": {
                "deliveries": {"type": "array", "items": _ref("Delivery")},
                "next_cursor": _nullable(
                    "string", description="Pass as `cursor` for the next page; null at the end"
                ),
            },
        },
        "EventDetail": {
            "type": "object",
            "required": ["event", "deliveries"],
            "properties": {
                "event": _ref("Envelope"),
                "deliveries": {"type": "array", "items": _ref("Delivery")},
                "routed_to": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "Present, empty, for an event accepted and routed to no "
                    "webhook (kept by the gateway that accepted it, until it restarts)",
                },
                "note": {"type": "string", "description": "What happened to such an event"},
            },
        },
        "Health": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"type": "string", "enum": ["ok"]}},
        },
        "Ready": {
            "type": "object",
            "required": ["status", "store", "workers"],
            "properties": {
                "status": {"type": "string", "enum": ["ready"]},
                "store": {"type": "string"},
                "workers": {"type": "string", "enum": ["running", "remote"]},
            },
        },
    }


def document(gateway: Any = None) -> dict[str, Any]:
    """The document for a gateway (its limits), or for the defaults."""
    settings: ServeConfig = getattr(gateway, "settings", None) or ServeConfig()
    webhook = _query("webhook", {"type": "string"}, "Only this webhook's")
    metrics_scope = None if settings.metrics_open else "read"
    paths: dict[str, Any] = {
        "/v1/events": {
            "post": _operation(
                "Emit one event",
                (
                    202,
                    _replayable(_json(_ref("EventAccepted"), "Queued durably for its webhooks")),
                ),
                (408, 409, 413, 415, 422),
                scope="events:write",
                tag="events",
                body=_ref("EventInput"),
                parameters=[_IDEMPOTENCY_KEY],
                operation_id="emitEvent",
            )
        },
        "/v1/events:batch": {
            "post": _operation(
                f"Emit up to {settings.max_batch} events",
                (202, _replayable(_json(_ref("EventBatchAccepted"), "Every event queued"))),
                (408, 409, 413, 415, 422),
                scope="events:write",
                tag="events",
                body=_ref("EventBatchInput"),
                parameters=[_IDEMPOTENCY_KEY],
                operation_id="emitEvents",
            )
        },
        "/v1/events/{event_id}": {
            "get": _operation(
                "An event, its deliveries and each delivery's attempts",
                (200, _json(_ref("EventDetail"), "The event on record")),
                (404, 501),
                scope="read",
                tag="events",
                parameters=[_path("event_id", "The event's id (from POST /v1/events)")],
                operation_id="getEvent",
            )
        },
        "/v1/deliveries": {
            "get": _operation(
                "Deliveries with their attempts, newest first, a page at a time",
                (200, _json(_ref("DeliveryPage"), "A page")),
                (404, 422, 501),
                scope="read",
                tag="deliveries",
                parameters=[
                    webhook,
                    _query(
                        "status",
                        {"type": "string", "enum": list(DELIVERY_STATUSES)},
                        "Only deliveries in this state",
                    ),
                    _query("event_type", {"type": "string"}, "Only events of this type"),
                    _query(
                        "since",
                        {"type": "string"},
                        "Queued at or after: epoch seconds or ISO-8601 with a zone",
                    ),
                    _query("until", {"type": "string"}, "Queued before (as since)"),
                    _query(
                        "limit",
                        {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
                        "At most this many (default 50)",
                    ),
                    _query("cursor", {"type": "string"}, "The previous page's next_cursor"),
                ],
                operation_id="listDeliveries",
            )
        },
        "/v1/deliveries/{delivery_id}": {
            "get": _operation(
                "One delivery and its attempts",
                (200, _json(_ref("Delivery"), "The delivery on record")),
                (404, 501),
                scope="read",
                tag="deliveries",
                parameters=[_path("delivery_id", "The delivery's id")],
                operation_id="getDelivery",
            )
        },
        "/v1/webhooks": {
            "get": _operation(
                "The webhooks and their health",
                (200, _json(_ref("WebhookList"), "Every configured webhook")),
                (),
                scope="read",
                tag="webhooks",
                operation_id="listWebhooks",
            )
        },
        "/v1/webhooks/{name}/stats": {
            "get": _operation(
                "One webhook's figures",
                (200, _json(_ref("WebhookStats"), "Its figures")),
                (404,),
                scope="read",
                tag="webhooks",
                parameters=[_path("name", "The webhook's name")],
                operation_id="webhookStats",
            )
        },
        "/v1/webhooks/{name}/enable": {
            "post": _operation(
                "Enable a webhook disabled by a 410 Gone",
                (200, _json(_ref("Webhook"), "The webhook, enabled")),
                (404,),
                scope="admin",
                tag="webhooks",
                parameters=[_path("name", "The webhook's name")],
                operation_id="enableWebhook",
            )
        },
        "/v1/dead-letters": {
            "get": _operation(
                "Deliveries that finally failed, newest first",
                (200, _json(_ref("DeadLetterList"), "The dead letters")),
                (404, 422),
                scope="read",
                tag="dead letters",
                parameters=[
                    webhook,
                    _query(
                        "limit",
                        {"type": "integer", "minimum": 1, "maximum": 1000},
                        "At most this many (default 100)",
                    ),
                ],
                operation_id="listDeadLetters",
            )
        },
        "/v1/dead-letters/{dead_letter_id}/replay": {
            "post": _operation(
                "Queue a dead letter again (attempts start over)",
                (202, _json(_ref("Replayed"), "Queued again")),
                (404, 409),
                scope="admin",
                tag="dead letters",
                parameters=[_path("dead_letter_id", "The dead letter's id")],
                operation_id="replayDeadLetter",
            )
        },
        "/v1/dead-letters/replay": {
            "post": _operation(
                "Queue every dead letter (of one webhook) again",
                (202, _json(_ref("ReplayedAll"), "What was queued again")),
                (404,),
                scope="admin",
                tag="dead letters",
                parameters=[webhook],
                operation_id="replayDeadLetters",
            )
        },
        "/healthz": {
            "get": _operation(
                "Alive",
                (200, _json(_ref("Health"), "The process answers")),
                (),
                scope=None,
                tag="operations",
                operation_id="healthz",
            )
        },
        "/readyz": {
            "get": _operation(
                "Ready: the store answers and the workers run",
                (200, _json(_ref("Ready"), "Ready")),
                (),
                scope=None,
                tag="operations",
                operation_id="readyz",
            )
        },
        "/metrics": {
            "get": _operation(
                "Prometheus figures, per webhook",
                (
                    200,
                    {
                        "description": "Prometheus text exposition format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                ),
                (501,),
                scope=metrics_scope,
                tag="operations",
                operation_id="metrics",
            )
        },
        "/openapi.json": {
            "get": _operation(
                "This document",
                (200, _json({"type": "object"}, "OpenAPI 3.1")),
                (),
                scope=None,
                tag="operations",
                operation_id="openapi",
            )
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "empathy-webhooks gateway",
            "version": __version__,
            "description": "Emit Empathy Framework events over HTTP and follow their "
            "deliveries. Errors are RFC 9457 problem details (application/problem+json). "
            f"Bodies larger than {settings.max_body_bytes} bytes are refused (413). Event "
            f"fields: {', '.join(EVENT_FIELDS)}.",
        },
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": _schemas(settings),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token of [[serve.tokens]], with its scopes: "
                    "events:write, read, admin (admin includes the others).",
                }
            },
        },
    }
