"""Throughput of the pipeline against a plain aiohttp loop, emit latency, memory per delivery.

Run by hand (`make bench` or `python benchmarks/throughput.py --events 5000`); the test suite
never times anything. The receiver runs in its own process on loopback, so the figures
compare the sending side only: the same requests (bytes and headers), the same concurrency.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing
import statistics
import time
import tracemalloc

import aiohttp
from _receiver import free_port, serve

from empathy_webhooks_core import USER_AGENT, CustomWebhook, Event, WebhookDispatcher


def _webhooks(base: str, count: int, concurrency: int) -> list[CustomWebhook]:
    return [
        CustomWebhook(
            name=f"hook{n}",
            url=f"{base}/hook{n}",
            max_concurrency=concurrency,
            circuit_breaker=False,
        )
        for n in range(count)
    ]


def _data(n: int) -> dict[str, object]:
    return {
        "prediction": "Auth deployment may conflict with user-service v2.1",
        "confidence": 0.87,
        "recommendation": "Deploy auth behind feature flag",
        "n": n,
    }


async def pipeline(base: str, events: int, webhooks: int, concurrency: int) -> float:
    """Deliveries per second through emit → lanes → HTTP, until drained."""
    dispatcher = WebhookDispatcher(webhooks=_webhooks(base, webhooks, concurrency))
    await dispatcher.start()
    started = time.perf_counter()
    for n in range(events):
        await dispatcher.emit("prediction", _data(n), user_id="bench", empathy_level=4)
    await dispatcher.drain()
    elapsed = time.perf_counter() - started
    delivered = sum(
        dispatcher.get_webhook_stats(name)["delivered_count"] for name in dispatcher.webhook_names()
    )
    await dispatcher.close()
    assert delivered == events * webhooks, delivered
    return delivered / elapsed


async def plain_loop(base: str, events: int, webhooks: int, concurrency: int) -> float:
    """The same requests from a hand-written aiohttp loop with the same concurrency.

    It builds each body as a hand-written sender would (the envelope, `json.dumps`), with the
    same headers the pipeline sends, and no retries, limits or bookkeeping.
    """
    hooks = _webhooks(base, webhooks, concurrency)
    renderer = WebhookDispatcher(webhooks=hooks)
    sample = renderer.render(hooks[0], Event(event_type="prediction", data=_data(0)))
    headers = {k: v for k, v in sample.headers.items() if not k.startswith("X-Empathy")}
    queues: list[asyncio.Queue[Event]] = [asyncio.Queue() for _ in hooks]
    for n in range(events):
        event = Event(event_type="prediction", data=_data(n), user_id="bench", empathy_level=4)
        for queue in queues:
            queue.put_nowait(event)
    done = 0
    connector = aiohttp.TCPConnector(limit=100)
    async with aiohttp.ClientSession(
        connector=connector, headers={"User-Agent": USER_AGENT}
    ) as session:

        async def worker(url: str, queue: asyncio.Queue[Event]) -> None:
            nonlocal done
            while not queue.empty():
                event = queue.get_nowait()
                body = json.dumps(event.to_envelope(), separators=(",", ":")).encode()
                sent = {
                    **headers,
                    "X-Empathy-Event-Id": event.event_id,
                    "X-Empathy-Event-Type": event.event_type,
                }
                async with session.post(url, data=body, headers=sent) as answer:
                    await answer.read()
                    if answer.status == 200:
                        done += 1

        started = time.perf_counter()
        await asyncio.gather(
            *(
                worker(hook.url, q)
                for hook, q in zip(hooks, queues, strict=True)
                for _ in range(concurrency)
            )
        )
        elapsed = time.perf_counter() - started
    assert done == events * webhooks, done
    return done / elapsed


async def emit_latency(queued: int, samples: int) -> tuple[float, float]:
    """Median and p99 of one `emit` (µs) with `queued` deliveries already waiting."""
    # A rate limit of one a minute holds everything in the queue: emit alone is measured.
    webhook = CustomWebhook(url="http://127.0.0.1:9/", rate_limit={"max_requests_per_minute": 1})
    dispatcher = WebhookDispatcher(webhooks=[webhook])
    await dispatcher.start()
    for n in range(queued):
        await dispatcher.emit("prediction", _data(n))
    times = []
    for n in range(samples):
        started = time.perf_counter_ns()
        await dispatcher.emit("prediction", _data(n))
        times.append((time.perf_counter_ns() - started) / 1000)
    await dispatcher.close(drain=False)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99) - 1]


async def memory_per_delivery(count: int) -> float:
    """Bytes held per queued delivery (its event included), measured with tracemalloc."""
    webhook = CustomWebhook(url="http://127.0.0.1:9/", rate_limit={"max_requests_per_minute": 1})
    dispatcher = WebhookDispatcher(webhooks=[webhook])
    await dispatcher.start()
    await dispatcher.emit("prediction", _data(-1))  # warm caches and lazily built objects
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for n in range(count):
        await dispatcher.emit("prediction", _data(n))
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    await dispatcher.close(drain=False)
    return (after - before) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--webhooks", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=16, help="per webhook")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    port = free_port()
    ready = multiprocessing.get_context("spawn").Event()
    server = multiprocessing.get_context("spawn").Process(target=serve, args=(port, ready))
    server.start()
    ready.wait(10)
    base = f"http://127.0.0.1:{port}"
    try:
        pipe, plain = [], []
        for _ in range(args.rounds):  # alternate, so drift on the machine hits both alike
            plain.append(
                asyncio.run(plain_loop(base, args.events, args.webhooks, args.concurrency))
            )
            pipe.append(asyncio.run(pipeline(base, args.events, args.webhooks, args.concurrency)))
        best_pipe, best_plain = max(pipe), max(plain)
        deliveries = args.events * args.webhooks
        print(
            f"{args.events} events x {args.webhooks} webhooks = {deliveries} deliveries, "
            f"concurrency {args.concurrency} per webhook, best of {args.rounds}"
        )
        print(f"  plain aiohttp loop : {best_plain:9.0f} deliveries/s")
        print(f"  dispatcher pipeline: {best_pipe:9.0f} deliveries/s")
        print(f"  ratio              : {best_pipe / best_plain:9.2f}  (goal >= 0.80)")
    finally:
        server.kill()
        server.join()
    median, p99 = asyncio.run(emit_latency(10_000, 2_000))
    print(f"emit() with 10,000 queued: median {median:.1f} us, p99 {p99:.1f} us")
    per = asyncio.run(memory_per_delivery(10_000))
    print(f"memory per queued delivery (event included): {per:.0f} bytes")


if __name__ == "__main__":
    main()
