"""Several processes on one SQLite file when one of them dies, stalls past its lease, or sees
the wall clock jump: its rows are taken over once its lease is over, never while it lives,
and a process that comes back after losing its lease says so and does not send again what
another process took. Real child processes, a real receiver on loopback."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from empathy_webhooks_core.testing import ReceivedRequest, Receiver, Reply

from ._child_kit import emitted, finish, start_child, until

# A process that emits `count` events and delivers (its own and what it pages in from the
# file) until its stdin closes. SIGUSR1 moves its wall clock (`time.time`) forward an hour,
# SIGUSR2 back an hour, as an NTP step would: the monotonic clock does not move.
CHILD = r"""
import asyncio, logging, signal, sys, time
from empathy_webhooks_core import CustomWebhook, WebhookDispatcher

logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
_real, _offset = time.time, [0.0]
time.time = lambda: _real() + _offset[0]
signal.signal(signal.SIGUSR1, lambda *_: _offset.__setitem__(0, _offset[0] + 3600.0))
signal.signal(signal.SIGUSR2, lambda *_: _offset.__setitem__(0, _offset[0] - 3600.0))

async def main(store, hook_url, name, count, concurrency, webhook="h"):
    hook = CustomWebhook(
        name=webhook, url=hook_url, headers={"X-Process": name}, max_concurrency=concurrency,
        retry_policy={"initial_delay_seconds": 0.01, "max_delay_seconds": 0.05,
                      "timeout_seconds": 30},
        circuit_breaker=False,
    )
    dispatcher = WebhookDispatcher(webhooks=[hook], store=store)
    await dispatcher.start()
    for n in range(count):
        event = await dispatcher.emit("alert", {"n": n, "by": name})
        print("emitted", event.event_id, flush=True)
    print("all-emitted", flush=True)
    await asyncio.to_thread(sys.stdin.read)
    await dispatcher.close(timeout=5)

asyncio.run(main(*sys.argv[1:4], int(sys.argv[4]), int(sys.argv[5]), *sys.argv[6:]))
"""


async def spawn(
    tmp_path: Path,
    store: str,
    hook_url: str,
    name: str,
    count: int,
    concurrency: int = 4,
    webhook: str = "h",
) -> asyncio.subprocess.Process:
    return await start_child(tmp_path, CHILD, store, hook_url, name, count, concurrency, webhook)


async def test_a_killed_process_has_its_rows_delivered_by_another_within_its_lease(
    tmp_path: Path, receiver: Receiver
) -> None:
    # A lease long enough to tell the two ways apart: by pid at b's next look (a quarter
    # lease, 2.5 s), or after the whole lease (10 s) had it not been found.
    store = f"sqlite:///{tmp_path / 'outbox.db'}?lease=10&poll=0.05"
    hang = asyncio.Event()

    async def handler(request: ReceivedRequest) -> Reply:
        if request.header("X-Process") == "a":
            await hang.wait()  # a dies with its requests in flight
        return Reply(status=200)

    receiver.handler = handler
    a = await spawn(tmp_path, store, receiver.url("/h"), "a", 12)
    b = await spawn(tmp_path, store, receiver.url("/h"), "b", 0)
    try:
        wanted = await emitted(a)
        await emitted(b)
        await until(lambda: len(receiver.requests) >= 4)
        a.kill()
        await a.wait()
        killed = time.monotonic()
        await until(lambda: set(receiver.delivered_event_ids()) >= wanted)
        # Same machine: found dead by its pid at b's next look at the leases, not a whole
        # lease later.
        assert time.monotonic() - killed < 8
    finally:
        hang.set()
        log = await finish(b)
    assert receiver.delivered_event_ids() == dict.fromkeys(wanted, 1)
    assert "sqlite_claims_taken_over" in log, log


async def stopped_past_its_lease(tmp_path: Path, receiver: Receiver) -> tuple[int, str]:
    """a holds 12 rows (one request in flight, the rest queued in its lane) and is stopped
    (SIGSTOP) for three leases; b takes them over and delivers them, then a is continued.
    How many requests a sent, and a's log."""
    store = f"sqlite:///{tmp_path / 'outbox.db'}?lease=1&poll=0.05"
    hang = asyncio.Event()

    async def handler(request: ReceivedRequest) -> Reply:
        if request.header("X-Process") == "a":
            await hang.wait()
        return Reply(status=200)

    receiver.handler = handler
    a = await spawn(tmp_path, store, receiver.url("/h"), "a", 12, concurrency=1)
    b = await spawn(tmp_path, store, receiver.url("/h"), "b", 0)
    try:
        wanted = await emitted(a)
        await emitted(b)
        await until(lambda: len(receiver.requests) >= 1)
        a.send_signal(signal.SIGSTOP)
        await until(lambda: set(receiver.delivered_event_ids()) >= wanted)
        assert {r.header("X-Process") for r in receiver.delivered} == {"b"}
        await asyncio.sleep(2)
        a.send_signal(signal.SIGCONT)
        await asyncio.sleep(0.3)  # a notices its lease is gone
        hang.set()  # a's request in flight is answered
        await asyncio.sleep(2)  # whatever a would still send arrives by now
    finally:
        hang.set()
        a.send_signal(signal.SIGCONT)
        log_a = await finish(a)
        await finish(b)
    assert set(receiver.delivered_event_ids()) == wanted
    return sum(r.header("X-Process") == "a" for r in receiver.requests), log_a


