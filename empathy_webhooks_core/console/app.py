"""The console on a gateway's application: its state (`Console`) and its routes.

Pages sit at the root (`/`, `/deliveries`, `/events/{id}`, `/dead-letters`) beside the
gateway's JSON API (`/v1/...`), which is untouched. Route names start with `console-`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from . import actions, assets, live, login, views
from .keys import CONSOLE, Console
from .render import environment

if TYPE_CHECKING:
    from ..gateway.app import Gateway

__all__ = ["CONSOLE", "Console", "add_console"]


def add_console(app: web.Application, gateway: Gateway) -> Console:
    """Mount the console's routes on the gateway's application `app`."""
    console = Console(gateway, environment())
    app[CONSOLE] = console
    router = app.router
    router.add_get("/", views.overview, name="console-overview")
    router.add_get("/login", login.login_page, name="console-login")
    router.add_post("/login", login.log_in, name="console-login")
    router.add_post("/logout", login.log_out, name="console-logout")
    router.add_get("/deliveries", views.deliveries, name="console-deliveries")
    router.add_get("/deliveries/live", live.stream, name="console-live")
    router.add_get("/events/{event_id}", views.event, name="console-event")
    router.add_get("/dead-letters", views.dead_letters, name="console-dead-letters")
    router.add_post(
        "/dead-letters/replay", actions.replay_webhook_letters, name="console-replay-all"
    )
    router.add_post(
        "/dead-letters/{dead_letter_id}/replay", actions.replay_letter, name="console-replay"
    )
    router.add_post("/webhooks/{name}/enable", actions.enable, name="console-enable")
    router.add_get("/static/{name}", assets.asset, name="console-static")
    return console
