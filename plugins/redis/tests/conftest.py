"""A real Redis on 127.0.0.1:6379 for these tests, or a clear skip (a failure in CI)."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import AsyncIterator

import pytest
from empathy_webhooks_redis.testing import delete_prefix

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REQUIRE_ENV = "EMPATHY_WEBHOOKS_REQUIRE_REDIS"


def _redis_answers() -> str | None:
    """None when a Redis server answers PING, else why not."""
    try:
        with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None if reply.startswith(b"+PONG") else f"unexpected reply {reply!r}"


def require_redis() -> None:
    problem = _redis_answers()
    if problem is None:
        return
    reason = (
        f"these tests need a real Redis server on {REDIS_HOST}:{REDIS_PORT} and none answers "
        f"({problem}); start one with `redis-server` (.ci/run does)"
    )
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason}; {REQUIRE_ENV}=1, so this is a failure, not a skip")
    pytest.skip(reason)


@pytest.fixture
async def redis_url() -> AsyncIterator[str]:
    """A store URL with a key prefix of its own; every key under it is deleted afterwards."""
    require_redis()
    prefix = f"test:{secrets.token_hex(4)}:"
    yield f"redis://{REDIS_HOST}:{REDIS_PORT}/0?prefix={prefix}"
    await delete_prefix(prefix, REDIS_HOST, REDIS_PORT)
