"""The core's durable store: `store="sqlite:///outbox.db"` (Redis comes from its own plugin)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..plugins import hookimpl


def _sqlite(url: str) -> Any:
    # Imported on use: a library call with the in-memory store never loads sqlite3.
    from ..stores.sqlite import open_sqlite_store

    return open_sqlite_store(url)


@hookimpl
def store_backends() -> dict[str, Callable[[str], Any]]:
    return {"sqlite": _sqlite}
