"""A `redis-server` of a test's own, on a spare loopback port: to restart, kill, flush or
configure without touching a Redis anyone else uses.

    with RedisServer(tmp_path) as server:                      # no persistence
        store = f"{server.url}?prefix=t:"
        ...
        server.restart()                                       # everything is gone
    with RedisServer(tmp_path, "--appendonly", "yes") as server:
        ...
        server.stop(); server.start()                          # an outage, data kept

Needs the `redis-server` binary on PATH (`shutil.which`); `RedisServer.available()` says
whether it is there, so a test can skip (or, in CI, fail) with a clear reason.

`workers_joined(store_url, count, processes)` waits until `count` worker processes have
joined a store's consumer group, and says at once when one of them ended instead.
`delete_prefix(prefix)` deletes a test's own keys from a shared Redis (never a flush).
"""

from __future__ import annotations

import asyncio
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["RedisServer", "delete_prefix", "spare_port", "workers_joined"]

#: How many ports below the kernel's ephemeral range `spare_port` picks from.
_SPARE_SPAN = 8000


def spare_port() -> int:
    """A free loopback port below the kernel's ephemeral range, picked at random.

    Not `bind(("127.0.0.1", 0))`: that hands out ports from the ephemeral range, which every
    outgoing connection and every other test's port 0 draws from too, so a server stopped for
    a while (an outage a test makes) could find its port taken when it starts again."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    first = max(1024, low - _SPARE_SPAN)
    for _ in range(100):
        port = random.randrange(first, low)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free loopback port between {first} and {low}")


async def delete_prefix(
    prefix: str, host: str = "127.0.0.1", port: int = 6379, db: int = 0
) -> None:
    """Delete every key whose name starts with `prefix` (found by SCAN): what a test left on a
    Redis others share, which a FLUSHDB would take from them too."""
    import redis.asyncio as aioredis

    client = aioredis.Redis(host=host, port=port, db=db)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        for start in range(0, len(keys), 1000):
            await client.delete(*keys[start : start + 1000])
    finally:
        await client.aclose()


async def workers_joined(
    store_url: str, count: int, processes: Iterable[Any] = (), timeout: float = 30.0
) -> list[str]:
    """The names of the store's workers (its consumer group's consumers) once there are
    `count`. `processes` (`asyncio.subprocess.Process` or `subprocess.Popen`) are the
    workers being waited for: one that ends first is an `AssertionError` naming its pid and
    exit code at once, not a wait for the whole `timeout` (`TimeoutError`, saying who joined).
    """
    import redis.asyncio as aioredis

    from .store import GROUP, open_redis_store

    stream = open_redis_store(store_url).stream
    client = aioredis.Redis.from_url(store_url.split("?", 1)[0], decode_responses=True)
    processes = list(processes)
    names: list[str] = []
    try:
        async with asyncio.timeout(timeout):
            while True:
                try:
                    names = [row["name"] for row in await client.xinfo_consumers(stream, GROUP)]
                except Exception:
                    names = []  # no stream yet: no worker has opened the store
                if len(names) >= count:
                    return names
                for proc in processes:
                    poll = getattr(proc, "poll", None)  # subprocess.Popen's; asyncio's has none
                    ended = poll() if poll is not None else proc.returncode
                    if ended is not None:
                        raise AssertionError(
                            f"worker process {proc.pid} ended (exit code {ended}) before "
                            f"{count} workers joined {stream!r} (joined: {names})"
                        )
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise TimeoutError(
            f"{count} workers did not join {stream!r} within {timeout} s (joined: {names})"
        ) from None
    finally:
        await client.aclose()


class RedisServer:
    """A private `redis-server`: no snapshots, no append-only file unless `options` ask for
    one, its files in `folder`. `options` are given to the server as they are
    (`"--maxmemory", "10mb"`)."""

    def __init__(self, folder: str | Path, *options: str) -> None:
        self.folder = Path(folder)
        self.options = options
        self.port = spare_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> bool:
        return shutil.which("redis-server") is not None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15.0) -> None:
        """Start it and wait until it says it accepts connections.

        Its own log says so, not a PING: while it was stopped, anything else may have taken
        its port (another test's server), and a PING answered there would send a test's
        workers to an empty server, an outage that reads as data lost."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is not installed (not on PATH)")
        log = self.folder / f"redis-{self.port}.log"
        log.unlink(missing_ok=True)
        # The server binary found on PATH, with this object's own options: no outside input.
        self.proc = subprocess.Popen(  # noqa: S603
            [
                *(binary, "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.folder)),
                *("--logfile", str(log)),
                *self.options,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            said = log.read_text(errors="replace") if log.exists() else ""
            if "Ready to accept connections" in said:
                return
            if self.proc.poll() is not None:
                self.proc = None
                raise RuntimeError(
                    f"the private redis-server on port {self.port} exited at start: "
                    + (said.strip().splitlines() or ["(nothing logged)"])[-1]
                )
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"the private redis-server on port {self.port} did not start")

    def stop(self) -> None:
        """Kill it (SIGKILL: what a crash loses, it loses; an append-only file keeps the rest)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
