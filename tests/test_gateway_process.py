"""`empathy-webhooks serve` as a real process on a SQLite file: an Idempotency-Key holds
across a restart, and SIGTERM with deliveries under way loses nothing (a restart delivers
them)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

from empathy_webhooks_core.testing import ReceivedRequest, Receiver, Reply

from ._gateway_kit import TOKENS, call, config_text, write_config


@asynccontextmanager
async def serve(
    config: Path, log: list[str]
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from empathy_webhooks_core.cli import main; main()",
        "serve",
        "--config",
        str(config),
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        found = re.search(r"listening on (http://\S+) ", line)
        if found is None:
            # It ended (or said something else): what it wrote is in `log` once it is gone.
            proc.send_signal(signal.SIGTERM) if proc.returncode is None else None
            out, err = await asyncio.wait_for(proc.communicate(), 60)
            raise AssertionError(f"the gateway did not start: {line}{out.decode()}{err.decode()}")
        yield proc, found.group(1)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        log.append(out.decode() + err.decode())


async def test_idempotency_key_holds_after_a_restart(tmp_path: Path, receiver: Receiver) -> None:
    config = write_config(
        tmp_path, config_text(receiver.url(), store=f"sqlite:///{tmp_path / 'outbox.db'}")
    )
    event = {"event_type": "deploy", "data": {"sha": "abc"}}
    key = {"Idempotency-Key": "deploy-abc"}
    logs: list[str] = []
    async with aiohttp.ClientSession() as session:
        async with serve(config, logs) as (_, url):
            first = await call(session, "POST", f"{url}/v1/events", json=event, headers=key)
            assert first[0] == 202
            await receiver.wait_for(1, delivered=True)
        async with serve(config, logs) as (_, url):
            again = await call(session, "POST", f"{url}/v1/events", json=event, headers=key)
            assert again[0] == 202 and again[1] == first[1]
            assert again[2]["Idempotent-Replayed"] == "true"
            # Something new after it, so "nothing more was delivered" is known, not waited for.
            await call(session, "POST", f"{url}/v1/events", json={"event_type": "after"})
            await receiver.wait_for(2, delivered=True)
    assert [r.json()["event_type"] for r in receiver.delivered] == ["deploy", "after"]
    text = "".join(logs)
    assert "gateway_request" in text and "caller='admin'" in text
    assert not any(token in text for token in TOKENS.values())


async def test_sigterm_with_deliveries_under_way_then_restart(
    tmp_path: Path, receiver: Receiver
) -> None:
    """The receiver holds every answer: SIGTERM comes with deliveries in flight and queued.
    The gateway exits within its grace period; the restarted one delivers every event."""
    release = asyncio.Event()

    async def hold(_: ReceivedRequest) -> Reply:
        await release.wait()
        return Reply(status=200)

    receiver.handler = hold
    config = write_config(
        tmp_path,
        config_text(
            receiver.url(),
            store=f"sqlite:///{tmp_path / 'outbox.db'}",
            serve="shutdown_grace_seconds = 1",
            webhook="max_concurrency = 2",
        ),
    )
    logs: list[str] = []
    count = 12
    async with aiohttp.ClientSession() as session:
        async with serve(config, logs) as (proc, url):
            batch = {"events": [{"event_type": "a", "data": {"n": n}} for n in range(count)]}
            status, body, _ = await call(session, "POST", f"{url}/v1/events:batch", json=batch)
            assert status == 202
            accepted = {item["event_id"] for item in body["events"]}
            await receiver.wait_for(2)  # two attempts under way, the rest queued
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 60) == 0
        receiver.handler = None
        release.set()
        async with serve(config, logs) as (_, url):
            await receiver.wait_for(count, delivered=True, timeout=60)
    assert set(receiver.delivered_event_ids()) == accepted
    assert "gateway_left_deliveries" in "".join(logs)
