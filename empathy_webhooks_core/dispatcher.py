"""`WebhookDispatcher`: emit events, queue a delivery per webhook, run the workers, drain.

The dispatcher wires the pipeline's steps, each in its own module under `_pipeline/` (see
`docs/pipeline.md`): `admission` (an event's deliveries, `QueueFull`), `lane` (a webhook's
queue, gate and ordering chains), `work` (a lane's workers), `outcome` (the pure decision
after an attempt), `failures` (callbacks, dead letters, fallback, replay), `paging` (what a
store holds pending) and `sessions`. Itself it holds the lifecycle, the webhook table and the
public operations; it decides nothing about a delivery.

It is a little over ~400 lines because it is the user's API: the public methods' signatures
and docstrings (`emit` alone documents eight fields) belong where users read them, and the
lifecycle (open the store, sessions and lanes in order, undo a failed start, drain, stop) reads
best in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import aiohttp
import pluggy

from . import monitor as monitor_module
from ._bounds import check_number
from ._log import get_logger
from ._pipeline.admission import Held, QueueFull, admit, admit_many
from ._pipeline.failures import Failures
from ._pipeline.lane import RESUME_WINDOW, Guards, Lane, LaneSnapshot, LaneTable
from ._pipeline.paging import Pager
from ._pipeline.sessions import MAX_CONNECTIONS, USER_AGENT, Sessions
from ._pipeline.state import WebhookStates
from ._pipeline.work import Workers
from ._sender import Sender
from .clock import Clock, SystemClock
from .config import load_config
from .delivery import render as render_delivery
from .events import (
    DEFAULT_MAX_DATA_DEPTH,
    DETECT,
    MAX_DATA_DEPTH_LIMIT,
    Event,
    check_depth,
    check_framework_version,
    data_depth_limit,
)
from .events import framework_version as stamp_framework_version
from .history import DeliveryPage, DeliveryQuery, DeliveryRecord, KeepsHistory
from .monitor import UnknownWebhookError, WebhookMonitor
from .plugins import Hooks, get_plugin_manager, hooks_for
from .redaction import redact_text
from .stores import (
    ConfirmsHolding,
    DeadLetter,
    Delivery,
    DeliveryStore,
    MemoryStore,
    open_store,
)
from .webhooks import Webhook, webhook_sequence
from .wire import OutgoingRequest

__all__ = [
    "MAX_CONNECTIONS",
    "RESUME_WINDOW",
    "USER_AGENT",
    "LaneSnapshot",
    "QueueFull",
    "WebhookDispatcher",
]

log = get_logger()
#: How many lost deliveries' event ids `close` names with a memory store (the rest counted).
_LOST_IDS_SHOWN = 100
#: The context an event is built in when every setting is the default: nothing to enter.
_NO_SETTINGS = contextlib.nullcontext()


class WebhookDispatcher:
    """Routes events to webhooks and delivers them in the background.

    Use it as an async context manager; leaving the block drains every queued delivery, then
    stops the workers::

        async with WebhookDispatcher(webhooks=[slack, jira]) as dispatcher:
            await dispatcher.emit("prediction", {"prediction": "..."}, empathy_level=4)

    `emit` returns as soon as the deliveries are queued; it never waits for the network.
    """

    def __init__(
        self,
        webhooks: Sequence[Webhook] | Webhook | None = None,
        *,
        store: DeliveryStore | str | None = None,
        plugin_manager: pluggy.PluginManager | None = None,
        clock: Clock | None = None,
        session: aiohttp.ClientSession | None = None,
        max_connections: int = 100,
        seed: int | None = None,
        max_data_depth: int = DEFAULT_MAX_DATA_DEPTH,
        framework_version: str | None = DETECT,
    ) -> None:
        """`framework_version` is what `metadata.framework_version` says in the events
        `emit` builds: by default the installed Empathy Framework's version (`attune-ai` or
        `empathy-framework`), left out when neither is installed; None always leaves it out.
        An event's own `metadata={"framework_version": ...}` wins."""
        check_number(
            "max_connections", max_connections, above=0, at_most=MAX_CONNECTIONS, integer=True
        )
        check_number(
            "max_data_depth", max_data_depth, at_least=1, at_most=MAX_DATA_DEPTH_LIMIT, integer=True
        )
        self._max_data_depth = max_data_depth
        self._framework_version = check_framework_version(framework_version)
        self._hooks = hooks_for(plugin_manager or get_plugin_manager())
        self._clock: Clock = clock or SystemClock()
        self._store_spec = store
        self._store: DeliveryStore | None = None
        self._sessions = Sessions(session, max_connections)
        self._table = LaneTable(self._hooks)
        self._states = WebhookStates(self._hooks)
        self._lanes = self._table.lanes  # the same dict, for the steps that read it
        self._timers: set[asyncio.Task[None]] = set()
        self._changed: asyncio.Event | None = None
        # The store's shared limiters and breakers, if it offers them (when it opens).
        self._guards = Guards()
        self._pager: Pager | None = None
        self._failures = Failures(self._hooks, self._lanes, settle=self._settle, wake=self._wake)
        self._workers = Workers(
            self._hooks,
            self._clock,
            random.Random(seed),
            failures=self._failures,
            store=lambda: self.store,
            session_for=self._sessions.for_webhook,
            settle=self._settle,
            timers=self._timers,
        )
        self._started = False
        self._closed = False
        self._start_lock: asyncio.Lock | None = None
        for webhook in webhook_sequence(webhooks):
            self.add_webhook(webhook)
        monitor_module.track(self)

    @classmethod
    def from_config(
        cls,
        path: str | Any,
        *,
        plugin_manager: pluggy.PluginManager | None = None,
        **options: Any,
    ) -> WebhookDispatcher:
        """A dispatcher for a `webhooks.toml` file: its webhooks and its `store` (unless
        `store=` is given). Raises `ConfigError` listing every problem of the file."""

        pm = plugin_manager or get_plugin_manager()
        config = load_config(path, plugin_manager=pm)
        for warning in config.warnings:
            # What `validate` prints (a likely typo, a filter word it does not know): said to
            # a program too, which would otherwise run with it unseen.
            log.warning("config_warning", file=str(path), warning=warning)
        options.setdefault("store", config.store)
        return cls(webhooks=list(config.webhooks), plugin_manager=pm, **options)

    # -- configuration ---------------------------------------------------------------------

    def add_webhook(self, webhook: Webhook, *, routed: bool = True) -> None:
        """Add a webhook. Its name must be unique within this dispatcher."""
        self._table.add(webhook, routed=routed)
        monitor_module.claim(webhook.name)
        if self._started:
            self._open_lanes()

    def _open_lanes(self) -> None:
        self._table.open(self._guards, self._clock, self._workers.start)
        assert self._store is not None
        for webhook in self._table.webhooks:
            if not self._states.holds(webhook):
                self._states.start(
                    webhook,
                    self._clock,
                    Sender(webhook, self._sessions.for_webhook(webhook)),
                    self._store,
                )

    def sender_for(self, webhook: Webhook) -> Sender:
        """How a plugin sends `webhook`'s requests outside a delivery (batched metrics): the
        session this dispatcher uses for it (guarded when it blocks private addresses) and its
        timeout. Within `deliver`, wrap the `session` argument: `Sender(webhook, session)`.
        Raises `RuntimeError` when the dispatcher is not running."""
        if self._closed:
            raise RuntimeError("the dispatcher is closed")
        return Sender(webhook, self._sessions.for_webhook(webhook))

    @property
    def webhooks(self) -> list[Webhook]:
        return self._table.webhooks

    def webhook_names(self) -> list[str]:
        return [webhook.name for webhook in self.webhooks]

    def webhook(self, name: str) -> Webhook:
        for webhook in self.webhooks:
            if webhook.name == name:
                return webhook
        raise UnknownWebhookError(
            f"no webhook named {name!r} (known: {', '.join(self.webhook_names())})"
        )

    @property
    def session(self) -> aiohttp.ClientSession:
        return self._sessions.shared

    @property
    def store(self) -> DeliveryStore:
        """The open store (after `start()`)."""
        if self._store is None:
            raise RuntimeError("the dispatcher has not started")
        return self._store

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def monitor(self) -> WebhookMonitor:
        return WebhookMonitor(self)

    @property
    def hooks(self) -> Hooks:
        return self._hooks

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> WebhookDispatcher:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Open the session and the store, resume pending deliveries, start the workers.
        `emit` calls this on first use, so an explicit call is optional."""
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._started:
                return
            if self._closed:
                raise RuntimeError("this dispatcher is closed; create a new one")
            self._changed = asyncio.Event()
            try:
                # The store first: a bad URL or a file that cannot open leaves no session behind.
                store = self._store = open_store(self._store_spec, self._hooks.store_backends())
                resumed = await store.open()
                self._guards = Guards.of(store)
                self._failures.open(store)
                self._workers.history = store if isinstance(store, KeepsHistory) else None
                self._workers.holding = store if isinstance(store, ConfirmsHolding) else None
                self._sessions.open()
                self._open_lanes()
            except BaseException:
                # Whatever raised, nothing this start opened stays open.
                await self._undo_start()
                raise
            self._started = True
            self._pager = Pager(self._lanes, changed=self._changed)
            task = self._pager.resume(store, resumed)
            if task is not None:
                # Kept with the retry timers, so closing the dispatcher cancels it with them.
                self._timers.add(task)
                task.add_done_callback(self._timers.discard)
            self._hooks.dispatcher_started(self)

    async def _undo_start(self) -> None:
        """A failed `start()` leaves nothing open (no session, store or worker) and the
        dispatcher as it was, so the error is the only trace and a later start may succeed."""
        workers = self._table.unopen()
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        await self._states.stop()
        store, self._store = self._store, None
        self._guards = Guards()
        self._failures.open(None)
        self._workers.history = None
        self._workers.holding = None
        if store is not None:
            try:
                await store.close()
            except Exception as exc:  # the first error is the one to report
                log.warning("store_close_failed", error=redact_text(f"{type(exc).__name__}: {exc}"))
        await self._sessions.close(forget=True)

    async def drain(self, timeout: float | None = None) -> None:
        """Return when every queued delivery has succeeded or finally failed.

        Deliveries of a webhook disabled by a 410 stay queued and are not waited for.
        Raises `TimeoutError` naming how many are still pending if `timeout` passes first.
        """
        if not self._started:
            return

        flushed = False

        async def idle() -> None:
            nonlocal flushed
            # The flush is inside the timeout: a plugin's flush that never returns (a batch
            # endpoint that hangs) made `drain(timeout)`, and `close`, wait forever.
            await self._flush()
            flushed = True
            assert self._changed is not None
            while not self._idle():
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(idle(), timeout)
        except TimeoutError:
            left = {name: lane.pending for name, lane in self._lanes.items() if lane.pending}
            text = f"{sum(left.values())} deliveries still pending after {timeout:g} s"
            if left:
                # Which webhook holds them (its rate limit, its open breaker) is the first
                # thing whoever reads this needs.
                text += f" ({', '.join(f'{name!r}: {count}' for name, count in left.items())})"
            if not flushed:
                text += " (a plugin's flush had not returned)"
            raise TimeoutError(text) from None

    def _idle(self) -> bool:
        return (
            (self._pager is None or self._pager.paged_out)
            and self._failures.telling == 0
            and all(lane.pending == 0 or not lane.enabled.is_set() for lane in self._lanes.values())
        )

    async def _flush(self) -> None:
        awaitables = [
            awaitable
            for lane in self._lanes.values()
            for awaitable in self._hooks.flush(lane.webhook, self._states.state(lane.webhook), self)
        ]
        for result in await asyncio.gather(*awaitables, return_exceptions=True):
            if isinstance(result, BaseException):
                log.error("flush_failed", error=redact_text(f"{type(result).__name__}: {result}"))

    async def close(self, *, drain: bool = True, timeout: float | None = None) -> None:
        """Drain (unless `drain=False`), then stop the workers and close the session."""
        if self._closed:
            return
        try:
            if drain and self._started:
                await self.drain(timeout)
        finally:
            self._closed = True
            await self._stop()

    async def _stop(self) -> None:
        # Again until none is left: a worker whose plugin swallowed its cancellation finishes
        # its attempt first, and may schedule a retry after the first sweep.
        while tasks := [
            task
            for task in (*self._timers, *(t for lane in self._lanes.values() for t in lane.workers))
            if not task.done()
        ]:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for lane in self._lanes.values():
            if lane.idle_timer is not None:  # its workers have stopped: nothing to watch
                lane.idle_timer.cancel()
                lane.idle_timer = None
        await self._states.stop()
        left = {name: lane.pending for name, lane in self._lanes.items() if lane.pending}
        if left and self._store is not None and self._store.remote_workers is False:
            if isinstance(self._store, MemoryStore):
                # Nothing keeps them: said as the loss it is, webhook by webhook, and which
                # events (a count alone left the team unable to tell which alerts to resend).
                by_webhook: dict[str, list[str]] = {}
                for lane in self._lanes.values():
                    for delivery in lane.left():
                        by_webhook.setdefault(lane.webhook.name, []).append(delivery.event.event_id)
                # Each event once, and which webhooks lost it: an event one webhook got and
                # another lost, resent whole, reached the first twice.
                lost = list(dict.fromkeys(i for ids in by_webhook.values() for i in ids))
                log.error(
                    "closed_with_pending_deliveries",
                    count=sum(left.values()),
                    webhooks=left,
                    lost_by_webhook={
                        name: ids[:_LOST_IDS_SHOWN] for name, ids in by_webhook.items()
                    },
                    event_ids=lost[:_LOST_IDS_SHOWN],
                    **(
                        {"event_ids_not_shown": len(lost) - _LOST_IDS_SHOWN}
                        if len(lost) > _LOST_IDS_SHOWN
                        else {}
                    ),
                    reason="lost: the memory store keeps nothing after close",
                )
            else:
                log.warning(
                    "closed_with_pending_deliveries",
                    count=sum(left.values()),
                    webhooks=left,
                    reason="kept in the store: delivered when a process opens it again",
                )
        if self._store is not None:
            await self._store.close()
        await self._sessions.close()
        self._started = False
        monitor_module.retire(self)

    # -- emitting --------------------------------------------------------------------------

    async def emit(
        self,
        event_type: str,
        data: Mapping[str, Any] | None = None,
        *,
        user_id: str | None = None,
        empathy_level: int | None = None,
        severity: str | None = None,
        classification: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        ordering_key: str | None = None,
    ) -> Event:
        """Build an event, queue a delivery to each webhook that wants it, and return it.

        Events with the same `ordering_key` (a PR, an incident) reach each webhook in emit
        order: one at a time, retries included, while other keys go out in parallel. Invalid
        input (data that is not JSON or nests deeper than `max_data_depth`, a level outside
        1 to 5, a line break in the event type) raises before anything is queued. Returns
        without waiting for any delivery.

        Raises `QueueFull` when a webhook it is routed to already holds `max_pending`
        deliveries; the event is still queued for every other webhook (see `QueueFull`).
        """
        with self._event_settings():
            event = Event(
                event_type=event_type,
                data=data,
                user_id=user_id,
                empathy_level=empathy_level,
                severity=severity,
                classification=classification,
                metadata=metadata,
                ordering_key=ordering_key,
            )
        await self.emit_event(event)
        return event

    def _check_open(self) -> None:
        # While `close` stops the workers (after its drain), `_started` is still True: an
        # event taken then was queued behind workers already cancelled, `emit` returned as
        # if all was well, and the memory store lost it (a count in a log line at best).
        if self._closed:
            raise RuntimeError("this dispatcher is closed (create a new one): nothing was queued")

    def _event_settings(self) -> contextlib.AbstractContextManager[object]:
        """What `Event` reads while this dispatcher builds one: its framework version and data
        depth. With the defaults (what `Event` reads when no setting says otherwise) one shared
        do-nothing context, not a stack entered per emit."""
        if self._framework_version is DETECT and self._max_data_depth == DEFAULT_MAX_DATA_DEPTH:
            return _NO_SETTINGS
        settings = contextlib.ExitStack()
        if self._framework_version is not DETECT:
            settings.enter_context(stamp_framework_version(self._framework_version))
        if self._max_data_depth != DEFAULT_MAX_DATA_DEPTH:
            settings.enter_context(data_depth_limit(self._max_data_depth))
        return settings

    async def emit_event(self, event: Event, *, webhooks: Iterable[str] | None = None) -> list[str]:
        """Queue an already built event. Returns the names of the webhooks it was routed to.

        `webhooks` limits routing to those names (of the webhooks that want the event): how
        a caller retries only the webhooks a `QueueFull` named.
        """
        if not isinstance(event, Event):
            raise TypeError(f"expected an Event, got {type(event).__name__}")
        if event._depth_limit > self._max_data_depth:  # built under a higher limit
            check_depth(event, self._max_data_depth)
        self._check_open()
        if not self._started:
            await self.start()
        try:
            return await admit(event, self._lanes, self.store, webhooks=webhooks, hooks=self._hooks)
        except BaseException:
            # A write that failed (or was cancelled) released what it had counted in its
            # lanes' `pending`: `drain` may be waiting for just that to reach zero.
            self._wake()
            raise

    async def emit_events(
        self, events: Sequence[Event], *, held: Held | None = None
    ) -> list[list[str] | Exception]:
        """Queue several built events with one store write, so a durable store commits them
        together: how a gateway admits the events of concurrent requests. One result per
        event, in order: the webhooks it was routed to, or the exception `emit_event` would
        have raised for it alone (`TypeError`, `EventDataError`, `QueueFull`, the store's
        error); one event's error never fails the others. With `held`, the deliveries wait
        there until `held.release()` instead of going to the workers at once."""
        self._check_open()
        if not self._started:
            await self.start()
        results: list[list[str] | Exception] = []
        valid: list[Event] = []
        for event in events:
            try:
                if not isinstance(event, Event):
                    raise TypeError(f"expected an Event, got {type(event).__name__}")
                check_depth(event, self._max_data_depth)
            except (TypeError, ValueError) as exc:
                results.append(exc)
                continue
            results.append([])
            valid.append(event)
        try:
            admitted = iter(
                await admit_many(valid, self._lanes, self.store, hooks=self._hooks, held=held)
            )
        finally:
            self._wake()  # a failed write released what it counted (see `emit_event`)
        return [next(admitted) if isinstance(r, list) else r for r in results]

    def submit(self, delivery: Delivery) -> None:
        """Hand a delivery taken from a shared store (a worker's job) to its webhook's lane."""
        lane = self._lanes.get(delivery.webhook_name)
        if lane is None:
            raise KeyError(f"no webhook named {delivery.webhook_name!r}")
        lane.enqueue(delivery)

    def render(self, webhook: Webhook | str, event: Event) -> OutgoingRequest:
        """What `webhook` would send for `event` (a dry run: nothing is sent or queued)."""
        if isinstance(webhook, str):
            webhook = self.webhook(webhook)
        else:
            webhook = self._hooks.claimed(webhook)
        delivery = Delivery(webhook_name=webhook.name, event=event)
        render_delivery(self._hooks, webhook, delivery)
        assert delivery.request is not None
        return delivery.request

    # -- ending a delivery -----------------------------------------------------------------

    def _settle(self, lane: Lane, delivery: Delivery) -> None:
        """A delivery reached its final outcome: release the next one of its ordering key."""
        lane.settle(delivery)
        if self._pager is not None:
            self._pager.settled(lane, delivery)
        if lane.pending == 0:
            # Only an emptied lane can make the dispatcher idle: wake `drain` just then.
            self._wake()

    def _wake(self) -> None:
        assert self._changed is not None
        self._changed.set()

    # -- operations ------------------------------------------------------------------------

    def enable_webhook(self, name: str) -> None:
        """Re-enable a webhook disabled by a 410; its queued deliveries go out again."""
        lane = self._lanes[name]
        if not lane.enabled.is_set():
            log.info("webhook_enabled", webhook=name, queued=lane.pending)
        lane.held_said = lane.held_unsaid = 0
        lane.enabled.set()

    def is_enabled(self, name: str) -> bool:
        return self._lanes[name].enabled.is_set()

    @property
    def closed(self) -> bool:
        """Closed: it takes no event and starts no worker any more."""
        return self._closed

    @property
    def running(self) -> bool:
        """Started, not closed, and no webhook's worker has ended (a gateway's `/readyz`)."""
        return (
            self._started
            and not self._closed
            and not any(task.done() for lane in self._lanes.values() for task in lane.workers)
        )

    async def dead_letters(self, webhook_name: str | None = None) -> list[DeadLetter]:
        """The final failures kept for replay (all webhooks, or one)."""
        if not self._started:
            await self.start()
        assert self._store is not None
        return await self._store.dead_letters(webhook_name)

    async def replay_dead_letter(self, dead_letter_id: str | DeadLetter) -> Event:
        """Queue a dead letter again as a fresh delivery (attempts start over); returns its
        event. Give its id, or the letter as `dead_letters()` listed it (a store that
        replays in one step, such as Redis, then need not look it up).

        Raises `KeyError` when there is no such letter (or another replay took it),
        `UnknownWebhookError` (a `KeyError`) when the letter is for a webhook this
        dispatcher does not have: the letter stays listed, untouched, on every store.
        Raises `ValueError` for a letter whose event could not be decoded."""
        self._check_open()
        if not self._started:
            await self.start()
        if isinstance(dead_letter_id, DeadLetter):
            return await self._failures.replay(dead_letter_id.dead_letter_id, dead_letter_id)
        return await self._failures.replay(dead_letter_id)

    async def replay_dead_letters(self, webhook_name: str | None = None) -> int:
        """Replay every dead letter (of one webhook, or all). Returns how many were queued;
        the letters left (an event that could not be decoded, a webhook this dispatcher does
        not have) stay listed, and are said (`dead_letters_not_replayed`)."""
        letters = await self.dead_letters(webhook_name)
        queued = 0
        left: dict[str, int] = {}
        for letter in letters:
            # A letter whose event could not be decoded cannot be sent: it stays, listed.
            if not letter.replayable:
                left["undecodable"] = left.get("undecodable", 0) + 1
            elif letter.webhook_name not in self._lanes:
                left["unknown webhook"] = left.get("unknown webhook", 0) + 1
            else:
                await self.replay_dead_letter(letter)
                queued += 1
        if left:
            # Counted as queued, they read as sent to whoever replayed them.
            log.warning("dead_letters_not_replayed", count=sum(left.values()), why=left)
        return queued

    # -- attempt history -------------------------------------------------------------------

    async def _history(self) -> KeepsHistory:
        if not self._started:
            await self.start()
        store = self._store
        if not isinstance(store, KeepsHistory):
            raise RuntimeError(
                f"the store {store!r} keeps no attempt history (it does not implement "
                "empathy_webhooks_core.history.KeepsHistory)"
            )
        return store

    async def delivery(self, delivery_id: str) -> DeliveryRecord | None:
        """One delivery's record with its attempts (oldest first), or None when the store
        does not hold it (never queued, or older than what the store keeps)."""
        return await (await self._history()).delivery_record(delivery_id)

    async def deliveries(
        self,
        *,
        webhook: str | None = None,
        status: str | None = None,
        event_type: str | None = None,
        event_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> DeliveryPage:
        """Delivery records, newest first, a page of at most `limit` (1 to 500) at a time;
        pass the page's `next_cursor` as `cursor` for the next. Filters: the webhook's
        name, the status (`history.DELIVERY_STATUSES`), the event's type or id, and the
        time it was queued (epoch seconds, `since` included, `until` not). Raises
        `ValueError` for a bad status, limit or cursor."""
        query = DeliveryQuery(
            webhook=webhook,
            status=status,
            event_type=event_type,
            event_id=event_id,
            since=since,
            until=until,
            limit=limit,
            cursor=cursor,
        )
        if cursor is not None:
            query.after()  # a bad cursor is the caller's error, said before any work
        return await (await self._history()).delivery_records(query)

    async def event(self, event_id: str) -> Event | None:
        """An event the store still holds a delivery record of, or None."""
        return await (await self._history()).stored_event(event_id)

    def lane_state(self, name: str) -> LaneSnapshot | None:
        """Live figures for the monitor (None when this dispatcher has no such webhook)."""
        return self._table.snapshot(name)

    def plugin_figures(self, name: str) -> tuple[int, dict[str, Any]] | None:
        """The plugins' own figures for webhook `name` (the `webhook_stats` hook), with the
        identity of the state they describe; None when this dispatcher never started it."""
        return self._states.figures(name)

    def get_webhook_stats(self, name: str) -> dict[str, Any]:
        """This dispatcher's figures for one webhook (see `WebhookMonitor`)."""
        return self.monitor.get_webhook_stats(name)
