"""Connections that hold no request are closed after a while: one that never sends a
request, one that sends its request's head a byte at a time (slowloris), one left idle
between requests. Without it a client could hold connections (and this process's file
descriptors) as long as it liked: aiohttp's own keep-alive timeout is an hour by default
and, before aiohttp 3.14, is not armed at all until a connection's first request.

A request's body has its own limit once its head has come (`bodies.BODY_SECONDS`, and the
console's forms read with it); a request under way (a live stream of the console) is never
cut by this. Only `serve` (`start_site`) watches: an application served otherwise costs
nothing here.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

__all__ = ["IDLE_SECONDS", "Connections"]

#: How long a connection may hold no request: from its opening, or from its last request's
#: end, to its next request's head complete. Longer than the idle timeouts clients and
#: proxies keep connections open for (aiohttp's 15 s, nginx's upstream 60 s), so a kept
#: connection is closed by them first, never under a request they are sending.
IDLE_SECONDS = 75.0


class Connections:
    """The connections of the servers being watched: which carry a request now (`begin`,
    `end`: the gateway's middleware), and since when each other one has carried none."""

    def __init__(self, idle_seconds: float = IDLE_SECONDS) -> None:
        self.idle_seconds = idle_seconds
        self._servers: list[Any] = []
        self._busy: dict[Any, int] = {}
        self._since: dict[Any, float] = {}
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"Connections({len(self._since)} idle, {len(self._busy)} busy)"

    def begin(self, protocol: Any) -> None:
        """A request of `protocol`'s connection reached the application."""
        self._busy[protocol] = self._busy.get(protocol, 0) + 1

    def end(self, protocol: Any) -> None:
        """That request was answered: the connection's idle time starts again."""
        left = self._busy.pop(protocol, 1) - 1
        if left > 0:
            self._busy[protocol] = left
        self._since[protocol] = time.monotonic()

    def watch(self, server: Any) -> None:
        """Watch the connections of `server` (an aiohttp `web.Server`, `runner.server`)."""
        self._servers.append(server)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch())

    async def unwatch(self, server: Any) -> None:
        with contextlib.suppress(ValueError):
            self._servers.remove(server)
        if not self._servers and self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.idle_seconds / 4))
            self.sweep(time.monotonic())

    def sweep(self, now: float) -> int:
        """Close each watched connection idle for `idle_seconds` or more; how many were.
        One first seen here counts from now (a tick late at most)."""
        since: dict[Any, float] = {}
        closed = 0
        for server in self._servers:
            for protocol in server.connections:
                if protocol in self._busy:
                    continue
                start = self._since.get(protocol, now)
                if now - start < self.idle_seconds:
                    since[protocol] = start
                    continue
                protocol.force_close()
                closed += 1
        self._since = since  # and the connections gone since are forgotten
        return closed
