"""Admitting the events of concurrent requests in groups, and delivery after the burst.

A `202` means the event is durable: each request waits for its event's commit. Handing the
store one write per request costs a commit, a wake-up of the store's writer thread (which
then competes for the interpreter) and an answer back per event. `Intake` is a group commit:
the events of the requests that arrive while a group is being written wait, then go as the
next group with ONE `WebhookDispatcher.emit_events` (one store write, one transaction). A
request that finds nothing under way goes in the next turn of the event loop (no added
latency when the gateway is idle); under load a request waits at most for one commit before
its own. What an event's admission raises (`QueueFull`, a store error) reaches that event's
request only. A request cancelled before its group is written queues nothing.

Delivery after the burst: the workers deliver on the same event loop as the intake, and
under a burst of requests they took half of it (a delivery costs about what an accepted event
does), so callers waited on deliveries. While requests keep arriving, admitted deliveries
are therefore held (durable in the store, counted in their lane's `pending`, so
`max_pending` and `drain` see them) and handed to the workers once the gateway has had no
event to admit for `hold_quiet_seconds`, or once the oldest has waited `hold_max_seconds`: a
burst is answered first and delivered right after, and a steady stream of requests never
holds a delivery longer than that. A gateway answering one request at a time hands each
delivery over `hold_quiet_seconds` after it. Both are `[serve]` settings (0.02 s and 1 s by
default; `hold_max_seconds = 0` holds nothing): a team that wants every alert sent the moment
it is accepted, even during a burst, trades intake speed for that.
"""

from __future__ import annotations

import asyncio

from .._pipeline.admission import Held
from ..config.serve import DEFAULT_HOLD_MAX_SECONDS, DEFAULT_HOLD_QUIET_SECONDS
from ..dispatcher import WebhookDispatcher
from ..events import Event

__all__ = ["Intake"]


class Intake:
    """`await intake.admit(event)`: `dispatcher.emit_event(event)`, grouped with the events of
    concurrent requests, its delivery held while a burst lasts (see the module docstring).
    `max_hold_seconds=0`: deliveries go to the workers as soon as they are queued."""

    def __init__(
        self,
        dispatcher: WebhookDispatcher,
        *,
        quiet_seconds: float = DEFAULT_HOLD_QUIET_SECONDS,
        max_hold_seconds: float = DEFAULT_HOLD_MAX_SECONDS,
    ) -> None:
        self._dispatcher = dispatcher
        self._quiet_seconds = quiet_seconds
        self._max_hold_seconds = max_hold_seconds
        #: The events waiting for the next group, each with its request's future (its own:
        #: cancelling one request never cancels the others).
        self._waiting: list[tuple[Event, asyncio.Future[list[str]]]] = []
        #: Writes the groups, one after the other, while there are any.
        self._writer: asyncio.Task[None] | None = None
        self._held = Held() if max_hold_seconds > 0 else None
        self._hold_timer: asyncio.TimerHandle | None = None
        self._quiet_timer: asyncio.TimerHandle | None = None

    @property
    def held(self) -> int:
        """Deliveries admitted and not handed to the workers yet."""
        return len(self._held) if self._held is not None else 0

    async def admit(self, event: Event) -> list[str]:
        """Queue `event` durably; the names of the webhooks it was routed to (as
        `WebhookDispatcher.emit_event`, whose exceptions it raises)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[str]] = loop.create_future()
        self._busy()
        self._waiting.append((event, future))
        if self._writer is None:
            self._writer = loop.create_task(self._write_groups())
        return await future

    async def _write_groups(self) -> None:
        try:
            while self._waiting:
                group, self._waiting = self._waiting, []
                # A request cancelled while it waited queues nothing.
                group = [(event, future) for event, future in group if not future.done()]
                if not group:
                    continue
                try:
                    results = await self._dispatcher.emit_events(
                        [event for event, _ in group], held=self._held
                    )
                except Exception as exc:  # not an event's own error: every request hears it
                    results = [exc] * len(group)
                except BaseException:
                    # The writer itself was cancelled (the loop shutting down): no request
                    # may wait forever for an answer that will not come.
                    for _, future in group + self._waiting:
                        if not future.done():
                            future.set_exception(RuntimeError("the gateway is stopping"))
                    self._waiting = []
                    raise
                self._hold_started()
                for (_, future), result in zip(group, results, strict=True):
                    if future.done():  # its request went away meanwhile: the event is queued
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._writer = None
            self._quiet()

    # -- holding deliveries during a burst -------------------------------------------------

    def _hold_started(self) -> None:
        if self._held is not None and len(self._held) and self._hold_timer is None:
            loop = asyncio.get_running_loop()
            self._hold_timer = loop.call_later(self._max_hold_seconds, self.release)

    def _quiet(self) -> None:
        """Nothing to write: unless an event arrives within `quiet_seconds`, the held
        deliveries go to the workers."""
        if self._held is not None and len(self._held) and self._quiet_timer is None:
            loop = asyncio.get_running_loop()
            self._quiet_timer = loop.call_later(self._quiet_seconds, self.release)

    def _busy(self) -> None:
        """An event arrived: the burst goes on."""
        if self._quiet_timer is not None:
            self._quiet_timer.cancel()
            self._quiet_timer = None

    def release(self) -> None:
        """Hand every held delivery to the workers now."""
        for timer in (self._hold_timer, self._quiet_timer):
            if timer is not None:
                timer.cancel()
        self._hold_timer = self._quiet_timer = None
        if self._held is not None and not self._dispatcher.closed:
            # Closed without draining: they stay queued in the store for the next start
            # (and in `closed_with_pending_deliveries`, as they count in `pending`).
            self._held.release()
