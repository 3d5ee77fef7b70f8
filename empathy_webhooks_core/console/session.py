"""Console sessions: who logged in, with which token's scopes, until when.

A session lives only in this process's memory (a restart logs everyone out, which is the
safe way to fail): its id is 32 random bytes, the cookie holds only that id, and the token
the operator typed is never kept, only its name and scopes. Each session has its own CSRF
token, compared in constant time on every POST.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable

import attrs

from ..gateway.auth import Token

__all__ = ["SESSION_COOKIE", "Session", "SessionTable"]

#: The cookie holding a session id (HttpOnly, SameSite=Strict, Secure over https).
SESSION_COOKIE = "ew_console_session"
#: How long a session lasts from its login, whatever happens meanwhile.
SESSION_SECONDS = 8 * 3600
#: Sessions kept at most: a flood of logins drops the oldest, never fills the memory.
MAX_SESSIONS = 1000


@attrs.frozen(repr=False)
class Session:
    """A logged-in operator: the token's name and scopes, the form token, the expiry."""

    session_id: str
    token: Token
    csrf: str
    expires_at: float

    def __repr__(self) -> str:  # the id and the CSRF token are credentials
        return f"Session(token={self.token.name!r})"

    def can(self, scope: str) -> bool:
        return self.token.allows(scope)

    def csrf_matches(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(
            presented.encode("utf-8", "surrogateescape"), self.csrf.encode()
        )


class SessionTable:
    """The sessions of one console, by id."""

    def __init__(
        self, lifetime: float = SESSION_SECONDS, clock: Callable[[], float] = time.time
    ) -> None:
        self._lifetime = lifetime
        self._clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def __repr__(self) -> str:
        return f"SessionTable({len(self)} sessions)"

    def open(self, token: Token) -> Session:
        """A new session for a caller who presented `token`."""
        session = Session(
            session_id=secrets.token_urlsafe(32),
            token=token,
            csrf=secrets.token_urlsafe(32),
            expires_at=self._clock() + self._lifetime,
        )
        self._sessions[session.session_id] = session
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session with this id, or None (unknown or expired: then forgotten)."""
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        if session.expires_at <= self._clock():
            del self._sessions[session_id]
            return None
        return session

    def close(self, session_id: str | None) -> None:
        if session_id:
            self._sessions.pop(session_id, None)
