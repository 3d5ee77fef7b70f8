"""A lane's worker starts in a context of its own, not a copy of the emit that woke it: the
context variables of one emit (a request id, a current span) must not follow every later
delivery of other emits. What plugins rely on for a delivery is what `delivery_context`
carried, which each attempt receives."""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from typing import Any

from empathy_webhooks_core import CustomWebhook, Event, Webhook, WebhookDispatcher
from empathy_webhooks_core.plugin import DeliveryResult, hookimpl
from empathy_webhooks_core.plugins import build_plugin_manager
from empathy_webhooks_core.testing import Receiver

REQUEST: contextvars.ContextVar[str] = contextvars.ContextVar("request", default="none")


class Observer:
    """Records, in the worker, the caller's variable and what the delivery carried."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, Mapping[str, str]]] = []

    @hookimpl
    def delivery_context(self, webhook: Webhook, event: Event) -> Mapping[str, str]:
        return {"request": REQUEST.get()}

    @hookimpl
    def before_attempt(
        self,
        webhook: Webhook,
        event: Event,
        delivery_id: str,
        attempt: int,
        request: Any,
        context: Mapping[str, str],
    ) -> None:
        self.seen.append(("attempt", REQUEST.get(), dict(context)))

    @hookimpl
    def on_success(self, webhook: Webhook, event: Event, result: DeliveryResult) -> None:
        self.seen.append(("success", REQUEST.get(), {}))


async def test_a_worker_keeps_no_context_of_the_emit_that_started_it() -> None:
    observer = Observer()
    pm = build_plugin_manager(load_entry_points=False, extra_plugins=[observer])
    async with Receiver() as receiver:
        webhook = CustomWebhook(name="ops", url=receiver.url())
        async with WebhookDispatcher(webhooks=[webhook], plugin_manager=pm) as dispatcher:
            for request in ("first", "second"):
                token = REQUEST.set(request)
                try:
                    await dispatcher.emit("alert", {"title": request})
                finally:
                    REQUEST.reset(token)
                await dispatcher.drain()
    assert observer.seen == [
        ("attempt", "none", {"request": "first"}),
        ("success", "none", {}),
        ("attempt", "none", {"request": "second"}),
        ("success", "none", {}),
    ]
