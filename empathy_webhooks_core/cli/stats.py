"""`empathy-webhooks stats`: what the durable store holds per webhook."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from ._common import EXIT_OK, Output, add_config_option, add_json_option, load
from ._store import open_durable, pending_counts, shown_store, store_url


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "stats",
        help="deliveries pending and dead letters per webhook, from the durable store",
        description="Read the durable store (the configuration's `store`, or --store): per "
        "webhook, deliveries still pending, how many of them are being retried, dead "
        "letters and the last error. Live figures (success rate, response times) belong to "
        "a running dispatcher: WebhookMonitor in your application.",
    )
    add_config_option(parser, store=True)
    add_json_option(parser)
    parser.set_defaults(func=run)


async def gather(url: str, pm: Any, names: list[str]) -> dict[str, dict[str, Any]]:
    store, opened = await open_durable(url, pm)
    try:
        counts = await pending_counts(store, opened)
        letters = await store.dead_letters()
        extra = getattr(store, "stats", None)
        figures = await extra() if extra is not None else None
    finally:
        await store.close()
    table: dict[str, dict[str, Any]] = {
        name: {"pending": 0, "retrying": 0, "dead_letters": 0, "last_error": None} for name in names
    }
    for name, count in counts.items():
        row = table.setdefault(
            name, {"pending": 0, "retrying": 0, "dead_letters": 0, "last_error": None}
        )
        row["pending"] += count.get("pending", 0)
        row["retrying"] += count.get("retrying", 0)
    for letter in sorted(letters, key=lambda item: item.failed_at):
        row = table.setdefault(
            letter.webhook_name,
            {"pending": 0, "retrying": 0, "dead_letters": 0, "last_error": None},
        )
        row["dead_letters"] += 1
        row["last_error"] = letter.error.get("reason")
    if isinstance(figures, dict):
        for name, more in figures.items():
            if isinstance(more, dict):
                table.setdefault(name, {}).update(more)
    return table


def run(args: argparse.Namespace, out: Output) -> int:
    config, pm = load(args)
    url = store_url(args, config.store)
    table = asyncio.run(gather(url, pm, [w.name for w in config.webhooks]))
    out.data({"store": shown_store(url), "webhooks": table})
    out.line(f"store {shown_store(url)}")
    columns = sorted({key for row in table.values() for key in row} - {"last_error"})
    order: list[str] = [c for c in ("pending", "retrying", "dead_letters") if c in columns]
    order += [c for c in columns if c not in order]
    out.table(
        None,
        ["webhook", *(c.replace("_", " ") for c in order), "last error"],
        [
            [name, *(row.get(c, "") for c in order), row.get("last_error") or ""]
            for name, row in table.items()
        ],
    )
    return EXIT_OK
