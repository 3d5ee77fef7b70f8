"""`empathy-webhooks dead-letters list|replay`: the deliveries that finally failed."""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime
from typing import Any

from ._common import (
    EXIT_FAILED,
    EXIT_OK,
    TIMEOUT_SECONDS,
    CliError,
    Output,
    add_config_option,
    add_json_option,
    load,
)
from ._store import open_durable, shown_store, store_url


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "dead-letters",
        help="list or replay deliveries that finally failed (from the durable store)",
        description="Deliveries that finally failed are kept in the durable store as dead "
        "letters. `list` shows them; `replay` sends them again (attempts start over).",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="show the dead letters")
    replay = actions.add_parser(
        "replay", help="send dead letters again; exits 1 if one fails again"
    )
    replay.add_argument("ids", nargs="*", metavar="ID", help="dead letter ids (default: all)")
    replay.add_argument("--timeout", type=TIMEOUT_SECONDS, default=120.0, metavar="SECONDS")
    for sub in (listing, replay):
        sub.add_argument("--webhook", metavar="NAME", help="only this webhook's dead letters")
        add_config_option(sub, store=True)
        add_json_option(sub)
    listing.set_defaults(func=run_list)
    replay.set_defaults(func=run_replay)


async def fetch(url: str, pm: Any, webhook: str | None) -> list[Any]:
    store, _ = await open_durable(url, pm)
    try:
        return list(await store.dead_letters(webhook))
    finally:
        await store.close()


def _when(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S")


def run_list(args: argparse.Namespace, out: Output) -> int:
    config, pm = load(args)
    url = store_url(args, config.store)
    letters = asyncio.run(fetch(url, pm, args.webhook))
    out.data({"store": shown_store(url), "dead_letters": [d.to_dict() for d in letters]})
    out.line(f"{len(letters)} dead letter(s) in {shown_store(url)}")
    out.table(
        None,
        ["id", "webhook", "event", "event id", "attempts", "failed at (UTC)", "reason"],
        [
            [
                d.dead_letter_id,
                d.webhook_name,
                d.event.event_type,
                d.event.event_id,
                d.attempts,
                _when(d.failed_at),
                d.error.get("reason") or "",
            ]
            for d in letters
        ],
    )
    return EXIT_OK


def run_replay(args: argparse.Namespace, out: Output) -> int:
    from ._deliver import deliver

    config, pm = load(args)
    url = store_url(args, config.store)
    ids = list(args.ids)
    if not ids:
        # All that can be sent: a letter whose event could not be decoded stays listed.
        ids = [d.dead_letter_id for d in asyncio.run(fetch(url, pm, args.webhook)) if d.replayable]
    if not ids:
        out.data({"replayed": 0, "results": []})
        out.line("no dead letters to replay")
        return EXIT_OK
    webhooks = list(config.webhooks)
    if args.webhook and args.webhook not in {w.name for w in webhooks}:
        raise CliError(f"error: no webhook named {args.webhook!r} in {config.source}")
    results = asyncio.run(
        deliver(webhooks, [], pm=pm, out=out, store=url, timeout=args.timeout, replay=ids)
    )
    out.data({"replayed": len(ids), "results": [r.to_dict() for r in results]})
    out.line(f"replayed {len(ids)} dead letter(s)")
    out.table(
        None,
        ["webhook", "event", "event id", "outcome", "status", "attempts", "detail"],
        [
            [r.webhook, r.event_type, r.event_id, r.outcome, r.status or "", r.attempts, r.detail()]
            for r in results
        ],
    )
    return EXIT_FAILED if any(r.outcome in ("failed", "pending") for r in results) else EXIT_OK
