"""Per-webhook plugin state: what a plugin keeps for one webhook between deliveries (a metric
buffer, what it created, what it looked up), held by the core rather than in mutable fields of a
frozen webhook or in module globals.

The webhook's plugin makes the object (the `webhook_state` hook). The core keeps one per webhook
object, starts it when a dispatcher starts serving the webhook (`state.start(context)`), hands it
to the hooks that need it (`deliver`, `flush`, `webhook_stats`) and closes it when the last
dispatcher serving the webhook stops (`await state.close()`). Both methods are optional.

A state may also be asked for before any dispatcher runs the webhook (`state_for`, e.g. by
`DatadogWebhook.send_metric`): it is made then, holds what it is given, and is started by the
first dispatcher that serves the webhook. Once closed it is kept for its figures until it is
asked for again, when a new one is made.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import weakref
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs
import pluggy

from .._log import get_logger
from .._sender import Sender
from ..clock import Clock
from ..plugins import get_plugin_manager, hooks_for
from ..redaction import redact_text
from ..stores.base import HasKeyValue, KeyValue
from ..stores.memory import InProcessKeyValue
from ..webhooks import Webhook

if TYPE_CHECKING:
    from ..plugins import Hooks
    from ..stores.base import DeliveryStore

__all__ = [
    "ClosingState",
    "StartingState",
    "StateContext",
    "WebhookStates",
    "current_state",
    "state_for",
]

log = get_logger()


@attrs.frozen
class StateContext:
    """What a state is given when a dispatcher starts serving its webhook: all a plugin needs
    to work outside a delivery, without the dispatcher itself.

    `sender` is the dispatcher's `Sender` for the webhook (its session, guarded when the
    webhook blocks private addresses, and its timeout). `memory` is a `KeyValue` kept by the
    store when it offers one (Redis: shared by every worker; SQLite: in its file), else in this
    process; its keys are the webhook's own (namespaced by kind and name).
    """

    webhook: Webhook
    clock: Clock
    sender: Sender
    memory: KeyValue


@runtime_checkable
class StartingState(Protocol):
    """A state that wants to know when a dispatcher starts serving its webhook."""

    def start(self, context: StateContext) -> None:
        """Called in the dispatcher's event loop, before any delivery of the webhook; again,
        with the new dispatcher's context, if another dispatcher starts serving it. Quick, no
        I/O (spawn a task for that). An exception is logged and the state still used."""
        ...


@runtime_checkable
class ClosingState(Protocol):
    """A state with something to end (timers, tasks) when no dispatcher serves its webhook."""

    def close(self) -> Awaitable[None] | None:
        """Called once, after the dispatcher's final `flush`, by the last dispatcher serving
        the webhook to stop. May be `async def`. An exception is logged."""
        ...


@attrs.define(eq=False)
class _Entry:
    state: Any
    #: The dispatchers (by id) serving the webhook: the context each started the state with,
    #: and its loop, so the state can go back to one still running when another stops.
    holders: dict[int, tuple[StateContext | None, asyncio.AbstractEventLoop]] = attrs.field(
        factory=dict
    )
    closed: bool = False


_lock = threading.Lock()
_entries: weakref.WeakKeyDictionary[Webhook, _Entry] = weakref.WeakKeyDictionary()


def _entry(webhook: Webhook, hooks: Hooks) -> _Entry:
    """The webhook's live entry, made through its plugin's `webhook_state` hook if none."""
    with _lock:
        entry = _entries.get(webhook)
        if entry is not None and not entry.closed:
            return entry
    # Made outside the lock: the hook is plugin code. Two threads racing make two objects and
    # keep the first; states are cheap to make (the hook does no I/O).
    made = _Entry(hooks.webhook_state(webhook))
    with _lock:
        entry = _entries.get(webhook)
        if entry is not None and not entry.closed:
            return entry
        _entries[webhook] = made
        return made


def state_for(
    webhook: Webhook, *, plugin_manager: pluggy.PluginManager | None = None, make: bool = True
) -> Any:
    """The state the core keeps for `webhook`, made by its plugin if there is none yet.

    For plugin code outside a hook (a method users call on the webhook). Inside `deliver`,
    `flush` and `webhook_stats` the state is an argument. Made with `plugin_manager`'s plugins
    (the process's if None) when no dispatcher has made it. None when the webhook's plugin
    keeps no state. With `make=False` nothing is made: the webhook's latest state, even one
    closed since (to read its figures), or None. Safe from any thread.
    """

    with _lock:
        entry = _entries.get(webhook)
        if entry is not None and (not entry.closed or not make):
            return entry.state
    if not make:
        return None
    return _entry(webhook, hooks_for(plugin_manager or get_plugin_manager())).state


def current_state(webhook: Webhook, hooks: Hooks) -> Any:
    """The live state of `webhook` (made with `hooks` if none): what `deliver` is given."""
    # Read without the lock first (asked on every attempt; a dict read is atomic): the lock
    # is for making or replacing an entry, which `_entry` does under it.
    entry = _entries.get(webhook)
    if entry is not None and not entry.closed:
        return entry.state
    return _entry(webhook, hooks).state


def _start(state: StartingState, context: StateContext) -> None:
    try:
        state.start(context)
    except Exception as exc:
        _plugin_failed("start", context.webhook, exc)


def _plugin_failed(what: str, webhook: Webhook, exc: BaseException) -> None:
    log.error(
        "plugin_state_failed",
        step=what,
        webhook=webhook.name,
        error=redact_text(f"{type(exc).__name__}: {exc}"),
    )


class WebhookStates:
    """One dispatcher's side of the states: it starts those of its webhooks when it starts (or
    when a webhook is added to it running), and closes them when it stops, unless another
    dispatcher still serves the webhook."""

    def __init__(self, hooks: Hooks) -> None:
        self._hooks = hooks
        self._held: dict[str, tuple[Webhook, _Entry]] = {}
        # Used for the memory of webhooks whose store keeps none: lives as long as this
        # dispatcher, like the memory store's.
        self._memory = InProcessKeyValue()

    def start(self, webhook: Webhook, clock: Clock, sender: Sender, store: DeliveryStore) -> None:
        entry = _entry(webhook, self._hooks)
        self._held[webhook.name] = (webhook, entry)
        state = entry.state
        loop = asyncio.get_running_loop()
        if not isinstance(state, StartingState):
            with _lock:
                entry.holders[id(self)] = (None, loop)
            return
        namespace = f"{webhook.kind}:{webhook.name}:"
        memory = (
            store.key_value(namespace)
            if isinstance(store, HasKeyValue)
            else self._memory.key_value(namespace)
        )
        context = StateContext(webhook=webhook, clock=clock, sender=sender, memory=memory)
        with _lock:
            entry.holders[id(self)] = (context, loop)
        _start(state, context)

    def holds(self, webhook: Webhook) -> bool:
        held = self._held.get(webhook.name)
        if held is None or held[0] is not webhook:
            return False
        with _lock:
            return id(self) in held[1].holders

    def state(self, webhook: Webhook) -> Any:
        held = self._held.get(webhook.name)
        return None if held is None else held[1].state

    async def stop(self) -> None:
        """Close the states no other dispatcher serves (after the final flush). A `close`
        that raises is logged; the others are still closed. Their figures stay readable."""
        for webhook, entry in self._held.values():
            with _lock:
                if entry.holders.pop(id(self), None) is None:
                    continue  # stopped already (a failed start, then a close)
                others = list(entry.holders.values())
                last = not others and not entry.closed
                if last:
                    entry.closed = True
            if others:
                # Another dispatcher still serves the webhook: the state goes on with its
                # context (its session stays open when ours closes), in its loop.
                context, loop = others[-1]
                if context is not None and isinstance(entry.state, StartingState):
                    if loop is asyncio.get_running_loop():
                        _start(entry.state, context)
                    else:
                        loop.call_soon_threadsafe(_start, entry.state, context)
                continue
            if not last:
                continue
            if not isinstance(entry.state, ClosingState):
                continue
            try:
                result = entry.state.close()
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                _plugin_failed("close", webhook, exc)

    def figures(self, name: str) -> tuple[int, dict[str, Any]] | None:
        """The plugins' figures for webhook `name` (`webhook_stats`, namespaced), and which
        state they describe (so a state two dispatchers share is counted once)."""
        held = self._held.get(name)
        if held is None:
            return None
        webhook, entry = held
        return id(entry), self._hooks.webhook_stats(webhook, entry.state)
