"""`WebhookDispatcher`: emit events, queue a delivery per webhook, run the workers, drain.

Each webhook has its own lane: a queue, a few workers (its concurrency bound), its rate
limiter, circuit breaker and pause. Lanes share nothing but the HTTP session, so a slow,
limited or failing webhook never delays another.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import logging
import random
import sys
import traceback
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import aiohttp
import pluggy
import structlog

from . import monitor as monitor_module
from ._log import LOGGER_NAME, get_logger
from ._version import __version__
from .bounds import check_number
from .breaker import CircuitBreaker
from .clock import Clock, SystemClock
from .delivery import attempt as run_attempt
from .delivery import render as render_delivery
from .events import (
    DEFAULT_MAX_DATA_DEPTH,
    MAX_DATA_DEPTH_LIMIT,
    Event,
    check_depth,
    data_depth_limit,
)
from .monitor import StatsRecorder, UnknownWebhookError, WebhookMonitor
from .netguard import guarded_connector
from .plugins import Hooks, get_plugin_manager
from .ratelimit import RateLimiter
from .redaction import redact_text, register_secrets
from .routing import EventMatcher, passes_filter
from .sender import Sender
from .stores import DeadLetter, Delivery, DeliveryStore, PagedStore, open_store
from .webhooks import Webhook, webhook_sequence
from .wire import DeliveryError, DeliveryResult, Outcome, OutgoingRequest

__all__ = ["MAX_CONNECTIONS", "USER_AGENT", "QueueFull", "WebhookDispatcher"]

#: The most connections a dispatcher's session may open at once.
MAX_CONNECTIONS = 10_000

USER_AGENT = (
    f"empathy-webhooks/{__version__} aiohttp/{aiohttp.__version__} "
    f"python/{sys.version_info.major}.{sys.version_info.minor}"
)

log = get_logger()
_stdlib_log = logging.getLogger(LOGGER_NAME)

#: A lane takes at most this many deliveries from a `PagedStore` ahead of sending them (or
#: twice its `max_concurrency`, if more; never more than its `max_pending`), and asks for more
#: once down to half.
RESUME_WINDOW = 256


def _debug_enabled() -> bool:
    """Per-attempt debug lines are built only when someone will see them."""
    return structlog.is_configured() or _stdlib_log.isEnabledFor(logging.DEBUG)


def _resume_window(lane: _Lane) -> int:
    # Never past max_pending: resumed deliveries are not refused, but they must not hold a
    # lane above the bound its emits are held to.
    return max(
        1, min(max(RESUME_WINDOW, 2 * lane.webhook.max_concurrency), lane.webhook.max_pending)
    )


class QueueFull(Exception):
    """`emit` refused an event for webhooks whose pending deliveries reached `max_pending`.

    The event's deliveries to every other webhook it was routed to were queued as usual
    (`queued` names them), so re-emitting the whole event would send those twice: to try the
    refused ones again, `await dispatcher.emit_event(error.event, webhooks=error.refused)`.
    """

    def __init__(self, event: Event, limits: Mapping[str, int], queued: Sequence[str]) -> None:
        self.event = event
        #: The refused webhooks' names, and each one's `max_pending`.
        self.limits = dict(limits)
        self.refused = list(limits)
        self.queued = list(queued)
        full = ", ".join(f"{name!r} (max_pending={limit})" for name, limit in limits.items())
        others = f"queued for {', '.join(map(repr, queued))}" if queued else "queued for none"
        super().__init__(
            f"queue full: event {event.event_id} ({event.event_type}) refused for webhook "
            f"{full}, which already holds that many pending deliveries; {others}"
        )


def _summary(exc: BaseException) -> str:
    """An exception as one line: type, message and where it was raised (no full traceback
    in a dead letter, but enough to find the bug)."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        last = frames[-1]
        text += f" (at {last.filename.rsplit('/', 1)[-1]}:{last.lineno} in {last.name})"
    text = redact_text(text)
    return text if len(text) <= 500 else text[:499] + "…"


def _protocol(delivery: Delivery) -> str:
    """What a status code belongs to, from the request's scheme: "HTTP", "SMTP", ..."""
    url = delivery.request.url if delivery.request is not None else ""
    scheme = url.split(":", 1)[0].upper() if ":" in url else "HTTP"
    return "HTTP" if scheme.startswith("HTTP") else scheme


