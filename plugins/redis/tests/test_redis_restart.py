"""A Redis that loses its data (FLUSHALL, or a restart without persistence) mid-run: producers
and workers recreate the stream's group, every event emitted afterwards is delivered, and a
worker says so once instead of once a second. Bad entries go to the dead letters without
stranding their batch. A private `redis-server` on a spare loopback port, started here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from empathy_webhooks_redis.testing import RedisServer, workers_joined

from empathy_webhooks_core import CustomWebhook, WebhookDispatcher
from empathy_webhooks_core.testing import Receiver, Reply

REQUIRE_ENV = "EMPATHY_WEBHOOKS_REQUIRE_REDIS"

WORKER = r"""
import asyncio, logging, sys
from empathy_webhooks_core import CustomWebhook
from empathy_webhooks_core.worker import run_worker

logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
url, hook_url, name, shared = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "shared"
hook = CustomWebhook(
    name="h", url=hook_url, headers={"X-Worker": name}, max_concurrency=8,
    retry_policy={"initial_delay_seconds": 0.001, "max_delay_seconds": 0.01, "max_retries": 4},
    # Shared keys, lost with the data too (the fault run leaves them out: 30 % faults may
    # open a breaker, and it measures the store, not the guards).
    rate_limit={"max_requests_per_second": 5000} if shared else None,
    circuit_breaker={"open_seconds": 1} if shared else False,
)
asyncio.run(run_worker([hook], url, grace_seconds=2))  # SIGTERM stops it
"""


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    if not RedisServer.available():
        reason = "these tests start their own redis-server, and none is installed"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{reason}; {REQUIRE_ENV}=1, so this is a failure, not a skip")
        pytest.skip(reason)
    with RedisServer(tmp_path) as server:
        yield server


async def spawn_worker(
    tmp_path: Path, url: str, hook_url: str, name: str, *, guards: bool
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
        "shared" if guards else "-",
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


async def until(condition: object, timeout: float = 60) -> None:
    assert callable(condition)
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - answers land in the receiver's list
            await asyncio.sleep(0.02)


async def stop_workers(workers: list[asyncio.subprocess.Process]) -> list[str]:
    logs = []
    for proc in workers:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        logs.append(err.decode())
    return logs


Running = tuple[list[asyncio.subprocess.Process], list[WebhookDispatcher]]


@contextlib.asynccontextmanager
async def running(
    tmp_path: Path, private_redis: RedisServer, webhook_receiver: Receiver, *, guards: bool
) -> AsyncIterator[Running]:
    """Two worker processes (with a shared rate limit and breaker if asked) and two producers
    in this process."""
    url = private_redis.url + "?prefix=t:&visibility_timeout=1&window=16"
    hook_url = webhook_receiver.url("/h")
    workers = [await spawn_worker(tmp_path, url, hook_url, name, guards=guards) for name in "ab"]
    hook = CustomWebhook(name="h", url=hook_url)
    producers = [WebhookDispatcher(webhooks=[hook], store=url) for _ in range(2)]
    try:
        await workers_joined(url, 2, workers)
        for producer in producers:
            await producer.start()
        yield workers, producers
    finally:
        for producer in producers:
            await producer.close(drain=False)
        for proc in workers:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def emit(producers: list[WebhookDispatcher], count: int, tag: str) -> set[str]:
    """`count` events from the producers, a few at a time (as a web server would)."""
    ids = set()
    for start in range(0, count, 20):
        events = await asyncio.gather(
            *(
                producers[n % len(producers)].emit("alert", {"n": n, "batch": tag})
                for n in range(start, min(count, start + 20))
            )
        )
        ids |= {event.event_id for event in events}
    return ids


async def emit_when_up(producers: list[WebhookDispatcher], count: int, tag: str) -> set[str]:
    """Emit once the server answers again (an emit during the outage raises: it is loud)."""
    async with asyncio.timeout(30):
        while True:
            try:
                return await emit(producers, count, tag)
            except Exception:
                await asyncio.sleep(0.05)


async def test_producers_and_workers_survive_a_flush_and_a_restart_that_lost_the_data(
    tmp_path: Path,
    private_redis: RedisServer,
    webhook_receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="empathy_webhooks")
    async with running(tmp_path, private_redis, webhook_receiver, guards=True) as started:
        logs = await flush_and_restart(private_redis, webhook_receiver, started)
    # Said by whoever found the group gone first: a worker's read, or a producer's emit (here).
    assert (
        sum(log.count("redis_group_recreated") for log in logs)
        + caplog.text.count("redis_group_recreated")
        >= 1
    )


async def flush_and_restart(
    private_redis: RedisServer, webhook_receiver: Receiver, started: Running
) -> list[str]:
    """The workers' logs, once every event emitted after each loss arrived."""
    workers, producers = started

    def delivered() -> set[str | None]:
        return set(webhook_receiver.delivered_event_ids())

    before = await emit(producers, 20, "before")
    await until(lambda: delivered() >= before)

    client = aioredis.Redis.from_url(private_redis.url)
    await client.flushall()  # what a restart without persistence looks like
    await client.aclose()
    after_flush = await emit(producers, 40, "after-flush")
    await until(lambda: delivered() >= after_flush)

    private_redis.restart()  # a real restart: connections drop, scripts and data are gone
    after_restart = await emit_when_up(producers, 40, "after-restart")
    await until(lambda: delivered() >= after_restart)

    logs = await stop_workers(workers)
    assert {r.header("X-Worker") for r in webhook_receiver.delivered} == {"a", "b"}
    for log in logs:
        # One clear line per loss, not one a second: the group is recreated at once.
        assert log.count("redis_group_recreated") <= 2, log
        assert log.count("redis_consume_failed") <= 1, log
        assert "NOGROUP" not in log, log
    return logs


