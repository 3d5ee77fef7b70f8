"""`run_worker` on a store without a worker role: it resumes the SQLite file, then stops."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from empathy_webhooks_core import CustomWebhook, WebhookDispatcher
from empathy_webhooks_core.plugins import Hooks, get_plugin_manager
from empathy_webhooks_core.stores.sqlite import SQLiteStore
from empathy_webhooks_core.testing import Receiver
from empathy_webhooks_core.worker import run_worker, worker_store


async def test_a_worker_on_a_sqlite_file_delivers_what_was_pending(
    tmp_path: Path, receiver: Receiver
) -> None:
    url = f"sqlite:///{tmp_path}/outbox.db"
    receiver.respond(status=503)
    hook = CustomWebhook(
        name="h", url=receiver.url("/h"), retry_policy={"initial_delay_seconds": 60}
    )
    producer = WebhookDispatcher(webhooks=[hook], store=url)
    event = await producer.emit("prediction", {"n": 1})
    await receiver.wait_for(1)
    await producer.close(drain=False)  # left pending in the file

    receiver.respond(status=200)
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker([hook], url, stop=stop))
    await receiver.wait_for(1, delivered=True)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert [r.event_id for r in receiver.delivered] == [event.event_id]


def test_a_store_without_a_worker_role_is_used_as_it_is(tmp_path: Path) -> None:
    hooks = Hooks(get_plugin_manager())
    assert isinstance(worker_store(f"sqlite:///{tmp_path}/o.db", hooks), SQLiteStore)


async def test_a_worker_needs_a_store_that_outlives_it() -> None:
    with pytest.raises(ValueError, match="needs a shared or durable store"):
        await run_worker([CustomWebhook(url="http://127.0.0.1:9/")], "memory://")


async def test_a_sqlite_worker_delivers_what_send_no_wait_queues_after_it_started(
    tmp_path: Path, receiver: Receiver
) -> None:
    """Two real processes: `empathy-webhooks worker` running, then `send --no-wait`."""
    cli = str(Path(sys.executable).parent / "empathy-webhooks")
    config = tmp_path / "webhooks.toml"
    config.write_text(
        f'store = "sqlite:///{tmp_path / "outbox.db"}"\n'
        f'[[webhooks]]\ntype = "custom"\nname = "h"\nurl = "{receiver.url("/h")}"\n'
    )
    env = {**os.environ, "EMPATHY_WEBHOOKS_LOAD_PLUGINS": ""}
    worker = await asyncio.create_subprocess_exec(
        cli, "worker", "-c", str(config), env=env, stderr=asyncio.subprocess.PIPE
    )
    try:
        for n in range(2):
            send = await asyncio.create_subprocess_exec(
                cli,
                "send",
                "alert",
                "--data",
                f'{{"n": {n}}}',
                "--no-wait",
                "--json",
                "-c",
                str(config),
                env=env,
                stdout=asyncio.subprocess.PIPE,
            )
            out, _ = await asyncio.wait_for(send.communicate(), 60)
            assert send.returncode == 0
            (event_id,) = json.loads(out)["events"]
            # The send process only queued it; the worker, started before, delivers it.
            await receiver.wait_for(n + 1, delivered=True, timeout=30)
            assert receiver.delivered[-1].event_id == event_id
        assert len(receiver.requests) == 2  # each sent once, by the worker
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(worker.communicate(), 30)
    assert worker.returncode == 0, err.decode()
