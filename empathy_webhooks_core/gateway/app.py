"""The gateway's application: `Gateway` (the dispatcher, the tokens, the limits, the
lifecycle) and `build_app`, which gives the aiohttp application with every route.

Every request goes through one middleware, in this order: refused with 503 once the gateway
is stopping; authenticated (401) and authorised (403) as its handler declares
(`auth.requires`); rate limited per token (429 with `Retry-After`); answered; and logged with
the token's name, never the token. Whatever a handler raises becomes a problem details
answer (`problems.py`); an unexpected exception is logged and answered as a bare 500.

Another application (a console) mounts its routes on the same gateway and reuses all of this:

    app = build_app(gateway)
    app.add_subapp("/console/", console_app)    # its handlers marked with auth.requires(...)

and a handler reads the caller as `request[TOKEN]`; code that authenticates another way (a
cookie holding a token) calls `gateway.authenticate(raw_token) -> Token | None`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any

from aiohttp import web

from .._log import get_logger
from ..config import Config
from ..config.serve import SCOPES, ServeConfig
from ..dispatcher import WebhookDispatcher
from ..plugins import get_plugin_manager, hooks_for
from ..redaction import redact_text
from ..stores import HasProducerRole, HasWorkerRole, MemoryStore, StopsConsuming, open_store
from .auth import PUBLIC, RateLimiter, Token, TokenTable, bearer, required_scope, retry_after
from .connections import Connections
from .figures import StoreFigures
from .idempotency import Idempotency
from .intake import Intake
from .keys import GATEWAY, TOKEN
from .net import is_loopback
from .problems import Problem
from .routes import add_routes
from .unrouted import Unrouted

__all__ = ["DEFAULT_STORE", "GATEWAY", "TOKEN", "Gateway", "build_app", "is_loopback"]

log = get_logger()

#: Where `serve` keeps what it accepted when the configuration names no store: a file, so
#: accepted events survive a restart.
DEFAULT_STORE = "sqlite:///empathy-webhooks-gateway.db"

#: Every scope: the caller of a gateway configured without tokens (loopback only).
_ANONYMOUS = Token("anonymous", frozenset(SCOPES))

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Gateway:
    """A dispatcher behind an HTTP API: its settings, tokens, rate limits, idempotency keys
    and lifecycle. `workers=False`: this process only queues (workers elsewhere deliver)."""

    def __init__(
        self,
        dispatcher: WebhookDispatcher,
        settings: ServeConfig | None = None,
        *,
        workers: bool = True,
        webhook_types: dict[str, str] | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.settings = settings or ServeConfig()
        self.workers = workers
        self.tokens = TokenTable(self.settings.tokens, self.settings.requests_per_minute)
        self.limiter = RateLimiter()
        #: Where `POST /v1/events` admits events: grouped, so concurrent ones share a commit.
        self.intake = Intake(
            dispatcher,
            quiet_seconds=self.settings.hold_quiet_seconds,
            max_hold_seconds=self.settings.hold_max_seconds,
        )
        #: Webhook name -> its type's name (`slack`), for `GET /v1/webhooks`.
        self.webhook_types = dict(webhook_types or {})
        #: What the store holds per webhook, for the health figures (`figures.py`).
        self.store_figures = StoreFigures(lambda: dispatcher.store)
        #: The newest events accepted and routed to no webhook (`unrouted.py`).
        self.unrouted = Unrouted()
        self._idempotency: Idempotency | None = None
        self.stopping = False
        self.in_flight = 0
        #: The connections `serve` watches for idleness (`connections.py`), else None.
        self.connections: Connections | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    @classmethod
    def from_config(
        cls,
        config: Config,
        *,
        store: str | None = None,
        workers: bool = True,
        plugin_manager: Any = None,
        **dispatcher_options: Any,
    ) -> Gateway:
        """A gateway for a loaded configuration: its webhooks, `[serve]`, and its store
        (`store` overrides it; SQLite in the current folder when neither names one), opened
        in the role the gateway plays: delivering, or only queueing (`workers=False`).
        Raises `ValueError` for a store it cannot use."""
        pm = plugin_manager or get_plugin_manager()
        hooks = hooks_for(pm)
        url = store or config.store or DEFAULT_STORE
        dispatcher = WebhookDispatcher(
            webhooks=list(config.webhooks),
            store=_store_for(url, workers, hooks.store_backends()),
            plugin_manager=pm,
            **dispatcher_options,
        )
        types = hooks.webhook_types()
        names = {
            webhook.name: type_name
            for webhook in config.webhooks
            for type_name, kind in types.items()
            if type(webhook) is kind
        }
        return cls(dispatcher, config.serve, workers=workers, webhook_types=names)

    def authenticate(self, raw: str) -> Token | None:
        """The token `raw` is, or None. With no token configured (loopback only) every
        caller is `anonymous` with every scope."""
        if not len(self.tokens):
            return _ANONYMOUS
        return self.tokens.authenticate(raw)

    @property
    def idempotency(self) -> Idempotency:
        if self._idempotency is None:
            self._idempotency = Idempotency(
                self.dispatcher.store, self.settings.idempotency_seconds
            )
        return self._idempotency

    async def start(self) -> None:
        await self.dispatcher.start()
        if not len(self.tokens):
            log.warning(
                "gateway_without_tokens",
                reason="no [[serve.tokens]] configured: every local caller has every scope",
            )

    def begin_stopping(self) -> None:
        """New requests are answered 503 from now on."""
        self.stopping = True

    async def requests_done(self, timeout: float) -> bool:
        """Wait until no request is under way (or `timeout`); False when some still are."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def stop_delivering(self, grace: float) -> None:
        """Stop the workers: take nothing new, give what is under way (and, with a store
        that pages, what is queued) up to `grace` seconds, then close. A durable store
        keeps whatever is left for the next start."""
        dispatcher = self.dispatcher
        self.intake.release()  # what the last burst left held goes to the workers now
        self.store_figures.cancel()
        try:
            if self.workers and isinstance(dispatcher.store, StopsConsuming):
                await dispatcher.store.stop_consuming()
        except RuntimeError:  # never started
            pass
        try:
            await dispatcher.close(timeout=grace)
        except TimeoutError as exc:
            log.warning("gateway_left_deliveries", reason=str(exc))
        finally:
            await dispatcher.close(drain=False)

    def _enter(self, protocol: Any) -> None:
        self.in_flight += 1
        self._idle.clear()
        if self.connections is not None:
            self.connections.begin(protocol)

    def _leave(self, protocol: Any) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()
        if self.connections is not None:
            self.connections.end(protocol)


