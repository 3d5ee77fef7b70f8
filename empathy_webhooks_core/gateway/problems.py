"""Errors as RFC 9457 problem details: `application/problem+json` with `type`, `title`,
`status` and `detail`, plus `errors` (each `{path, message}`) for a body that is invalid.

Handlers raise `Problem`; the gateway's middleware turns it (and every aiohttp HTTP error,
and any unexpected exception, as a bare 500 that tells nothing of the internals) into the
answer, so every error of every route has one shape.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from aiohttp import web

from ..redaction import redact_text

__all__ = ["PROBLEM_TYPES", "Problem", "problem_response"]

PROBLEM_JSON = "application/problem+json"

#: Every `type` the gateway answers with, and its title (the OpenAPI document lists them).
PROBLEM_TYPES: dict[str, str] = {
    "about:blank": "",
    "/problems/unauthorized": "A valid bearer token is required",
    "/problems/forbidden": "The token lacks the scope this route needs",
    "/problems/rate-limited": "Too many requests for this token",
    "/problems/too-large": "The request body is too large",
    "/problems/invalid-json": "The request body is not JSON",
    "/problems/invalid-body": "The request body does not match the schema",
    "/problems/invalid-query": "A query parameter is not valid",
    "/problems/not-found": "No such resource",
    "/problems/not-replayable": "This dead letter cannot be replayed as it is",
    "/problems/not-installed": "A package this route needs is not installed",
    "/problems/no-history": "The store keeps no attempt history",
    "/problems/idempotency-key-reused": "The Idempotency-Key was used for another request",
    "/problems/idempotency-key-in-use": "A request with this Idempotency-Key is under way",
    "/problems/shutting-down": "The gateway is shutting down",
    "/problems/queue-full": "The webhooks' queues are full; nothing was queued",
    "/problems/store-unavailable": "The store did not take the event; nothing was queued",
    "/problems/batch-partly-queued": "Only some events of the batch were queued",
    "/problems/body-timeout": "The request body did not arrive in time",
    "/problems/not-ready": "The gateway is not ready",
    "/problems/unsupported-media-type": "The request body must be application/json",
    "/problems/method-not-allowed": "This route does not take this method",
    "/problems/server-error": "The gateway failed to answer",
}


class Problem(Exception):
    """An error answer. `errors` lists `{path, message}` (path a JSON path, `$.data.x`)."""

    def __init__(
        self,
        status: int,
        type_: str,
        detail: str,
        *,
        errors: Sequence[Mapping[str, str]] = (),
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        assert type_ in PROBLEM_TYPES, type_
        super().__init__(detail)
        self.status = status
        self.type = type_
        self.detail = detail
        self.errors = [dict(error) for error in errors]
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def body(self, instance: str | None = None) -> dict[str, Any]:
        # Masked: a detail or a path may quote the caller's own input, and a caller who put
        # a registered secret there (a token as a webhook's name) must not get it back, nor
        # whoever logs the answers.
        body: dict[str, Any] = {
            "type": self.type,
            "title": PROBLEM_TYPES[self.type] or _reason(self.status),
            "status": self.status,
            "detail": redact_text(self.detail),
        }
        if instance is not None:
            body["instance"] = redact_text(instance)
        if self.errors:
            body["errors"] = self.errors
        body.update(self.extra)
        return body

    def response(self, instance: str | None = None) -> web.Response:
        response = problem_response(self.status, self.body(instance), self.headers)
        if self.headers.get("Connection", "").lower() == "close":
            # Closed after this answer indeed (the header alone leaves aiohttp keeping it
            # open): a body cut off, a gateway stopping.
            response.force_close()
        return response


def problem_response(
    status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8"),
        headers={"Content-Type": PROBLEM_JSON, **(headers or {})},
    )


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
