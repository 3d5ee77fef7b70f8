"""Where a request finds the gateway and its caller. Here, below `app.py`, so the routes and
the console read them without importing the application that imports them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from .auth import Token

if TYPE_CHECKING:
    from .app import Gateway

__all__ = ["GATEWAY", "TOKEN"]

#: Where the application keeps its `Gateway` (`request.config_dict[GATEWAY]`, sub-apps too).
GATEWAY: web.AppKey[Gateway] = web.AppKey("empathy_webhooks_gateway")

#: Where a handler finds the authenticated caller: `request[TOKEN]` (a `Token`). A typed
#: request key where aiohttp has them (3.12+), else its name.
TOKEN: Any = (
    web.RequestKey("empathy_webhooks_token", Token)
    if hasattr(web, "RequestKey")
    else "empathy_webhooks_token"
)