class _Lane:
    """One webhook's queue, workers and guards."""

    def __init__(
        self,
        webhook: Webhook,
        clock: Clock,
        *,
        routed: bool = True,
        limiter: Any = None,
        breaker: Any = None,
    ) -> None:
        self.webhook = webhook
        self.routed = routed
        self.matcher = EventMatcher(webhook.events)
        self.queue: asyncio.Queue[Delivery] = asyncio.Queue()
        self.limiter = limiter
        self.breaker = breaker or CircuitBreaker(webhook.circuit_breaker, clock)
        self.recorder = StatsRecorder()
        self.clock = clock
        self.paused_until = 0.0
        self.enabled = asyncio.Event()
        self.enabled.set()
        self.gate = asyncio.Lock()
        self.breaker_changed = asyncio.Event()
        self.pending = 0
        self.in_flight = 0
        # Ordering keys with a delivery under way, and the ones waiting behind it in emit order.
        self.chains: dict[str, collections.deque[Delivery]] = {}
        self.dead_letters = 0
        self.workers: list[asyncio.Task[None]] = []
        # Deliveries whose outcome is recorded in the store ("final") or that went back to
        # the queue ("requeued") but are not settled yet: a worker error after that point must
        # not dead-letter them a second time.
        self.outcomes: dict[str, str] = {}

    def wants(self, event: Event) -> bool:
        return self.routed and self.matcher(event.event_type) and passes_filter(self.webhook, event)

    async def pass_gate(self) -> None:
        """Wait until this lane may send: enabled, not paused, breaker and rate limit allow.

        Workers pass one at a time (the lock), so waiting deliveries keep their order.
        """
        async with self.gate:
            while True:
                await self.enabled.wait()
                pause = self.paused_until - self.clock.monotonic()
                if pause > 0:
                    await self.clock.sleep(pause)
                    continue
                wait = self.breaker.wait_time()
                if wait is None:
                    self.breaker_changed.clear()
                    await self.breaker_changed.wait()
                    continue
                if wait > 0:
                    await self.clock.sleep(wait)
                    continue
                if self.limiter is not None:
                    wait = await self.limiter.reserve()
                    if wait > 0:
                        await self.clock.sleep(wait)
                        continue
                self.breaker.before_attempt()
                return


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
    ) -> None:
        check_number(
            "max_connections", max_connections, above=0, at_most=MAX_CONNECTIONS, integer=True
        )
        check_number(
            "max_data_depth", max_data_depth, at_least=1, at_most=MAX_DATA_DEPTH_LIMIT, integer=True
        )
        self._max_data_depth = max_data_depth
        self._hooks = Hooks(plugin_manager or get_plugin_manager())
        self._clock: Clock = clock or SystemClock()
        self._store_spec = store
        self._store: DeliveryStore | None = None
        self._session = session
        self._own_session = session is None
        self._guarded_session: aiohttp.ClientSession | None = None
        self._max_connections = max_connections
        self._rng = random.Random(seed)
        self._lanes: dict[str, _Lane] = {}
        self._pending_webhooks: list[tuple[Webhook, bool]] = []
        self._timers: set[asyncio.Task[None]] = set()
        self._changed: asyncio.Event | None = None
        # Paging a store's pending deliveries in (see `_resume`).
        self._room: asyncio.Event | None = None
        self._paged_out = True
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
        from .config import load_config

        pm = plugin_manager or get_plugin_manager()
        config = load_config(path, plugin_manager=pm)
        options.setdefault("store", config.store)
        return cls(webhooks=list(config.webhooks), plugin_manager=pm, **options)

    # -- configuration ---------------------------------------------------------------------

    def add_webhook(self, webhook: Webhook, *, routed: bool = True) -> None:
        """Add a webhook. Its name must be unique within this dispatcher."""
        if not isinstance(webhook, Webhook):
            raise TypeError(f"expected a Webhook, got {type(webhook).__name__}")
        names = {w.name for w, _ in self._pending_webhooks} | set(self._lanes)
        if webhook.name in names:
            raise ValueError(
                f"two webhooks are named {webhook.name!r}; give one of them a distinct name="
            )
        self._check_type(webhook)
        monitor_module.claim(webhook.name)
        self._pending_webhooks.append((webhook, routed))
        if self._started:
            self._open_lanes()

    def _check_type(self, webhook: Webhook) -> None:
        known = self._hooks.webhook_types()
        if not any(isinstance(webhook, cls) for cls in known.values()):
            raise LookupError(
                f"webhook {webhook.name!r} is a {type(webhook).__name__} (kind {webhook.kind!r}), "
                f"and no loaded plugin provides it (loaded types: {', '.join(sorted(known))}); "
                "is its plugin installed, and allowed by EMPATHY_WEBHOOKS_LOAD_PLUGINS?"
            )

    def _open_lanes(self) -> None:
        # A fallback given as a Webhook object joins the dispatcher (not routed: it only
        # receives what its primary failed), so loop until no webhook is left unopened.
        while self._pending_webhooks:
            pending, self._pending_webhooks = self._pending_webhooks, []
            for webhook, routed in pending:
                lane = _Lane(
                    webhook,
                    self._clock,
                    routed=routed,
                    limiter=self._limiter_for(webhook),
                    breaker=self._breaker_for(webhook),
                )
                self._lanes[webhook.name] = lane
                register_secrets(webhook.secret_values())
                for _ in range(webhook.max_concurrency):
                    lane.workers.append(asyncio.create_task(self._work(lane)))
            for lane in list(self._lanes.values()):
                fallback = lane.webhook.fallback
                if isinstance(fallback, Webhook) and fallback.name not in self._lanes:
                    if not any(w is fallback for w, _ in self._pending_webhooks):
                        self._check_type(fallback)
                        self._pending_webhooks.append((fallback, False))
                elif isinstance(fallback, str) and fallback not in self._lanes:
                    raise ValueError(
                        f"webhook {lane.webhook.name!r} names fallback {fallback!r}, "
                        "which is not one of this dispatcher's webhooks"
                    )

    def _limiter_for(self, webhook: Webhook) -> Any:
        """The webhook's rate limiter: the store's (shared across workers) if it offers one."""
        if webhook.rate_limit is None:
            return None
        shared = getattr(self._store, "make_rate_limiter", None)
        if shared is not None:
            return shared(webhook, self._clock)
        return RateLimiter(webhook.rate_limit, self._clock)

    def _breaker_for(self, webhook: Webhook) -> Any:
        """The store's circuit breaker (shared across workers) if it offers one, else None
        for the lane's own. It has `CircuitBreaker`'s synchronous interface."""
        shared = getattr(self._store, "make_circuit_breaker", None)
        if shared is None or not webhook.circuit_breaker.enabled:
            return None
        return shared(webhook, self._clock)

    def _session_for(self, webhook: Webhook) -> aiohttp.ClientSession:
        """The shared session, or for webhooks that block private addresses a guarded one."""
        if not webhook.block_private_addresses:
            return self.session
        if self._guarded_session is None:
            self._guarded_session = aiohttp.ClientSession(
                connector=guarded_connector(self._max_connections),
                headers={"User-Agent": USER_AGENT},
            )
        return self._guarded_session

    def sender_for(self, webhook: Webhook) -> Sender:
        """How a plugin sends `webhook`'s requests outside a delivery (batched metrics): the
        session this dispatcher uses for it (guarded when it blocks private addresses) and its
        timeout. Within `deliver`, wrap the `session` argument: `Sender(webhook, session)`.
        Raises `RuntimeError` when the dispatcher is not running."""
        if self._closed:
            raise RuntimeError("the dispatcher is closed")
        return Sender(webhook, self._session_for(webhook))

    @property
    def webhooks(self) -> list[Webhook]:
        return [lane.webhook for lane in self._lanes.values()] + [
            w for w, _ in self._pending_webhooks
        ]

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
        if self._session is None:
            raise RuntimeError("the dispatcher has not started")
        return self._session

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
            opened_session = self._session is None
            try:
                # The store first: a bad URL or a file that cannot open leaves no session behind.
                self._store = open_store(self._store_spec, self._hooks.store_backends())
                resumed = await self._store.open()
                if self._session is None:
                    self._session = aiohttp.ClientSession(
                        connector=aiohttp.TCPConnector(limit=self._max_connections),
                        headers={"User-Agent": USER_AGENT},
                    )
                self._open_lanes()
            except BaseException:
                # Whatever raised, nothing this start opened stays open.
                await self._undo_start(opened_session)
                raise
            self._started = True
            self._resume(resumed)
            self._hooks.dispatcher_started(self)

    async def _undo_start(self, opened_session: bool) -> None:
        """A failed `start()` leaves nothing open (no session, store or worker) and the
        dispatcher as it was, so the error is the only trace and a later start may succeed."""
        workers = [task for lane in self._lanes.values() for task in lane.workers]
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        self._pending_webhooks = [
            (lane.webhook, lane.routed) for lane in self._lanes.values()
        ] + self._pending_webhooks
        self._lanes.clear()
        store, self._store = self._store, None
        if store is not None:
            try:
                await store.close()
            except Exception as exc:  # the first error is the one to report
                log.warning("store_close_failed", error=redact_text(f"{type(exc).__name__}: {exc}"))
        if opened_session and self._session is not None:
            await self._session.close()
            self._session = None
        if self._guarded_session is not None:
            await self._guarded_session.close()
            self._guarded_session = None

    async def drain(self, timeout: float | None = None) -> None:
        """Return when every queued delivery has succeeded or finally failed.

        Deliveries of a webhook disabled by a 410 stay queued and are not waited for.
        Raises `TimeoutError` naming how many are still pending if `timeout` passes first.
        """
        if not self._started:
            return
        await self._flush()

        async def idle() -> None:
            assert self._changed is not None
            while not self._idle():
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(idle(), timeout)
        except TimeoutError:
            pending = sum(lane.pending for lane in self._lanes.values())
            raise TimeoutError(f"{pending} deliveries still pending after {timeout:g} s") from None

    def _idle(self) -> bool:
        return self._paged_out and all(
            lane.pending == 0 or not lane.enabled.is_set() for lane in self._lanes.values()
        )

    async def _flush(self) -> None:
        awaitables = [
            awaitable
            for lane in self._lanes.values()
            for awaitable in self._hooks.flush(lane.webhook, self)
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
        tasks = [*self._timers, *(t for lane in self._lanes.values() for t in lane.workers)]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        left = sum(lane.pending for lane in self._lanes.values())
        if left and self._store is not None and self._store.remote_workers is False:
            log.warning("closed_with_pending_deliveries", count=left)
        if self._store is not None:
            await self._store.close()
        if self._own_session and self._session is not None:
            await self._session.close()
        if self._guarded_session is not None:
            await self._guarded_session.close()
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
        fields: dict[str, Any] = {
            "event_type": event_type,
            "data": data,
            "user_id": user_id,
            "empathy_level": empathy_level,
            "severity": severity,
            "classification": classification,
            "metadata": metadata,
            "ordering_key": ordering_key,
        }
        if self._max_data_depth == DEFAULT_MAX_DATA_DEPTH:
            event = Event(**fields)
        else:
            with data_depth_limit(self._max_data_depth):
                event = Event(**fields)
        await self.emit_event(event)
        return event

    async def emit_event(self, event: Event, *, webhooks: Iterable[str] | None = None) -> list[str]:
        """Queue an already built event. Returns the names of the webhooks it was routed to.

        `webhooks` limits routing to those names (of the webhooks that want the event): how
        a caller retries only the webhooks a `QueueFull` named.
        """
        if not isinstance(event, Event):
            raise TypeError(f"expected an Event, got {type(event).__name__}")
        check_depth(event, self._max_data_depth)
        if not self._started:
            await self.start()
        lanes = [lane for lane in self._lanes.values() if lane.wants(event)]
        if webhooks is not None:
            names = set(webhooks)
            unknown = names - set(self._lanes)
            if unknown:
                raise UnknownWebhookError(
                    f"no webhook named {', '.join(map(repr, sorted(unknown)))} "
                    f"(known: {', '.join(self._lanes)})"
                )
            lanes = [lane for lane in lanes if lane.webhook.name in names]
        assert self._store is not None
        full: dict[str, int] = {}
        if not self._store.remote_workers:
            # Deliveries live in this process's memory until they end: past max_pending a
            # webhook refuses more (loudly), and the others keep theirs.
            for lane in lanes:
                if lane.pending >= lane.webhook.max_pending:
                    full[lane.webhook.name] = lane.webhook.max_pending
                    lane.recorder.refused += 1
            if full:
                lanes = [lane for lane in lanes if lane.webhook.name not in full]
        if lanes:
            deliveries = [Delivery(webhook_name=lane.webhook.name, event=event) for lane in lanes]
            await self._store.enqueue(deliveries)
            if not self._store.remote_workers:
                for lane, delivery in zip(lanes, deliveries, strict=True):
                    self._enqueue(lane, delivery)
        queued = [lane.webhook.name for lane in lanes]
        if full:
            for name, limit in full.items():
                log.error(
                    "queue_full",
                    webhook=name,
                    event_id=event.event_id,
                    max_pending=limit,
                    queued_for=queued,
                )
            raise QueueFull(event, full, queued)
        return queued

    def _enqueue(self, lane: _Lane, delivery: Delivery) -> None:
        lane.pending += 1
        key = delivery.event.ordering_key
        if key is not None:
            waiting = lane.chains.get(key)
            if waiting is not None:
                # Same key as a delivery still under way: wait behind it, in emit order.
                waiting.append(delivery)
                return
            lane.chains[key] = collections.deque()
        lane.queue.put_nowait(delivery)

    def submit(self, delivery: Delivery) -> None:
        """Hand a delivery taken from a shared store (a worker's job) to its webhook's lane."""
        lane = self._lanes.get(delivery.webhook_name)
        if lane is None:
            raise KeyError(f"no webhook named {delivery.webhook_name!r}")
        self._enqueue(lane, delivery)

    def render(self, webhook: Webhook | str, event: Event) -> OutgoingRequest:
        """What `webhook` would send for `event` (a dry run: nothing is sent or queued)."""
        if isinstance(webhook, str):
            webhook = self.webhook(webhook)
        delivery = Delivery(webhook_name=webhook.name, event=event)
        render_delivery(self._hooks, webhook, delivery)
        assert delivery.request is not None
        return delivery.request

    # -- resuming what the store holds -----------------------------------------------------

    def _resume(self, resumed: Sequence[Delivery]) -> None:
        """Hand the lanes what the store holds pending: what `open()` returned, and from a
        `PagedStore`, page after page as each lane has room (`_page_in`), so a backlog of any
        size costs a window of memory per webhook. Resumed deliveries were accepted by an
        earlier `emit`: they go to their lane directly, never refused by a queue limit."""
        for delivery in resumed:
            lane = self._lanes.get(delivery.webhook_name)
            if lane is None:
                log.warning(
                    "resumed_delivery_without_webhook",
                    webhook=delivery.webhook_name,
                    event_id=delivery.event.event_id,
                )
                continue
            self._enqueue(lane, delivery)
        if resumed:
            log.info("deliveries_resumed", count=len(resumed))
        store = self._store
        if isinstance(store, PagedStore) and not store.remote_workers:
            self._room = asyncio.Event()
            self._paged_out = False  # `drain` waits for the first page at least
            task = asyncio.create_task(self._page_in(store), name="empathy-webhooks-page-in")
            # Kept with the retry timers, so closing the dispatcher cancels it with them.
            self._timers.add(task)
            task.add_done_callback(self._timers.discard)

    async def _page_in(self, store: PagedStore) -> None:
        """Take pages of pending deliveries while the lanes have room; when the store has no
        more, look again every `poll_interval` (other processes may queue more)."""
        assert self._room is not None and self._changed is not None
        resumed = 0
        failing = False
        while True:
            # A lane disabled by a 410 takes nothing more: its deliveries stay in the store.
            wanted = {
                name: _resume_window(lane) - lane.pending
                for name, lane in self._lanes.items()
                if lane.enabled.is_set() and lane.pending <= _resume_window(lane) // 2
            }
            more = False
            if not wanted and not self._paged_out:
                self._paged_out = True  # nothing can be taken now: the lanes are full
                self._changed.set()
            if wanted:
                self._paged_out = False  # `drain` waits for this page
                try:
                    page = await store.take_pending(wanted)
                except Exception as exc:
                    if not failing:  # once per outage, not once per poll
                        log.error(
                            "store_read_failed",
                            store=repr(store),
                            error=redact_text(f"{type(exc).__name__}: {exc}"),
                        )
                    failing = True
                    # What could not be read stays in the store for a later look (or the next
                    # process): `drain` does not wait for it, so closing never hangs on it.
                    self._paged_out = True
                    self._changed.set()
                    await asyncio.sleep(store.poll_interval)
                    continue
                if failing:
                    log.warning("store_read_recovered", store=repr(store))
                    failing = False
                taken: collections.Counter[str] = collections.Counter()
                for delivery in page:
                    lane = self._lanes.get(delivery.webhook_name)
                    if lane is not None:  # always: only our webhooks were asked for
                        taken[delivery.webhook_name] += 1
                        self._enqueue(lane, delivery)
                resumed += len(page)
                more = any(taken[name] >= limit for name, limit in wanted.items())
                if not more:
                    if resumed:
                        log.info("deliveries_resumed", count=resumed)
                        resumed = 0
                    if not self._paged_out:
                        self._paged_out = True
                        self._changed.set()  # `drain` may be waiting for the store
            if more:
                continue
            # Wake early when a lane drops to half its window; look again after the poll.
            self._room.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(store.poll_interval):
                    await self._room.wait()

    # -- the workers -----------------------------------------------------------------------

    async def _work(self, lane: _Lane) -> None:
        while True:
            delivery = await lane.queue.get()
            try:
                await lane.pass_gate()
                await self._attempt(lane, delivery)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug must not kill the lane, nor lose the delivery
                await self._worker_failed(lane, delivery, exc)

    async def _worker_failed(self, lane: _Lane, delivery: Delivery, exc: Exception) -> None:
        """An unexpected exception while handling a delivery: unless its outcome was already
        recorded, it ends as a dead letter (with the error's summary) and on_failure is told,
        as any final failure; never silently dropped."""
        summary = _summary(exc)
        log.error(
            "worker_error",
            webhook=lane.webhook.name,
            event_id=delivery.event.event_id,
            error=summary,
            exc_info=exc,
        )
        outcome = lane.outcomes.pop(delivery.delivery_id, None)
        if outcome == "requeued":
            return  # back in its queue: still pending, nothing to settle
        if outcome is None:
            error = DeliveryError(
                f"internal error: {summary}",
                webhook_name=lane.webhook.name,
                event_id=delivery.event.event_id,
                attempts=delivery.attempts,
                last_exception=exc,
                protocol=_protocol(delivery),
            )
            try:
                await self._failed(lane, delivery, error)
                return
            except Exception as second:
                if lane.outcomes.get(delivery.delivery_id) != "final":
                    # Not even a dead letter could be written: a durable store still holds the
                    # delivery (it resumes on restart), a memory store does not.
                    log.error(
                        "dead_letter_not_recorded",
                        webhook=lane.webhook.name,
                        event_id=delivery.event.event_id,
                        error=_summary(second),
                        first_error=summary,
                    )
        self._settle(lane, delivery)

    async def _attempt(self, lane: _Lane, delivery: Delivery) -> None:
        webhook = lane.webhook
        delivery.attempts += 1
        lane.in_flight += 1
        lane.recorder.attempt(retry=delivery.attempts > 1)
        try:
            result = await run_attempt(
                self._hooks, webhook, delivery, self._session_for(webhook), self._clock
            )
        finally:
            lane.in_flight -= 1
        verdict, response = result.verdict, result.response
        if response is not None:
            lane.recorder.answer(response.elapsed_ms)
        lane.breaker.record(verdict.outcome not in (Outcome.RETRY, Outcome.GONE))
        lane.breaker_changed.set()
        if _debug_enabled():
            log.debug(
                "delivery_attempt",
                webhook=webhook.name,
                event_id=delivery.event.event_id,
                attempt=delivery.attempts,
                status=response.status if response is not None else None,
                outcome=verdict.outcome.value,
                reason=verdict.reason,
                elapsed_ms=round(response.elapsed_ms, 2) if response is not None else None,
            )
        if verdict.outcome is Outcome.SUCCESS:
            await self._succeeded(lane, delivery, result.response, verdict.details)
            return
        reason = verdict.reason or "failed"
        lane.recorder.attempt_failed(reason, self._clock.time())
        policy = webhook.retry_policy
        if verdict.outcome is Outcome.RETRY and verdict.pause_webhook:
            # A rate limit says "wait", not "broken": it does not use up the retry budget.
            delivery.rate_limited += 1
        budget_used = delivery.attempts - delivery.rate_limited
        if (
            verdict.outcome is Outcome.RETRY
            and budget_used < policy.max_attempts
            and delivery.rate_limited <= policy.max_rate_limited_attempts
        ):
            if verdict.pause_webhook:
                wait = policy.rate_limit_wait(delivery.rate_limited, verdict.retry_after, self._rng)
                lane.paused_until = max(lane.paused_until, self._clock.monotonic() + wait)
            else:
                wait = policy.wait_before_retry(budget_used, verdict.retry_after, self._rng)
            log.info(
                "delivery_retry_scheduled",
                webhook=webhook.name,
                event_id=delivery.event.event_id,
                attempt=delivery.attempts,
                wait_seconds=round(wait, 3),
                reason=reason,
            )
            assert self._store is not None
            await self._store.record_attempt(delivery)
            self._later(wait, lane, delivery)
            return
        if verdict.outcome is Outcome.GONE:
            await self._gone(lane, delivery, result, reason)
            return
        if verdict.outcome is Outcome.RETRY:
            tries = "attempt" if delivery.attempts == 1 else "attempts"
            reason = f"{reason}; gave up after {delivery.attempts} {tries}"
        error = DeliveryError(
            reason,
            webhook_name=webhook.name,
            event_id=delivery.event.event_id,
            attempts=delivery.attempts,
            status=response.status if response is not None else None,
            body_excerpt=redact_text(response.excerpt()) if response is not None else None,
            last_exception=result.exception,
            protocol=_protocol(delivery),
        )
        await self._failed(lane, delivery, error)

    def _later(self, wait: float, lane: _Lane, delivery: Delivery) -> None:
        # The deadline is fixed now, not when the task first runs.
        deadline = self._clock.monotonic() + wait

        async def requeue() -> None:
            await self._clock.sleep(deadline - self._clock.monotonic())
            lane.queue.put_nowait(delivery)

        task = asyncio.create_task(requeue())
        self._timers.add(task)
        task.add_done_callback(self._timers.discard)

    def _settle(self, lane: _Lane, delivery: Delivery) -> None:
        """A delivery reached its final outcome: release the next one of its ordering key."""
        lane.outcomes.pop(delivery.delivery_id, None)
        key = delivery.event.ordering_key
        if key is not None and key in lane.chains:
            waiting = lane.chains[key]
            if waiting:
                lane.queue.put_nowait(waiting.popleft())
            else:
                del lane.chains[key]
        lane.pending -= 1
        if self._room is not None and lane.pending == _resume_window(lane) // 2:
            self._room.set()  # the lane can take the next page
        if lane.pending == 0:
            # Only an emptied lane can make the dispatcher idle: wake `drain` just then.
            assert self._changed is not None
            self._changed.set()

    async def _succeeded(
        self, lane: _Lane, delivery: Delivery, response: Any, details: Mapping[str, Any]
    ) -> None:
        lane.recorder.success(self._clock.time())
        for key in details:
            lane.recorder.details[key] += 1
        if details:
            lane.recorder.last_details = (self._clock.time(), dict(details))
        assert self._store is not None
        await self._store.mark_delivered(delivery)
        lane.outcomes[delivery.delivery_id] = "final"
        if self._hooks.wants_success():
            result = DeliveryResult(
                webhook_name=lane.webhook.name,
                event_id=delivery.event.event_id,
                status=response.status if response is not None else None,
                attempts=delivery.attempts,
                elapsed_ms=response.elapsed_ms if response is not None else 0.0,
                details=details,
            )
            self._hooks.on_success(lane.webhook, delivery.event, result)
        self._settle(lane, delivery)

    async def _failed(self, lane: _Lane, delivery: Delivery, error: DeliveryError) -> None:
        webhook = lane.webhook
        lane.recorder.failure()
        log.warning(
            "delivery_failed",
            webhook=webhook.name,
            event_id=delivery.event.event_id,
            attempt=delivery.attempts,
            status=error.status,
            reason=error.reason,
        )
        assert self._store is not None
        await self._store.add_dead_letter(delivery, error.to_dict())
        lane.outcomes[delivery.delivery_id] = "final"
        lane.dead_letters += 1
        await self._tell_failure(webhook, delivery.event, error)
        fallback = webhook.fallback
        if fallback is not None:
            name = fallback if isinstance(fallback, str) else fallback.name
            target = self._lanes.get(name)
            if target is not None and target is not lane:
                backup = Delivery(webhook_name=name, event=delivery.event)
                await self._store.enqueue([backup])
                if not self._store.remote_workers:  # else a worker takes it from the store
                    self._enqueue(target, backup)
        self._settle(lane, delivery)

    async def _gone(self, lane: _Lane, delivery: Delivery, result: Any, reason: str) -> None:
        """The endpoint is gone (410, or a plugin's verdict on its own answer such as Slack's
        `channel_is_archived`): disable the webhook, keep its queue (this delivery included),
        tell on_failure."""
        lane.enabled.clear()
        delivery.attempts -= 1  # the refused attempt is not held against the delivery
        lane.queue.put_nowait(delivery)
        lane.outcomes[delivery.delivery_id] = "requeued"
        log.error(
            "webhook_disabled",
            webhook=lane.webhook.name,
            event_id=delivery.event.event_id,
            attempt=delivery.attempts + 1,
            reason=reason,
        )
        error = DeliveryError(
            f"{reason}; webhook disabled until enable_webhook({lane.webhook.name!r})",
            webhook_name=lane.webhook.name,
            event_id=delivery.event.event_id,
            attempts=delivery.attempts + 1,
            status=result.response.status if result.response else None,
            body_excerpt=redact_text(result.response.excerpt()) if result.response else None,
            protocol=_protocol(delivery),
        )
        await self._tell_failure(lane.webhook, delivery.event, error)
        lane.outcomes.pop(delivery.delivery_id, None)
        assert self._changed is not None
        self._changed.set()

    async def _tell_failure(self, webhook: Webhook, event: Event, error: DeliveryError) -> None:
        callback = webhook.on_failure
        if callback is not None:
            try:
                outcome = callback(webhook, event, error)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception as exc:
                # The user's own failure store or pager did not run: loud, and counted.
                lane = self._lanes.get(webhook.name)
                if lane is not None:
                    lane.recorder.callback_errors += 1
                log.error(
                    "on_failure_callback_failed",
                    webhook=webhook.name,
                    event_id=event.event_id,
                    error=_summary(exc),
                )
        self._hooks.on_failure(webhook, event, error)

    # -- operations ------------------------------------------------------------------------

    def enable_webhook(self, name: str) -> None:
        """Re-enable a webhook disabled by a 410; its queued deliveries go out again."""
        lane = self._lanes[name]
        lane.enabled.set()

    def is_enabled(self, name: str) -> bool:
        return self._lanes[name].enabled.is_set()

    async def dead_letters(self, webhook_name: str | None = None) -> list[DeadLetter]:
        """The final failures kept for replay (all webhooks, or one)."""
        if not self._started:
            await self.start()
        assert self._store is not None
        return await self._store.dead_letters(webhook_name)

    async def replay_dead_letter(self, dead_letter_id: str) -> Event:
        """Queue a dead letter again as a fresh delivery (attempts start over)."""
        if not self._started:
            await self.start()
        assert self._store is not None
        requeue = getattr(self._store, "requeue_dead_letter", None)
        if requeue is not None and self._store.remote_workers:
            # The store replays in one step (Redis: XADD and delete in one script), so a crash
            # between taking the letter and queueing it cannot lose it.
            replayed = await requeue(dead_letter_id)
            if replayed is None:
                raise KeyError(f"no dead letter {dead_letter_id!r}")
            replayed_lane = self._lanes.get(replayed.webhook_name)
            if replayed_lane is not None:
                replayed_lane.dead_letters = max(0, replayed_lane.dead_letters - 1)
            return replayed.event  # type: ignore[no-any-return]
        letter = await self._store.take_dead_letter(dead_letter_id)
        if letter is None:
            raise KeyError(f"no dead letter {dead_letter_id!r}")
        lane = self._lanes.get(letter.webhook_name)
        if lane is None:
            raise KeyError(
                f"dead letter {dead_letter_id!r} is for unknown webhook {letter.webhook_name!r}"
            )
        delivery = Delivery(webhook_name=letter.webhook_name, event=letter.event)
        await self._store.enqueue([delivery])
        lane.dead_letters = max(0, lane.dead_letters - 1)
        if not self._store.remote_workers:  # else a worker takes it from the store
            self._enqueue(lane, delivery)
        return letter.event

    async def replay_dead_letters(self, webhook_name: str | None = None) -> int:
        """Replay every dead letter (of one webhook, or all). Returns how many were queued."""
        letters = await self.dead_letters(webhook_name)
        for letter in letters:
            # A letter whose event could not be decoded cannot be sent: it stays, listed.
            if letter.webhook_name in self._lanes and letter.replayable:
                await self.replay_dead_letter(letter.dead_letter_id)
        return len(letters)

    def lane_state(self, name: str) -> dict[str, Any] | None:
        """Live figures for the monitor (None when this dispatcher has no such webhook)."""
        lane = self._lanes.get(name)
        if lane is None:
            if any(w.name == name for w, _ in self._pending_webhooks):
                return {
                    "recorder": StatsRecorder(),
                    "queued": 0,
                    "in_flight": 0,
                    "dead_letters": 0,
                    "breaker_state": "closed",
                    "disabled": False,
                    "max_pending": self.webhook(name).max_pending,
                }
            return None
        return {
            "recorder": lane.recorder,
            "queued": lane.pending - lane.in_flight,
            "in_flight": lane.in_flight,
            "dead_letters": lane.dead_letters,
            "breaker_state": lane.breaker.current_state().value,
            "disabled": not lane.enabled.is_set(),
            "max_pending": lane.webhook.max_pending,
        }

    def get_webhook_stats(self, name: str) -> dict[str, Any]:
        """This dispatcher's figures for one webhook (see `WebhookMonitor`)."""
        return self.monitor.get_webhook_stats(name)
