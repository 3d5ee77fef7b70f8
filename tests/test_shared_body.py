"""One event fanned out to many webhooks is encoded once: every delivery sends the same bytes
object, never a copy per delivery (issue 20: memory per queued delivery stays small however
large the event). No timing here; `benchmarks/queued.py` measures the bytes."""

from __future__ import annotations

from typing import Any, ClassVar

import attrs

from empathy_webhooks_core import CustomWebhook, Webhook, WebhookDispatcher
from empathy_webhooks_core.plugins import build_plugin_manager, hookimpl
from empathy_webhooks_core.testing import Receiver, Reply

FAST = {"initial_delay_seconds": 0.001, "max_delay_seconds": 0.01}


@attrs.frozen(kw_only=True, eq=False)
class SpiedWebhook(CustomWebhook):
    kind: ClassVar[str] = "spied"


class BodySpy:
    """Sees each request of its own webhooks (`SpiedWebhook`, a `CustomWebhook` rendered by the
    custom plugin) on its way to the core's HTTP delivery, and lets it go on (returning None,
    the core's `deliver` sends it)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    @hookimpl
    def webhook_types(self) -> dict[str, type[Webhook]]:
        return {"spied": SpiedWebhook}

    @hookimpl
    def deliver(self, webhook: Any, request: Any, session: Any) -> None:
        self.sent.append((webhook.name, request.body))
        return None


def _dispatcher(webhooks: list[SpiedWebhook], spy: BodySpy) -> WebhookDispatcher:
    return WebhookDispatcher(
        webhooks=webhooks, plugin_manager=build_plugin_manager(extra_plugins=[spy])
    )


def _ten(receiver: Receiver, **options: Any) -> list[SpiedWebhook]:
    return [
        SpiedWebhook(name=f"hook{n}", url=receiver.url(f"/hook{n}"), **options) for n in range(10)
    ]


async def test_one_event_to_ten_webhooks_sends_one_shared_body(receiver: Receiver) -> None:
    spy = BodySpy()
    async with _dispatcher(_ten(receiver), spy) as dispatcher:
        event = await dispatcher.emit("prediction", {"prediction": "x" * 10_000})
    assert sorted(name for name, _ in spy.sent) == [f"hook{n}" for n in range(10)]
    body = event.envelope_bytes()
    assert all(sent is body for _, sent in spy.sent), "a delivery sent a copy of the body"
    assert [r.body for r in receiver.requests] == [body] * 10


async def test_signing_does_not_copy_the_shared_body(receiver: Receiver) -> None:
    spy = BodySpy()
    webhooks = [
        SpiedWebhook(name=f"hook{n}", url=receiver.url(f"/hook{n}"), signing_secret=f"s{n}" * 8)
        for n in range(10)
    ]
    async with _dispatcher(webhooks, spy) as dispatcher:
        event = await dispatcher.emit("prediction", {"prediction": "signed"})
    assert len(spy.sent) == 10
    assert all(sent is event.envelope_bytes() for _, sent in spy.sent)
    # Each webhook's own signature over those bytes: the sharing did not cost correctness.
    signatures = {r.header("X-Signature") for r in receiver.requests}
    assert len(signatures) == 10


async def test_a_retry_sends_the_same_body_object(receiver: Receiver) -> None:
    receiver.queue(Reply(status=503))
    spy = BodySpy()
    webhook = SpiedWebhook(name="hook", url=receiver.url(), retry_policy=FAST)
    async with _dispatcher([webhook], spy) as dispatcher:
        event = await dispatcher.emit("prediction", {"prediction": "retried"})
    assert [r.answered for r in receiver.requests] == [503, 200]
    assert len(spy.sent) == 2
    assert spy.sent[0][1] is spy.sent[1][1] is event.envelope_bytes()
