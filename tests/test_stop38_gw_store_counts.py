"""The health an operator reads (`GET /v1/webhooks`, `/v1/webhooks/{name}/stats`, `/metrics`,
the console's overview) counts what the store holds: after a restart on the same SQLite
file, and for a gateway whose workers are elsewhere, they read 0 dead letters and 0 queued
while `GET /v1/dead-letters` listed a letter and five events waited in the file."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from empathy_webhooks_core.config import load_config
from empathy_webhooks_core.gateway import Gateway, running
from empathy_webhooks_core.testing import Receiver

from ._console_kit import browser_session, log_in
from ._gateway_kit import TOKENS, call, config_text, gateway_at, write_config


def _config(tmp_path: Path, url: str, store: str | None = None) -> Path:
    return write_config(
        tmp_path, config_text(url, store=store or f"sqlite:///{tmp_path / 'outbox.db'}")
    )


async def _dead_letters(session: aiohttp.ClientSession, url: str) -> list[Any]:
    for _ in range(500):
        _, body, _ = await call(session, "GET", f"{url}/v1/dead-letters", token="reader")
        if body["dead_letters"]:
            return list(body["dead_letters"])
        await asyncio.sleep(0.02)
    raise AssertionError("no dead letter was made")


def _scraped(text: str, name: str) -> dict[str, float]:
    for family in text_string_to_metric_families(text):
        if family.name == name:
            return {s.labels["webhook"]: s.value for s in family.samples}
    raise AssertionError(f"{name} is not in the scrape")


async def test_dead_letters_after_a_restart_are_counted(tmp_path: Path, receiver: Receiver) -> None:
    receiver.respond(500)  # max_retries = 0: the first answer dead-letters it
    path = _config(tmp_path, receiver.url())
    async with gateway_at(path) as (_, url), aiohttp.ClientSession() as session:
        status, _, _ = await call(
            session, "POST", f"{url}/v1/events", token="writer", json={"event_type": "a"}
        )
        assert status == 202
        await _dead_letters(session, url)
    # A new process on the same file: its own counters start at 0, the letter is still there.
    async with gateway_at(path) as (_, url), aiohttp.ClientSession() as session:
        assert len(await _dead_letters(session, url)) == 1
        _, listed, _ = await call(session, "GET", f"{url}/v1/webhooks", token="reader")
        (hook,) = listed["webhooks"]
        assert hook["dead_letters"] == 1
        assert hook["counted_in"] == {"queued": "store", "dead_letters": "store"}
        _, stats, _ = await call(session, "GET", f"{url}/v1/webhooks/hook/stats", token="reader")
        assert stats["store_dead_letters"] == 1 and stats["store_pending"] == 0
        # The process's own figure keeps its meaning (get_webhook_stats): none made here.
        assert stats["dead_letters"] == 0
        status, text, _ = await call(session, "GET", f"{url}/metrics", token="reader")
        assert status == 200
        assert _scraped(text, "empathy_webhooks_store_dead_letters") == {"hook": 1.0}
        assert _scraped(text, "empathy_webhooks_dead_letters") == {"hook": 0.0}
        help_text = {f.name: f.documentation for f in text_string_to_metric_families(text)}
        assert "this process" in help_text["empathy_webhooks_dead_letters"]
        assert "this process" in help_text["empathy_webhooks_queued"]
        assert "store" in help_text["empathy_webhooks_store_dead_letters"]
    async with gateway_at(path) as (_, url), browser_session() as browser:
        assert (await log_in(browser, url, TOKENS["reader"]))[0] == 303
        async with browser.get(f"{url}/") as page:
            html = await page.text()
        row = html[html.index('data-label="Dead letters"') :][:200]
        assert re.search(r'<a href="/dead-letters">1</a>', row), row
        assert "as the store holds them now" in html


async def test_a_gateway_without_workers_counts_what_waits(tmp_path: Path) -> None:
    path = _config(tmp_path, "http://127.0.0.1:9/never")
    async with (
        gateway_at(path, workers=False) as (_, url),
        aiohttp.ClientSession() as session,
    ):
        for n in range(5):
            status, _, _ = await call(
                session, "POST", f"{url}/v1/events", token="writer", json={"event_type": f"e{n}"}
            )
            assert status == 202
        _, listed, _ = await call(session, "GET", f"{url}/v1/webhooks", token="reader")
        (hook,) = listed["webhooks"]
        assert hook["queued"] == 5
        assert hook["counted_in"]["queued"] == "store"
        assert hook["stats"]["store_pending"] == 5
        _, text, _ = await call(session, "GET", f"{url}/metrics", token="reader")
        assert _scraped(text, "empathy_webhooks_store_pending") == {"hook": 5.0}


async def test_a_memory_store_counts_its_dead_letters(tmp_path: Path, receiver: Receiver) -> None:
    """The memory store counts its dead letters but not its queue (the process holds it)."""
    receiver.respond(500)
    path = _config(tmp_path, receiver.url(), store="memory")
    async with gateway_at(path) as (_, url), aiohttp.ClientSession() as session:
        await call(session, "POST", f"{url}/v1/events", token="writer", json={"event_type": "a"})
        letter = (await _dead_letters(session, url))[0]
        _, listed, _ = await call(session, "GET", f"{url}/v1/webhooks", token="reader")
        (hook,) = listed["webhooks"]
        assert hook["dead_letters"] == 1
        assert hook["counted_in"] == {"queued": "process", "dead_letters": "store"}
        assert hook["stats"]["store_pending"] is None
        _, text, _ = await call(session, "GET", f"{url}/metrics", token="reader")
        names = {f.name for f in text_string_to_metric_families(text)}
        assert "empathy_webhooks_store_pending" not in names
        # A replayed letter leaves the count.
        receiver.respond(200)
        status, _, _ = await call(
            session, "POST", f"{url}/v1/dead-letters/{letter['dead_letter_id']}/replay"
        )
        assert status == 202
        await receiver.wait_for(2)
        _, listed, _ = await call(session, "GET", f"{url}/v1/webhooks", token="reader")
        assert listed["webhooks"][0]["dead_letters"] == 0


async def test_a_store_that_does_not_answer_gives_the_process_figures(
    tmp_path: Path,
) -> None:
    path = _config(tmp_path, "http://127.0.0.1:9/never")
    async with gateway_at(path, workers=False) as (gateway, url):
        store = gateway.dispatcher.store

        async def stuck() -> dict[str, dict[str, int]]:
            await asyncio.sleep(60)
            return {}

        gateway.store_figures._timeout = 0.2
        store.pending_counts = stuck  # type: ignore[method-assign]
        async with aiohttp.ClientSession() as session:
            status, listed, _ = await call(session, "GET", f"{url}/v1/webhooks", token="reader")
        assert status == 200
        assert listed["webhooks"][0]["counted_in"]["queued"] == "process"


# -- Redis -----------------------------------------------------------------------------------


def _redis_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture
async def redis_url() -> AsyncIterator[str]:
    if not _redis_answers():
        if os.environ.get("EMPATHY_WEBHOOKS_REQUIRE_REDIS") == "1":
            pytest.fail("no Redis on 127.0.0.1:6379")
        pytest.skip("no Redis on 127.0.0.1:6379")

    prefix = f"test:gwcounts:{secrets.token_hex(4)}:"
    yield f"redis://127.0.0.1:6379/0?prefix={prefix}"
    from empathy_webhooks_redis.testing import delete_prefix

    await delete_prefix(prefix)


async def test_redis_dead_letters_counted_by_a_producer_gateway(
    tmp_path: Path, receiver: Receiver, redis_url: str
) -> None:
    """A gateway without workers on Redis: a worker elsewhere made the letters."""
    receiver.respond(500)
    path = _config(tmp_path, receiver.url(), store=redis_url)
    async with gateway_at(path) as (_, url), aiohttp.ClientSession() as session:
        for kind in ("a", "b"):
            await call(
                session, "POST", f"{url}/v1/events", token="writer", json={"event_type": kind}
            )
        for _ in range(500):
            _, body, _ = await call(session, "GET", f"{url}/v1/dead-letters", token="reader")
            if len(body["dead_letters"]) == 2:
                break
            await asyncio.sleep(0.02)
        letters = body["dead_letters"]
        assert len(letters) == 2
    gateway = Gateway.from_config(load_config(path), workers=False)
    async with running(gateway) as url, aiohttp.ClientSession() as session:
        _, listed, _ = await call(session, "GET", f"{url}/v1/webhooks", token="reader")
        (hook,) = listed["webhooks"]
        assert hook["dead_letters"] == 2
        assert hook["counted_in"]["dead_letters"] == "store"
        # One letter taken by a replay under way is not listed, nor counted.
        await gateway.dispatcher.store.take_dead_letter(letters[0]["dead_letter_id"])
        _, listed, _ = await call(session, "GET", f"{url}/v1/webhooks", token="reader")
        assert listed["webhooks"][0]["dead_letters"] == 1


def test_the_store_gauges_are_documented() -> None:
    from empathy_webhooks_core.prometheus import STORE_METRICS

    text = (Path(__file__).parent.parent / "docs" / "metrics.md").read_text()
    section = text.split("## What the store holds")[1].split("\n## ")[0]
    rows = re.findall(r"^\| `(empathy_webhooks_\w+)` \| (\w+) \| `(\w+)` \|", section, re.M)
    assert {name: (kind, (label,)) for name, kind, label in rows} == STORE_METRICS
