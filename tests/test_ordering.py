"""Per-key ordering: the same key reaches a webhook in emit order; other keys run in parallel."""

from __future__ import annotations

import asyncio

from empathy_webhooks_core import CustomWebhook, WebhookDispatcher
from empathy_webhooks_core.testing import ReceivedRequest, Receiver, Reply


async def test_same_key_arrives_in_emit_order_through_failures_and_retries() -> None:
    async with Receiver() as receiver:
        receiver.faults([(Reply(status=503), 0.3), (Reply(reset=True), 0.1)], seed=99)
        webhook = CustomWebhook(
            url=receiver.url(),
            max_concurrency=8,
            retry_policy={
                "max_retries": 30,
                "initial_delay_seconds": 0.001,
                "max_delay_seconds": 0.002,
            },
            circuit_breaker=False,
        )
        async with WebhookDispatcher(webhooks=[webhook]) as dispatcher:
            for n in range(40):
                for key in ("pr-1", "pr-2", "incident-7"):
                    await dispatcher.emit(
                        "code_review_complete", {"n": n, "key": key}, ordering_key=key
                    )
            await dispatcher.emit("alert", {"n": -1})  # no key: unordered
    sequences: dict[str, list[int]] = {}
    for request in receiver.delivered:
        body = request.json()
        key = body["data"].get("key")
        sequences.setdefault(str(key), []).append(body["data"]["n"])
    assert len(receiver.delivered) == 121
    assert len(receiver.requests) > 121  # failures really happened
    for key in ("pr-1", "pr-2", "incident-7"):
        assert sequences[key] == list(range(40)), key


async def test_a_stuck_key_does_not_hold_back_other_keys() -> None:
    release = asyncio.Event()

    async def handler(request: ReceivedRequest) -> Reply:
        if request.json()["data"]["key"] == "stuck":
            await release.wait()
        return Reply()

    async with Receiver() as receiver:
        receiver.handler = handler
        webhook = CustomWebhook(url=receiver.url(), max_concurrency=4)
        async with WebhookDispatcher(webhooks=[webhook]) as dispatcher:
            for n in range(3):
                await dispatcher.emit("alert", {"n": n, "key": "stuck"}, ordering_key="stuck")
            for n in range(10):
                await dispatcher.emit("alert", {"n": n, "key": "free"}, ordering_key="free")
            await receiver.wait_for(11)  # the stuck key's first, and every free one
            assert [r.json()["data"]["n"] for r in receiver.requests[1:]] == list(range(10))
            assert dispatcher.get_webhook_stats("custom_webhook")["queued"] == 2
            release.set()
        stuck = [
            r.json()["data"]["n"] for r in receiver.delivered if r.json()["data"]["key"] == "stuck"
        ]
        assert stuck == [0, 1, 2]
