"""A lane's workers: take a delivery from the queue, pass the gate, make one attempt
(`delivery.attempt`: render, sign, deliver, classify), and carry out the decision
(`outcome.decide`): record a success, schedule a retry, or hand a failure to `failures`.
"""

from __future__ import annotations

import asyncio
import contextvars
import random
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

from .._log import get_logger
from ..breaker import BreakerState
from ..clock import Clock
from ..delivery import attempt as run_attempt
from ..delivery import request_secrets
from ..history import KeepsHistory, RawAttempt
from ..plugins import Hooks
from ..redaction import request_secrets_known
from ..retry import _usable as usable_wait
from ..stores import ConfirmsHolding, DeliveryStore
from ..webhooks import Webhook
from ..wire import DeliveryResult, Outcome
from .failures import Failures, summary
from .lane import Lane
from .outcome import SUCCEEDED, Action, decide
from .unit import Delivery

__all__ = ["Workers"]

#: A delivery's status in its history record after an attempt the decision ended so (by the
#: action's value: an enum member as a key costs a Python-level `__hash__` per look-up).
_STATUS_AFTER = {
    Action.SUCCEED.value: "delivered",
    Action.RETRY.value: "retrying",
    Action.FAIL.value: "failed",
    Action.DISABLE.value: "disabled",
}

log = get_logger()

#: How long a lane's worker waits for a delivery before it stops (the lane starts another
#: when work comes): an idle webhook holds no task, a busy one keeps its workers.
WORKER_IDLE_SECONDS = 30.0
#: What an idle worker is woken with when it has waited `WORKER_IDLE_SECONDS` (`_stop_idle`).
_IDLE_TOO_LONG = object()


def _stop_idle(lane: Lane, loop: asyncio.AbstractEventLoop) -> None:
    """The lane's idle timer: wake the workers that have waited `WORKER_IDLE_SECONDS` or more
    with `_IDLE_TOO_LONG` (each stops unless a delivery came meanwhile), and set the timer
    again for the next one to reach it."""
    lane.idle_timer = None
    now = loop.time()
    soonest: float | None = None
    for waiter, since in list(lane.waiting_since.items()):
        ends = since + WORKER_IDLE_SECONDS
        if ends <= now:
            if not waiter.done():
                waiter.set_result(_IDLE_TOO_LONG)
        elif soonest is None or ends < soonest:
            soonest = ends
    if soonest is not None:
        lane.idle_timer = loop.call_at(soonest, _stop_idle, lane, loop)


