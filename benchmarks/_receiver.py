"""The benchmarks' receiver: a plain aiohttp server in its own process, answering 200 `ok`.

`GET /_count` answers how many POSTs it has answered so far, and `GET /_last` that count and the
`time.monotonic()` at which the last of them was answered (the Celery and Redis-worker runs wait
on the first and end their clock at the second: their deliveries are made in other processes,
and Linux's monotonic clock is one clock for every process, so a run ends when its last delivery
was answered, not when a poll happened to notice). A POST to a path under `/stall/`
is never answered (for 10 minutes): the sender's workers stay busy and everything behind them
stays queued, so emit latency and queued memory are measured with the default settings
instead of with a rate limit that changes the lane.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
import time
import urllib.request
from typing import Any

from aiohttp import web


def serve(port: int, ready: Any) -> None:
    """Run in a child process; sets `ready` once listening on 127.0.0.1:`port`."""
    answered = 0
    last_at = 0.0

    async def accept(request: web.Request) -> web.Response:
        nonlocal answered, last_at
        await request.read()
        if request.path.startswith("/stall/"):
            await asyncio.sleep(600)
        answered += 1
        last_at = time.monotonic()
        return web.Response(text="ok")

    async def count(request: web.Request) -> web.Response:
        return web.Response(text=str(answered))

    async def last(request: web.Request) -> web.Response:
        return web.Response(text=f"{answered} {last_at!r}")

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/_count", count)
        app.router.add_get("/_last", last)
        app.router.add_post("/{tail:.*}", accept)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ReceiverProcess:
    """The receiver in a child process, as a context manager: `with ReceiverProcess() as base:`
    gives its base URL (`http://127.0.0.1:PORT`)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        ctx = multiprocessing.get_context("spawn")
        self._ready = ctx.Event()
        self._process = ctx.Process(target=serve, args=(self.port, self._ready), daemon=True)

    def __enter__(self) -> str:
        self._process.start()
        if not self._ready.wait(30):
            self._process.kill()
            raise RuntimeError("the benchmark receiver did not start within 30 s")
        return self.base

    def __exit__(self, *exc_info: object) -> None:
        self._process.kill()
        self._process.join()

    def count(self) -> int:
        """POSTs answered so far."""
        with urllib.request.urlopen(f"{self.base}/_count", timeout=10) as answer:
            return int(answer.read())
