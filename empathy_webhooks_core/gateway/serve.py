"""Running the gateway: listen, and on `SIGTERM` (or `SIGINT`) stop in order.

Stopping: new requests get 503 at once (`Connection: close`, `Retry-After`), those under way
finish (up to the grace period), the listener closes, then the workers stop taking
deliveries and get the rest of the grace period for what they hold. With a durable store
whatever is not delivered stays queued, and the next start delivers it.

While it listens, a connection that holds no request for `connections.IDLE_SECONDS` (one
that never finishes its request's head, or idles between requests) is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from .._log import get_logger
from . import connections
from .app import Gateway, build_app
from .net import is_loopback

__all__ = ["run_gateway", "running", "start_site", "stop_site"]

log = get_logger()


async def start_site(
    gateway: Gateway, host: str, port: int, app: web.Application | None = None
) -> tuple[web.AppRunner, str]:
    """Start serving; returns the runner and the base URL (with the port chosen, for 0).
    Raises `ValueError` for an address other than loopback when no token is configured."""
    if not is_loopback(host) and not len(gateway.tokens):
        raise ValueError(
            f"refusing to listen on {host} without a token: configure [[serve.tokens]] or "
            "listen on 127.0.0.1"
        )
    runner = web.AppRunner(
        app if app is not None else build_app(gateway),
        access_log=None,  # the middleware logs each request, with the token's name
        handle_signals=False,
        shutdown_timeout=gateway.settings.shutdown_grace_seconds,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        with contextlib.suppress(Exception):
            await gateway.dispatcher.close(drain=False)
        raise
    # Connections holding no request are closed after a while (connections.py).
    if gateway.connections is None:
        gateway.connections = connections.Connections(connections.IDLE_SECONDS)
    gateway.connections.watch(runner.server)
    bound = runner.addresses[0][1] if runner.addresses else port
    shown = f"[{host}]" if ":" in host else host
    return runner, f"http://{shown}:{bound}"


async def stop_site(gateway: Gateway, runner: web.AppRunner) -> None:
    """Stop as on SIGTERM: 503 to new requests, let those under way finish, close the
    listener, then stop the workers (each step within what is left of the grace period)."""
    grace = gateway.settings.shutdown_grace_seconds
    deadline = time.monotonic() + grace
    gateway.begin_stopping()
    log.info("gateway_stopping", in_flight=gateway.in_flight)
    if not await gateway.requests_done(grace):
        log.warning("gateway_requests_cut", in_flight=gateway.in_flight)
    server = runner.server
    await runner.cleanup()
    if gateway.connections is not None:
        await gateway.connections.unwatch(server)
    await gateway.stop_delivering(max(0.0, deadline - time.monotonic()))
    log.info("gateway_stopped")


async def run_gateway(
    gateway: Gateway,
    host: str,
    port: int,
    *,
    stop: asyncio.Event | None = None,
    started: Callable[[str], None] | None = None,
) -> None:
    """Serve until `stop` is set (by default on SIGINT or SIGTERM), then stop in order.
    `started(url)` is called once the gateway listens."""
    own: list[signal.Signals] = []
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
                own.append(sig)
    try:
        runner, url = await start_site(gateway, host, port)
        log.info("gateway_listening", url=url, webhooks=gateway.dispatcher.webhook_names())
        if started is not None:
            started(url)
        await stop.wait()
        await stop_site(gateway, runner)
    finally:
        loop = asyncio.get_running_loop()
        for sig in own:
            loop.remove_signal_handler(sig)


@contextlib.asynccontextmanager
async def running(gateway: Gateway, host: str = "127.0.0.1", port: int = 0) -> Any:
    """The gateway serving on `host:port` for the block (tests, embedding); yields the base
    URL. Leaving stops requests, then deliveries, as `SIGTERM` does."""
    runner, url = await start_site(gateway, host, port)
    try:
        yield url
    finally:
        await stop_site(gateway, runner)
