"""What the store holds per webhook (deliveries not finished, dead letters), for the health
an operator reads: `GET /v1/webhooks`, the console's overview and `/metrics`.

The monitor's `queued` and `dead_letters` are this process's since it started: after a
restart, or with `--no-workers`, or beside other gateways and workers, they read 0 while the
store holds letters and a backlog. The store's own counts are the truth there, so the
gateway shows them wherever the store can count (`PendingCounts`, `CountsDeadLetters`), and
the process's figures only where it cannot, saying which it showed (`counted_in`).

Concurrent readers share one read (a page of webhooks, a scrape and the console asking at
once cost one count), and a read is bounded: a store that does not answer within
`READ_SECONDS` gives the process's figures rather than a page that hangs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from .._log import get_logger
from ..redaction import redact_text
from ..stores.base import CountsDeadLetters, PendingCounts

__all__ = ["READ_SECONDS", "Held", "StoreFigures"]

log = get_logger()

#: How long a health figure waits for the store before showing the process's instead.
READ_SECONDS = 3.0


@attrs.frozen
class Held:
    """Per webhook name, what the store holds: deliveries not finished (waiting, retrying or
    under way, in any process) and dead letters. None: the store cannot count it (or did
    not answer in time)."""

    pending: Mapping[str, int] | None = None
    dead_letters: Mapping[str, int] | None = None

    def figures(self, name: str) -> dict[str, int | None]:
        """`store_pending` and `store_dead_letters` of webhook `name` (None: not counted)."""
        return {
            "store_pending": None if self.pending is None else self.pending.get(name, 0),
            "store_dead_letters": (
                None if self.dead_letters is None else self.dead_letters.get(name, 0)
            ),
        }


class StoreFigures:
    """`await figures.read()`: what the store holds now (see the module docstring)."""

    def __init__(self, store: Callable[[], Any], *, timeout: float = READ_SECONDS) -> None:
        self._store = store
        self._timeout = timeout
        self._reading: asyncio.Task[Held] | None = None

    async def read(self) -> Held:
        task = self._reading
        if task is None or task.done():
            task = self._reading = asyncio.get_running_loop().create_task(self._read())
        try:
            # Shielded: one caller giving up (its request cancelled, its wait over) leaves
            # the read to the others sharing it.
            return await asyncio.wait_for(asyncio.shield(task), self._timeout)
        except TimeoutError:
            log.warning(
                "store_figures_late",
                waited_seconds=self._timeout,
                reason="the store did not count its deliveries and dead letters in time: "
                "this process's own figures are shown instead",
            )
            return Held()

    def cancel(self) -> None:
        """Stop a read under way (the gateway is stopping: its store is about to close)."""
        if self._reading is not None and not self._reading.done():
            self._reading.cancel()

    async def _read(self) -> Held:
        try:
            store = self._store()
        except RuntimeError:  # not started, or closed
            return Held()
        pending = dead = None
        if isinstance(store, PendingCounts):
            try:
                counts = await store.pending_counts()
                pending = {name: int(row.get("pending", 0)) for name, row in counts.items()}
            except Exception as exc:
                _failed("pending_counts", exc)
        if isinstance(store, CountsDeadLetters):
            try:
                dead = dict(await store.dead_letter_counts())
            except Exception as exc:
                _failed("dead_letter_counts", exc)
        return Held(pending, dead)


def _failed(what: str, exc: Exception) -> None:
    # The store's own text may name its URL or a key: masked as every log line is.
    log.warning(
        "store_figures_failed",
        count=what,
        error=redact_text(f"{type(exc).__name__}: {exc}"),
        reason="this process's own figures are shown instead",
    )
