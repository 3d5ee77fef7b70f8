"""One attempt of one delivery: render (once), sign, deliver, classify. No policy decisions."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable
from typing import Any, NamedTuple

import aiohttp
import attrs
import pluggy

from ._pipeline.state import current_state
from .clock import Clock
from .events import Event
from .plugins import AttemptWatchers, Hooks, get_plugin_manager, hooks_for
from .redaction import (
    bounded,
    is_secret_name,
    redacted_exception,
    register_request_secrets,
    request_secret_values,
)
from .signing import signed_request
from .stores.base import Delivery
from .webhooks import Webhook
from .wire import SECRET_URL, Outcome, OutgoingRequest, Response, Verdict

__all__ = ["Attempt", "PayloadTooLarge", "attempt", "render", "render_request"]

#: Transport failures: worth another attempt.
TRANSPORT_ERRORS = (
    aiohttp.ClientError,
    TimeoutError,
    asyncio.TimeoutError,
    ConnectionError,
    OSError,
)


class PayloadTooLarge(ValueError):
    """A rendered request over the webhook's `max_payload_bytes`: refused, never sent."""


class Attempt(NamedTuple):
    """How one attempt went. A named tuple, not an attrs class: one is made per attempt, and
    a frozen attrs class sets each field through `object.__setattr__`."""

    verdict: Verdict
    response: Response | None = None
    exception: BaseException | None = None
    #: The request as sent (signed), for the attempt's history; None when none was sent.
    request: OutgoingRequest | None = None


#: Past this many entries a cache below starts again (a plugin whose URLs or credentials
#: differ per event must not grow it without end).
_CACHE_LIMIT = 4096
_secret_names: dict[str, bool] = {}
_request_secrets: dict[tuple[Any, ...], tuple[str, ...]] = {}
_secret_headers: dict[tuple[str, ...], tuple[str, ...]] = {}


def _secret_name(name: str) -> bool:
    known = _secret_names.get(name)
    if known is None:
        if len(_secret_names) >= _CACHE_LIMIT:
            _secret_names.clear()
        known = _secret_names[name] = is_secret_name(name)
    return known


def request_secrets(request: OutgoingRequest) -> tuple[str, ...]:
    """`redaction.request_secret_values(request)`, worked out once per distinct URL and
    secret-named headers (the same for every delivery of most webhooks: parsing the URL on
    every render was a measurable part of a delivery's CPU)."""
    headers = request.headers
    # Which headers are secret-named, once per set of names (a webhook's requests share
    # theirs): most have none, and the key is then the URL alone.
    names = tuple(headers)
    secret = _secret_headers.get(names)
    if secret is None:
        if len(_secret_headers) >= _CACHE_LIMIT:
            _secret_headers.clear()
        secret = _secret_headers[names] = tuple(name for name in names if _secret_name(name))
    key: tuple[Any, ...] = (request.url, bool(request.extras.get(SECRET_URL)))
    if secret:
        key += tuple((name, headers[name]) for name in secret)
    values = _request_secrets.get(key)
    if values is None:
        if len(_request_secrets) >= _CACHE_LIMIT:
            _request_secrets.clear()
        values = _request_secrets[key] = tuple(request_secret_values(request))
    return values


def render(hooks: Hooks, webhook: Webhook, delivery: Delivery) -> None:
    """Render the delivery's request once; every retry sends the same bytes."""
    if delivery.request is not None:
        return
    request = hooks.format_payload(webhook, delivery.event)
    if webhook.secret_url and not request.extras.get(SECRET_URL):
        extras: dict[str, Any] = {**request.extras, SECRET_URL: True}
        request = attrs.evolve(request, extras=extras)
    # Credentials the plugin put in the request (a derived `Basic` header, a token in the
    # URL): masked from now on wherever they show, an echo in the answer included.
    secrets = request_secrets(request)
    if secrets:
        register_request_secrets(secrets)
    if len(request.body) > webhook.max_payload_bytes:
        raise PayloadTooLarge(
            f"payload is {len(request.body)} bytes, over this webhook's max_payload_bytes "
            f"({webhook.max_payload_bytes}); not sent"
        )
    delivery.request = request


def _describe(exc: BaseException) -> str:
    """An exception as a reason: masked and bounded, as its text may quote the answer (a
    malformed status line) or the URL with its credentials."""
    try:
        text = str(exc)
    except Exception:  # a broken __str__ must not break the report
        text = ""
    if not text:
        timed_out = isinstance(exc, TimeoutError | asyncio.TimeoutError)
        text = "timed out" if timed_out else type(exc).__name__
    return bounded(f"{type(exc).__name__}: {text}")


