"""Receiving our webhooks in an aiohttp application: verify, then hand over the event.

::

    from aiohttp import web
    from empathy_webhooks_core.receiving import verified_handler

    async def on_event(request: web.Request, event: dict) -> None:
        print(event["event_type"], event["data"])

    app = web.Application()
    secret = os.environ["WEBHOOK_SECRET"]
    app.router.add_post("/webhooks/empathy", verified_handler(secret, on_event))

The raw body is read once and verified before anything parses it. A request that does not
verify is answered `401 {"error": "invalid signature"}`: the caller is not told which check
failed (that would help a forger); the reason goes to the `empathy_webhooks` debug log.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ._log import get_logger
from .signing import (
    DEFAULT_TOLERANCE_SECONDS,
    X_SIGNATURE,
    WebhookVerificationError,
    _secret_list,
    standard_key,
    verify_standard_webhook_strict,
    verify_webhook_signature,
)

__all__ = ["EventHandler", "verification_middleware", "verified_handler"]

#: `handler(request, event)`: plain or async; may return a response, a JSON-able value or None.
EventHandler = Callable[[web.Request, Any], Any]

log = get_logger()


def _check_settings(secret: Any, tolerance: Any, who: str) -> None:
    """Refuse, when the helper is built, what would verify nothing or everything: a request
    refused for a bad setting is only a debug line, and a NaN tolerance compares false both
    ways, so it let a captured request through whatever its age."""
    try:
        secrets = _secret_list(secret)
    except ValueError:  # bytes that are not UTF-8
        secrets = []
    if not secrets:
        raise ValueError(
            f"{who} needs a signing secret (got none, or only empty or blank ones: is its "
            "environment variable set?)"
        )
    for item in secrets:
        try:
            standard_key(item)
        except ValueError:
            raise ValueError(
                f"{who}: a signing secret starting with 'whsec_' must be base64 after it"
            ) from None
    if (
        isinstance(tolerance, bool)
        or not isinstance(tolerance, int | float)
        or not math.isfinite(tolerance)
        or tolerance < 0
    ):
        raise ValueError(f"{who}: tolerance must be a finite number of seconds, 0 or more")


def _rejection() -> web.Response:
    return web.json_response({"error": "invalid signature"}, status=401)


def _failure_reason(
    body: bytes, request: web.Request, secret: Any, tolerance: float, require_timestamp: bool
) -> str | None:
    """None when the request verifies, else a short reason for our own log."""
    headers = request.headers
    if require_timestamp or "webhook-signature" in headers:
        try:
            verify_standard_webhook_strict(body, headers, secret, tolerance=tolerance)
        except WebhookVerificationError as exc:
            return str(exc)
        return None
    if X_SIGNATURE not in headers:
        return "unsigned request"
    if not verify_webhook_signature(body, headers.get(X_SIGNATURE), secret):
        return "X-Signature does not match"
    return None


async def _respond(outcome: Any) -> web.StreamResponse:
    if inspect.isawaitable(outcome):
        outcome = await outcome
    if isinstance(outcome, web.StreamResponse):
        return outcome
    if outcome is None:
        return web.json_response({"status": "ok"})
    return web.json_response(outcome)


def verified_handler(
    secret: str | list[str] | tuple[str, ...],
    handler: EventHandler,
    *,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    require_timestamp: bool = True,
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """An aiohttp handler that verifies the request (either scheme), then calls
    `handler(request, event)` with the parsed JSON body.

    `secret` may list several secrets (a rotation in progress). The Standard Webhooks
    headers must verify within `tolerance` seconds. A request carrying only `X-Signature`
    (which has no timestamp) is refused unless `require_timestamp=False`: accepted by
    default, any request ever captured could be replayed forever with its timestamp headers
    stripped. Pass False only for a sender that signs with `X-Signature` alone (the
    reference's scheme). The body size is bounded by the application's `client_max_size`
    (aiohttp's default: 1 MiB).
    """
    _check_settings(secret, tolerance, "verified_handler")

    async def verified(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        reason = _failure_reason(body, request, secret, tolerance, require_timestamp)
        if reason is not None:
            log.debug("webhook_signature_rejected", path=request.path, reason=reason)
            return _rejection()
        try:
            event = json.loads(body)
        except ValueError:
            return web.json_response({"error": "body is not JSON"}, status=400)
        return await _respond(handler(request, event))

    return verified


def verification_middleware(
    secret: str | list[str] | tuple[str, ...],
    *,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    require_timestamp: bool = True,
    paths: tuple[str, ...] | None = None,
) -> Any:
    """An aiohttp middleware that refuses (401) unsigned or badly signed requests to `paths`
    (every path when None) before any handler runs. Handlers read the verified body with
    `await request.read()` (aiohttp keeps it) or `await request.json()`."""
    _check_settings(secret, tolerance, "verification_middleware")
    if isinstance(paths, str):
        paths = (paths,)  # one path, not the set of its substrings

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if paths is not None and request.path not in paths:
            return await handler(request)
        body = await request.read()
        reason = _failure_reason(body, request, secret, tolerance, require_timestamp)
        if reason is not None:
            log.debug("webhook_signature_rejected", path=request.path, reason=reason)
            return _rejection()
        return await handler(request)

    return middleware
