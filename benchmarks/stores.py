"""Events per second through each store on the same workload, in one run.

    python benchmarks/stores.py --events 5000

The workload: N events emitted by a few concurrent producers (as a web server would) to one
`CustomWebhook` at a receiver in its own process, timed from the first emit until every
delivery was acknowledged. Stores: memory, SQLite (WAL, synchronous NORMAL and FULL), Redis
with a worker in the same process, and Redis with 1, 2 and 4 worker processes (the producer
only XADDs; workers are `run_worker` in child processes). Redis rows are skipped when no
server answers on 127.0.0.1:6379. The suite never times anything; this is run by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import secrets
import socket
import sys
import tempfile
import time
from typing import Any

from _receiver import free_port, serve

from empathy_webhooks_core import CustomWebhook, WebhookDispatcher

REDIS = "redis://127.0.0.1:6379/0"
PRODUCERS = 8


def _hook(base: str, concurrency: int) -> CustomWebhook:
    return CustomWebhook(
        name="bench", url=f"{base}/bench", max_concurrency=concurrency, circuit_breaker=False
    )


def _data(n: int) -> dict[str, object]:
    return {"prediction": "Auth deployment may conflict with user-service v2.1", "n": n}


async def _emit_all(dispatcher: WebhookDispatcher, events: int) -> None:
    async def producer(start: int) -> None:
        for n in range(start, events, PRODUCERS):
            await dispatcher.emit("prediction", _data(n), empathy_level=4)

    await asyncio.gather(*(producer(p) for p in range(PRODUCERS)))


async def embedded(base: str, events: int, concurrency: int, store: str | None) -> float:
    """Emit and deliver in this process (memory, SQLite)."""
    dispatcher = WebhookDispatcher(webhooks=[_hook(base, concurrency)], store=store)
    await dispatcher.start()
    started = time.perf_counter()
    await _emit_all(dispatcher, events)
    await dispatcher.drain()
    elapsed = time.perf_counter() - started
    delivered = dispatcher.get_webhook_stats("bench")["delivered_count"]
    await dispatcher.close()
    assert delivered == events, delivered
    return events / elapsed


async def _wait_empty(url: str) -> None:
    """Until every entry was acknowledged (workers XDEL what they acknowledge)."""
    import redis.asyncio as aioredis

    prefix = url.split("prefix=")[1]
    client = aioredis.Redis.from_url(REDIS)
    try:
        while await client.xlen(f"{prefix}deliveries"):  # noqa: ASYNC110 - polls Redis
            await asyncio.sleep(0.005)
    finally:
        await client.aclose()


async def _cleanup(url: str) -> None:
    import redis.asyncio as aioredis

    prefix = url.split("prefix=")[1]
    client = aioredis.Redis.from_url(REDIS)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def redis_in_process(base: str, events: int, concurrency: int) -> float:
    from empathy_webhooks_core.worker import run_worker

    url = f"{REDIS}?prefix=bench:{secrets.token_hex(3)}:"
    hook = _hook(base, concurrency)
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker([hook], url, stop=stop))
    producer = WebhookDispatcher(webhooks=[hook], store=url)
    await producer.start()
    started = time.perf_counter()
    await _emit_all(producer, events)
    await _wait_empty(url)
    elapsed = time.perf_counter() - started
    stop.set()
    await worker
    await producer.close()
    await _cleanup(url)
    return events / elapsed


def _worker_process(url: str, base: str, concurrency: int) -> None:
    from empathy_webhooks_core.worker import run_worker

    asyncio.run(run_worker([_hook(base, concurrency)], url))


async def _consumers(url: str) -> int:
    import redis.asyncio as aioredis

    prefix = url.split("prefix=")[1]
    client = aioredis.Redis.from_url(REDIS)
    try:
        return len(await client.xinfo_consumers(f"{prefix}deliveries", "workers"))
    except Exception:
        return 0
    finally:
        await client.aclose()


async def redis_workers(base: str, events: int, concurrency: int, workers: int) -> float:
    url = f"{REDIS}?prefix=bench:{secrets.token_hex(3)}:"
    spawn = multiprocessing.get_context("spawn")
    procs = [
        spawn.Process(target=_worker_process, args=(url, base, concurrency)) for _ in range(workers)
    ]
    producer = WebhookDispatcher(webhooks=[_hook(base, concurrency)], store=url)
    await producer.start()  # creates the group
    for proc in procs:
        proc.start()
    try:
        while await _consumers(url) < workers:  # noqa: ASYNC110 - polls Redis
            await asyncio.sleep(0.05)
        started = time.perf_counter()
        await _emit_all(producer, events)
        await _wait_empty(url)
        elapsed = time.perf_counter() - started
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.join(10)
        await producer.close()
        await _cleanup(url)
    return events / elapsed


def _redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=16, help="per worker")
    parser.add_argument("--rounds", type=int, default=3, help="best of this many")
    args = parser.parse_args()

    port = free_port()
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    server = ctx.Process(target=serve, args=(port, ready))
    server.start()
    ready.wait(10)
    base = f"http://127.0.0.1:{port}"
    tmp = tempfile.mkdtemp(prefix="empathy-bench-")
    results: dict[str, float] = {}

    def run(label: str, make: Any) -> None:
        best = max(asyncio.run(make()) for _ in range(args.rounds))
        results[label] = best
        print(f"  {label:<28} {best:9.0f} events/s", flush=True)

    try:
        n, c = args.events, args.concurrency
        print(
            f"{n} events, one webhook, {PRODUCERS} concurrent producers, concurrency {c} "
            f"per worker, best of {args.rounds}, {os.cpu_count()} CPUs, Python "
            f"{sys.version_info.major}.{sys.version_info.minor}"
        )
        run("memory", lambda: embedded(base, n, c, None))
        counter = iter(range(1000))
        run(
            "sqlite (WAL, NORMAL)",
            lambda: embedded(base, n, c, f"sqlite:///{tmp}/n{next(counter)}.db"),
        )
        run(
            "sqlite (WAL, FULL)",
            lambda: embedded(base, n, c, f"sqlite:///{tmp}/f{next(counter)}.db?synchronous=full"),
        )
        if _redis_up():
            run("redis (worker in process)", lambda: redis_in_process(base, n, c))
            for workers in (1, 2, 4):
                run(
                    f"redis, {workers} worker process{'es' if workers > 1 else ''}",
                    lambda w=workers: redis_workers(base, n, c, w),  # type: ignore[misc]
                )
        else:
            print("  redis: skipped, no server answers on 127.0.0.1:6379")
        if "memory" in results and "sqlite (WAL, NORMAL)" in results:
            ratio = results["sqlite (WAL, NORMAL)"] / results["memory"]
            print(f"  sqlite / memory: {ratio:.2f} (goal >= 0.50)")
    finally:
        server.kill()
        server.join()


if __name__ == "__main__":
    main()
