"""The core's HTTP delivery: the `trylast` fallback for `deliver` and `classify_response`."""

from __future__ import annotations

import functools
import time

import aiohttp

# aiohttp's own dependencies and the types of its API (its request's URL and headers).
from multidict import CIMultiDict
from yarl import URL

from .._transport import MAX_BODY_BYTES, Target, Transport, target
from ..plugins import hookimpl
from ..retry import parse_retry_after
from ..webhooks import Webhook
from ..wire import Outcome, OutgoingRequest, Response, Verdict

#: How much of an answer's body is read: enough for error text, never a whole download (the
#: core's transport keeps the same).
MAX_RESPONSE_BYTES = MAX_BODY_BYTES


@functools.lru_cache(maxsize=64)
def _timeout(seconds: float) -> aiohttp.ClientTimeout:
    # Frozen, and the same for every attempt of a webhook: one per distinct timeout.
    return aiohttp.ClientTimeout(total=seconds)


#: Past this many URLs the parsed ones below start again (a plugin whose URLs differ per
#: event must not grow it without end).
_URLS_KEPT = 4096
_urls: dict[str, tuple[URL | str, Target | None]] = {}


def _url(text: str) -> tuple[URL | str, Target | None]:
    """`text` parsed once (yarl URLs are immutable), with where the core's own transport
    sends it (None: aiohttp does). One that does not parse is handed on as it is, so that
    aiohttp refuses it as it always has (`InvalidUrlClientError`, a transport error)."""
    parsed = _urls.get(text)
    if parsed is None:
        if len(_urls) >= _URLS_KEPT:
            _urls.clear()
        try:
            url = URL(text)
        except (TypeError, ValueError):
            parsed = (text, None)
        else:
            parsed = (url, target(url))
        _urls[text] = parsed
    return parsed


async def send(
    request: OutgoingRequest, session: aiohttp.ClientSession, timeout_seconds: float
) -> Response:
    """One HTTP attempt. Redirects are never followed: a 3xx comes back as the answer.

    Through the core's own transport when `session` is one the dispatcher opened and the
    request is one it takes (`_transport.py`); through `session` otherwise."""
    started = time.perf_counter()
    url, where = _url(request.url)
    transport = Transport.of(session) if where is not None else None
    head = (
        transport.head(where, request.method, request.headers, request.body)
        if transport is not None and where is not None
        else None
    )
    try:
        if head is not None:
            assert transport is not None and where is not None
            status, headers, body = await transport.request(
                where, head, request.body, timeout_seconds
            )
        else:
            async with session.request(
                request.method,
                url,
                data=request.body,
                # A multidict already: aiohttp merges it with the session's headers as it
                # is, rather than converting a dict first.
                headers=CIMultiDict(request.headers),
                allow_redirects=False,
                timeout=_timeout(timeout_seconds),
            ) as answer:
                body = await answer.content.read(MAX_RESPONSE_BYTES)
                status = answer.status
                headers = {k.lower(): v for k, v in answer.headers.items()}
    except TimeoutError as exc:
        raise TimeoutError(f"no answer within {timeout_seconds:g} s") from exc
    return Response(
        status=status,
        headers=headers,
        body=body,
        elapsed_ms=(time.perf_counter() - started) * 1000,
    )


@hookimpl(trylast=True)
def deliver(webhook: Webhook, request: OutgoingRequest, session: aiohttp.ClientSession) -> object:
    return send(request, session, webhook.retry_policy.timeout_seconds)


#: Frozen, so every delivered attempt shares one (no verdict built per success).
_DELIVERED = Verdict(outcome=Outcome.SUCCESS)


def default_verdict(webhook: Webhook, response: Response) -> Verdict:
    """The generic rule every source agrees on: 2xx done; a rate-limit answer (429, or 503
    with `Retry-After`) waits the service's time and tries again whatever `retry_on_status`
    says; listed statuses retried; 410 gone; everything else, 3xx included, final."""
    status = response.status
    if 200 <= status < 300:
        return _DELIVERED
    if status == 410:
        return Verdict(outcome=Outcome.GONE, reason="endpoint gone (410)")
    if 300 <= status < 400:
        location = "redirect not followed"
        return Verdict(outcome=Outcome.FAIL, reason=f"{location} ({status})")
    retry_after = (
        parse_retry_after(response.header("retry-after")) if status in (429, 503) else None
    )
    if status == 429 or (status == 503 and retry_after is not None):
        # The service says "not now", not "no": a retry list written for server errors (the
        # reference's [500, 502, 503, 504]) must not turn it into a lost alert. It pauses the
        # webhook and does not use up max_retries; max_rate_limited_attempts and
        # max_rate_limit_wait_seconds still bound it.
        return Verdict(
            outcome=Outcome.RETRY,
            reason=f"HTTP {status}",
            retry_after=retry_after,
            pause_webhook=True,
        )
    if status in webhook.retry_policy.retry_on_status:
        return Verdict(outcome=Outcome.RETRY, reason=f"HTTP {status}")
    return Verdict(outcome=Outcome.FAIL, reason=f"rejected with HTTP {status}")


@hookimpl(trylast=True)
def classify_response(webhook: Webhook, request: OutgoingRequest, response: Response) -> Verdict:
    return default_verdict(webhook, response)


__all__ = ["MAX_RESPONSE_BYTES", "default_verdict", "send"]
