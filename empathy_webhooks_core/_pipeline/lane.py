"""One webhook's lane: its queue, its gate (enabled, pause, breaker, limiter), its ordering
chains and its figures. Lanes share nothing but the HTTP session, so a slow, limited or
failing webhook never delays another.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from typing import Any

import attrs

from .._log import get_logger
from .._routing import EventMatcher, passes_filter
from ..breaker import Breaker, BreakerState, CircuitBreaker
from ..clock import Clock
from ..events import Event
from ..monitor import StatsRecorder
from ..plugins import Hooks
from ..ratelimit import Limiter, RateLimiter
from ..redaction import register_secrets
from ..stores import DeliveryStore, SharesBreakers, SharesRateLimits
from ..webhooks import Webhook
from .unit import Delivery

__all__ = ["RESUME_WINDOW", "Guards", "Lane", "LaneSnapshot", "LaneTable"]

log = get_logger()

#: A lane takes at most this many deliveries from a `PagedStore` ahead of sending them (or
#: twice its `max_concurrency`, if more; never more than its `max_pending`), and asks for more
#: once down to half.
RESUME_WINDOW = 256


@attrs.frozen(kw_only=True)
class LaneSnapshot:
    """A lane's live figures, as the monitor reads them (`WebhookDispatcher.lane_state`)."""

    recorder: StatsRecorder
    queued: int = 0
    in_flight: int = 0
    dead_letters: int = 0
    breaker_state: str = "closed"
    disabled: bool = False
    max_pending: int = 0
    paused_seconds: float = 0.0


#: Deliveries held by a disabled webhook that are said one by one; after these, one line
#: every `_HELD_SAID_EVERY` seconds says how many more were held since the last.
_HELD_SAID = 10
_HELD_SAID_EVERY = 60.0


