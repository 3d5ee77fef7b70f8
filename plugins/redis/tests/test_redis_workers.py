"""Worker processes sharing one Redis stream: one is SIGKILLed mid-flight and the other
delivers what it held; a rate limit holds across both. Real child processes, real Redis."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from empathy_webhooks_redis import RedisStore
from empathy_webhooks_redis.testing import workers_joined

from empathy_webhooks_core import CustomWebhook, WebhookDispatcher
from empathy_webhooks_core.testing import ReceivedRequest, Receiver, Reply

WORKER = r"""
import asyncio, json, sys
from empathy_webhooks_core import CustomWebhook
from empathy_webhooks_core.worker import run_worker

url, hook_url, name, rate = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
breaker = json.loads(sys.argv[5])
hook = CustomWebhook(
    name="h", url=hook_url, headers={"X-Worker": name}, max_concurrency=4,
    retry_policy={"initial_delay_seconds": 0.001, "max_delay_seconds": 0.01, "max_retries": 100},
    rate_limit={"max_requests_per_second": rate} if rate else None,
    circuit_breaker=breaker,
)
asyncio.run(run_worker([hook], url, grace_seconds=2))  # SIGTERM stops it
"""


async def spawn_worker(
    tmp_path: Path,
    url: str,
    hook_url: str,
    name: str,
    rate: int = 0,
    breaker: dict[str, float] | bool = False,
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        # -c, not a file rewritten per spawn: a child still starting read it truncated and ran
        # nothing (exit 0, a worker that never joined).
        "-P",
        "-c",
        WORKER,
        url,
        hook_url,
        name,
        str(rate),
        json.dumps(breaker),
        env=dict(os.environ),
    )


async def until(condition: object, timeout: float = 30) -> None:
    assert callable(condition)
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - answers land in the receiver's list
            await asyncio.sleep(0.02)


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 15) in (0, -signal.SIGKILL)


async def test_a_worker_killed_mid_flight_leaves_nothing_undelivered(
    tmp_path: Path, redis_url: str, webhook_receiver: Receiver
) -> None:
    url = redis_url + "&visibility_timeout=0.5&window=8"
    release = asyncio.Event()

    async def handler(request: ReceivedRequest) -> Reply:
        # Worker a's requests hang until it is dead: it dies holding deliveries in flight.
        if request.header("X-Worker") == "a":
            await release.wait()
        return Reply(status=200)

    webhook_receiver.handler = handler
    hook_url = webhook_receiver.url("/h")
    # b joins once a holds a full window: started together, b (whose answers come at once)
    # could take all 60 before a had read its fourth, a worker with deliveries under way
    # reading less often than one with none.
    a = await spawn_worker(tmp_path, url, hook_url, "a")
    b: asyncio.subprocess.Process | None = None
    try:
        await workers_joined(url, 1, [a])
        hook = CustomWebhook(name="h", url=hook_url)
        async with WebhookDispatcher(webhooks=[hook], store=url) as producer:
            events = [await producer.emit("prediction", {"n": n}) for n in range(60)]

        def held_by_a() -> int:
            return sum(r.header("X-Worker") == "a" for r in webhook_receiver.requests)

        await until(lambda: held_by_a() >= 4)
        b = await spawn_worker(tmp_path, url, hook_url, "b")
        await workers_joined(url, 2, [a, b])
        a.send_signal(signal.SIGKILL)
        assert await a.wait() == -signal.SIGKILL
        release.set()
        wanted = {e.event_id for e in events}
        await until(lambda: set(webhook_receiver.delivered_event_ids()) >= wanted)
        # a delivered nothing; b delivered everything, a's held deliveries included.
        delivered_by = {r.header("X-Worker") for r in webhook_receiver.delivered}
        assert delivered_by == {"b"}
        assert set(webhook_receiver.delivered_event_ids()) == wanted
    finally:
        procs = [proc for proc in (a, b) if proc is not None]
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
        await asyncio.gather(*(proc.wait() for proc in procs))
    assert release.is_set()


async def test_a_rate_limit_holds_across_two_worker_processes(
    tmp_path: Path, redis_url: str, webhook_receiver: Receiver
) -> None:
    url = redis_url + "&window=4"
    limit, window = 10, 1.0
    arrivals: list[float] = []

    def handler(_: ReceivedRequest) -> Reply:
        arrivals.append(time.monotonic())
        return Reply(status=200)

    webhook_receiver.handler = handler
    hook_url = webhook_receiver.url("/h")
    workers = [await spawn_worker(tmp_path, url, hook_url, name, rate=limit) for name in "ab"]
    try:
        await workers_joined(url, 2, workers)
        hook = CustomWebhook(name="h", url=hook_url)
        async with WebhookDispatcher(webhooks=[hook], store=url) as producer:
            for n in range(25):
                await producer.emit("prediction", {"n": n})
            assert isinstance(producer.store, RedisStore)
        await until(lambda: len(webhook_receiver.delivered) >= 25)
    finally:
        await asyncio.gather(*(stop(proc) for proc in workers))
    assert {r.header("X-Worker") for r in webhook_receiver.delivered} == {"a", "b"}
    # Never more than `limit` requests within one window at the receiver. The allowance
    # covers the trip from the limiter (in Redis) to the receiver, which on a loaded two-core
    # machine varied by more than 250 ms (2 failures in 7 runs at load 7-18 with 0.25 s); two
    # workers each keeping their own limit would put 20 within a few milliseconds, so even
    # this wide allowance keeps the test's power.
    slack = 0.6
    for first, last in zip(arrivals, arrivals[limit:], strict=False):
        assert last - first >= window - slack, "more than the limit within one window"


async def test_a_circuit_breaker_opened_by_one_worker_holds_for_another(
    tmp_path: Path, redis_url: str, webhook_receiver: Receiver
) -> None:
    """Worker a opens the breaker; worker b, started after, sends nothing but probes until
    the receiver recovers, though b alone never saw a failure. Then every event arrives."""
    url = redis_url + "&window=8"
    prefix = url.split("prefix=")[1].split("&")[0]
    state_key = f"{prefix}breaker:{{h}}:state"
    failing = True

    def handler(_: ReceivedRequest) -> Reply:
        return Reply(status=503 if failing else 200)

    webhook_receiver.handler = handler
    hook_url = webhook_receiver.url("/h")
    policy = {"min_attempts": 4, "failure_rate": 0.5, "window_seconds": 30, "open_seconds": 1}
    client = aioredis.Redis.from_url(url.split("?")[0], decode_responses=True)
    hook = CustomWebhook(name="h", url=hook_url)
    workers = [await spawn_worker(tmp_path, url, hook_url, "a", breaker=policy)]

    async def opened() -> int:
        return int(await client.hget(state_key, "opened") or 0)

    async def emit(count: int) -> list[str]:
        async with WebhookDispatcher(webhooks=[hook], store=url) as producer:
            return [(await producer.emit("prediction", {"n": n})).event_id for n in range(count)]

    try:
        await workers_joined(url, 1, workers)
        wanted = set(await emit(6))
        async with asyncio.timeout(30):
            while await opened() == 0:  # noqa: ASYNC110 - the state is in Redis
                await asyncio.sleep(0.02)
        workers.append(await spawn_worker(tmp_path, url, hook_url, "b", breaker=policy))
        await workers_joined(url, 2, workers)
        wanted |= set(await emit(6))  # a holds 6 of its window of 8: b takes 4 or more
        # Each worker's mirror follows within a sync (0.2 s); what was in flight lands.
        await asyncio.sleep(0.5)
        before, opened_before = len(webhook_receiver.requests), await opened()
        await asyncio.sleep(0.5)
        after = len(webhook_receiver.requests)
        await asyncio.sleep(0.2)  # a probe that failed just now has re-opened it by then
        # Without the shared breaker b would retry every ~10 ms (dozens of attempts here).
        # With it the only attempts are half-open probes, one at a time across both
        # workers, each failing one re-opening the breaker.
        assert after - before <= await opened() - opened_before
        assert await client.hget(state_key, "open_until") is not None

        failing = False  # the receiver recovers: after open_seconds a probe closes it
        await until(lambda: set(webhook_receiver.delivered_event_ids()) >= wanted)
        assert await client.hget(state_key, "open_until") is None
    finally:
        await client.aclose()
        await asyncio.gather(*(stop(proc) for proc in workers))
    assert set(webhook_receiver.delivered_event_ids()) == wanted
    assert {r.header("X-Worker") for r in webhook_receiver.delivered} == {"a", "b"}


async def test_workers_joined_says_at_once_when_a_worker_ended_and_who_joined_on_time_out(
    redis_url: str,
) -> None:
    """The test kit's wait for workers: a worker that died on start (a bad option, a script
    that ran nothing) is named with its exit code, not waited for until the time runs out."""
    ended = await asyncio.create_subprocess_exec(sys.executable, "-c", "raise SystemExit(3)")
    await ended.wait()
    with pytest.raises(AssertionError, match=rf"worker process {ended.pid} ended \(exit code 3\)"):
        await workers_joined(redis_url, 1, [ended], timeout=20)
    with pytest.raises(TimeoutError, match=r"1 workers did not join .* \(joined: \[\]\)"):
        await workers_joined(redis_url, 1, timeout=0.3)
