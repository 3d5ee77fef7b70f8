"""Small asyncio helpers that keep the Redis store's tasks stoppable on Python 3.11."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar

from empathy_webhooks_core.plugin import get_logger

__all__ = ["checked", "end_tasks", "reraise_dropped_cancel", "wait_event"]

log = get_logger()

T = TypeVar("T")


def reraise_dropped_cancel() -> None:
    """Raise the cancellation a Redis call swallowed.

    redis-py writes each command under `asyncio.wait_for` (it sets a socket timeout by
    default), and on Python 3.11 `wait_for` drops a cancellation that arrives as the write
    completes (CPython gh-86296): the task carries on as if never cancelled, and whoever
    awaits it after `cancel()` waits forever. The task still counts the request, so raise it.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def checked(awaitable: Awaitable[T]) -> T:
    """Await a Redis call on a path a stop cancels (a lane worker, a loop of ours)."""
    result = await awaitable
    reraise_dropped_cancel()
    return result


async def wait_event(event: asyncio.Event, timeout: float) -> None:
    """Until `event` is set or `timeout` passes (`asyncio.timeout`, which, unlike 3.11's
    `wait_for`, never drops a cancellation)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()


async def end_tasks(tasks: Iterable[asyncio.Task[Any]], patience: float) -> None:
    """Wait up to `patience` for tasks told to stop, then cancel what is left, again and
    again: one cancellation may be dropped inside redis-py (see `reraise_dropped_cancel`)."""
    pending = {task for task in tasks if not task.done()}
    if pending:
        _, pending = await asyncio.wait(pending, timeout=patience)
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.1)
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("redis_task_failed", error=f"{type(exc).__name__}: {exc}")
