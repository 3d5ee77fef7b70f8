"""Resuming what a store holds pending: what `open()` returned, and from a `PagedStore`, page
after page as each lane has room, so a backlog of any size costs a window of memory per
webhook (`Lane.resume_window`). Resumed deliveries were accepted by an earlier `emit`: they
go to their lane directly, never refused by a queue limit.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Mapping, Sequence

from .._log import get_logger
from ..redaction import redact_text
from ..stores import DeliveryStore, Page, PagedStore
from .lane import Lane
from .unit import Delivery

__all__ = ["Pager"]

log = get_logger()


class Pager:
    """Hands a store's pending deliveries to the lanes. `paged_out` is False while `drain`
    must wait for a page; `changed` is set whenever that may have changed."""

    def __init__(
        self,
        lanes: Mapping[str, Lane],
        *,
        changed: asyncio.Event,
    ) -> None:
        self._lanes = lanes
        self._changed = changed
        self._room: asyncio.Event | None = None
        self.paged_out = True
        # Bytes of stored events paged in and not yet ended, per lane, from a store that
        # says (`Page.sizes`); held at most twice its `page_bytes` per lane.
        self._budget: int | None = None
        self._held: collections.Counter[str] = collections.Counter()
        self._sizes: dict[str, tuple[str, int]] = {}

    def resume(
        self, store: DeliveryStore, resumed: Sequence[Delivery]
    ) -> asyncio.Task[None] | None:
        """Hand the lanes what `open()` returned; for a `PagedStore` (in a process that
        delivers), start the task that pages the rest in, and return it."""
        for delivery in resumed:
            lane = self._lanes.get(delivery.webhook_name)
            if lane is None:
                log.warning(
                    "resumed_delivery_without_webhook",
                    webhook=delivery.webhook_name,
                    event_id=delivery.event.event_id,
                )
                continue
            lane.enqueue(delivery)
        if resumed:
            log.info("deliveries_resumed", count=len(resumed))
        if isinstance(store, PagedStore) and not store.remote_workers:
            page_bytes = getattr(store, "page_bytes", None)
            if isinstance(page_bytes, int) and page_bytes > 0:
                self._budget = 2 * page_bytes
            self._room = asyncio.Event()
            self.paged_out = False  # `drain` waits for the first page at least
            return asyncio.create_task(self._page_in(store), name="empathy-webhooks-page-in")
        return None

    def settled(self, lane: Lane, delivery: Delivery) -> None:
        """A delivery of `lane` ended: at half its window (in deliveries, or in bytes), the
        lane can take the next page."""
        if self._room is None:
            return
        if self._sizes:
            paged = self._sizes.pop(delivery.delivery_id, None)
            if paged is not None:
                name, size = paged
                held = self._held[name]
                self._held[name] = held - size
                assert self._budget is not None
                if held - size <= self._budget // 2 < held:
                    self._room.set()
        if lane.pending == lane.resume_window // 2:
            self._room.set()

    def _has_room(self, name: str, lane: Lane) -> bool:
        return (
            lane.enabled.is_set()
            and lane.pending <= lane.resume_window // 2
            and (self._budget is None or self._held[name] <= self._budget // 2)
        )

    async def _page_in(self, store: PagedStore) -> None:
        """Take pages of pending deliveries while the lanes have room; when the store has no
        more, look again every `poll_interval` (other processes may queue more)."""
        assert self._room is not None
        resumed = 0
        failing = False
        while True:
            # A lane disabled by a 410 takes nothing more: its deliveries stay in the store.
            wanted = {
                name: lane.resume_window - lane.pending
                for name, lane in self._lanes.items()
                if self._has_room(name, lane)
            }
            more = False
            if not wanted and not self.paged_out:
                self.paged_out = True  # nothing can be taken now: the lanes are full
                self._changed.set()
            if wanted:
                self.paged_out = False  # `drain` waits for this page
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
                    self.paged_out = True
                    self._changed.set()
                    await asyncio.sleep(store.poll_interval)
                    continue
                if failing:
                    log.warning("store_read_recovered", store=repr(store))
                    failing = False
                taken: collections.Counter[str] = collections.Counter()
                sizes = page.sizes if isinstance(page, Page) and self._budget else None
                for delivery in page:
                    name = delivery.webhook_name
                    lane = self._lanes.get(name)
                    if lane is not None:  # always: only our webhooks were asked for
                        taken[name] += 1
                        if sizes:
                            size = sizes.get(delivery.delivery_id, 0)
                            self._sizes[delivery.delivery_id] = (name, size)
                            self._held[name] += size
                        lane.enqueue(delivery)
                resumed += len(page)
                capped = page.capped if isinstance(page, Page) else frozenset()
                more = any(taken[name] >= limit or name in capped for name, limit in wanted.items())
                if not more:
                    if resumed:
                        log.info("deliveries_resumed", count=resumed)
                        resumed = 0
                    if not self.paged_out:
                        self.paged_out = True
                        self._changed.set()  # `drain` may be waiting for the store
            if more:
                continue
            # Wake early when a lane drops to half its window; look again after the poll.
            self._room.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(store.poll_interval):
                    await self._room.wait()
