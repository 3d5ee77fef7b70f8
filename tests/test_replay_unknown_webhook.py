"""Replaying a dead letter whose webhook this dispatcher (or gateway) does not have: a clear
refusal naming the webhook, and the letter stays a dead letter, on every store. Before, the
gateway answered a false 404 "no dead letter" on SQLite, and the dispatcher a bare
`KeyError`. (Redis, where the letter used to vanish: plugins/redis/tests.)"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from empathy_webhooks_core import CustomWebhook, WebhookDispatcher
from empathy_webhooks_core.monitor import UnknownWebhookError
from empathy_webhooks_core.stores.memory import MemoryStore
from empathy_webhooks_core.testing import Receiver

from ._gateway_kit import call, config_text, gateway_at, write_config


def _hook(receiver: Receiver, name: str) -> CustomWebhook:
    return CustomWebhook(name=name, url=receiver.url(f"/{name}"), retry_policy={"max_retries": 0})


async def _letter_for(store: str | MemoryStore, receiver: Receiver, name: str) -> str:
    """The id of a dead letter for webhook `name`, left in `store` by a dispatcher of its own."""
    receiver.respond(400)
    async with WebhookDispatcher(webhooks=[_hook(receiver, name)], store=store) as owner:
        await owner.emit("alert", {"n": 1})
        await owner.drain(timeout=10)
        (letter,) = await owner.dead_letters()
    receiver.respond(200)
    receiver.requests.clear()
    return letter.dead_letter_id


async def test_the_gateway_answers_409_naming_the_webhook_and_keeps_the_letter(
    tmp_path: Path, receiver: Receiver
) -> None:
    store = f"sqlite:///{tmp_path / 'outbox.db'}"
    letter_id = await _letter_for(store, receiver, "gone")
    config = write_config(tmp_path, config_text(receiver.url("/hook"), store=store))

    async with gateway_at(config) as (_, url), aiohttp.ClientSession() as session:
        status, body, headers = await call(
            session, "POST", f"{url}/v1/dead-letters/{letter_id}/replay"
        )
        assert status == 409, body
        assert headers["Content-Type"].startswith("application/problem+json")
        assert body["type"] == "/problems/not-replayable"
        assert f"dead letter {letter_id!r} is for unknown webhook 'gone'" in body["detail"]
        assert "its webhooks: hook" in body["detail"]
        status, listed, _ = await call(session, "GET", f"{url}/v1/dead-letters", token="reader")
        assert status == 200
        assert [d["dead_letter_id"] for d in listed["dead_letters"]] == [letter_id]
        # Replay-all skips it, as before: the same letter, still listed.
        status, body, _ = await call(session, "POST", f"{url}/v1/dead-letters/replay")
        assert status == 202 and body == {"replayed": [], "skipped": [letter_id]}
    assert receiver.requests == []


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
@pytest.mark.parametrize("given", ["id", "letter"])
async def test_the_dispatcher_raises_unknown_webhook_and_keeps_the_letter(
    tmp_path: Path, receiver: Receiver, kind: str, given: str
) -> None:
    store: str | MemoryStore = (
        f"sqlite:///{tmp_path / 'outbox.db'}" if kind == "sqlite" else MemoryStore()
    )
    letter_id = await _letter_for(store, receiver, "gone")
    async with WebhookDispatcher(webhooks=[_hook(receiver, "hook")], store=store) as other:
        (letter,) = await other.dead_letters()
        with pytest.raises(UnknownWebhookError) as raised:
            await other.replay_dead_letter(letter_id if given == "id" else letter)
        assert str(raised.value).startswith(
            f"dead letter {letter_id!r} is for unknown webhook 'gone': this dispatcher does "
            "not have it (its webhooks: hook)"
        )
        assert [d.dead_letter_id for d in await other.dead_letters()] == [letter_id]
        await other.drain(timeout=10)
    assert receiver.requests == []
