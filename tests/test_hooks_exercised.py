"""The hooks no first-party test plugin otherwise implements, each exercised by a plugin of its
own through a real dispatcher: `store_backends`, `dispatcher_started` and `flush`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, ClassVar

import attrs

from empathy_webhooks_core import CustomWebhook, Webhook, WebhookDispatcher, hookimpl
from empathy_webhooks_core.plugins import build_plugin_manager
from empathy_webhooks_core.stores.memory import MemoryStore
from empathy_webhooks_core.testing import Receiver, Reply


class RecordingStore(MemoryStore):
    """The memory store, remembering the URL it was opened for and what it was told."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self.opened = 0

    async def open(self) -> Any:
        self.opened += 1
        return await super().open()


@attrs.frozen(kw_only=True, eq=False)
class BufferedWebhook(CustomWebhook):
    kind: ClassVar[str] = "buffered"


class LifecyclePlugin:
    def __init__(self) -> None:
        self.stores: list[RecordingStore] = []
        self.started: list[tuple[WebhookDispatcher, bool]] = []
        self.flushed: list[str] = []

    @hookimpl
    def webhook_types(self) -> dict[str, type[Webhook]]:
        return {"buffered": BufferedWebhook}

    @hookimpl
    def store_backends(self) -> dict[str, Any]:
        def open_memo(url: str) -> RecordingStore:
            store = RecordingStore(url)
            self.stores.append(store)
            return store

        return {"memo": open_memo}

    @hookimpl
    def dispatcher_started(self, dispatcher: WebhookDispatcher) -> None:
        self.started.append((dispatcher, not dispatcher.session.closed))

    @hookimpl
    def flush(self, webhook: Webhook, dispatcher: WebhookDispatcher) -> Awaitable[None]:
        # Only ever asked about its own webhooks (the "plain" CustomWebhook goes to the
        # custom plugin, which has no flush).
        async def send_buffer() -> None:
            await asyncio.sleep(0)
            self.flushed.append(webhook.name)

        return send_buffer()


async def test_store_backends_dispatcher_started_and_flush_reach_their_plugin() -> None:
    plugin = LifecyclePlugin()
    pm = build_plugin_manager(load_entry_points=False, extra_plugins=[plugin])
    async with Receiver() as receiver:
        receiver.queue(Reply(status=400))
        webhooks = [
            BufferedWebhook(name="buffered", url=receiver.url("/a")),
            CustomWebhook(name="plain", url=receiver.url("/b")),
        ]
        dispatcher = WebhookDispatcher(webhooks, store="memo://team", plugin_manager=pm)
        async with dispatcher:
            await dispatcher.emit("alert", {"title": "Disk full"})
            await dispatcher.drain(timeout=5)
            # The store the plugin named by its scheme holds the dead letter of the 400.
            assert [store.url for store in plugin.stores] == ["memo://team"]
            assert plugin.stores[0].opened == 1
            letters = await dispatcher.dead_letters()
            assert len(letters) == 1 and letters == await plugin.stores[0].dead_letters()
            # Told once, after start, with the session open.
            assert plugin.started == [(dispatcher, True)]
            # Drain flushed the plugin's own webhook only, and awaited what it returned.
            assert plugin.flushed == ["buffered"]
        assert plugin.flushed == ["buffered", "buffered"]  # and again before closing
        assert len(receiver.requests) == 2
