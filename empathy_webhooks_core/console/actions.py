"""What an admin does from the console: replay dead letters, enable a webhook. Each is the
gateway API's own operation (`gateway.operations`); the answer is a redirect to the dead
letters page with a notice saying what happened."""

from __future__ import annotations

from aiohttp import web

from ..gateway import operations
from ..gateway.problems import Problem
from .guard import form_value, page, session_of
from .keys import CONSOLE

__all__ = ["enable", "replay_letter", "replay_webhook_letters"]


def _back(request: web.Request, kind: str, text: str) -> web.Response:
    session = session_of(request)
    if session is not None:
        request.config_dict[CONSOLE].notify(session, kind, text)
    return web.Response(status=303, headers={"Location": "/dead-letters"})


@page("admin")
async def replay_letter(request: web.Request) -> web.StreamResponse:
    gateway = request.config_dict[CONSOLE].gateway
    letter_id = request.match_info["dead_letter_id"]
    try:
        event = await operations.replay_one(gateway, letter_id)
    except Problem as problem:
        return _back(request, "error", f"Not replayed: {problem.detail}")
    return _back(request, "ok", f"Replayed {letter_id}: event {event.event_id} is queued again.")


@page("admin")
async def replay_webhook_letters(request: web.Request) -> web.StreamResponse:
    gateway = request.config_dict[CONSOLE].gateway
    name = await form_value(request, "webhook")
    if name is None or name not in gateway.dispatcher.webhook_names():
        return _back(request, "error", "Not replayed: no webhook by that name.")
    replayed, skipped = await operations.replay_all(gateway, name)
    text = f"Replayed {len(replayed)} dead letter(s) of {name}"
    if skipped:
        text += f"; {len(skipped)} could not be replayed"
    return _back(request, "ok", text + ".")


@page("admin")
async def enable(request: web.Request) -> web.StreamResponse:
    gateway = request.config_dict[CONSOLE].gateway
    name = request.match_info["name"]
    try:
        operations.enable_webhook(gateway, name)
    except Problem as problem:
        return _back(request, "error", f"Not enabled: {problem.detail}")
    return _back(request, "ok", f"Enabled {name}: its held deliveries go out again.")