async def test_bad_entries_go_to_dead_letters_and_the_rest_of_the_batch_is_delivered(
    tmp_path: Path, private_redis: RedisServer, webhook_receiver: Receiver
) -> None:
    async with running(tmp_path, private_redis, webhook_receiver, guards=True) as started:
        await bad_entries(private_redis, webhook_receiver, started)


async def bad_entries(
    private_redis: RedisServer, webhook_receiver: Receiver, started: Running
) -> None:
    workers, producers = started
    client = aioredis.Redis.from_url(private_redis.url, decode_responses=True)
    # Stop the workers' reads while the batch is written, so it is read as one batch.
    logs = await stop_workers(workers)
    assert all("Traceback" not in log for log in logs)
    good = await emit(producers, 6, "good")
    deep = '{"a":' * 100_000 + "1" + "}" * 100_000
    bad = [
        {"d": "dlv_deep", "w": "h", "e": deep, "a": 0, "t": 0},
        {"d": "dlv_json", "w": "h", "e": "{not json", "a": 0, "t": 0},
        {"d": "dlv_nofields", "w": "h"},
    ]
    for fields in bad:
        await client.xadd("t:deliveries", fields)  # type: ignore[arg-type]
    good |= await emit(producers, 6, "good-after")

    url = private_redis.url + "?prefix=t:&visibility_timeout=1&window=64"
    hook = CustomWebhook(name="h", url=webhook_receiver.url("/h"))
    from empathy_webhooks_core.worker import run_worker

    stop = asyncio.Event()
    task = asyncio.create_task(run_worker([hook], url, stop=stop, grace_seconds=1))
    try:
        await until(lambda: set(webhook_receiver.delivered_event_ids()) >= good, 30)
        async with asyncio.timeout(30):
            while await client.xlen("t:deliveries"):  # noqa: ASYNC110 - state is in Redis
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    letters = await producers[0].dead_letters()
    await client.aclose()
    assert len(letters) == 3
    reasons = " | ".join(letter.error["reason"] for letter in letters)
    assert "RecursionError" in reasons and "JSONDecodeError" in reasons
    assert "lacks the field(s) e" in reasons
    assert all(not letter.replayable for letter in letters)
    assert {letter.error["stored_event"] for letter in letters} == {deep, "{not json", ""}


async def test_a_fault_run_with_a_restart_that_lost_the_data_loses_nothing_emitted_after(
    tmp_path: Path,
    private_redis: RedisServer,
    webhook_receiver: Receiver,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """2,000 events at 30 % injected faults; Redis restarts without its data in the middle.
    Every event emitted after the restart completed is delivered or dead-lettered."""
    async with running(tmp_path, private_redis, webhook_receiver, guards=False) as started:
        await fault_run(private_redis, webhook_receiver, started, capsys)


async def fault_run(
    private_redis: RedisServer,
    webhook_receiver: Receiver,
    started: Running,
    capsys: pytest.CaptureFixture[str],
) -> None:
    workers, producers = started
    webhook_receiver.faults(
        [(Reply(status=503), 0.2), (Reply(status=500), 0.05), (Reply(reset=True), 0.05)], seed=7
    )
    first = await emit(producers, 1000, "first-half")
    private_redis.restart()
    second = await emit_when_up(producers, 1000, "second-half")

    async def dead() -> set[str]:
        return {letter.event.event_id for letter in await producers[0].dead_letters()}

    async with asyncio.timeout(120):
        while True:
            settled = set(webhook_receiver.delivered_event_ids()) | await dead()
            if settled >= second:
                break
            await asyncio.sleep(0.1)
    letters = await dead()
    logs = await stop_workers(workers)
    delivered = set(webhook_receiver.delivered_event_ids())
    with capsys.disabled():
        print(
            f"\nfault run: {len(first)} emitted before the restart "
            f"({len(first & delivered)} delivered, the rest lost with Redis's data); "
            f"{len(second)} emitted after: {len(second & delivered)} delivered, "
            f"{len(second & letters - delivered)} dead-lettered, "
            f"{len(second - delivered - letters)} lost; "
            f"{len(webhook_receiver.requests)} requests"
        )
    assert second <= delivered | letters
    assert all(log.count("redis_consume_failed") <= 1 for log in logs), logs