async def test_a_process_stopped_past_its_lease_says_it_lost_it_once(
    tmp_path: Path, receiver: Receiver
) -> None:
    _, log_a = await stopped_past_its_lease(tmp_path, receiver)
    assert log_a.count("sqlite_lease_lost") == 1, log_a


async def test_a_process_stopped_past_its_lease_sends_nothing_another_took(
    tmp_path: Path, receiver: Receiver
) -> None:
    """Only the request a had in flight (sent before b took it over: at least once) may
    arrive twice; the 11 still queued in its lane were b's to send, and a says it left them."""
    sent_by_a, log_a = await stopped_past_its_lease(tmp_path, receiver)
    assert sent_by_a == 1
    assert log_a.count("delivery_taken_over") == 11, log_a


@pytest.mark.parametrize("other", [None, "another webhook"], ids=["alone", "releasing-only"])
async def test_a_process_stopped_past_its_lease_that_nobody_took_over_sends_everything_once(
    tmp_path: Path, receiver: Receiver, other: str | None
) -> None:
    """Stopped for three leases with no other process to take its rows (alone), or with one
    that released them but has no lane for their webhook (they wait, owned by nobody): once
    continued, a's deliveries are its own still (checked, claimed again) and every event
    arrives exactly once, all of them from a; none is dropped for being in doubt."""
    store = f"sqlite:///{tmp_path / 'outbox.db'}?lease=1&poll=0.05"
    hang = asyncio.Event()

    async def handler(request: ReceivedRequest) -> Reply:
        await hang.wait()
        return Reply(status=200)

    receiver.handler = handler
    a = await spawn(tmp_path, store, receiver.url("/h"), "a", 12, concurrency=1)
    b = None
    try:
        wanted = await emitted(a)
        if other is not None:
            b = await spawn(tmp_path, store, receiver.url("/o"), "b", 0, webhook=other)
            await emitted(b)
        await until(lambda: len(receiver.requests) >= 1)
        a.send_signal(signal.SIGSTOP)
        await asyncio.sleep(3.5)  # b, if there, finds a's lease over and releases its rows
        a.send_signal(signal.SIGCONT)
        hang.set()
        await until(lambda: set(receiver.delivered_event_ids()) >= wanted)
        await asyncio.sleep(1)  # a duplicate would arrive by now
    finally:
        hang.set()
        a.send_signal(signal.SIGCONT)
        log_a = await finish(a)
        log_b = await finish(b) if b is not None else ""
    assert receiver.delivered_event_ids() == dict.fromkeys(wanted, 1)
    assert {r.header("X-Process") for r in receiver.requests} == {"a"}
    assert "delivery_taken_over" not in log_a, log_a
    if other is not None:
        assert "sqlite_claims_taken_over" in log_b, log_b
        assert log_a.count("sqlite_lease_lost") == 1, log_a


@pytest.mark.parametrize(
    ("step", "stepped"),
    [(signal.SIGUSR1, "ab"), (signal.SIGUSR2, "a")],
    ids=["forward-on-the-machine", "back-on-a's-machine"],
)
async def test_a_step_of_the_wall_clock_takes_no_live_process_rows(
    tmp_path: Path, receiver: Receiver, step: signal.Signals, stepped: str
) -> None:
    """The wall clock steps an hour (NTP) while a holds rows in flight: forward for both
    processes (one machine), or back for a only (its machine's clock). a lives and renews,
    so b takes none of them; each event arrives once. Before: b took all of a's rows (the
    forward step ended every lease at once; stepped back, a renewed no more for an hour)."""
    store = f"sqlite:///{tmp_path / 'outbox.db'}?lease=1&poll=0.05"
    hang = asyncio.Event()

    async def handler(request: ReceivedRequest) -> Reply:
        if request.header("X-Process") == "a":
            await hang.wait()
        return Reply(status=200)

    receiver.handler = handler
    a = await spawn(tmp_path, store, receiver.url("/h"), "a", 12)
    b = await spawn(tmp_path, store, receiver.url("/h"), "b", 0)
    try:
        wanted = await emitted(a)
        await emitted(b)
        await until(lambda: len(receiver.requests) >= 4)
        for proc in (a, b)[: len(stepped)]:
            proc.send_signal(step)
        await asyncio.sleep(2.5)  # more than two leases: a renews throughout
        assert [r for r in receiver.requests if r.header("X-Process") == "b"] == []
        hang.set()
        await until(lambda: set(receiver.delivered_event_ids()) >= wanted)
        await asyncio.sleep(0.5)
    finally:
        hang.set()
        log_a = await finish(a)
        log_b = await finish(b)
    assert receiver.delivered_event_ids() == dict.fromkeys(wanted, 1)
    assert "sqlite_lease_lost" not in log_a, log_a
    assert "sqlite_claims_taken_over" not in log_b, log_b
