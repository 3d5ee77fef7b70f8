"""Who may see a console page and what every answer carries.

`page(scope)` wraps a console handler: it finds the session from its cookie (no session: a
GET goes to the login page, anything else gets 401), refuses a POST whose CSRF token or
Origin is wrong (403) and a session whose token lacks `scope` (403), then puts the security
headers on the answer. The gateway's own middleware sees these handlers as public: the
console authenticates with its cookie, not with a bearer token.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from ..gateway import bodies
from ..gateway.auth import public
from .headers import CSP, secure
from .keys import CONSOLE, SESSION, session_of
from .render import refuse
from .session import SESSION_COOKIE, Session

__all__ = ["CSP", "SESSION", "form_value", "page", "secure", "session_of"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _same_origin(request: web.Request) -> bool:
    """A browser sends Origin with every POST; one naming another site is a forgery even
    when it somehow carries the token. No Origin (older clients), or `null` (what Chromium
    sends for a form on a page with `Referrer-Policy: no-referrer`): the CSRF token and the
    SameSite=Strict cookie decide."""
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return True
    return origin == f"{request.scheme}://{request.host}"


class _FormTimeout(Exception):
    """The posted form did not arrive within `bodies.BODY_SECONDS` (the guard answers 408)."""


async def form_value(request: web.Request, name: str) -> str | None:
    """A text field of the posted form (None when absent, a file, or the form is not one
    that parses: a hostile body is a refused form, not a server error). A form that does
    not arrive within `bodies.BODY_SECONDS` of its headers ends the request (408), as a
    trickled API body does: the login form is open to anyone, and would otherwise hold its
    connection as long as the sender liked."""
    try:
        async with asyncio.timeout(bodies.BODY_SECONDS):
            form = await request.post()
    except TimeoutError:
        raise _FormTimeout from None
    except (ValueError, LookupError, HttpProcessingError):  # bad encoding, charset, multipart
        return None
    value = form.get(name)
    return value if isinstance(value, str) else None


def page(scope: str | None) -> Callable[[Handler], Handler]:
    """Guard a console handler: `scope` None for the pages open to anyone (login, static
    files), else the scope a session's token needs (`read`, `admin`, or `any`)."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            console_sessions = request.config_dict[CONSOLE].sessions
            session = console_sessions.get(request.cookies.get(SESSION_COOKIE))
            request[SESSION] = session
            try:
                response = await _answer(request, session, scope, handler)
            except _FormTimeout:
                response = refuse(
                    request,
                    408,
                    "The form did not arrive in time: reload the page and send it again.",
                )
                response.force_close()
            if not response.prepared:
                secure(response.headers)
            return response

        public(guarded)
        return guarded

    return wrap


async def _answer(
    request: web.Request, session: Session | None, scope: str | None, handler: Handler
) -> web.StreamResponse:
    """The answer once the session is known: the handler's, or a refusal."""
    response: web.StreamResponse
    if scope is None:
        response = await handler(request)
    elif session is None:
        if request.method == "GET" and not request.path.endswith("/live"):
            target = "/login?next=" + quote(request.path_qs, safe="")
            response = web.Response(status=303, headers={"Location": target})
        else:
            response = refuse(request, 401, "Your session has ended: log in again.")
    elif request.method == "POST" and not (
        _same_origin(request) and session.csrf_matches(await form_value(request, "csrf"))
    ):
        response = refuse(
            request,
            403,
            "This form has expired or did not come from this console: reload the "
            "page and try again.",
        )
    elif not session.can(scope):
        response = refuse(
            request,
            403,
            f"The token {session.token.name!r} cannot do this: it needs the "
            f"{scope!r} scope. Log in with an admin token.",
        )
    else:
        response = await handler(request)
    return response
