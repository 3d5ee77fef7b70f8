"""What every console module reads from a request: the console's state (`CONSOLE`) and the
caller's session (`SESSION`). Here, below `app.py` (which imports the handlers) and
`guard.py`, so the handlers import these without importing what imports them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jinja2
from aiohttp import web

from .session import Session, SessionTable

if TYPE_CHECKING:
    from ..gateway.app import Gateway

__all__ = ["CONSOLE", "SESSION", "Console", "session_of"]

#: Notices kept for sessions that have not shown theirs yet.
_MAX_NOTICES = 10_000


class Console:
    """One console: the gateway it shows, its sessions, its templates, and the one-line
    notice each session sees after an action (replayed, enabled, refused)."""

    def __init__(self, gateway: Gateway, env: jinja2.Environment) -> None:
        self.gateway = gateway
        self.sessions = SessionTable()
        self.env = env
        self._notices: dict[str, tuple[str, str]] = {}

    def __repr__(self) -> str:
        return f"Console({self.sessions!r})"

    def notify(self, session: Session, kind: str, text: str) -> None:
        """Show `text` on the session's next page (`kind`: `ok` or `error`)."""
        self._notices.pop(session.session_id, None)  # the newest last, for the bound below
        self._notices[session.session_id] = (kind, text)
        if len(self._notices) > _MAX_NOTICES:
            # A session that ended before its next page keeps its notice forever: the oldest
            # go, so the table cannot grow with every session that ever acted.
            del self._notices[next(iter(self._notices))]

    def take_notice(self, session: Session | None) -> tuple[str, str] | None:
        if session is None:
            return None
        return self._notices.pop(session.session_id, None)


CONSOLE = web.AppKey("empathy_webhooks_console", Console)

#: Where a handler finds the caller's session (None on the public pages when logged out).
SESSION: Any = (
    web.RequestKey("empathy_webhooks_console_session", object)
    if hasattr(web, "RequestKey")
    else "empathy_webhooks_console_session"
)


def session_of(request: web.Request) -> Session | None:
    return request.get(SESSION)
