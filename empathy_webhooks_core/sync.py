"""Emitting from code that is not async (the Empathy Framework's `interact` is synchronous)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from .dispatcher import WebhookDispatcher
from .events import Event
from .webhooks import Webhook

__all__ = ["ThreadedDispatcher"]

T = TypeVar("T")


class ThreadedDispatcher:
    """A `WebhookDispatcher` running on its own event loop in a background thread.

    Every method is a plain, thread-safe call::

        with ThreadedDispatcher(webhooks=[slack]) as dispatcher:
            dispatcher.emit("prediction", {"prediction": "..."}, empathy_level=4)

    `emit` returns the `Event` once its deliveries are queued; leaving the block drains.
    """

    def __init__(self, webhooks: Sequence[Webhook] | Webhook | None = None, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="empathy-webhooks", daemon=True
        )
        self._thread.start()
        self._closed = False

        async def build() -> WebhookDispatcher:
            dispatcher = WebhookDispatcher(webhooks, **options)
            await dispatcher.start()
            return dispatcher

        self.dispatcher = self._call(build())

    def _call(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        if self._closed:
            coroutine.close()
            raise RuntimeError("this ThreadedDispatcher is closed")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def emit(self, event_type: str, data: Mapping[str, Any] | None = None, **fields: Any) -> Event:
        return self._call(self.dispatcher.emit(event_type, data, **fields))

    def drain(self, timeout: float | None = None) -> None:
        self._call(self.dispatcher.drain(timeout))

    def get_webhook_stats(self, name: str) -> dict[str, Any]:
        async def stats() -> dict[str, Any]:
            return self.dispatcher.get_webhook_stats(name)

        return self._call(stats())

    def close(self, timeout: float | None = None) -> None:
        if self._closed:
            return
        try:
            self._call(self.dispatcher.close(timeout=timeout))
        finally:
            self._closed = True
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def __enter__(self) -> ThreadedDispatcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
