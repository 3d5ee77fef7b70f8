"""The benchmarks' receiver: a plain aiohttp server in its own process, answering 200 `ok`."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from aiohttp import web


def serve(port: int, ready: Any) -> None:
    """Run in a child process; sets `ready` once listening on 127.0.0.1:`port`."""

    async def accept(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="ok")

    async def main() -> None:
        app = web.Application()
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
