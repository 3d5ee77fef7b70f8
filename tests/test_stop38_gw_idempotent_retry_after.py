"""A batch partly queued (503 `/problems/batch-partly-queued`) answered again under its
Idempotency-Key keeps its `Retry-After`: docs/gateway.md says every 503 carries it, and the
replay had only `Idempotent-Replayed`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import aiohttp

from empathy_webhooks_core.testing import Receiver

from ._gateway_kit import call, config_text, gateway_at, write_config


async def test_a_replayed_partly_queued_batch_says_when_to_retry(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.respond(200, delay=30)  # deliveries stay in flight: the queue stays full
    path = write_config(
        tmp_path,
        config_text(
            receiver.url(),
            store=f"sqlite:///{tmp_path / 'outbox.db'}",
            webhook="max_pending = 2",
        ),
    )
    batch = {"events": [{"event_type": "a"}, {"event_type": "b"}, {"event_type": "c"}]}
    key = {"Idempotency-Key": "partly-1"}
    async with gateway_at(path) as (_, url), aiohttp.ClientSession() as session:
        status, first, headers = await call(
            session, "POST", f"{url}/v1/events:batch", token="writer", json=batch, headers=key
        )
        assert status == 503 and first["type"] == "/problems/batch-partly-queued"
        retry_after = headers["Retry-After"]
        status, again, headers = await call(
            session, "POST", f"{url}/v1/events:batch", token="writer", json=batch, headers=key
        )
        assert status == 503 and again == first
        assert headers["Idempotent-Replayed"] == "true"
        assert headers.get("Retry-After") == retry_after
    # After a restart (the answer comes from the store's key-value memory).
    async with gateway_at(path) as (_, url), aiohttp.ClientSession() as session:
        status, again, headers = await call(
            session, "POST", f"{url}/v1/events:batch", token="writer", json=batch, headers=key
        )
        assert status == 503 and again == first
        assert headers.get("Retry-After") == retry_after


async def test_an_answer_kept_without_its_headers_still_says_when(
    tmp_path: Path, receiver: Receiver
) -> None:
    """A partly-queued answer kept before its headers were (an older gateway on the same
    store) is replayed with the gateway's usual Retry-After."""
    path = write_config(
        tmp_path, config_text(receiver.url(), store=f"sqlite:///{tmp_path / 'outbox.db'}")
    )
    raw = json.dumps({"events": [{"event_type": "a"}]}).encode()
    kept = {
        "fingerprint": hashlib.sha256(raw).hexdigest(),
        "status": 503,
        "body": {"type": "/problems/batch-partly-queued", "status": 503, "events": []},
    }
    async with gateway_at(path) as (gateway, url), aiohttp.ClientSession() as session:
        memory = gateway.dispatcher.store.key_value("gateway:idempotency:")  # type: ignore[attr-defined]
        await memory.set("writer:events:batch:old-1", json.dumps(kept), 3600)
        status, again, headers = await call(
            session,
            "POST",
            f"{url}/v1/events:batch",
            token="writer",
            data=raw,
            headers={"Idempotency-Key": "old-1", "Content-Type": "application/json"},
        )
        assert status == 503 and again == kept["body"]
        assert headers["Idempotent-Replayed"] == "true"
        assert int(headers["Retry-After"]) >= 1