class Lane:
    """One webhook's queue, workers and guards."""

    def __init__(
        self,
        webhook: Webhook,
        clock: Clock,
        *,
        routed: bool = True,
        limiter: Limiter | None = None,
        breaker: Breaker | None = None,
    ) -> None:
        self.webhook = webhook
        self.routed = routed
        self.matcher = EventMatcher(webhook.events)
        # The deliveries ready to go, and the idle workers waiting for one (woken first come,
        # first served). Not an asyncio.Queue: its put and get cost eight Python calls per
        # delivery for bookkeeping (maxsize, task_done) a lane never uses.
        self.queue: collections.deque[Delivery] = collections.deque()
        self.waiters: collections.deque[asyncio.Future[Any]] = collections.deque()
        # When each idle worker began to wait (loop time), and the one timer that stops those
        # idle too long (`Workers._wait`): a timeout per wait cost more than the wait.
        self.waiting_since: dict[asyncio.Future[Any], float] = {}
        self.idle_timer: asyncio.TimerHandle | None = None
        self.limiter = limiter
        self.breaker: Breaker = breaker or CircuitBreaker(webhook.circuit_breaker, clock)
        self.recorder = StatsRecorder()
        self.clock = clock
        self.paused_until = 0.0
        self.enabled = asyncio.Event()
        self.enabled.set()
        # What the endpoint answered when it disabled the lane (`Failures.gone`).
        self.disabled_reason = ""
        # Deliveries queued while disabled, said one by one up to `_HELD_SAID`, then in one
        # line a minute (`_held`): a disabled webhook still emitted to must not flood the log.
        self.held_said = 0
        self.held_unsaid = 0
        self.held_said_at = 0.0
        self.gate = asyncio.Lock()
        # Workers in (or waiting for) the gate's slow path: while there are none, a worker
        # that may go at once need not take the lock (nobody is ahead of it).
        self.at_gate = 0
        self.breaker_changed = asyncio.Event()
        self.pending = 0
        self.in_flight = 0
        # When an emit to this busy lane next gives the loop a turn (`admit`).
        self.turn_due = 0.0
        # Ordering keys with a delivery under way, and the ones waiting behind it in emit order.
        self.chains: dict[str, collections.deque[Delivery]] = {}
        self.dead_letters = 0
        # Workers start when the lane has work and stop after WORKER_IDLE_SECONDS without
        # any, so a thousand quiet webhooks hold no tasks (`spawn` is set by `Workers.start`).
        self.workers: list[asyncio.Task[None]] = []
        self.idle = 0
        self.spawn: Callable[[], None] | None = None
        # Deliveries whose outcome is recorded in the store ("final") or that went back to
        # the queue ("requeued") but are not settled yet: a worker error after that point must
        # not dead-letter them a second time.
        self.outcomes: dict[str, str] = {}
        # Deliveries a worker held when it was cancelled (the dispatcher stopping), and those
        # waiting in a retry timer (by id): with the queue and the ordering chains, what
        # `close` leaves unfinished.
        self.unfinished: list[Delivery] = []
        self.retrying: dict[str, Delivery] = {}

    def wants(self, event: Event) -> bool:
        return (
            self.routed
            and self.matcher(event.event_type)
            and (self.webhook.filter is None or passes_filter(self.webhook, event))
        )

    @property
    def resume_window(self) -> int:
        """How many deliveries this lane takes from a `PagedStore` ahead of sending them."""
        # Never past max_pending: resumed deliveries are not refused, but they must not hold a
        # lane above the bound its emits are held to.
        return max(
            1, min(max(RESUME_WINDOW, 2 * self.webhook.max_concurrency), self.webhook.max_pending)
        )

    # -- the queue and its ordering chains -------------------------------------------------

    def enqueue(self, delivery: Delivery, *, fallback_of: str | None = None) -> None:
        """A new pending delivery: queued, or behind the one of its ordering key under way.
        `fallback_of` names the webhook whose final failure this delivery backs up."""
        self.pending += 1
        if not self.enabled.is_set():
            self._held(delivery, fallback_of)
        key = delivery.event.ordering_key
        if key is not None:
            waiting = self.chains.get(key)
            if waiting is not None:
                # Same key as a delivery still under way: wait behind it, in emit order.
                waiting.append(delivery)
                return
            self.chains[key] = collections.deque()
        self.put(delivery)

    def _held(self, delivery: Delivery, fallback_of: str | None) -> None:
        # Held, as a disabled webhook's queue is, until `enable_webhook`: `drain` does not
        # wait for it, and nothing else said so. For an alert that is as good as lost (a
        # fallback's above all: it exists for when the primary fails), so each one is said.
        now = time.monotonic()
        if self.held_said >= _HELD_SAID and now - self.held_said_at < _HELD_SAID_EVERY:
            self.held_unsaid += 1
            return
        self.held_said += 1
        self.held_said_at = now
        unsaid, self.held_unsaid = self.held_unsaid, 0
        name = self.webhook.name
        which = f"fallback {name!r} of {fallback_of!r}" if fallback_of else f"webhook {name!r}"
        log.error(
            "delivery_held_webhook_disabled",
            webhook=name,
            event_id=delivery.event.event_id,
            fallback_of=fallback_of,
            held=self.pending,
            held_unsaid=unsaid or None,
            reason=f"{which} is disabled since it answered: {self.disabled_reason or 'gone'}; "
            f"the delivery waits in its queue until enable_webhook({name!r})",
        )

    def put(self, delivery: Delivery) -> None:
        """Hand a delivery to the workers: wake an idle one, or start one when none is free
        to take it."""
        self.queue.append(delivery)
        if self.waiters:
            self.wake_waiter()
        self.wake()

    def wake_waiter(self) -> None:
        """Wake the idle worker that has waited longest (one whose wait ended meanwhile is
        skipped)."""
        waiters = self.waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def wake(self) -> None:
        """Start a worker when queued deliveries outnumber the idle workers (a woken worker
        counts as idle until it runs), up to `max_concurrency`."""
        if (
            self.spawn is not None
            and len(self.queue) > self.idle
            and len(self.workers) < self.webhook.max_concurrency
        ):
            self.spawn()

    def settle(self, delivery: Delivery) -> None:
        """A delivery reached its final outcome: release the next one of its ordering key."""
        self.outcomes.pop(delivery.delivery_id, None)
        key = delivery.event.ordering_key
        if key is not None and key in self.chains:
            waiting = self.chains[key]
            if waiting:
                self.put(waiting.popleft())
            else:
                del self.chains[key]
        self.pending -= 1

    def left(self) -> list[Delivery]:
        """The deliveries not finished (after the workers stopped): queued, waiting behind
        their ordering key, or held by a worker or retry timer when it was cancelled."""
        # By id: a worker stopped while telling `on_failure` of a 410 had put its delivery
        # back in the queue already.
        found = {
            delivery.delivery_id: delivery
            for deliveries in (
                self.unfinished,
                self.retrying.values(),
                self.queue,
                *self.chains.values(),
            )
            for delivery in deliveries
        }
        return list(found.values())

    # -- the gate --------------------------------------------------------------------------

    def pause(self, seconds: float) -> None:
        """Hold every delivery of this lane for `seconds` (a rate-limit answer)."""
        self.paused_until = max(self.paused_until, self.clock.monotonic() + seconds)

    def record(self, success: bool) -> None:
        """Tell the breaker how an attempt went, and wake a gate waiting on a probe."""
        breaker = self.breaker
        before = breaker.current_state()
        breaker.record(success)
        after = breaker.current_state()
        if after is not before:
            self._breaker_moved(before, after)
        if self.at_gate:  # only a worker at the gate can be waiting on a probe's result
            self.breaker_changed.set()

    def _breaker_moved(self, before: BreakerState, after: BreakerState) -> None:
        # An open breaker holds every delivery of the webhook, new ones included, for
        # `open_seconds` at a time: said, or alerts stop arriving with nothing in the log
        # above the per-attempt info lines (the state was only in the figures).
        name = self.webhook.name
        if after is BreakerState.OPEN and before is BreakerState.CLOSED:
            log.warning(
                "circuit_breaker_opened",
                webhook=name,
                pending=self.pending,
                open_seconds=self.webhook.circuit_breaker.open_seconds,
                reason="too many failed attempts: deliveries wait (none is dropped) until a "
                "probe succeeds",
            )
        elif after is BreakerState.OPEN:
            # Once per `open_seconds` while the outage lasts: the opening was the warning.
            log.info("circuit_breaker_probe_failed", webhook=name, pending=self.pending)
        elif after is BreakerState.CLOSED:
            log.warning("circuit_breaker_closed", webhook=name, pending=self.pending)

    def pass_now(self) -> bool:
        """Pass the gate at once if nothing is to be waited for and nobody waits (True), what
        `pass_gate`'s locked loop would do, without the lock or a coroutine; else False (and
        the worker awaits `pass_gate`)."""
        paused_until = self.paused_until
        if (
            not self.at_gate
            and self.limiter is None
            and self.enabled.is_set()
            # Never paused (0.0, most lanes): no clock read.
            and (not paused_until or paused_until <= self.clock.monotonic())
            and self.breaker.wait_time() == 0
        ):
            # No await in between, so no other worker can interleave.
            self.breaker.before_attempt()
            return True
        return False

    async def pass_gate(self) -> None:
        """Wait until this lane may send: enabled, not paused, breaker and rate limit allow.

        Workers pass one at a time (the lock), so waiting deliveries keep their order.
        """
        if self.pass_now():
            return
        self.at_gate += 1
        try:
            await self._pass_gate_in_turn()
        finally:
            self.at_gate -= 1

    async def _pass_gate_in_turn(self) -> None:
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

    def snapshot(self) -> LaneSnapshot:
        return LaneSnapshot(
            recorder=self.recorder,
            queued=self.pending - self.in_flight,
            in_flight=self.in_flight,
            dead_letters=self.dead_letters,
            breaker_state=self.breaker.current_state().value,
            disabled=not self.enabled.is_set(),
            max_pending=self.webhook.max_pending,
            # A 429's or a Retry-After's pause: a webhook sending nothing for an hour looked
            # healthy in its figures (only a log line said why).
            paused_seconds=max(0.0, self.paused_until - self.clock.monotonic()),
        )


