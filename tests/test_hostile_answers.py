"""Hostile answers stay small: whatever a receiver sends back (a malformed status line tens of
thousands of characters long, huge headers, a body that never ends), every reason, log line
and dead-letter field built from it is cut to the 500-character excerpt rule, and the
delivery still ends (dead-lettered, `on_failure` told)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from empathy_webhooks_core import CustomWebhook, DeliveryError, WebhookDispatcher

Answer = Callable[[asyncio.StreamWriter], Awaitable[None]]
EXCERPT = 500


async def status_line(writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 4x0 " + b"Z" * 29_000 + b"\r\n\r\n")
    await writer.drain()


async def huge_headers(writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 400 Bad Request\r\n")
    for number in range(50):
        writer.write(f"X-Echo-{number}: ".encode() + b"H" * 8000 + b"\r\n")
    writer.write(b"\r\n")
    await writer.drain()


async def one_huge_header(writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 400 Bad Request\r\nX-Echo: " + b"H" * 200_000 + b"\r\n\r\n")
    await writer.drain()


async def endless_body(writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\r\n")
    for _ in range(10_000):  # 640 MB if anyone read it all; nobody should
        writer.write(b"B" * 65536)
        await writer.drain()


class RawServer:
    """A TCP server on loopback that reads the request head and answers with raw bytes."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests = 0
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            self.requests += 1
            await self.answer(writer)
        except (OSError, asyncio.IncompleteReadError):
            pass  # the client hung up: what it should do with an endless body
        finally:
            writer.close()

    def url(self, path: str) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}{path}"


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[[Answer], Awaitable[RawServer]]]:
    servers: list[RawServer] = []

    async def start(answer: Answer) -> RawServer:
        raw = RawServer(answer)
        raw.server = await asyncio.start_server(raw.handle, "127.0.0.1", 0)
        servers.append(raw)
        return raw

    yield start
    for raw in servers:
        assert raw.server is not None
        raw.server.close()


@pytest.mark.parametrize(
    "answer", [status_line, huge_headers, one_huge_header, endless_body], ids=lambda a: a.__name__
)
async def test_every_text_built_from_a_hostile_answer_is_bounded(
    raw_server: Callable[[Answer], Awaitable[RawServer]],
    answer: Answer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="empathy_webhooks")
    server = await raw_server(answer)
    errors: list[DeliveryError] = []
    webhook = CustomWebhook(
        url=server.url("/hook"),
        retry_policy={"max_retries": 1, "initial_delay_seconds": 0.001, "timeout_seconds": 20},
        on_failure=lambda w, e, error: errors.append(error),
    )
    async with WebhookDispatcher([webhook]) as dispatcher:
        await dispatcher.emit("alert", {"message": "disk full"})
        await dispatcher.drain(timeout=60)
        dead = await dispatcher.dead_letters()
        stats = dispatcher.get_webhook_stats(webhook.name)
    assert server.requests >= 1
    [error] = errors
    [letter] = dead
    assert len(error.reason) <= EXCERPT, len(error.reason)
    assert error.body_excerpt is None or len(error.body_excerpt) <= EXCERPT
    assert len(str(error)) <= 3 * EXCERPT, len(str(error))
    for value in letter.error.values():
        assert not isinstance(value, str) or len(value) <= EXCERPT, len(value)
    assert len(json.dumps(letter.to_dict())) <= 4000
    if error.last_exception is not None:
        assert len(str(error.last_exception)) <= EXCERPT
        assert len(repr(error.last_exception)) <= EXCERPT + 100
    last_error: Any = stats.get("last_error")
    assert last_error is None or len(json.dumps(last_error, default=str)) <= 2 * EXCERPT
    lines = [record.getMessage() for record in caplog.records]
    assert any("delivery_failed" in line for line in lines)
    assert max(len(line) for line in lines) <= 2000, max(len(line) for line in lines)
