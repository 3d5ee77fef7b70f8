"""Logging in with a gateway token, and out.

The login form has its own CSRF token (a cookie and a hidden field that must match), since
there is no session yet to hold one. A token that is wrong is refused with a message that
never repeats it; one without `read` or `admin` is refused by name. Attempts are rate
limited per address, so the form is no faster an oracle than the API.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets

from aiohttp import web

from .guard import form_value, page, session_of
from .keys import CONSOLE
from .render import render
from .session import SESSION_COOKIE

__all__ = ["log_in", "log_out", "login_page"]

_LOGIN_CSRF_COOKIE = "ew_console_login"
#: Login attempts one address may make a minute.
_ATTEMPTS_PER_MINUTE = 30


def _safe_next(raw: str | None) -> str:
    """Where to go after logging in: a path of this console, never another site. Only
    visible ASCII (what the guard's quoted path is): a browser drops a tab or line break
    from a URL, so `/<TAB>/evil.example` would go to `//evil.example`, and a line break
    in the Location header is refused by aiohttp after the answer was chosen."""
    if (
        not raw
        or not raw.startswith("/")
        or raw.startswith("//")
        or "\\" in raw
        or not all("!" <= char <= "~" for char in raw)
    ):
        return "/"
    return raw


def _client(remote: str | None) -> str:
    """Whose attempts a login counts against: the address, or for IPv6 its /64, which one
    subscriber holds whole (2^64 addresses: a limit per address would limit nobody)."""
    try:
        address = ipaddress.ip_address(remote or "")
    except ValueError:
        return str(remote)
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def set_cookie(response: web.StreamResponse, request: web.Request, name: str, value: str) -> None:
    """A cookie no script reads, sent to this site only, over https when served so."""
    response.set_cookie(
        name, value, httponly=True, samesite="Strict", secure=request.secure, path="/"
    )


def _form(request: web.Request, status: int = 200, error: str | None = None) -> web.Response:
    gateway = request.config_dict[CONSOLE].gateway
    form_token = secrets.token_urlsafe(32)
    response = render(
        request,
        "login.html",
        status=status,
        login_csrf=form_token,
        error=error,
        next=_safe_next(request.query.get("next")),
        no_tokens=not len(gateway.tokens),
    )
    set_cookie(response, request, _LOGIN_CSRF_COOKIE, form_token)
    return response


@page(None)
async def login_page(request: web.Request) -> web.StreamResponse:
    if session_of(request) is not None:
        return web.Response(status=303, headers={"Location": "/"})
    return _form(request)


@page(None)
async def log_in(request: web.Request) -> web.StreamResponse:
    console = request.config_dict[CONSOLE]
    gateway = console.gateway
    presented = await form_value(request, "csrf")
    expected = request.cookies.get(_LOGIN_CSRF_COOKIE)
    if not (
        presented
        and expected
        and hmac.compare_digest(
            presented.encode("utf-8", "surrogateescape"),
            expected.encode("utf-8", "surrogateescape"),
        )
    ):
        return _form(request, 403, "This form has expired: try again.")
    if gateway.limiter.take(f"console-login:{_client(request.remote)}", _ATTEMPTS_PER_MINUTE) > 0:
        return _form(request, 429, "Too many attempts: wait a minute and try again.")
    raw = (await form_value(request, "token") or "").strip()
    if not len(gateway.tokens):
        return _form(request, 403, "No token is configured: see the note below.")
    token = gateway.tokens.authenticate(raw) if raw else None
    if token is None:
        return _form(request, 401, "That token is not valid.")
    if not token.allows("read"):
        return _form(
            request,
            403,
            f"The token {token.name!r} cannot read: the console needs a read or admin token.",
        )
    session = console.sessions.open(token)
    target = _safe_next(await form_value(request, "next"))
    response = web.Response(status=303, headers={"Location": target})
    set_cookie(response, request, SESSION_COOKIE, session.session_id)
    response.del_cookie(_LOGIN_CSRF_COOKIE, path="/")
    return response


@page("any")
async def log_out(request: web.Request) -> web.StreamResponse:
    session = session_of(request)
    if session is not None:
        request.config_dict[CONSOLE].sessions.close(session.session_id)
    response = web.Response(status=303, headers={"Location": "/login"})
    response.del_cookie(SESSION_COOKIE, path="/")
    return response
