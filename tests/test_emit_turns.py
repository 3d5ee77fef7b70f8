"""A task that emits event after event without awaiting anything else (a backfill) must not
keep the event loop to itself: the workers of a lane with a backlog get turns while it runs,
whatever the store. Into the memory store an emit gives a turn at most every `TURN_SLICE`
seconds (a turn on every emit was a third of its cost); into SQLite, on every emit."""

from __future__ import annotations

from pathlib import Path

import pytest

from empathy_webhooks_core import CustomWebhook, WebhookDispatcher
from empathy_webhooks_core.testing import Receiver


@pytest.mark.parametrize("store", ["memory", "sqlite"])
async def test_a_tight_emit_loop_leaves_the_workers_turns(
    tmp_path: Path, receiver: Receiver, store: str
) -> None:
    spec = None if store == "memory" else f"sqlite:///{tmp_path / 'outbox.db'}"
    hook = CustomWebhook(name="h", url=receiver.url("/h"), circuit_breaker=False)
    async with WebhookDispatcher(webhooks=[hook], store=spec) as dispatcher:
        for n in range(3_000):
            await dispatcher.emit("prediction", {"n": n})
        # Answered while the loop above ran, not only once it ended.
        during = len(receiver.delivered)
        await dispatcher.drain()
    assert during > 0
    assert sorted(r.json()["data"]["n"] for r in receiver.delivered) == list(range(3_000))