@attrs.frozen
class Guards:
    """Where a lane's limiter and breaker come from: the store's, shared by every process
    using it, when it offers them (checked once, when it opens: `Guards.of`), else the
    lane's own."""

    limits: SharesRateLimits | None = None
    breakers: SharesBreakers | None = None

    @classmethod
    def of(cls, store: DeliveryStore) -> Guards:
        return cls(
            limits=store if isinstance(store, SharesRateLimits) else None,
            breakers=store if isinstance(store, SharesBreakers) else None,
        )

    def lane(self, webhook: Webhook, clock: Clock, *, routed: bool = True) -> Lane:
        limiter: Limiter | None = None
        if webhook.rate_limit is not None:
            limiter = (
                self.limits.make_rate_limiter(webhook, clock)
                if self.limits is not None
                else RateLimiter(webhook.rate_limit, clock)
            )
        breaker: Breaker | None = None
        if self.breakers is not None and webhook.circuit_breaker.enabled:
            breaker = self.breakers.make_circuit_breaker(webhook, clock)
        return Lane(webhook, clock, routed=routed, limiter=limiter, breaker=breaker)


class LaneTable:
    """A dispatcher's webhooks: the open lanes by name (`lanes`), and the webhooks added but
    not opened yet (`waiting`: before `start`, and a fallback given as a `Webhook` object)."""

    def __init__(self, hooks: Hooks) -> None:
        self._hooks = hooks
        self.lanes: dict[str, Lane] = {}
        self.waiting: list[tuple[Webhook, bool]] = []

    def add(self, webhook: Webhook, *, routed: bool = True) -> None:
        """Add a webhook (opened by the next `open`). Its name must be unique here."""
        if not isinstance(webhook, Webhook):
            raise TypeError(f"expected a Webhook, got {type(webhook).__name__}")
        # A generic webhook whose URL names a service goes as that service's plugin sends it.
        webhook = self._hooks.claimed(webhook)
        names = {w.name for w, _ in self.waiting} | set(self.lanes)
        if webhook.name in names:
            raise ValueError(
                f"two webhooks are named {webhook.name!r}; give one of them a distinct name="
            )
        self._check_type(webhook)
        self.waiting.append((webhook, routed))

    def _check_type(self, webhook: Webhook) -> None:
        # Resolves (and caches) which plugin answers this class's per-type hooks, once per
        # class rather than per attempt.
        if not self._hooks.route(type(webhook)).owners:
            known = self._hooks.webhook_types()
            raise LookupError(
                f"webhook {webhook.name!r} is a {type(webhook).__name__} (kind {webhook.kind!r}), "
                f"and no loaded plugin provides it (loaded types: {', '.join(sorted(known))}); "
                "is its plugin installed, and allowed by EMPATHY_WEBHOOKS_LOAD_PLUGINS?"
            )

    def open(self, guards: Guards, clock: Clock, start: Callable[[Lane], None]) -> None:
        """Open a lane for every waiting webhook (`start` starts its workers)."""
        # A fallback given as a Webhook object joins the dispatcher (not routed: it only
        # receives what its primary failed), so loop until no webhook is left unopened.
        while self.waiting:
            pending, self.waiting = self.waiting, []
            for webhook, routed in pending:
                lane = guards.lane(webhook, clock, routed=routed)
                self.lanes[webhook.name] = lane
                register_secrets(webhook.secret_values())
                start(lane)
            for lane in list(self.lanes.values()):
                fallback = lane.webhook.fallback
                if isinstance(fallback, Webhook) and fallback.name not in self.lanes:
                    fallback = self._hooks.claimed(fallback)
                    if not any(w is fallback for w, _ in self.waiting):
                        self._check_type(fallback)
                        self.waiting.append((fallback, False))
                elif isinstance(fallback, str) and fallback not in self.lanes:
                    raise ValueError(
                        f"webhook {lane.webhook.name!r} names fallback {fallback!r}, "
                        "which is not one of this dispatcher's webhooks"
                    )
        self._check_fallbacks()

    def _check_fallbacks(self) -> None:
        """Refuse fallbacks that go round (a to b to a): a failed event would be sent round
        them for ever, each lap a new delivery and dead letter. (A webhook that is its own
        fallback is skipped when it fails, as it always was.)"""
        for start in self.lanes:
            seen = [start]
            name = start
            while True:
                fallback = self.lanes[name].webhook.fallback
                if fallback is None:
                    break
                name = fallback if isinstance(fallback, str) else fallback.name
                if name == seen[-1] or name not in self.lanes:
                    break
                if name in seen:
                    loop = " -> ".join([*seen[seen.index(name) :], name])
                    raise ValueError(
                        f"the webhooks' fallbacks go round ({loop}): a failed event would be "
                        "sent round them for ever; end the chain with a webhook without one"
                    )
                seen.append(name)

    def unopen(self) -> list[asyncio.Task[None]]:
        """Put every lane's webhook back to waiting (a failed start); returns the workers to
        cancel."""
        workers = [task for lane in self.lanes.values() for task in lane.workers]
        self.waiting = [(lane.webhook, lane.routed) for lane in self.lanes.values()] + self.waiting
        self.lanes.clear()
        return workers

    @property
    def webhooks(self) -> list[Webhook]:
        return [lane.webhook for lane in self.lanes.values()] + [w for w, _ in self.waiting]

    def snapshot(self, name: str) -> LaneSnapshot | None:
        """The lane's live figures (empty ones for a webhook not opened yet), or None."""
        lane = self.lanes.get(name)
        if lane is not None:
            return lane.snapshot()
        for webhook, _ in self.waiting:
            if webhook.name == name:
                return LaneSnapshot(recorder=StatsRecorder(), max_pending=webhook.max_pending)
        return None
