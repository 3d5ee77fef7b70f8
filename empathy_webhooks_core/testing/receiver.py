"""A real HTTP receiver on loopback that records what arrives and injects faults.

For tests of the core and of plugins: it is an aiohttp server on 127.0.0.1, so a test sees
the exact bytes and headers a service would see::

    async with Receiver() as receiver:
        receiver.queue(Reply(status=503, headers={"Retry-After": "0"}), Reply(status=200))
        webhook = CustomWebhook(url=receiver.url("/hook"))
        ...
        assert receiver.requests[-1].json()["event_type"] == "prediction"
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import json
import random
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs
from aiohttp import web

__all__ = ["ReceivedRequest", "Receiver", "Reply"]

#: How long `stop()` lets a handler still running finish before aiohttp cancels it.
_STOP_GRACE = 2.0


@attrs.frozen(kw_only=True)
class Reply:
    """How the receiver answers one request.

    `reset=True` drops the connection without an answer; `delay` stalls before answering
    (longer than the client's timeout, it is a timeout).
    """

    status: int = 200
    body: bytes | str | Any = b""
    headers: Mapping[str, str] = attrs.field(factory=dict)
    delay: float = 0.0
    reset: bool = False

    def encoded(self) -> tuple[bytes, dict[str, str]]:
        headers = dict(self.headers)
        body = self.body
        if isinstance(body, bytes):
            return body, headers
        if isinstance(body, str):
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
            return body.encode(), headers
        headers.setdefault("Content-Type", "application/json")
        return json.dumps(body).encode(), headers


@attrs.frozen(kw_only=True)
class ReceivedRequest:
    """One request as it arrived. Header names are as sent; look them up case-insensitively
    with `header()`."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    answered: int | None = None
    #: Every header line as sent, duplicates included (`headers` keeps the last of each).
    raw_headers: tuple[tuple[str, str], ...] = ()

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return None

    def json(self) -> Any:
        return json.loads(self.body)

    def text(self) -> str:
        return self.body.decode("utf-8")

    @property
    def event_id(self) -> str | None:
        """The event id, from our header or the Standard Webhooks one, else the body."""
        found = self.header("X-Empathy-Event-Id") or self.header("webhook-id")
        if found:
            return found
        try:
            body = self.json()
        except ValueError:
            return None
        return body.get("event_id") if isinstance(body, dict) else None


Handler = Callable[[ReceivedRequest], "Reply | Awaitable[Reply]"]


class Receiver:
    """A loopback HTTP server. Answers 200 unless told otherwise.

    Ways to shape answers, checked in this order for each request: replies queued with
    `queue()` (one each, in order), a `handler` function (a plugin's fake service), random
    faults from `faults()` (seeded), then the default `respond()` answer.
    """

    def __init__(
        self, *, host: str = "127.0.0.1", ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.host = host
        #: A server context (e.g. from ``trustme``) makes it an https receiver.
        self.ssl_context = ssl_context
        self.port: int | None = None
        self.requests: list[ReceivedRequest] = []
        self.handler: Handler | None = None
        self._default = Reply()
        self._queued: collections.deque[Reply] = collections.deque()
        self._fault_rng: random.Random | None = None
        self._fault_table: list[tuple[float, Reply]] = []
        self._runner: web.AppRunner | None = None
        self._arrived = asyncio.Condition()
        self._stopping = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> Receiver:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # A handler still running when the test closes the receiver (one made to hang) is
        # cancelled after a short grace, not aiohttp's 60 s: the test is over by then.
        self._stopping.clear()
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=_STOP_GRACE
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0, ssl_context=self.ssl_context)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            self._stopping.set()  # ends at once the stalls the grace would only cut short
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Receiver:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def url(self, path: str = "/hook") -> str:
        if self.port is None:
            raise RuntimeError("the receiver has not started")
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}{path}"

    # -- behaviour -------------------------------------------------------------------------

    def respond(self, status: int = 200, body: Any = b"", **options: Any) -> None:
        """Set the default answer."""
        self._default = Reply(status=status, body=body, **options)

    def queue(self, *replies: Reply) -> None:
        """Answer the next requests with these replies, in order, then as before."""
        self._queued.extend(replies)

    def faults(
        self, table: Mapping[Reply, float] | list[tuple[Reply, float]], *, seed: int
    ) -> None:
        """Answer at random: each reply with its probability; the rest as by default."""
        items = list(table.items()) if isinstance(table, Mapping) else list(table)
        self._fault_table = [(probability, reply) for reply, probability in items]
        self._fault_rng = random.Random(seed)

    def clear_faults(self) -> None:
        self._fault_table = []
        self._fault_rng = None

    # -- what arrived ----------------------------------------------------------------------

    @property
    def delivered(self) -> list[ReceivedRequest]:
        """Requests answered with a 2xx."""
        return [r for r in self.requests if r.answered is not None and 200 <= r.answered < 300]

    def delivered_event_ids(self) -> collections.Counter[str | None]:
        """How many times each event id was accepted (the de-duplicated view is its keys)."""
        return collections.Counter(r.event_id for r in self.delivered)

    async def wait_for(self, count: int, *, timeout: float = 5.0, delivered: bool = False) -> None:
        """Wait until `count` requests (or 2xx-answered ones) have arrived."""

        def enough() -> bool:
            return len(self.delivered if delivered else self.requests) >= count

        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(enough), timeout)

    # -- serving ---------------------------------------------------------------------------

    def _choose(self, received: ReceivedRequest) -> Reply | Awaitable[Reply] | None:
        if self._queued:
            return self._queued.popleft()
        if self.handler is not None:
            return self.handler(received)
        if self._fault_rng is not None:
            roll = self._fault_rng.random()
            for probability, reply in self._fault_table:
                if roll < probability:
                    return reply
                roll -= probability
        return self._default

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        received = ReceivedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=dict(request.headers),
            body=body,
            raw_headers=tuple(request.headers.items()),
        )
        # Recorded on arrival (a handler may hold its answer); `answered` is set once known.
        index = len(self.requests)
        self.requests.append(received)
        await self._notify()
        choice = self._choose(received)
        reply = await choice if inspect.isawaitable(choice) else choice
        assert isinstance(reply, Reply)
        cut_short = bool(reply.delay) and await self._stall(reply.delay)
        client_gone = request.transport is None or request.transport.is_closing()
        if reply.reset or client_gone or cut_short:
            self.requests[index] = attrs.evolve(received, answered=None)
            await self._notify()
            if request.transport is not None:
                request.transport.abort()
            raise ConnectionResetError("fault injected: connection reset")
        self.requests[index] = attrs.evolve(received, answered=reply.status)
        await self._notify()
        payload, headers = reply.encoded()
        return web.Response(status=reply.status, body=payload, headers=headers)

    async def _stall(self, delay: float) -> bool:
        """Wait `delay` seconds before answering; True if the receiver stopped meanwhile and
        the stall would outlast the stop's grace. aiohttp would cancel such a handler at the
        grace's end, unanswered; it ends now instead, just as unanswered, and the test does
        not wait the grace out."""
        loop = asyncio.get_running_loop()
        wake = loop.time() + delay
        try:
            await asyncio.wait_for(self._stopping.wait(), delay)
        except TimeoutError:
            return False
        left = wake - loop.time()
        if left > _STOP_GRACE:
            return True
        await asyncio.sleep(left)  # it would have answered within the grace: it still does
        return False

    async def _notify(self) -> None:
        async with self._arrived:
            self._arrived.notify_all()
