"""When a delivery fails: tell (the webhook's `on_failure`, then every plugin's), keep it as a
dead letter, hand it to the fallback webhook, and later replay it. Also a 410's disabling, and
a worker's unexpected error, which ends like any final failure: never silently dropped.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import traceback
from collections.abc import Callable, Mapping

from .._log import get_logger
from ..events import Event
from ..monitor import UnknownWebhookError
from ..plugins import Hooks
from ..redaction import redact_text
from ..stores import DeadLetter, DeliveryStore, ReplaysInOneStep, ReturnsDeadLetters
from ..webhooks import Webhook
from ..wire import DeliveryError
from .lane import Lane
from .outcome import delivery_error
from .unit import Delivery

__all__ = ["Failures", "summary"]

log = get_logger()

#: An `on_failure` call (a plain function's whole run) that holds the event loop this long
#: is said: asyncio's own slow-callback warning, in debug mode only, starts at 0.1 s.
BLOCKING_CALLBACK_SECONDS = 0.25


def summary(exc: BaseException) -> str:
    """An exception as one line: type, message and where it was raised (no full traceback
    in a dead letter, but enough to find the bug)."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        last = frames[-1]
        text += f" (at {last.filename.rsplit('/', 1)[-1]}:{last.lineno} in {last.name})"
    text = redact_text(text)
    return text if len(text) <= 500 else text[:499] + "…"


