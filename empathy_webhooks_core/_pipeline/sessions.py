"""The HTTP sessions a dispatcher's deliveries share: one (the user's, or its own), and for
webhooks that block private addresses a second whose connector refuses them (`netguard`)."""

from __future__ import annotations

import sys

import aiohttp

from .._netguard import guarded_connector
from .._transport import Transport
from .._version import __version__
from ..webhooks import Webhook

__all__ = ["MAX_CONNECTIONS", "USER_AGENT", "Sessions"]

#: The most connections a dispatcher's session may open at once.
MAX_CONNECTIONS = 10_000

USER_AGENT = (
    f"empathy-webhooks/{__version__} aiohttp/{aiohttp.__version__} "
    f"python/{sys.version_info.major}.{sys.version_info.minor}"
)


class Sessions:
    """The shared session (given, or opened by `open` and then closed by `close`) and the
    guarded one, opened on first use.

    The core's own requests on a session this opens go through a `Transport` (a lean
    keep-alive HTTP/1.1 client, same connection limit) attached to it; plugins that call the
    session themselves use aiohttp as before. The guarded session and a session the user
    gives are aiohttp's alone: the guard lives in aiohttp's connector, and a user's session
    carries the user's choices (a CA, a proxy, a resolver).

    The sessions this opens keep no cookies (`DummyCookieJar`): a webhook sender has no
    business replaying to one receiver what another (or the same) set, and a jar is work on
    every request and answer. A session the user gives keeps its own jar."""

    def __init__(self, session: aiohttp.ClientSession | None, max_connections: int) -> None:
        self._session = session
        self._own = session is None
        self._guarded: aiohttp.ClientSession | None = None
        self._transport: Transport | None = None
        self._max_connections = max_connections

    @property
    def shared(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("the dispatcher has not started")
        return self._session

    def open(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections),
                headers={"User-Agent": USER_AGENT},
                cookie_jar=aiohttp.DummyCookieJar(),
            )
            self._transport = Transport(self._max_connections, USER_AGENT)
            self._transport.attach(self._session)

    def for_webhook(self, webhook: Webhook) -> aiohttp.ClientSession:
        """The shared session, or for webhooks that block private addresses a guarded one."""
        if not webhook.block_private_addresses:
            return self.shared
        if self._guarded is None:
            self._guarded = aiohttp.ClientSession(
                connector=guarded_connector(self._max_connections),
                headers={"User-Agent": USER_AGENT},
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._guarded

    async def close(self, *, forget: bool = False) -> None:
        """Close what this dispatcher opened (never a session the user gave). `forget` (a
        failed start) leaves nothing behind, so a later start opens afresh."""
        if self._transport is not None:
            await self._transport.close()
            self._transport = None
        if self._own and self._session is not None:
            await self._session.close()
            if forget:
                self._session = None
        if self._guarded is not None:
            await self._guarded.close()
            if forget:
                self._guarded = None