def _store_for(url: str, workers: bool, backends: dict[str, Any]) -> Any:
    if url in ("memory", "memory://"):
        if not workers:
            raise ValueError("without workers the gateway needs a shared store (sqlite, redis)")
        return MemoryStore()
    opened = open_store(url, backends)
    if workers:
        return opened.for_worker() if isinstance(opened, HasWorkerRole) else opened
    if isinstance(opened, HasProducerRole):
        return opened.for_producer()
    return opened


def _caller(request: web.Request, gateway: Gateway, scope: str) -> Token:
    headers = request.headers
    header = headers.get("Authorization")
    if header is not None and len(headers.getall("Authorization")) > 1:
        # Which one counts? A proxy in front may have checked the other: refused.
        raise Problem(
            401,
            "/problems/unauthorized",
            "send one Authorization header, not several",
            headers={"WWW-Authenticate": 'Bearer realm="empathy-webhooks"'},
        )
    if not len(gateway.tokens):
        _only_local(request)
    raw = bearer(header)
    token = gateway.authenticate(raw or "") if (raw or not len(gateway.tokens)) else None
    if token is None:
        raise Problem(
            401,
            "/problems/unauthorized",
            "send a valid token: Authorization: Bearer <token>",
            headers={"WWW-Authenticate": 'Bearer realm="empathy-webhooks"'},
        )
    if not token.allows(scope):
        raise Problem(
            403,
            "/problems/forbidden",
            f"the token {token.name!r} lacks the scope {scope!r} this route needs",
            headers={
                "WWW-Authenticate": f'Bearer realm="empathy-webhooks", error="insufficient_scope", '
                f'scope="{scope}"'
            },
        )
    if token.requests_per_minute:
        wait = gateway.limiter.take(token.name, token.requests_per_minute)
        if wait > 0:
            raise Problem(
                429,
                "/problems/rate-limited",
                f"the token {token.name!r} may make {token.requests_per_minute} requests a "
                "minute; retry later",
                headers={"Retry-After": retry_after(wait)},
            )
    return token


def _only_local(request: web.Request) -> None:
    """A gateway without tokens (loopback only) lets every caller do everything, so it must
    be called by a program on this machine, not by a web page the operator has open: a
    page of another site can post to 127.0.0.1 (a form: replay every dead letter), or rename
    its own host to 127.0.0.1 (DNS rebinding) and read the answers. A browser names that
    site in `Origin` and in `Host`; a program on this machine names neither."""
    host = request.headers.get("Host")
    origin = request.headers.get("Origin")
    if (host is None or _local_host(host)) and (origin is None or _local_origin(origin)):
        return
    raise Problem(
        403,
        "/problems/forbidden",
        "this gateway has no token, so it answers only programs on this machine that call "
        "it by a loopback name (Host: 127.0.0.1, localhost or [::1]), not web pages: "
        "configure [[serve.tokens]] to call it otherwise",
    )


def _local_host(host: str) -> bool:
    """Whether a Host header names this machine: `localhost`, a loopback address, with or
    without a port."""
    name = host.strip().lower()
    if name.startswith("["):  # [::1]:8787
        name = name[1 : name.find("]")] if "]" in name else ""
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    name = name.rstrip(".")
    return name == "localhost" or name.endswith(".localhost") or is_loopback(name)


def _local_origin(origin: str) -> bool:
    scheme, sep, rest = origin.partition("://")
    return bool(sep) and scheme in ("http", "https") and "/" not in rest and _local_host(rest)


