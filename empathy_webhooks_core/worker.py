"""A delivery worker: deliver what producers queued in a shared store until told to stop.

`empathy-webhooks worker` runs this. With a shared store (`redis://...`) any number of
workers on any number of machines split the work; each one is a dispatcher whose store is
opened in its worker role (the store's `for_worker()`), so it takes deliveries from the store
instead of waiting for `emit`. A store that pages its pending deliveries in (`sqlite:///...`)
is used as it is: the worker delivers what was pending in the file, then whatever producers
(`send --no-wait`, other processes) queue there, found within the store's `poll` interval,
until it is told to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from typing import Any

from ._log import get_logger
from .dispatcher import WebhookDispatcher
from .plugins import Hooks, get_plugin_manager, hooks_for
from .stores import DeliveryStore, HasWorkerRole, StopsConsuming, open_store
from .webhooks import Webhook

__all__ = ["run_worker", "worker_store"]

log = get_logger()

#: How long a stopping worker waits for its in-flight deliveries before it leaves them to
#: the others (they are reclaimed after the store's visibility timeout, never lost).
DEFAULT_GRACE_SECONDS = 10.0


def worker_store(store: str | DeliveryStore, hooks: Hooks) -> DeliveryStore:
    """The store from its URL (or object), switched to its worker role if it has one."""
    opened = open_store(store, hooks.store_backends())
    if isinstance(opened, HasWorkerRole):
        return opened.for_worker()
    return opened


async def run_worker(
    webhooks: list[Webhook],
    store: str,
    *,
    stop: asyncio.Event | None = None,
    started: Callable[[], None] | None = None,
    **dispatcher_options: Any,
) -> str | None:
    """Deliver for `webhooks` from `store` until `stop` is set (by default SIGINT or SIGTERM).

    `started()` is called once the store is open and the worker delivers (a store that
    cannot be opened raises before it, so nobody is told a worker runs that never did).
    On stop the worker takes no new deliveries, waits up to `grace_seconds` (a dispatcher
    option, default 10) for those it holds, then closes. Whatever it still held stays in the
    store, for the other workers (after the store's visibility timeout) or the next start;
    what that was is returned (`"3 deliveries still pending after 10 s ('ops': 3)"`), None
    when it left nothing.
    """
    if store is None or store in ("memory", "memory://"):
        raise ValueError("a worker needs a shared or durable store (redis://..., sqlite:///...)")
    grace = float(dispatcher_options.pop("grace_seconds", DEFAULT_GRACE_SECONDS))
    hooks = hooks_for(dispatcher_options.get("plugin_manager") or get_plugin_manager())
    dispatcher = WebhookDispatcher(
        webhooks=list(webhooks), store=worker_store(store, hooks), **dispatcher_options
    )
    own_signals: list[signal.Signals] = []
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
                own_signals.append(sig)
    left: str | None = None
    try:
        await dispatcher.start()
        log.info(
            "worker_started", webhooks=dispatcher.webhook_names(), store=repr(dispatcher.store)
        )
        if started is not None:
            started()
        await stop.wait()
        log.info("worker_stopping")
        if isinstance(dispatcher.store, StopsConsuming):
            await dispatcher.store.stop_consuming()
        try:
            await dispatcher.close(timeout=grace)
        except TimeoutError as exc:
            left = str(exc)
            log.warning("worker_left_deliveries", reason=left)
    finally:
        await dispatcher.close(drain=False)
        loop = asyncio.get_running_loop()
        for sig in own_signals:
            loop.remove_signal_handler(sig)
    return left
