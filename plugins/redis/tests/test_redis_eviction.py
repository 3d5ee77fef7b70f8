"""A Redis that may delete this store's keys to make room (a `maxmemory` with an eviction
policy other than `noeviction`, as for a cache) is said when the store opens: an error when
the deliveries' stream itself can go (`allkeys-*`), a warning when only expiring keys can.
Private `redis-server`s with those settings; the shared one is never reconfigured."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from empathy_webhooks_redis._eviction import eviction_risk
from empathy_webhooks_redis.testing import RedisServer

from empathy_webhooks_core import CustomWebhook, WebhookDispatcher

REQUIRE_ENV = "EMPATHY_WEBHOOKS_REQUIRE_REDIS"


def said(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "redis_may_evict" in r.getMessage()]


@pytest.mark.parametrize(
    ("policy", "level"),
    [
        ("allkeys-lru", logging.ERROR),
        ("allkeys-random", logging.ERROR),
        ("volatile-ttl", logging.WARNING),
        ("noeviction", None),
    ],
)
async def test_an_evicting_server_is_said_once_when_the_store_opens(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, policy: str, level: int | None
) -> None:
    if not RedisServer.available():
        reason = "this test starts its own redis-server, and none is installed"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    caplog.set_level(logging.WARNING, logger="empathy_webhooks")
    hook = CustomWebhook(name="h", url="http://127.0.0.1:9/never")
    with RedisServer(tmp_path, "--maxmemory", "64mb", "--maxmemory-policy", policy) as server:
        async with WebhookDispatcher(webhooks=[hook], store=f"{server.url}?prefix=t:") as d:
            await d.emit("alert", {})
    lines = said(caplog)
    if level is None:
        assert lines == []
        return
    [line] = lines
    assert line.levelno == level
    assert f"maxmemory-policy is {policy}" in line.getMessage()
    assert "noeviction" in line.getMessage()


def test_the_reasons_say_what_can_vanish() -> None:
    limit = {"maxmemory": 64 << 20}
    level, reason = eviction_risk({**limit, "maxmemory_policy": "allkeys-lru"}) or ("", "")
    assert level == "error"
    assert "the deliveries' stream and dead letters included" in reason
    assert "queued alerts vanish without an error" in reason
    level, reason = eviction_risk({**limit, "maxmemory_policy": "volatile-lru"}) or ("", "")
    assert level == "warning"
    assert "queued deliveries and dead letters do not expire and are kept" in reason


def test_no_limit_means_nothing_is_evicted_whatever_the_policy() -> None:
    assert eviction_risk({"maxmemory": 0, "maxmemory_policy": "allkeys-lru"}) is None
    assert eviction_risk({"maxmemory": 1 << 20, "maxmemory_policy": "noeviction"}) is None
    assert eviction_risk({}) is None
    level, _ = eviction_risk({"maxmemory": "1048576", "maxmemory_policy": "allkeys-lfu"}) or (
        "",
        "",
    )
    assert level == "error"