def _from_http_error(exc: web.HTTPException) -> Problem:
    if exc.status == 404:
        return Problem(404, "/problems/not-found", "no such route")
    if exc.status == 405:
        allowed = exc.headers.get("Allow", "")
        return Problem(
            405,
            "/problems/method-not-allowed",
            f"this route takes {allowed or 'other methods'}",
            headers={"Allow": allowed},
        )
    if exc.status == 413:
        return Problem(413, "/problems/too-large", "the request body is too large")
    return Problem(exc.status, "about:blank", exc.reason)


def _gone(request: web.Request) -> bool:
    """Whether the client's connection is closed."""
    transport = request.transport
    return transport is None or transport.is_closing()


def _failed(request: web.Request, caller: str | None, exc: Exception) -> web.Response:
    """A mistake in code: logged with its traceback (masked as every line is), a bare 500."""
    log.exception(
        "gateway_request_failed",
        method=request.method,
        path=request.path,
        caller=caller,
        error=redact_text(f"{type(exc).__name__}: {exc}"),
        exc_info=exc,
    )
    return Problem(500, "/problems/server-error", "the gateway failed; see its log").response(
        request.path
    )


def _middleware(gateway: Gateway) -> Any:
    """The one middleware of `gateway`'s application (see the module docstring): the
    gateway is bound here, not looked up through the request's chain of applications."""

    @web.middleware
    async def gateway_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = perf_counter()
        token_name: str | None = None
        status = 500
        protocol = request.protocol
        gateway._enter(protocol)
        try:
            try:
                if gateway.stopping and request.path != "/healthz":
                    raise Problem(
                        503,
                        "/problems/shutting-down",
                        "the gateway is shutting down; retry on another one or after its restart",
                        headers={"Retry-After": "5", "Connection": "close"},
                    )
                match_info = request.match_info
                unmatched = match_info.http_exception
                if unmatched is not None:
                    raise _from_http_error(unmatched)
                scope = required_scope(match_info.handler)
                if scope != PUBLIC:
                    token = _caller(request, gateway, scope)
                    token_name = token.name
                    request[TOKEN] = token
                response = await handler(request)
            except Problem as problem:
                response = problem.response(request.path)
            except web.HTTPException as exc:
                response = _from_http_error(exc).response(request.path)
            except asyncio.CancelledError:
                status = 499  # the client went away
                raise
            except ConnectionResetError as exc:
                if not _gone(request):  # the store's connection, say: as any other error
                    response = _failed(request, token_name, exc)
                else:
                    # The client went away while its body was read: no bug, nobody to answer.
                    response = Problem(400, "about:blank", "the connection was lost").response()
                    response.force_close()
                    status = 499
                    return response
            except Exception as exc:
                response = _failed(request, token_name, exc)
            status = response.status
            return response
        finally:
            gateway._leave(protocol)
            _log_request(
                request.method,
                request.path,
                status,
                token_name,
                round((perf_counter() - started) * 1000, 2),
            )

    return gateway_middleware


def _log_request(
    method: str, path: str, status: int, caller: str | None, duration_ms: float
) -> None:
    """The access line: `gateway_request` with the method, path, status, token name, time."""
    plain = log.plain("info")
    if plain is None:
        # structlog is configured (its processors decide), or nobody listens: then
        # `log.info` makes nothing.
        log.info(
            "gateway_request",
            method=method,
            path=path,
            status=status,
            caller=caller,
            duration_ms=duration_ms,
        )
        return
    # The text the library's processors make of that call (masked, `key=repr(value)`), made
    # directly: a line per request, and going through them was a sixth of the CPU an
    # accepted event cost the gateway.
    plain.info(
        "event='gateway_request' method=%r path=%r status=%r caller=%r duration_ms=%r",
        redact_text(method),
        redact_text(path),
        status,
        None if caller is None else redact_text(caller),
        duration_ms,
    )


def build_app(gateway: Gateway, *, console: bool = True) -> web.Application:
    """The gateway's aiohttp application: every route of `/v1`, health, metrics, OpenAPI,
    and the console's pages at `/` (unless `console=False`). Starting it (aiohttp's
    startup) starts the dispatcher; its cleanup does not stop it: `serve.run_gateway` (or
    the caller) stops requests first, then deliveries."""
    app = web.Application(
        middlewares=[_middleware(gateway)],
        client_max_size=gateway.settings.max_body_bytes,
    )
    app[GATEWAY] = gateway
    add_routes(app, gateway)
    if console:
        # Imported here on purpose, for start-up time: the console (Jinja2, its templates)
        # loads only when an application mounts it, so `from ...gateway import
        # GatewayClient` does not pay for it (about 150 ms of CPU). The console imports
        # the gateway's lower modules, never this one.
        from ..console.app import add_console

        add_console(app, gateway)

    async def on_startup(_: web.Application) -> None:
        await gateway.start()

    app.on_startup.append(on_startup)
    return app
