"""The stores when the file behind them goes away: a SQLite file deleted or replaced under
running processes. Real files, a real receiver on loopback."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest

from empathy_webhooks_core import CustomWebhook, WebhookDispatcher
from empathy_webhooks_core.testing import Receiver, Reply

from .conftest import FAST


def _remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


async def _until(condition: object, timeout: float = 15) -> None:
    assert callable(condition)
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - answers land in the receiver's list
            await asyncio.sleep(0.02)


@pytest.mark.parametrize("how", ["deleted", "replaced"])
async def test_a_file_deleted_or_replaced_under_running_processes_is_followed_loudly(
    tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    """Before: both processes went on with the file they had open, which nobody else could
    see: a producer's emits returned and were never delivered, and what a new process queued
    at the path waited forever. Now each says so once (an error) and follows the path."""
    caplog.set_level(logging.ERROR, logger="empathy_webhooks")
    path = tmp_path / "outbox.db"
    hook = CustomWebhook(name="h", url=receiver.url("/h"), retry_policy={**FAST, "max_retries": 0})
    worker = WebhookDispatcher(webhooks=[hook], store=f"sqlite:///{path}?poll=0.05")
    producer = WebhookDispatcher(webhooks=[hook], store=f"sqlite:///{path}?role=producer")
    await worker.start()
    await producer.start()
    try:
        receiver.queue(Reply(status=400))
        failed = await worker.emit("alert", {"n": "dead"})
        await _until(lambda: receiver.delivered_event_ids() or len(receiver.requests) >= 1)
        await _until(lambda: worker.get_webhook_stats("h")["dead_letters"] == 1)
        first = await producer.emit("alert", {"n": "before"})
        await _until(lambda: first.event_id in receiver.delivered_event_ids())

        if how == "deleted":
            _remove(path)
        else:  # a restored backup: another file at the path
            os.rename(path, tmp_path / "old.db")
            _remove(path)
            late = WebhookDispatcher(webhooks=[hook], store=f"sqlite:///{path}?role=producer")
            await late.start()
            await late.close()
        emitted = {(await producer.emit("alert", {"n": n})).event_id for n in range(5)}
        emitted |= {(await worker.emit("alert", {"n": n})).event_id for n in range(5)}
        # A process started now (a CLI `send --no-wait`) queues in the file at the path.
        late = WebhookDispatcher(webhooks=[hook], store=f"sqlite:///{path}?role=producer")
        await late.start()
        try:
            emitted.add((await late.emit("alert", {"n": "late"})).event_id)
        finally:
            await late.close()
        await _until(lambda: set(receiver.delivered_event_ids()) >= emitted)
        [letter] = await worker.dead_letters()
        assert letter.event.event_id == failed.event_id

        def said() -> list[str]:
            return [
                r.getMessage() for r in caplog.records if "sqlite_file_replaced" in r.getMessage()
            ]

        # Each process looks at its file once a second: one may not have looked yet when the
        # other's carry-over already had everything delivered.
        await _until(lambda: len(said()) >= 2)
    finally:
        await producer.close()
        await worker.close()
    lines = said()
    assert len(lines) == 2, lines  # once per process
    assert all(r.levelno == logging.ERROR for r in caplog.records if "replaced" in r.getMessage())
    assert path.exists()
