"""The gateway: `empathy-webhooks serve`, an authenticated HTTP API in front of a dispatcher,
so any service, in any language, emits events (see docs/gateway.md).

    from empathy_webhooks_core.gateway import Gateway, build_app

    gateway = Gateway(dispatcher, config.serve)
    app = build_app(gateway)              # an aiohttp.web.Application

`GatewayClient(url, token).emit(...)` emits to a gateway with `WebhookDispatcher.emit`'s
signature. One module per job: `app` (the application, its middleware and lifecycle),
`routes`, `keys` (where a request finds the gateway and its caller), `net` (addresses),
`auth` (tokens, scopes, rate limits), `bodies` (reading and checking requests),
`idempotency`, `problems` (RFC 9457 errors), `openapi`, `serve` (listening, SIGTERM,
`running`), `connections` (closing those that hold no request) and `client`. Nothing
here is imported by the core: the gateway costs nothing to a library user.
"""

from __future__ import annotations

from .app import GATEWAY, TOKEN, Gateway, build_app, is_loopback
from .auth import Token, TokenTable, public, requires
from .client import GatewayClient, GatewayError
from .problems import Problem
from .serve import run_gateway, running

__all__ = [
    "GATEWAY",
    "TOKEN",
    "Gateway",
    "GatewayClient",
    "GatewayError",
    "Problem",
    "Token",
    "TokenTable",
    "build_app",
    "is_loopback",
    "public",
    "requires",
    "run_gateway",
    "running",
]
