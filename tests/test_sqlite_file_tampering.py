"""A SQLite store's files handled under running processes: found by an audit of stop 37 with
real processes and a loopback receiver.

- A process killed with rows queued, its folder moved aside before the survivor's sweep
  found it dead: the survivor carried over only the rows nobody held, and the dead process's
  were left in the old file, with nothing naming them.
- `rm outbox.db-wal` while a process runs: every commit since goes into the unlinked log,
  lost on a crash, and nothing said so.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path

import pytest

from empathy_webhooks_core import CustomWebhook, WebhookDispatcher
from empathy_webhooks_core.testing import Receiver, Reply

from ._child_kit import emitted, start_child, until

CHILD = r"""
import asyncio, sys
from empathy_webhooks_core import CustomWebhook, WebhookDispatcher

async def main(store, hook_url, count):
    hook = CustomWebhook(name="h", url=hook_url, retry_policy={"initial_delay_seconds": 30})
    async with WebhookDispatcher(webhooks=[hook], store=store) as dispatcher:
        for n in range(count):
            event = await dispatcher.emit("alert", {"n": n})
            print("emitted", event.event_id, flush=True)
        print("all-emitted", flush=True)
        await asyncio.to_thread(sys.stdin.read)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


def _lines(caplog: pytest.LogCaptureFixture, event: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if f"'{event}'" in r.getMessage()]


async def test_a_dead_processs_rows_are_carried_when_the_file_is_replaced(
    tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="empathy_webhooks")
    answer = {"status": 503}
    receiver.handler = lambda request: Reply(status=answer["status"])
    folder = tmp_path / "data"
    folder.mkdir()
    store = f"sqlite:///{folder / 'outbox.db'}?poll=0.05"
    hook = CustomWebhook(name="h", url=receiver.url("/h"))
    async with WebhookDispatcher(webhooks=[hook], store=store) as survivor:
        child = await start_child(tmp_path, CHILD, store, receiver.url("/h"), 5)
        wanted = await emitted(child)
        await until(lambda: len(receiver.requests) >= 5, timeout=20)  # held, retrying in 30 s
        child.send_signal(signal.SIGKILL)
        await child.wait()
        os.rename(folder, tmp_path / "moved")  # before the survivor's sweep found it dead
        answer["status"] = 200
        await until(lambda: set(receiver.delivered_event_ids()) >= wanted, timeout=20)
        await survivor.drain(timeout=10)
    assert set(receiver.delivered_event_ids()) == wanted
    [replaced] = _lines(caplog, "sqlite_file_replaced")
    assert "carried_rows=5" in replaced


async def test_a_write_ahead_log_removed_under_a_process_is_said(
    tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="empathy_webhooks")
    db = tmp_path / "outbox.db"
    hook = CustomWebhook(name="h", url=receiver.url("/h"))
    async with WebhookDispatcher(webhooks=[hook], store=f"sqlite:///{db}?poll=0.05") as d:
        await d.emit("alert", {"n": 0})
        await d.drain()
        await asyncio.sleep(1.2)  # the writer's look at the files has seen the log
        os.unlink(f"{db}-wal")
        for n in range(1, 4):  # commits go on into the unlinked log
            await d.emit("alert", {"n": n})
            await asyncio.sleep(0.5)
        await until(lambda: bool(_lines(caplog, "sqlite_wal_removed")), timeout=10)
        await d.drain()
    [said] = _lines(caplog, "sqlite_wal_removed")
    assert "a crash loses it; stop every process using this file" in said


async def _killed_with_rows_queued(tmp_path: Path, db: Path, receiver: Receiver) -> set[str]:
    """A child that queued 5 events (the receiver answers 503, retried in 30 s) and was
    killed (-9) with them queued: the file is left with its -wal beside it."""
    receiver.respond(status=503)
    child = await start_child(tmp_path, CHILD, f"sqlite:///{db}", receiver.url("/h"), 5)
    ids = await emitted(child)
    child.send_signal(signal.SIGKILL)
    await child.wait()
    assert os.path.exists(f"{db}-wal")  # noqa: ASYNC240 (a test's one look)
    return ids


async def test_a_file_moved_without_its_wal_after_a_crash_is_said_at_open(
    tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """`mv outbox.db elsewhere/` after a crash leaves the -wal, and the commits it held,
    behind: the new place's file lacks them, and nothing said so."""
    caplog.set_level(logging.ERROR, logger="empathy_webhooks")
    db = tmp_path / "old" / "outbox.db"
    await _killed_with_rows_queued(tmp_path, db, receiver)
    moved = tmp_path / "new" / "outbox.db"
    moved.parent.mkdir()
    os.rename(db, moved)
    receiver.respond(status=200)
    hook = CustomWebhook(name="h", url=receiver.url("/h"))
    async with WebhookDispatcher(webhooks=[hook], store=f"sqlite:///{moved}"):
        pass
    [said] = _lines(caplog, "sqlite_wal_missing")
    assert str(moved) in said
    assert "without its -wal" in said and "Move or copy the whole folder" in said


async def test_a_folder_moved_whole_or_a_file_closed_cleanly_says_nothing(
    tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="empathy_webhooks")
    db = tmp_path / "old" / "outbox.db"
    ids = await _killed_with_rows_queued(tmp_path, db, receiver)
    os.rename(db.parent, tmp_path / "new")  # the folder whole: the -wal goes with the file
    receiver.respond(status=200)
    hook = CustomWebhook(name="h", url=receiver.url("/h"))
    async with WebhookDispatcher(
        webhooks=[hook], store=f"sqlite:///{tmp_path / 'new' / 'outbox.db'}"
    ) as d:
        await until(lambda: ids <= set(receiver.delivered_event_ids()), timeout=20)
        await d.emit("alert", {"n": 9})
    # Closed cleanly: no -wal is left, and the file moved alone is whole.
    assert not (tmp_path / "new" / "outbox.db-wal").exists()
    os.rename(tmp_path / "new" / "outbox.db", tmp_path / "alone.db")
    async with WebhookDispatcher(webhooks=[hook], store=f"sqlite:///{tmp_path / 'alone.db'}"):
        pass
    assert _lines(caplog, "sqlite_wal_missing") == []
