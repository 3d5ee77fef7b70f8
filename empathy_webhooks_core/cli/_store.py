"""Opening the durable store named by a command's arguments or configuration."""

from __future__ import annotations

import argparse
import contextlib
from typing import Any

from ..plugins import PluginManager, hooks_for
from ..stores import PendingCounts, StoreOpenError, open_store
from ..stores.sqlite import SQLiteStore
from ._common import CliError, shown_url

MEMORY = (None, "", "memory", "memory://")


def store_url(args: argparse.Namespace, configured: str | None) -> str:
    url: str | None = args.store or configured
    if url in MEMORY:
        raise CliError(
            [
                "error: the store is memory: nothing persists between commands, so there is "
                "nothing to read.",
                'Set store = "sqlite:///outbox.db" in the configuration (or pass --store URL) '
                "so deliveries and dead letters survive the process.",
            ]
        )
    assert url is not None
    return url


def shown_store(url: str) -> str:
    return shown_url(url) if "://" in url and not url.startswith("sqlite") else url


async def open_durable(url: str, pm: PluginManager) -> tuple[Any, list[Any]]:
    """The open store and the deliveries its `open()` handed back (a store that pages its
    pending deliveries in, or counts them, hands back none: see `pending_counts`)."""
    try:
        store = open_store(url, hooks_for(pm).store_backends())
    except (OSError, ValueError, TypeError) as exc:
        raise CliError(f"error: cannot open the store {shown_store(url)}: {exc}") from None
    if isinstance(store, SQLiteStore) and not store.path.exists():
        # Opening makes the file (and its folders): a mistyped path would be answered with
        # an empty store, "0 pending, no dead letters", about a file nobody ever wrote.
        raise CliError(
            [
                f"error: there is no store file at {store.path}",
                "Nothing has been queued there: check the path (a relative one is from the "
                "folder this command runs in).",
            ]
        )
    try:
        pending = list(await store.open())
    except StoreOpenError as exc:
        raise CliError(f"error: {exc}") from None
    except (OSError, ValueError, TypeError) as exc:
        await _close_quietly(store)
        raise CliError(f"error: cannot open the store {shown_store(url)}: {exc}") from None
    return store, pending


def queue_only(store: Any, pm: PluginManager) -> Any:
    """The store for a command that only queues (`send --no-wait`): in its producer role
    where it has one (SQLite: rows wait for a worker instead of this process starting to
    send them and then leaving), else as it is (Redis producers only queue anyway)."""
    if store in MEMORY or not isinstance(store, str):
        return store
    try:
        opened = open_store(store, hooks_for(pm).store_backends())
    except (ValueError, TypeError) as exc:
        raise CliError(f"error: cannot open the store {shown_store(store)}: {exc}") from None
    for_producer = getattr(opened, "for_producer", None)
    return for_producer() if for_producer is not None else opened


def new_store_file(url: Any, pm: PluginManager) -> Any:
    """The file of a SQLite store that does not exist yet (sending makes it, and its
    folders), or None: queued there, deliveries wait for a worker on that very file, and a
    mistyped path would leave them where no worker ever looks."""
    if url in MEMORY or not isinstance(url, str):
        return None
    try:
        opened = open_store(url, hooks_for(pm).store_backends())
    except (ValueError, TypeError):
        return None  # said by the command itself, when it opens the store
    if isinstance(opened, SQLiteStore) and not opened.path.exists():
        return opened.path
    return None


async def _close_quietly(store: Any) -> None:
    with contextlib.suppress(Exception):
        await store.close()


async def pending_counts(store: Any, opened: list[Any]) -> dict[str, dict[str, int]]:
    """Per webhook, deliveries waiting in the store (`pending`) and, of those, the ones
    attempted at least once (`retrying`): from the store's own count when it has one."""
    if isinstance(store, PendingCounts):
        return await store.pending_counts()
    counts: dict[str, dict[str, int]] = {}
    for delivery in opened:
        row = counts.setdefault(delivery.webhook_name, {"pending": 0, "retrying": 0})
        row["pending"] += 1
        row["retrying"] += delivery.attempts > 0
    return counts
