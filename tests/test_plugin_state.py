"""Per-webhook plugin state (`webhook_state`) and plugin figures (`webhook_stats`), through real
dispatchers delivering to a loopback receiver, with the memory, SQLite and Redis stores."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
import attrs

from empathy_webhooks_core import (
    CustomWebhook,
    KeyValue,
    OutgoingRequest,
    Response,
    StateContext,
    Webhook,
    WebhookDispatcher,
    WebhookMonitor,
    hookimpl,
    state_for,
)
from empathy_webhooks_core._sender import Sender
from empathy_webhooks_core.plugins import build_plugin_manager
from empathy_webhooks_core.stores.memory import MemoryStore
from empathy_webhooks_core.stores.sqlite import SQLiteStore
from empathy_webhooks_core.testing import Receiver


@attrs.frozen(kw_only=True, eq=False)
class CountedWebhook(CustomWebhook):
    """The test plugin's own webhook type (its plugin owns its per-type hooks)."""

    kind: ClassVar[str] = "counted"


class CountingState:
    """What the test plugin keeps per webhook: what the core told it, and what it sent."""

    def __init__(self, webhook: Webhook) -> None:
        self.webhook = webhook
        self.contexts: list[StateContext] = []
        self.delivered = 0
        self.flushed = 0
        self.closed = 0
        self.last_id: str | None = None

    def start(self, context: StateContext) -> None:
        self.contexts.append(context)

    async def close(self) -> None:
        await asyncio.sleep(0)
        self.closed += 1


class StatePlugin:
    """Keeps a state for its `CountedWebhook`s; counts deliveries through it and reports them,
    with a text, through `webhook_stats`."""

    def __init__(self) -> None:
        self.made: list[CountingState] = []

    @hookimpl
    def webhook_types(self) -> dict[str, type[Webhook]]:
        return {"counted": CountedWebhook}

    @hookimpl
    def webhook_state(self, webhook: Webhook) -> CountingState | None:
        if not isinstance(webhook, CountedWebhook):
            return None
        state = CountingState(webhook)
        self.made.append(state)
        return state

    @hookimpl
    def deliver(
        self,
        webhook: Webhook,
        request: OutgoingRequest,
        session: aiohttp.ClientSession,
        state: Any,
    ) -> Awaitable[Response] | None:
        if not isinstance(state, CountingState):
            return None

        async def send() -> Response:
            response = await Sender(webhook, session).send(request)
            state.delivered += 1
            state.last_id = request.json_body()["event_id"]
            await state.contexts[-1].memory.set("last", state.last_id, 60)
            return response

        return send()

    @hookimpl
    def flush(self, webhook: Webhook, state: Any) -> Awaitable[None] | None:
        if not isinstance(state, CountingState):
            return None

        async def count() -> None:
            state.flushed += 1

        return count()

    @hookimpl
    def webhook_stats(self, webhook: Webhook, state: Any) -> dict[str, Any] | None:
        if not isinstance(state, CountingState):
            return None
        return {"delivered": state.delivered, "last_id": state.last_id}


class BrokenStats:
    @hookimpl
    def webhook_stats(self, webhook: Webhook, state: Any) -> dict[str, Any]:
        raise RuntimeError("no figures today")


async def test_the_state_is_made_once_started_given_to_the_hooks_and_closed_after_flush() -> None:
    plugin = StatePlugin()
    pm = build_plugin_manager(load_entry_points=False, extra_plugins=[plugin, BrokenStats()])
    async with Receiver() as receiver:
        counted = CountedWebhook(name="counted", url=receiver.url("/a"))
        plain = CustomWebhook(name="plain", url=receiver.url("/b"))
        dispatcher = WebhookDispatcher([counted, plain], plugin_manager=pm)
        async with dispatcher:
            [state] = plugin.made
            # Started once, in the loop, with what a plugin needs instead of the dispatcher.
            [context] = state.contexts
            assert context.webhook is counted and context.clock is dispatcher.clock
            assert context.sender.webhook is counted and not context.sender.session.closed
            event = await dispatcher.emit("alert", {"title": "Disk full"})
            await dispatcher.drain(timeout=5)
            assert state_for(counted, plugin_manager=pm) is state
            assert state.delivered == 1 and state.flushed == 1 and state.closed == 0
            assert await context.memory.get("last") == event.event_id
            stats = dispatcher.get_webhook_stats("counted")
            assert stats["plugin.StatePlugin.delivered"] == 1
            assert stats["plugin.StatePlugin.last_id"] == event.event_id
            assert stats["delivered_count"] == 1
            # A webhook with no state: the plugin's figures are absent, the delivery normal.
            assert not any(
                key.startswith("plugin.") for key in dispatcher.get_webhook_stats("plain")
            )
        assert state.closed == 1 and state.flushed == 2  # drain on close flushed again first
        assert len(receiver.requests) == 2
        # Kept for its figures after the close, by the process's monitor too.
        assert WebhookMonitor().get_webhook_stats("counted")["plugin.StatePlugin.delivered"] == 1
        assert state_for(counted, make=False) is state
        # Asked for again, a closed state is replaced by a new one.
        assert state_for(counted, plugin_manager=pm) is not state