class Failures:
    """The failure handling of one dispatcher: its lanes, its hooks, and (once open) its store.

    `settle` ends a delivery in its lane (the next of its ordering key goes, `drain` may wake);
    `wake` tells `drain` to look again.
    """

    def __init__(
        self,
        hooks: Hooks,
        lanes: Mapping[str, Lane],
        *,
        settle: Callable[[Lane, Delivery], None],
        wake: Callable[[], None],
    ) -> None:
        self._hooks = hooks
        self._lanes = lanes
        self._settle = settle
        self._wake = wake
        self._store: DeliveryStore | None = None
        self._replays_in_one_step: ReplaysInOneStep | None = None
        #: `on_failure` calls under way for a disabled webhook (`gone`): `drain` waits for
        #: them, as it waits for a failed delivery's (still pending until it is told).
        self.telling = 0

    def settle(self, lane: Lane, delivery: Delivery) -> None:
        """The delivery reached its final outcome (the dispatcher's `_settle`)."""
        lane.outcomes.pop(delivery.delivery_id, None)
        self._settle(lane, delivery)

    def open(self, store: DeliveryStore | None) -> None:
        """The dispatcher's store opened (or closed: None). A store of other processes'
        workers that replays in one step is used for that (checked once, here)."""
        self._store = store
        self._replays_in_one_step = (
            store
            if isinstance(store, ReplaysInOneStep) and store is not None and store.remote_workers
            else None
        )

    @property
    def store(self) -> DeliveryStore:
        assert self._store is not None, "the dispatcher has not started"
        return self._store

    async def tell(self, webhook: Webhook, event: Event, error: DeliveryError) -> None:
        """The webhook's own `on_failure` first, then every plugin's."""
        callback = webhook.on_failure
        if callback is not None:
            # An async callback that never returns (a pager's client that hangs) would hold
            # the worker and leave the delivery unsettled forever (drain never returned): it
            # gets as long as an attempt does.
            limit = webhook.retry_policy.timeout_seconds
            began = time.monotonic()  # real time: an injected clock stands still meanwhile
            try:
                try:
                    outcome = callback(webhook, event, error)
                finally:
                    self._blocked(webhook, event, time.monotonic() - began)
                if inspect.isawaitable(outcome):
                    deadline = asyncio.timeout(limit)
                    try:
                        async with deadline:
                            await outcome
                    except TimeoutError:
                        if not deadline.expired():
                            raise  # the callback's own timeout, said as it is
                        raise TimeoutError(f"did not return within {limit:g} s") from None
            except asyncio.CancelledError as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # The dispatcher closing: said, since the user's pager call is cut short.
                    log.warning(
                        "on_failure_callback_cut_short",
                        webhook=webhook.name,
                        event_id=event.event_id,
                        reason="the dispatcher stopped while the webhook's on_failure ran; "
                        "the dead letter and the fallback's delivery are kept",
                    )
                    raise
                # Raised by the callback itself (a task it awaited was cancelled): its
                # failure, not this worker's cancellation. It had ended the worker without a
                # word, the delivery never settled and its slot in the lane lost for good.
                self._callback_failed(webhook, event, exc)
            except Exception as exc:
                self._callback_failed(webhook, event, exc)
        self._hooks.on_failure(webhook, event, error)

    def _callback_failed(self, webhook: Webhook, event: Event, exc: BaseException) -> None:
        # The user's own failure store or pager did not run: loud, and counted.
        lane = self._lanes.get(webhook.name)
        if lane is not None:
            lane.recorder.callback_errors += 1
        log.error(
            "on_failure_callback_failed",
            webhook=webhook.name,
            event_id=event.event_id,
            error=summary(exc),
        )

    @staticmethod
    def _blocked(webhook: Webhook, event: Event, seconds: float) -> None:
        # A plain function runs on the event loop: while it blocks (a synchronous database
        # write, `requests.post` to a pager), no delivery of any webhook moves, and nothing
        # said why the alerts were late.
        if seconds >= BLOCKING_CALLBACK_SECONDS:
            log.warning(
                "on_failure_callback_blocked",
                webhook=webhook.name,
                event_id=event.event_id,
                blocked_seconds=round(seconds, 3),
                reason="the callback ran on the event loop and held every delivery meanwhile: "
                "make it async def, or move its slow work to asyncio.to_thread",
            )

    async def failed(self, lane: Lane, delivery: Delivery, error: DeliveryError) -> None:
        """A final failure: a dead letter, `on_failure` told, the fallback webhook given the
        event, and the delivery settled."""
        webhook = lane.webhook
        log.warning(
            "delivery_failed",
            webhook=webhook.name,
            event_id=delivery.event.event_id,
            attempt=delivery.attempts,
            status=error.status,
            reason=error.reason,
        )
        store = self.store
        try:
            await store.add_dead_letter(delivery, error.to_dict())
        except Exception as exc:
            # The store refused it (locked, full, gone): the failure is still told, to the
            # user's on_failure and the fallback, which need no store of this process's, with
            # its own reason. It had stopped here, and the worker's last resort told nobody
            # and put "internal error: <the store's error>" in the endpoint's answer's place.
            log.error(
                "dead_letter_not_recorded",
                webhook=webhook.name,
                event_id=delivery.event.event_id,
                error=summary(exc),
                status=error.status,
                failure=error.reason,
                reason="on_failure and the fallback are told all the same; a durable store "
                "still holds the delivery, sent again when a process opens it",
            )
        else:
            lane.dead_letters += 1
        lane.outcomes[delivery.delivery_id] = "final"
        try:
            # The fallback first: queued, it is kept whatever on_failure does (hang until its
            # time is up, or be cut short by a close); queued after it, it was lost then.
            fallback = webhook.fallback
            if fallback is not None:
                name = fallback if isinstance(fallback, str) else fallback.name
                target = self._lanes.get(name)
                if target is not None and target is not lane:
                    backup = Delivery(
                        webhook_name=name, event=delivery.event, context=dict(delivery.context)
                    )
                    await store.enqueue([backup])
                    if not store.remote_workers:  # else a worker takes it from the store
                        target.enqueue(backup, fallback_of=webhook.name)
            await self.tell(webhook, delivery.event, error)
        except Exception:
            lane.recorder.failure()  # `worker_failed` settles it, with no await between
            raise
        # Counted as it leaves `pending`, with no await between: counted before an async
        # on_failure ran, it was both failed and still queued, and the figures held it twice.
        lane.recorder.failure()
        self._settle(lane, delivery)

    async def gone(self, lane: Lane, delivery: Delivery, reason: str, error: DeliveryError) -> None:
        """The endpoint is gone (410, or a plugin's verdict on its own answer such as Slack's
        `channel_is_archived`): disable the webhook, keep its queue (this delivery included),
        tell on_failure."""
        lane.enabled.clear()
        lane.disabled_reason = reason
        delivery.attempts -= 1  # the refused attempt is not held against the delivery
        lane.put(delivery)
        lane.outcomes[delivery.delivery_id] = "requeued"
        log.error(
            "webhook_disabled",
            webhook=lane.webhook.name,
            event_id=delivery.event.event_id,
            attempt=delivery.attempts + 1,
            # Every delivery queued meanwhile waits too, this one included.
            held=lane.pending,
            reason=reason,
        )
        self.telling += 1
        try:
            await self.tell(lane.webhook, delivery.event, error)
        finally:
            self.telling -= 1
            lane.outcomes.pop(delivery.delivery_id, None)
            self._wake()

    async def worker_failed(self, lane: Lane, delivery: Delivery, exc: Exception) -> None:
        """An unexpected exception while handling a delivery: unless its outcome was already
        recorded, it ends as a dead letter (with the error's summary) and on_failure is told,
        as any final failure; never silently dropped."""
        text = summary(exc)
        log.error(
            "worker_error",
            webhook=lane.webhook.name,
            event_id=delivery.event.event_id,
            error=text,
            exc_info=exc,
        )
        outcome = lane.outcomes.pop(delivery.delivery_id, None)
        if outcome == "requeued":
            return  # back in its queue: still pending, nothing to settle
        if outcome is None:
            try:
                # Built inside: the last resort must not fail on what broke the worker (the
                # delivery would stay queued, its worker gone, until close lost it).
                error = delivery_error(f"internal error: {text}", delivery, exception=exc)
                await self.failed(lane, delivery, error)
                return
            except Exception as second:
                if lane.outcomes.get(delivery.delivery_id) != "final":
                    # Not even a dead letter could be written: a durable store still holds the
                    # delivery (it resumes on restart), a memory store does not. It failed all
                    # the same, and leaves `pending` below: counted, or the figures lose it.
                    lane.recorder.failure()
                    log.error(
                        "dead_letter_not_recorded",
                        webhook=lane.webhook.name,
                        event_id=delivery.event.event_id,
                        error=summary(second),
                        first_error=text,
                    )
        self._settle(lane, delivery)

    async def _give_back(self, letter: DeadLetter) -> None:
        store = self.store
        try:
            if isinstance(store, ReturnsDeadLetters):
                await store.return_dead_letter(letter)
            else:  # a store of a plugin's without the capability: a new letter, same event
                await store.add_dead_letter(letter.replay_delivery(), dict(letter.error))
        except Exception as exc:
            log.error(
                "dead_letter_not_returned",
                dead_letter_id=letter.dead_letter_id,
                webhook=letter.webhook_name,
                event_id=letter.event.event_id,
                error=summary(exc),
            )

    def _unknown_webhook(self, letter: DeadLetter) -> UnknownWebhookError:
        known = ", ".join(self._lanes) or "none"
        return UnknownWebhookError(
            f"dead letter {letter.dead_letter_id!r} is for unknown webhook "
            f"{letter.webhook_name!r}: this dispatcher does not have it (its webhooks: {known}); "
            "it stays a dead letter, to replay where that webhook is configured"
        )

    async def _listed(self, dead_letter_id: str) -> DeadLetter | None:
        # One letter read by its id where the store can (Redis: `dead_letter`), not all of
        # them listed to find it: a replay cost as much as listing every letter kept.
        one = getattr(self.store, "dead_letter", None)
        if callable(one):
            found: DeadLetter | None = await one(dead_letter_id)
            return found
        for letter in await self.store.dead_letters():
            if letter.dead_letter_id == dead_letter_id:
                return letter
        return None

    async def replay(self, dead_letter_id: str, listed: DeadLetter | None = None) -> Event:
        """Queue a dead letter again as a fresh delivery (attempts start over). `listed` is
        the letter as `dead_letters()` gave it, when the caller has it. Raises `KeyError`
        when there is no such letter, `UnknownWebhookError` (a `KeyError`) when its webhook
        is not this dispatcher's (the letter stays), `ValueError` when its event could not
        be decoded."""
        if self._replays_in_one_step is not None:
            # The one step queues whatever webhook the letter names, and nothing here would
            # ever send a delivery for a webhook it lacks: checked first, or the letter left
            # the dead letters for a delivery that stayed pending forever.
            letter = listed if listed is not None else await self._listed(dead_letter_id)
            if letter is None:
                raise KeyError(f"no dead letter {dead_letter_id!r}")
            if letter.replayable and letter.webhook_name not in self._lanes:
                raise self._unknown_webhook(letter)
            # The store replays in one step (Redis: XADD and delete in one script), so a crash
            # between taking the letter and queueing it cannot lose it.
            replayed = await self._replays_in_one_step.requeue_dead_letter(dead_letter_id)
            if replayed is None:
                raise KeyError(f"no dead letter {dead_letter_id!r}")
            replayed_lane = self._lanes.get(replayed.webhook_name)
            if replayed_lane is not None:
                replayed_lane.dead_letters = max(0, replayed_lane.dead_letters - 1)
            return replayed.event
        if listed is not None and listed.replayable and listed.webhook_name not in self._lanes:
            raise self._unknown_webhook(listed)  # said before taking it: nothing to give back
        store = self.store
        letter = await store.take_dead_letter(dead_letter_id)
        if letter is None:
            raise KeyError(f"no dead letter {dead_letter_id!r}")
        lane = self._lanes.get(letter.webhook_name)
        delivery = letter.replay_delivery()
        try:
            if lane is None:
                raise self._unknown_webhook(letter)
            await store.enqueue([delivery])
        except BaseException:
            # Taken but not queued: the letter goes back, listed as before. It was gone from
            # the memory store, and hidden from every process sharing a SQLite file until
            # this one ended.
            await self._give_back(letter)
            raise
        lane.dead_letters = max(0, lane.dead_letters - 1)
        if not store.remote_workers:  # else a worker takes it from the store
            lane.enqueue(delivery)
        return letter.event
