"""The console: web pages on the gateway (`empathy-webhooks serve`, at `/`) to see every
webhook's health, every delivery and its attempts, and to replay dead letters.

Server-rendered (Jinja2, autoescaped) with one small script of our own for live updates
(Server-Sent Events) and local times. One module per job: `app` (its routes), `keys` (its
state and where a request keeps it), `session` (who is logged in), `guard` (sessions, CSRF
and scopes on every page), `headers` (the security headers), `login`, `views` (the pages),
`actions` (replay, enable), `live` (the SSE stream), `charts` (the overview's SVG bars),
`render` (templates), `assets` (script and style).
"""

from __future__ import annotations

from .app import CONSOLE, Console, add_console

__all__ = ["CONSOLE", "Console", "add_console"]
