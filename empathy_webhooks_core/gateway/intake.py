"""Admitting the events of concurrent requests in groups, so the store commits them together.

A `202` means the event is durable: each request waits for its event's commit. A durable store
(SQLite) commits whatever operations it has been handed when its writer wakes, so how many
events share a commit depends on how closely their operations arrive. Left alone, concurrent
requests hand theirs over one at a time, interleaved with socket reads and writes and with
deliveries, and the writer wakes for nearly every one: a commit (and a wake-up of the writer
thread, which then competes for the interpreter) per event or two.

`Intake` is the classic group commit: while one group of events is being admitted (queued and
committed), requests that arrive wait at a gate; when the group is done, the gate opens and
every request waiting behind it admits its event in the same turn of the event loop, one right
after the other, so the store gets them at once and commits them together. A request that
finds nothing under way goes at once (no added latency when the gateway is idle); under load a
request waits at most for one commit before its own.

What an event's admission raises (`QueueFull`, a store error) reaches that event's request
only. A request cancelled while it waits at the gate queues nothing.
"""

from __future__ import annotations

import asyncio

from ..dispatcher import WebhookDispatcher
from ..events import Event

__all__ = ["Intake"]


class Intake:
    """`await intake.admit(event)`: `dispatcher.emit_event(event)`, grouped with the events of
    concurrent requests (see the module docstring)."""

    def __init__(self, dispatcher: WebhookDispatcher) -> None:
        self._dispatcher = dispatcher
        #: Admissions of the current group not finished yet.
        self._under_way = 0
        #: The requests waiting for the next group, each on its own future (so cancelling one
        #: never cancels the others).
        self._waiting: list[asyncio.Future[None]] = []

    async def admit(self, event: Event) -> list[str]:
        """Queue `event` durably; the names of the webhooks it was routed to (as
        `WebhookDispatcher.emit_event`, whose exceptions it raises)."""
        if self._under_way:
            gate = asyncio.get_running_loop().create_future()
            self._waiting.append(gate)
            await gate
        self._under_way += 1
        try:
            return await self._dispatcher.emit_event(event)
        finally:
            self._under_way -= 1
            if not self._under_way:
                self._open_gate()

    def _open_gate(self) -> None:
        waiting, self._waiting = self._waiting, []
        for gate in waiting:
            if not gate.done():  # a request cancelled while it waited
                gate.set_result(None)
