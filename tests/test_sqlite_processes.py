"""Several processes on one SQLite file: ids never collide, a row is sent by one live process
at a time, and a process that hangs or dies has its rows taken over. Real child processes."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from pathlib import Path

from empathy_webhooks_core.testing import ReceivedRequest, Receiver, Reply

CHILD = r"""
import asyncio, sys
from empathy_webhooks_core import CustomWebhook, WebhookDispatcher

async def main(store, hook_url, name, count):
    hook = CustomWebhook(
        name="h", url=hook_url, headers={"X-Process": name}, max_concurrency=4,
        retry_policy={"initial_delay_seconds": 0.001, "max_delay_seconds": 0.01},
    )
    dispatcher = WebhookDispatcher(webhooks=[hook], store=store)
    await dispatcher.start()
    for n in range(count):
        event = await dispatcher.emit("prediction", {"n": n, "by": name})
        print("emitted", event.event_id, flush=True)
    print("all-emitted", flush=True)
    while True:  # each line from the test: drain once (look at the file, deliver), say so
        if not await asyncio.to_thread(sys.stdin.readline):
            break
        await dispatcher.drain()
        print("drained", flush=True)
    await dispatcher.close()

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
"""


async def spawn(
    tmp_path: Path, store: str, hook_url: str, name: str, count: int
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        # -c, not a file rewritten per spawn: a child still starting read it truncated and ran
        # nothing (exit 0, a worker that never joined).
        "-P",
        "-c",
        CHILD,
        store,
        hook_url,
        name,
        str(count),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


async def read_until(proc: asyncio.subprocess.Process, marker: str) -> list[str]:
    assert proc.stdout is not None
    lines = []
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode().strip()
        if not line:
            assert proc.stderr is not None
            raise AssertionError(f"the child ended: {(await proc.stderr.read()).decode()}")
        lines.append(line)
        if line == marker:
            return lines


async def drain(proc: asyncio.subprocess.Process) -> None:
    assert proc.stdin is not None
    proc.stdin.write(b"drain\n")
    await proc.stdin.drain()
    await read_until(proc, "drained")


async def finish(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None and proc.stdin is not None:
        proc.stdin.close()
    try:
        await asyncio.wait_for(proc.wait(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def emitted(lines: list[str]) -> set[str]:
    return {line.split()[1] for line in lines if line.startswith("emitted ")}


async def test_two_processes_emit_and_deliver_on_one_file(
    tmp_path: Path, receiver: Receiver
) -> None:
    store = f"sqlite:///{tmp_path / 'outbox.db'}"
    a, b = [await spawn(tmp_path, store, receiver.url("/h"), name, 150) for name in "ab"]
    try:
        lines = await asyncio.gather(read_until(a, "all-emitted"), read_until(b, "all-emitted"))
        await asyncio.gather(drain(a), drain(b))
    finally:
        await asyncio.gather(finish(a), finish(b))
    wanted = emitted(lines[0]) | emitted(lines[1])
    assert len(wanted) == 300  # every emit of both returned (no id collision)
    delivered = receiver.delivered_event_ids()
    assert set(delivered) == wanted
    assert set(delivered.values()) == {1}  # each sent once: each process sent its own
    with sqlite3.connect(tmp_path / "outbox.db") as conn:
        assert conn.execute("SELECT count(DISTINCT id), count(*) FROM deliveries").fetchone() == (
            300,
            300,
        )


async def test_a_live_process_keeps_its_rows_and_a_hung_one_loses_them_after_its_lease(
    tmp_path: Path, receiver: Receiver
) -> None:
    db = tmp_path / "outbox.db"
    store = f"sqlite:///{db}?lease=1&poll=0.05"
    release = asyncio.Event()

    async def handler(request: ReceivedRequest) -> Reply:
        if request.header("X-Process") == "a":
            await release.wait()  # a's requests hang: it holds its rows in flight
        return Reply(status=200)

    receiver.handler = handler
    a = await spawn(tmp_path, store, receiver.url("/h"), "a", 10)
    b = await spawn(tmp_path, store, receiver.url("/h"), "b", 0)
    try:
        wanted = emitted(await read_until(a, "all-emitted"))
        await read_until(b, "all-emitted")

        def lease_of_a() -> float:
            with sqlite3.connect(db) as conn:
                (until,) = conn.execute(
                    "SELECT max(alive_until) FROM owners WHERE owner IN"
                    " (SELECT DISTINCT owner FROM deliveries)"
                ).fetchone()
                return float(until)

        first = lease_of_a()
        async with asyncio.timeout(30):
            while lease_of_a() < first + 2:  # a renewed its lease past two lease lengths
                await drain(b)  # ... while b kept looking at the file
        await drain(b)
        assert not [r for r in receiver.requests if r.header("X-Process") == "b"]

        a.send_signal(signal.SIGSTOP)  # hung: alive, but its lease is no longer renewed
        async with asyncio.timeout(30):
            while set(receiver.delivered_event_ids()) != wanted:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert {r.header("X-Process") for r in receiver.delivered} == {"b"}
    finally:
        release.set()
        a.send_signal(signal.SIGKILL)
        await a.wait()
        await finish(b)


OPEN_TOGETHER = r"""
import asyncio, multiprocessing, sys
from pathlib import Path
from empathy_webhooks_core.stores.sqlite import SQLiteStore

def open_once(path, barrier, results):
    async def main():
        store = SQLiteStore(path)
        barrier.wait()  # every process opens the new file at the same moment
        try:
            await store.open()
            await store.close()
            results.put("ok")
        except Exception as exc:
            results.put(f"{type(exc).__name__}: {exc}")
    asyncio.run(main())

context = multiprocessing.get_context("fork")
folder, rounds, processes = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
for n in range(rounds):
    barrier, results = context.Barrier(processes), context.Queue()
    started = [
        context.Process(target=open_once, args=(folder / f"outbox{n}.db", barrier, results))
        for _ in range(processes)
    ]
    for process in started:
        process.start()
    for process in started:
        process.join()
    for _ in started:
        print(results.get(timeout=30), flush=True)
"""


async def test_processes_that_open_one_new_file_together_all_open(tmp_path: Path) -> None:
    # SQLite answers a journal-mode switch with "database is locked" at once, not after the
    # busy timeout, while another process switches the same new file: a service whose
    # processes start together (a gateway and its workers) failed one open in ~25 before.
    script = tmp_path / "open_together.py"
    script.write_text(OPEN_TOGETHER)
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        str(tmp_path),
        "50",
        "4",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(child.communicate(), 120)
    assert child.returncode == 0, err.decode()
    answers = out.decode().split("\n")[:-1]
    assert len(answers) == 200
    assert [a for a in answers if a != "ok"] == []
