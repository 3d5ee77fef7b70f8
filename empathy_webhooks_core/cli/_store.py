"""Opening the durable store named by a command's arguments or configuration."""

from __future__ import annotations

import argparse
from typing import Any

from ..plugins import Hooks, PluginManager
from ..stores import open_store
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
    """The open store and the deliveries it holds pending."""
    try:
        store = open_store(url, Hooks(pm).store_backends())
        pending = list(await store.open())
    except (OSError, ValueError, TypeError) as exc:
        raise CliError(f"error: cannot open the store {shown_store(url)}: {exc}") from None
    return store, pending
