"""Emitting from code that is not async (the Empathy Framework's `interact` is synchronous)."""

from __future__ import annotations

import asyncio
import atexit
import threading
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from ._log import get_logger
from .dispatcher import WebhookDispatcher
from .events import Event
from .redaction import redact_text
from .webhooks import Webhook

__all__ = ["EXIT_DRAIN_SECONDS", "ThreadedDispatcher"]

T = TypeVar("T")
log = get_logger()

#: How long the interpreter's exit waits for a `ThreadedDispatcher` nobody closed to deliver
#: what it holds (the gateway's default shutdown grace); what is left then is logged as lost.
EXIT_DRAIN_SECONDS = 10.0

#: Open dispatchers, closed at exit if their host never did. Strong references: an open one's
#: loop thread runs until it is closed anyway.
_open: set[ThreadedDispatcher] = set()
_exit_hooked = False
_exit_lock = threading.Lock()


def _close_at_exit() -> None:
    for dispatcher in list(_open):
        log.warning(
            "threaded_dispatcher_closed_at_exit",
            webhooks=dispatcher.dispatcher.webhook_names(),
            reason=f"close() was never called: draining for up to {EXIT_DRAIN_SECONDS:g} s",
        )
        try:
            dispatcher.close(timeout=EXIT_DRAIN_SECONDS)
        except Exception as exc:  # what is left was logged as lost by the dispatcher's close
            log.error(
                "threaded_dispatcher_exit_close_failed",
                error=redact_text(f"{type(exc).__name__}: {exc}"),
            )


def _hook_exit() -> None:
    global _exit_hooked
    with _exit_lock:
        if _exit_hooked:
            return
        _exit_hooked = True
    # Imported first so that its own exit hook is registered before ours, and so runs after
    # ours (they run in reverse order): once it has run, no executor takes work, and a drain
    # needs one (aiohttp's DNS lookups, the SQLite store). `atexit` runs later still.
    import concurrent.futures.thread  # noqa: F401

    register = getattr(threading, "_register_atexit", None)
    try:
        (register or atexit.register)(_close_at_exit)
    except RuntimeError:  # already shutting down: nothing left to hook into
        pass


class ThreadedDispatcher:
    """A `WebhookDispatcher` running on its own event loop in a background thread.

    Every method is a plain, thread-safe call::

        with ThreadedDispatcher(webhooks=[slack]) as dispatcher:
            dispatcher.emit("prediction", {"prediction": "..."}, empathy_level=4)

    `emit` returns the `Event` once its deliveries are queued; leaving the block drains.
    Once `close` has begun, `emit` raises `RuntimeError` (so the drain can end). A dispatcher
    never closed is closed when the interpreter exits, after up to `EXIT_DRAIN_SECONDS` of
    draining. From the dispatcher's own thread (an `on_failure` callback) every method
    raises `RuntimeError`: waiting there would deadlock; use an `async def` callback that
    awaits `threaded.dispatcher.emit(...)` instead.
    """

    def __init__(self, webhooks: Sequence[Webhook] | Webhook | None = None, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="empathy-webhooks", daemon=True
        )
        self._thread.start()
        self._closed = False
        self._lock = threading.Lock()

        async def build() -> WebhookDispatcher:
            dispatcher = WebhookDispatcher(webhooks, **options)
            await dispatcher.start()
            return dispatcher

        try:
            self.dispatcher = self._call(build())
        except BaseException:
            self._closed = True
            self._stop_loop()
            raise
        _hook_exit()
        _open.add(self)

    def _not_on_loop_thread(self) -> None:
        if threading.current_thread() is self._thread:
            raise RuntimeError(
                "a ThreadedDispatcher was called from its own thread (an on_failure callback?), "
                "where waiting for its loop would deadlock; there, use an async def callback "
                "and await threaded.dispatcher.emit(...)"
            )

    def _call(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        try:
            self._not_on_loop_thread()
            # Checked and submitted under the lock `close` takes: nothing is submitted once
            # close has begun, so every emit either runs before the drain or is refused.
            with self._lock:
                if self._closed:
                    raise RuntimeError("this ThreadedDispatcher is closed")
                future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        except BaseException:
            coroutine.close()
            raise
        return future.result(timeout)

    def emit(self, event_type: str, data: Mapping[str, Any] | None = None, **fields: Any) -> Event:
        return self._call(self.dispatcher.emit(event_type, data, **fields))

    def drain(self, timeout: float | None = None) -> None:
        self._call(self.dispatcher.drain(timeout))

    def get_webhook_stats(self, name: str) -> dict[str, Any]:
        async def stats() -> dict[str, Any]:
            return self.dispatcher.get_webhook_stats(name)

        return self._call(stats())

    def close(self, timeout: float | None = None) -> None:
        self._not_on_loop_thread()
        with self._lock:
            if self._closed:
                return
            self._closed = True
        _open.discard(self)
        try:
            closing = self.dispatcher.close(timeout=timeout)
            asyncio.run_coroutine_threadsafe(closing, self._loop).result()
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        # A call still under way (an emit that outlived a drain cut short by its timeout) is
        # cancelled, so its caller gets an error rather than wait on a loop that never runs.
        left = asyncio.all_tasks(self._loop)
        for task in left:
            task.cancel()
        if left:
            self._loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
        self._loop.close()

    def __enter__(self) -> ThreadedDispatcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