class Workers:
    """The workers of one dispatcher's lanes. `store` gives the open store, `session_for` a
    webhook's HTTP session, `settle` ends a delivery in its lane; retry timers join `timers`
    (the dispatcher cancels them when it stops)."""

    def __init__(
        self,
        hooks: Hooks,
        clock: Clock,
        rng: random.Random,
        *,
        failures: Failures,
        store: Callable[[], DeliveryStore],
        session_for: Callable[[Webhook], aiohttp.ClientSession],
        settle: Callable[[Lane, Delivery], None],
        timers: set[asyncio.Task[None]],
    ) -> None:
        self._hooks = hooks
        self._clock = clock
        self._rng = rng
        self._failures = failures
        self._store = store
        self._session_for = session_for
        self._settle = settle
        self._timers = timers
        #: The store's history, when it keeps one (set once, when the store opens).
        self.history: KeepsHistory | None = None
        #: The store, when a claim on a delivery can run out and be taken over (set once).
        self.holding: ConfirmsHolding | None = None
        #: By webhook: deliveries sent since the store last could not answer a claim check
        #: (the warning is said for the first; the rest at debug, counted).
        self._unconfirmed: dict[str, int] = {}

    def start(self, lane: Lane) -> None:
        """Let the lane start workers as work arrives (up to its `max_concurrency`), and
        start them for what it already holds."""

        def spawn() -> None:
            # In a context of its own: a copy of the caller's (an emit's, with its current
            # span) would stay the worker's for every later delivery of any emit.
            worker = self._work(lane)
            lane.workers.append(asyncio.create_task(worker, context=contextvars.Context()))

        lane.spawn = spawn
        lane.wake()

    async def _work(self, lane: Lane) -> None:
        queue = lane.queue
        me = asyncio.current_task()
        assert me is not None
        while True:
            if queue:
                delivery = queue.popleft()
            else:
                waited = await self._wait(lane)
                if waited is None:
                    return
                delivery = waited
            try:
                # A claim this process may have lost (`ConfirmsHolding`) is asked about before
                # the gate: a delivery another process took takes no place there (neither a
                # half-open breaker's one probe nor a rate-limit slot).
                holding = self.holding
                if (
                    holding is None
                    or holding.surely_held(delivery)
                    or await self._still_held(lane, delivery, holding)
                ) and (
                    # The usual case passes with no coroutine made.
                    lane.pass_now() or await self._passed_gate(lane, delivery, holding)
                ):
                    await self._attempt(lane, delivery)
            except asyncio.CancelledError as exc:
                if not me.cancelling():
                    # Not this worker's cancellation: raised by what it awaited (a plugin's
                    # send, an on_failure, awaiting a task something else cancelled). It had
                    # ended the worker without a word, the delivery never settled, and the
                    # lane short of a worker for good.
                    await self._failures.worker_failed(
                        lane, delivery, RuntimeError(f"CancelledError raised within: {exc!r}")
                    )
                    continue
                if lane.outcomes.get(delivery.delivery_id) == "final":
                    # Its dead letter written and its fallback queued, cut short while its
                    # on_failure ran: ended, not left (close said it was lost, or queued).
                    lane.recorder.failure()
                    self._failures.settle(lane, delivery)
                else:
                    lane.unfinished.append(delivery)  # named by `close`, not only counted
                raise
            except Exception as exc:  # a bug must not kill the lane, nor lose the delivery
                await self._failures.worker_failed(lane, delivery, exc)
            except (KeyboardInterrupt, SystemExit):
                raise  # the process is asked to stop: not a library's to swallow
            except BaseException as exc:
                # GeneratorExit, a vendor SDK's or a test framework's own BaseException from a
                # plugin's hook: it had ended the worker without a word, the delivery never
                # settled and the lane a worker short for good.
                await self._failures.worker_failed(
                    lane, delivery, RuntimeError(f"{type(exc).__name__} raised within: {exc}")
                )
            if me.cancelling():
                # Cancelled (the dispatcher closing) while a plugin's send swallowed it, as
                # Python 3.11's `wait_for` does when the answer lands with the cancellation:
                # this worker stops now instead of waiting, idle, for its next delivery.
                raise asyncio.CancelledError

    async def _wait(self, lane: Lane) -> Delivery | None:
        """Wait, idle, for the lane's next delivery and take it; None when nothing came for
        `WORKER_IDLE_SECONDS` (this worker then leaves the lane's list and stops).

        The idle time is watched by one timer per lane (`_stop_idle`), not a timeout per
        wait: a lane whose queue runs dry between deliveries (a durable store's emits, each
        waiting for its commit) has its workers wait about once a delivery, and
        `asyncio.timeout`'s timer, made and cancelled each time, cost more than the wait."""
        queue = lane.queue
        loop = asyncio.get_running_loop()
        lane.idle += 1
        try:
            while not queue:  # another worker may take it between the wake and this one
                waiter = loop.create_future()
                lane.waiters.append(waiter)
                lane.waiting_since[waiter] = loop.time()
                if lane.idle_timer is None:
                    lane.idle_timer = loop.call_at(
                        loop.time() + WORKER_IDLE_SECONDS, _stop_idle, lane, loop
                    )
                try:
                    woken = await waiter
                except BaseException:
                    # Woken, then cancelled before it ran: the wake goes to the next idle
                    # worker, so the delivery is not left waiting.
                    if waiter.cancel():
                        lane.waiters.remove(waiter)
                    elif queue:
                        lane.wake_waiter()
                    raise
                finally:
                    del lane.waiting_since[waiter]
                if woken is _IDLE_TOO_LONG and not queue:
                    # Nothing came for a while: stop (nothing awaits between this check and
                    # leaving the list, so no delivery arrives unseen).
                    lane.workers.remove(asyncio.current_task())  # type: ignore[arg-type]
                    return None
        finally:
            lane.idle -= 1
        return queue.popleft()

    async def _passed_gate(
        self, lane: Lane, delivery: Delivery, holding: ConfirmsHolding | None
    ) -> bool:
        """Wait at the lane's gate; False when `delivery` is not to be sent after all: its
        claim ran out while it waited (this process was stopped or cut off meanwhile) and
        another process took it. The gate may have given it the half-open breaker's one
        probe, which nothing else would ever answer (the lane then waited for it forever):
        answered as failed, since nothing showed the endpoint came back, so the breaker
        opens again and the next delivery is its probe."""
        await lane.pass_gate()
        if holding is None or holding.surely_held(delivery):
            return True
        probing = lane.breaker.current_state() is BreakerState.HALF_OPEN
        if await self._still_held(lane, delivery, holding):
            return True
        if probing:
            lane.record(False)
        return False

    async def _attempt(self, lane: Lane, delivery: Delivery) -> None:
        webhook = lane.webhook
        recorder = lane.recorder
        delivery.attempts += 1
        lane.in_flight += 1
        recorder.attempt(delivery.attempts > 1)
        clock, hooks = self._clock, self._hooks
        # The plugins that have nothing to observe now: for the attempt and its success.
        quiet = hooks.quiet() if hooks.asks_observing else ()
        started, began = clock.time(), clock.monotonic()
        try:
            result = await run_attempt(
                hooks, webhook, delivery, self._session_for(webhook), clock, quiet
            )
        finally:
            lane.in_flight -= 1
        verdict, response = result.verdict, result.response
        if response is not None:
            recorder.answer(response.elapsed_ms)
        outcome = verdict.outcome
        lane.record(outcome is not Outcome.RETRY and outcome is not Outcome.GONE)
        if log.enabled_for("debug"):  # per-attempt lines are built only when seen
            log.debug(
                "delivery_attempt",
                webhook=webhook.name,
                event_id=delivery.event.event_id,
                attempt=delivery.attempts,
                status=response.status if response is not None else None,
                outcome=outcome.value,
                reason=verdict.reason,
                # A plugin's Response may carry anything here: shown, never the worker's end.
                elapsed_ms=(
                    round(response.elapsed_ms, 2)
                    if response is not None and type(response.elapsed_ms) is float
                    else getattr(response, "elapsed_ms", None)
                ),
            )
        now = clock.monotonic()
        if outcome is Outcome.SUCCESS and not delivery.rate_limited:
            decision = SUCCEEDED  # what `decide` answers, without the call (most attempts)
        else:
            decision = decide(
                verdict,
                delivery,
                webhook.retry_policy,
                now=now,
                rng=self._rng,
                response=response,
                exception=result.exception,
            )
            delivery.rate_limited = decision.rate_limited
        action = decision.action
        duration = now - began if now > began else 0.0
        history = self.history
        if history is not None:
            # One record of the attempt, handed to the store without waiting.
            rendered = delivery.request
            sent = result.request or rendered
            history.note_attempt(
                delivery,
                RawAttempt(
                    attempt=delivery.attempts,
                    started_at=started,
                    duration_s=duration,
                    # `_value_`: the member's own attribute, where `.value` is a property.
                    verdict=outcome._value_,
                    reason=None if action is Action.SUCCEED else decision.reason,
                    response=response,
                    headers=sent.headers if sent is not None else {},
                    body_bytes=len(sent.body) if sent is not None else 0,
                    next_retry_at=(
                        started + duration + decision.wait if action is Action.RETRY else None
                    ),
                    # Credentials in the request known to the redaction registry only for a
                    # while: masked now. Without them the memory store masks when read.
                    transient=(
                        rendered is not None
                        and request_secrets_known()
                        and bool(request_secrets(rendered))
                    ),
                ),
                _STATUS_AFTER[action._value_],
            )
        if action is Action.SUCCEED:
            # The wall time the attempt ended, from the readings taken (no third clock call).
            recorder.success(started + duration)
            try:
                await self._store().mark_delivered(delivery)
            except Exception as exc:
                # The service said yes: the delivery succeeded, whatever the store says. Not
                # a dead letter nor an on_failure (that told the team a delivered alert had
                # failed, and a replay sent it twice). Said loudly; the store still holds it
                # pending, so it may be sent again after a restart: at least once.
                log.error(
                    "delivered_not_recorded",
                    webhook=webhook.name,
                    event_id=delivery.event.event_id,
                    delivery_id=delivery.delivery_id,
                    error=summary(exc),
                )
            self._succeeded(lane, delivery, response, verdict.details, started + duration, quiet)
            return
        assert decision.reason is not None
        recorder.attempt_failed(decision.reason, clock.time())
        if action is Action.RETRY:
            if decision.pause_lane:
                lane.pause(decision.wait)
            asked = verdict.retry_after
            capped: dict[str, Any] = {}
            if usable_wait(asked) and asked > decision.wait:
                # The service asked for a longer wait than the policy's cap allows: the next
                # attempt goes before it said it would listen (another 429, likely), so it is
                # said at WARNING with what was asked.
                capped = {
                    "retry_after_asked": round(asked, 3),
                    "capped": "Retry-After is over the retry policy's cap "
                    "(max_retry_after_seconds; max_rate_limit_wait_seconds for a rate limit)",
                }
            (log.warning if capped else log.info)(
                "delivery_retry_scheduled",
                webhook=webhook.name,
                event_id=delivery.event.event_id,
                attempt=delivery.attempts,
                wait_seconds=round(decision.wait, 3),
                reason=decision.reason,
                **capped,
            )
            await self._store().record_attempt(delivery)
            self._later(decision.retry_at, lane, delivery)
            return
        assert decision.error is not None
        if action is Action.DISABLE:
            await self._failures.gone(lane, delivery, decision.reason, decision.error)
        else:
            await self._failures.failed(lane, delivery, decision.error)

    async def _still_held(self, lane: Lane, delivery: Delivery, holding: ConfirmsHolding) -> bool:
        """Whether this process may still send `delivery`, its claim not certain (the process
        was stopped or cut off past its lease): asked of the store. A copy another process
        took over leaves the lane, said; one the store cannot tell about is sent."""
        name = lane.webhook.name
        try:
            held = await holding.confirm_held(delivery)
        except Exception as exc:
            # A store out of reach cannot answer for any delivery: said once a webhook for
            # as long as it lasts (a line per attempt would bury the log during an outage),
            # each delivery still at debug, and the count when the store answers again.
            count = self._unconfirmed.get(name, 0)
            self._unconfirmed[name] = count + 1
            (log.debug if count else log.warning)(
                "delivery_claim_unconfirmed",
                webhook=name,
                event_id=delivery.event.event_id,
                delivery_id=delivery.delivery_id,
                error=summary(exc),
                reason="sent anyway: a possible duplicate rather than a loss",
                **({} if count else {"more": "said at debug until the store answers again"}),
            )
            return True
        sent = self._unconfirmed.pop(name, 0)
        if sent:
            log.warning(
                "delivery_claims_answered_again",
                webhook=name,
                sent_unconfirmed=sent,
                reason="deliveries sent while the store could not answer: possible duplicates",
            )
        if not held:
            log.warning(
                "delivery_taken_over",
                webhook=name,
                event_id=delivery.event.event_id,
                delivery_id=delivery.delivery_id,
                reason="this process's claim ran out (it was stopped or cut off) and another "
                "process holds or delivered it: left to that one, not sent from here",
            )
            self._settle(lane, delivery)
        return held

    def _later(self, deadline: float, lane: Lane, delivery: Delivery) -> None:
        # The deadline was fixed by the decision, not when the task first runs. The delivery
        # is in `lane.retrying` until the timer puts it back, so `close` names it: a timer
        # cancelled before its first turn never runs a line of its body, and a handler there
        # left it counted in `pending` but named nowhere.
        lane.retrying[delivery.delivery_id] = delivery

        async def requeue() -> None:
            try:
                await self._clock.sleep(deadline - self._clock.monotonic())
            except Exception as exc:  # a clock's fault must not strand the delivery
                log.error(
                    "retry_timer_failed",
                    webhook=lane.webhook.name,
                    event_id=delivery.event.event_id,
                    error=f"{type(exc).__name__}: {exc}",
                    reason="the retry's wait raised: the delivery is queued again at once",
                )
            lane.retrying.pop(delivery.delivery_id, None)
            lane.put(delivery)

        task = asyncio.create_task(requeue())
        self._timers.add(task)
        task.add_done_callback(self._timers.discard)

    def _succeeded(
        self,
        lane: Lane,
        delivery: Delivery,
        response: Any,
        details: Mapping[str, Any],
        ended: float,
        quiet: tuple[str, ...],
    ) -> None:
        """The rest of a success, once the store has it: figures, listeners, settle. Not a
        coroutine: nothing here waits (one frame less on every delivery's path)."""
        if details:
            recorder = lane.recorder
            for key in details:
                recorder.details[key] += 1
            recorder.last_details = (ended, dict(details))
        lane.outcomes[delivery.delivery_id] = "final"
        listeners = self._hooks.success_listeners(quiet)
        if listeners:
            result = DeliveryResult(
                webhook_name=lane.webhook.name,
                event_id=delivery.event.event_id,
                status=response.status if response is not None else None,
                attempts=delivery.attempts,
                elapsed_ms=response.elapsed_ms if response is not None else 0.0,
                details=details,
            )
            self._hooks.on_success(lane.webhook, delivery.event, result, listeners)
        self._settle(lane, delivery)
