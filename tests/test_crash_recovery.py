"""kill -9 a process that emits and delivers with the SQLite store; a new one resumes on the
file and every event whose `emit` returned reaches the receiver (at least once, same id)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from empathy_webhooks_core.testing import ReceivedRequest, Receiver, Reply

CHILD = r"""
import asyncio, sys
from empathy_webhooks_core import CustomWebhook, WebhookDispatcher

async def main(db, hook_url, count, mode):
    hook = CustomWebhook(
        name="h", url=hook_url, max_concurrency=4,
        retry_policy={"initial_delay_seconds": 0.001, "max_delay_seconds": 0.01},
    )
    dispatcher = WebhookDispatcher(webhooks=[hook], store=f"sqlite:///{db}")
    await dispatcher.start()
    print("started", flush=True)
    for n in range(count):
        event = await dispatcher.emit("prediction", {"n": n})
        # One write: print writes its pieces and the line's end apart, and the kill could
        # cut between them.
        sys.stdout.write(f"emitted {event.event_id}\n")
        sys.stdout.flush()
    print("all-emitted", flush=True)
    await dispatcher.drain()
    await dispatcher.close()
    print("drained", flush=True)

db, hook_url, count, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
asyncio.run(main(db, hook_url, count, mode))
"""


async def _spawn(tmp_path: Path, db: Path, hook_url: str, count: int) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        # -c, not a file rewritten per spawn: a child still starting read it truncated and ran
        # nothing (exit 0, a worker that never joined).
        "-P",
        "-c",
        CHILD,
        str(db),
        hook_url,
        str(count),
        "run",
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


async def _lines_until(proc: asyncio.subprocess.Process, marker: str, seen: list[str]) -> None:
    assert proc.stdout is not None
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip()
        assert line, f"the child ended before printing {marker!r}"
        seen.append(line)
        if line.startswith(marker):
            return


def _emitted(lines: list[str]) -> set[str]:
    return {line.split()[1] for line in lines if line.startswith("emitted ")}


async def _resume(tmp_path: Path, db: Path, hook_url: str) -> None:
    """A new process on the same file, emitting nothing: it delivers what was pending."""
    proc = await _spawn(tmp_path, db, hook_url, 0)
    lines: list[str] = []
    await _lines_until(proc, "drained", lines)
    assert await asyncio.wait_for(proc.wait(), 30) == 0


async def test_killed_mid_delivery_then_resumed_delivers_every_event(
    tmp_path: Path, receiver: Receiver
) -> None:
    db = tmp_path / "outbox.db"
    release = asyncio.Event()
    answered = 0

    async def handler(_: ReceivedRequest) -> Reply:
        # The first few are answered; the rest hang, so the kill lands with deliveries
        # in flight (sent, unanswered) and others still queued.
        nonlocal answered
        if answered < 5:
            answered += 1
            return Reply(status=200)
        await release.wait()
        return Reply(status=200)

    receiver.handler = handler
    proc = await _spawn(tmp_path, db, receiver.url("/h"), 40)
    lines: list[str] = []
    await _lines_until(proc, "all-emitted", lines)
    await receiver.wait_for(9, timeout=30)  # 5 answered + 4 in flight (its concurrency)
    proc.send_signal(signal.SIGKILL)
    assert await proc.wait() == -signal.SIGKILL
    before = len(receiver.requests)
    assert len(receiver.delivered) == 5
    release.set()

    receiver.handler = None
    await _resume(tmp_path, db, receiver.url("/h"))
    emitted = _emitted(lines)
    assert len(emitted) == 40
    assert set(receiver.delivered_event_ids()) == emitted
    # Resumed work went out again, under the ids it was emitted with.
    assert {r.event_id for r in receiver.requests[before:]} <= emitted


async def test_killed_while_emitting_then_resumed_delivers_every_returned_emit(
    tmp_path: Path, receiver: Receiver
) -> None:
    db = tmp_path / "outbox.db"
    proc = await _spawn(tmp_path, db, receiver.url("/h"), 100_000)
    lines: list[str] = []
    for _ in range(30):
        await _lines_until(proc, "emitted", lines)
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    assert proc.stdout is not None
    # Lines printed before the kill but not read yet: their emits returned too. Whole lines
    # only: a kill during a print leaves a piece of one.
    lines += (await proc.stdout.read()).decode().split("\n")[:-1]
    emitted = _emitted(lines)
    assert len(emitted) >= 30

    await _resume(tmp_path, db, receiver.url("/h"))
    delivered = set(receiver.delivered_event_ids())
    assert emitted <= delivered, f"{len(emitted - delivered)} emitted events never delivered"
