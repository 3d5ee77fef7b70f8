"""Templates to HTML: one Jinja2 environment, autoescaping everything (event data and
receivers' answers are untrusted input), with the filters the templates use for times,
durations and JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import jinja2
from aiohttp import web

from ..redaction import redact_value
from .headers import secure
from .keys import CONSOLE, session_of

__all__ = ["environment", "pretty_json", "refuse", "render", "render_fragment"]


def iso(moment: float | None) -> str:
    """`2026-11-30T15:04:05Z`: what a <time datetime> holds."""
    if moment is None:
        return ""
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc(moment: float | None) -> str:
    """`2026-11-30 15:04:05 UTC`: what a page shows before its script runs."""
    if moment is None:
        return ""
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def milliseconds(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f"{seconds * 1000:.0f} ms"


def percent(ratio: float | None) -> str:
    return "–" if ratio is None else f"{ratio * 100:.1f} %"


def pretty_json(value: Any) -> str:
    """Indented JSON with secrets masked (an event may carry a token in its data)."""
    return json.dumps(redact_value(value), indent=2, ensure_ascii=False, default=str)


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("empathy_webhooks_core.console", "templates"),
        autoescape=True,  # every template, whatever its name
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(iso=iso, utc=utc, ms=milliseconds, percent=percent, pretty=pretty_json)
    return env


def _context(request: web.Request, context: dict[str, Any]) -> dict[str, Any]:
    console = request.config_dict[CONSOLE]
    session = session_of(request)
    notice = console.take_notice(session)
    return {
        "session": session,
        "csrf": session.csrf if session is not None else "",
        "can_admin": session is not None and session.can("admin"),
        "path": request.path,
        "notice": notice,
        **context,
    }


def render_fragment(request: web.Request, name: str, **context: Any) -> str:
    env = request.config_dict[CONSOLE].env
    return str(env.get_template(name).render(**context))


def render(request: web.Request, name: str, status: int = 200, **context: Any) -> web.Response:
    env = request.config_dict[CONSOLE].env
    html = env.get_template(name).render(**_context(request, context))
    response = web.Response(status=status, text=html, content_type="text/html", charset="utf-8")
    secure(response.headers)
    return response


def refuse(request: web.Request, status: int, message: str) -> web.Response:
    """An error page (401, 403, 404) saying what to do."""
    return render(request, "error.html", status=status, message=message, status_code=status)