def attempt(
    hooks: Hooks,
    webhook: Webhook,
    delivery: Delivery,
    session: aiohttp.ClientSession,
    clock: Clock,
    quiet: tuple[str, ...] = (),
) -> Awaitable[Attempt]:
    """Make one attempt; awaiting the result says how it went, and never raises (but for
    cancellation). Rendering and signing happen in this call: what is awaited is the send
    itself, one coroutine less on the path of every answer that resumes the worker. `quiet`:
    the plugins not watching it (`Hooks.quiet`)."""
    try:
        render(hooks, webhook, delivery)
    except PayloadTooLarge as exc:
        return _ready(Attempt(Verdict(outcome=Outcome.FAIL, reason=str(exc)), exception=exc))
    except Exception as exc:
        reason = f"could not render the payload: {_describe(exc)}"
        return _ready(Attempt(Verdict(outcome=Outcome.FAIL, reason=reason), exception=exc))
    request = delivery.request
    assert request is not None
    if webhook.signs:  # else no clock read, no call: the request goes as rendered
        request = signed_request(webhook, request, delivery.event.event_id, int(clock.time()))
    if hooks.observes_attempts:
        watchers = hooks.attempt_watchers(delivery.context, quiet)
        if watchers is not None:
            return _observed(hooks, watchers, webhook, delivery, request, session)
    return _send(hooks, webhook, delivery, request, session)


async def _ready(result: Attempt) -> Attempt:
    return result


async def _send(
    hooks: Hooks,
    webhook: Webhook,
    delivery: Delivery,
    request: OutgoingRequest,
    session: aiohttp.ClientSession,
) -> Attempt:
    """Deliver the signed request and classify the answer."""
    assert delivery.request is not None
    timeout = webhook.retry_policy.timeout_seconds
    try:
        awaitable, core = hooks.start_delivery(webhook, request, session, state_of=current_state)
        if core:
            # The core's HTTP send is bounded by the same timeout (aiohttp's, raising the
            # same TimeoutError): a second timer per attempt would only cost CPU.
            response = await awaitable
        else:
            # Every plugin's deliver ends within the webhook's timeout too: one that never
            # returns would hold its worker and its delivery forever.
            deadline = asyncio.timeout(timeout)
            try:
                async with deadline:
                    response = await awaitable
            except TimeoutError as exc:
                if not deadline.expired():
                    raise
                raise TimeoutError(f"no answer within {timeout:g} s") from exc
    except TRANSPORT_ERRORS as exc:
        return Attempt(
            Verdict(outcome=Outcome.RETRY, reason=_describe(exc)), exception=exc, request=request
        )
    except asyncio.CancelledError as exc:
        task = asyncio.current_task()
        if task is None or task.cancelling():
            raise  # the worker itself is being cancelled (the dispatcher stopping)
        # A plugin's send that awaited something cancelled elsewhere (a client closed under
        # it): not ours to obey. Re-raised, it ended the worker and lost the delivery, silently.
        reason = "CancelledError: the plugin's send was cancelled, though the delivery was not"
        return Attempt(
            Verdict(outcome=Outcome.RETRY, reason=reason), exception=exc, request=request
        )
    except Exception as exc:
        return Attempt(
            Verdict(outcome=Outcome.FAIL, reason=_describe(exc)), exception=exc, request=request
        )
    try:
        verdict = hooks.classify_response(webhook, delivery.request, response)
    except Exception as exc:
        reason = f"could not classify the answer: {_describe(exc)}"
        return Attempt(Verdict(outcome=Outcome.FAIL, reason=reason), response, exc, request)
    return Attempt(verdict, response, request=request)


async def _observed(
    hooks: Hooks,
    watchers: AttemptWatchers,
    webhook: Webhook,
    delivery: Delivery,
    request: OutgoingRequest,
    session: aiohttp.ClientSession,
) -> Attempt:
    """An attempt `watchers` watch: `before_attempt` may add headers (after signing:
    signatures cover the body, id and timestamp, never headers), and `after_attempt` is told
    how it ended, whatever happened, cancellation included."""
    event, context = delivery.event, delivery.context
    added = hooks.before_attempt(
        webhook, event, delivery.delivery_id, delivery.attempts, request, context, watchers
    )
    if added and webhook.plugin_headers and not type(webhook).rejects_unknown_headers:
        present = {name.lower() for name in request.headers}
        added = {name: value for name, value in added.items() if name.lower() not in present}
        if added:
            request = request.with_headers(added)
    started = time.perf_counter()
    result: Attempt | None = None
    try:
        result = await _send(hooks, webhook, delivery, request, session)
        return result
    finally:
        error = result.exception if result is not None else sys.exc_info()[1]
        hooks.after_attempt(
            webhook,
            event,
            delivery.delivery_id,
            delivery.attempts,
            request,
            context,
            result.verdict if result is not None else None,
            result.response if result is not None else None,
            redacted_exception(error) if error is not None else None,
            time.perf_counter() - started,
            watchers,
        )


def render_request(
    webhook: Webhook, event: Event, *, plugin_manager: pluggy.PluginManager | None = None
) -> OutgoingRequest:
    """What `webhook` would send for `event`: a dry run, nothing sent or queued."""

    if not isinstance(event, Event):
        raise TypeError(f"expected an Event, got {type(event).__name__}")
    hooks = hooks_for(plugin_manager or get_plugin_manager())
    webhook = hooks.claimed(webhook)
    delivery = Delivery(webhook_name=webhook.name, event=event)
    render(hooks, webhook, delivery)
    assert delivery.request is not None
    return delivery.request