async def test_a_state_made_before_start_is_the_one_the_dispatcher_starts() -> None:
    plugin = StatePlugin()
    pm = build_plugin_manager(load_entry_points=False, extra_plugins=[plugin])
    async with Receiver() as receiver:
        counted = CountedWebhook(name="counted_early", url=receiver.url("/a"))
        early = state_for(counted, plugin_manager=pm)
        assert isinstance(early, CountingState) and early.contexts == []
        async with WebhookDispatcher([counted], plugin_manager=pm):
            assert plugin.made == [early] and len(early.contexts) == 1


async def test_a_webhook_two_dispatchers_serve_shares_one_state_closed_by_the_last() -> None:
    plugin = StatePlugin()
    pm = build_plugin_manager(load_entry_points=False, extra_plugins=[plugin])
    async with Receiver() as receiver:
        counted = CountedWebhook(name="counted_shared", url=receiver.url("/a"))
        first = WebhookDispatcher([counted], plugin_manager=pm)
        second = WebhookDispatcher([counted], plugin_manager=pm)
        async with first:
            async with second:
                [state] = plugin.made
                assert len(state.contexts) == 2
                await first.emit("alert", {"n": 1})
                await second.emit("alert", {"n": 2})
                await first.drain(timeout=5)
                await second.drain(timeout=5)
                # Both dispatchers read the one state: the monitor counts it once.
                assert (
                    WebhookMonitor().get_webhook_stats("counted_shared")[
                        "plugin.StatePlugin.delivered"
                    ]
                    == 2
                )
            assert state.closed == 0  # the first still serves the webhook
            # ... and the state goes on with the first's context, whose session is open.
            assert len(state.contexts) == 3 and state.contexts[-1] is state.contexts[0]
            assert not state.contexts[-1].sender.session.closed
        assert state.closed == 1


# -- the key-value memory each store gives -------------------------------------------------


async def check_memory(memory: KeyValue, other: KeyValue) -> None:
    assert await memory.get("k") is None
    await memory.set("k", "v1", 60)
    assert await memory.get("k") == "v1"
    assert await other.get("k") is None  # another namespace
    assert await memory.add("k", "v2", 60) is False
    assert await memory.get("k") == "v1"
    await memory.delete("k")
    assert await memory.add("k", "v3", 60) is True
    assert await memory.get("k") == "v3"
    await memory.set("gone", "x", 0.001)
    deadline = asyncio.get_running_loop().time() + 5
    while await memory.get("gone") is not None:
        assert asyncio.get_running_loop().time() < deadline, "an expired key never went"
        await asyncio.sleep(0.01)
    assert await memory.add("gone", "y", 60) is True


async def test_the_memory_store_keeps_plugin_memory_in_the_process() -> None:
    store = MemoryStore()
    await check_memory(store.key_value("jira:a:"), store.key_value("jira:b:"))


async def test_sqlite_keeps_plugin_memory_in_its_file_for_every_process(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    one, two = SQLiteStore(path), SQLiteStore(path)
    await one.open()
    await two.open()
    try:
        await check_memory(one.key_value("jira:a:"), one.key_value("jira:b:"))
        await one.key_value("jira:a:").set("created", "10001", 60)
        assert await two.key_value("jira:a:").get("created") == "10001"
    finally:
        await one.close()
        await two.close()


@attrs.frozen(kw_only=True, eq=False)
class CoroutineStateWebhook(CustomWebhook):
    kind: ClassVar[str] = "coroutine-state"


class CoroutineStatePlugin:
    """A `webhook_state` that hands back a coroutine: a sync hook calling an async maker."""

    @hookimpl
    def webhook_types(self) -> dict[str, type[Webhook]]:
        return {"coroutine-state": CoroutineStateWebhook}

    @hookimpl
    def webhook_state(self, webhook: Webhook) -> Any:
        async def make() -> CountingState:
            return CountingState(webhook)

        return make()


async def test_a_state_hook_that_returns_a_coroutine_is_said_not_dropped(
    caplog: Any,
) -> None:
    caplog.set_level(logging.ERROR, logger="empathy_webhooks")
    pm = build_plugin_manager(load_entry_points=False, extra_plugins=[CoroutineStatePlugin()])
    async with Receiver() as receiver:
        hook = CoroutineStateWebhook(name="co", url=receiver.url("/co"))
        async with WebhookDispatcher([hook], plugin_manager=pm) as dispatcher:
            await dispatcher.emit("alert", {"n": 1})
            await dispatcher.drain(timeout=10)
        assert len(receiver.requests) == 1
    lines = [r.getMessage() for r in caplog.records if "plugin_hook_failed" in r.getMessage()]
    assert lines and all("webhook_state returned a coroutine" in line for line in lines), lines
    assert all("webhook='co'" in line or '"webhook": "co"' in line for line in lines), lines
