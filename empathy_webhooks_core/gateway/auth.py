"""Who is calling: bearer tokens, their scopes, and each token's rate limit.

A presented token is hashed (SHA-256) and compared with every configured hash in constant
time (`hmac.compare_digest`, and the whole table is always walked), so neither the answer
nor its timing tells how much of a token was right. Only hashes stay in memory: a token
given through the environment is hashed at start-up. Logs and answers name a token by its
`name`, never by its value.

Routes declare what they need with `requires(scope)` (or `public`); a route that declares
nothing needs a valid token of any scope, so a route added without thought is never open.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import attrs

from ..config.serve import SCOPES, TokenConfig
from ..redaction import register_secrets

__all__ = [
    "SCOPES",
    "RateLimiter",
    "Token",
    "TokenTable",
    "bearer",
    "public",
    "required_scope",
    "requires",
]

F = TypeVar("F", bound=Callable[..., Any])

#: Marks on a handler: the scope it needs, or that it is open.
_SCOPE_ATTR = "_gateway_scope"
PUBLIC = "public"
ANY_SCOPE = "any"


@attrs.frozen
class Token:
    """An authenticated caller: the token's name (what logs show) and its scopes."""

    name: str
    scopes: frozenset[str]
    requests_per_minute: int | None = None

    def allows(self, scope: str) -> bool:
        """Whether this token may use a route needing `scope` (`admin` includes all)."""
        return scope == ANY_SCOPE or scope in self.scopes or "admin" in self.scopes


class TokenTable:
    """The configured tokens, by hash. `authenticate(raw)` is the one way in."""

    def __init__(self, tokens: Iterable[TokenConfig], default_rate: int | None = None) -> None:
        self._entries: list[tuple[bytes, Token]] = []
        for config in tokens:
            if config.token is not None:
                register_secrets([config.token])  # masked in every later log line
            self._entries.append(
                (
                    config.digest,
                    Token(
                        config.name,
                        frozenset(config.scopes),
                        config.requests_per_minute or default_rate,
                    ),
                )
            )

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"TokenTable({[token.name for _, token in self._entries]!r})"

    def authenticate(self, raw: str) -> Token | None:
        """The token whose hash matches `raw`'s, or None."""
        digest = hashlib.sha256(raw.encode("utf-8", "surrogateescape")).digest()
        found: Token | None = None
        for expected, token in self._entries:
            # No early exit: the time taken does not depend on which entry matched.
            if hmac.compare_digest(digest, expected):
                found = token
        return found


def bearer(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


#: The most buckets a gateway keeps (one per token, one per address trying console logins).
_MAX_BUCKETS = 10_000


class RateLimiter:
    """Requests per minute per token: a token bucket holding a minute's worth of requests,
    refilled continuously. `take(name, rate)` is 0 when a request may go, else the seconds
    until one may."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, name: str, per_minute: int) -> float:
        now = self._clock()
        level, at = self._buckets.get(name, (float(per_minute), now))
        level = min(float(per_minute), level + (now - at) * per_minute / 60.0)
        if len(self._buckets) >= _MAX_BUCKETS and name not in self._buckets:
            self._forget(now)
        if level >= 1.0:
            self._buckets[name] = (level - 1.0, now)
            return 0.0
        self._buckets[name] = (level, now)
        return (1.0 - level) * 60.0 / per_minute

    def _forget(self, now: float) -> None:
        """Console logins keep a bucket per client address, so the table would grow with
        every address that ever tried. A bucket untouched for a minute is full again, the
        same as none: those go. If addresses are still too many, the least recently used go
        too (their limit starts over), down to half, so this runs once per many new names."""
        fresh = [(at, name) for name, (_, at) in self._buckets.items() if now - at < 60.0]
        keep = {name for _, name in sorted(fresh)[-(_MAX_BUCKETS // 2) :]}
        self._buckets = {name: v for name, v in self._buckets.items() if name in keep}


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


def requires(scope: str) -> Callable[[F], F]:
    """Mark a handler as needing `scope` (`events:write`, `read`, `admin`)."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r} (known: {', '.join(SCOPES)})")

    def mark(handler: F) -> F:
        setattr(handler, _SCOPE_ATTR, scope)
        return handler

    return mark


def public(handler: F) -> F:
    """Mark a handler as open to anyone (health checks)."""
    setattr(handler, _SCOPE_ATTR, PUBLIC)
    return handler


def required_scope(handler: Any) -> str:
    """What a handler needs: a scope, `public`, or `any` (a valid token) when unmarked."""
    return str(getattr(handler, _SCOPE_ATTR, ANY_SCOPE))
