"""The console's own script, style sheet and icon, served from the package (no build step,
no third-party file)."""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from .guard import page

__all__ = ["asset"]

#: Every file served, with its type: a fixed list, so no path from the URL reaches the disk.
_TYPES = {
    "console.js": "text/javascript",
    "console.css": "text/css",
    "favicon.svg": "image/svg+xml",
}


@page(None)
async def asset(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    kind = _TYPES.get(name)
    if kind is None:
        return web.Response(status=404, text="no such file", content_type="text/plain")
    body = resources.files("empathy_webhooks_core.console").joinpath("static", name).read_bytes()
    response = web.Response(body=body, content_type=kind, charset="utf-8")
    response.headers["Cache-Control"] = "no-cache"
    return response
