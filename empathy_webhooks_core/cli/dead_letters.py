"""`empathy-webhooks dead-letters list|replay`: the deliveries that finally failed."""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime
from typing import Any

from ..converter import did_you_mean
from ..stores import DeadLetter
from ._common import (
    EXIT_FAILED,
    EXIT_OK,
    CliError,
    Output,
    add_config_option,
    add_json_option,
    add_wait_timeout,
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
        "replay",
        help="send dead letters again; exits 1 if one fails again",
        description="Send dead letters again (attempts start over) and wait until each "
        "delivery succeeded or finally failed, also when other processes' workers make the "
        "store's deliveries (Redis): their records in the store are followed. Without IDs, "
        "every dead letter is replayed but those for a webhook the configuration does not "
        "have, which stay dead letters and are named. With IDs, each one is checked before "
        "any is replayed.",
        epilog="exit codes:\n"
        "  0  every letter replayed was delivered\n"
        "  1  one failed again or was still pending when the wait ended (it is a dead\n"
        "     letter again, or stays queued), or letters were left as dead letters because\n"
        "     their webhook is not in the configuration\n"
        "  2  nothing was replayed: an unknown webhook name or dead letter id, a letter for\n"
        "     a webhook the configuration does not have, or one that cannot be replayed",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    replay.add_argument("ids", nargs="*", metavar="ID", help="dead letter ids (default: all)")
    add_wait_timeout(replay)
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


def _no_such_webhook(name: str, known: set[str], source: Any) -> CliError:
    return CliError(f"error: no webhook named {name!r}{did_you_mean(name, known)} in {source}")


def run_list(args: argparse.Namespace, out: Output) -> int:
    config, pm = load(args)
    url = store_url(args, config.store)
    letters = asyncio.run(fetch(url, pm, args.webhook))
    configured = {w.name for w in config.webhooks}
    if args.webhook and not letters and args.webhook not in configured:
        # "0 dead letters" for a misspelt name read as "nothing failed". A webhook removed
        # from the configuration still lists the letters it left.
        raise _no_such_webhook(args.webhook, configured, config.source)
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


def _chosen(
    args: argparse.Namespace, letters: list[DeadLetter], configured: set[str], source: Any
) -> tuple[list[DeadLetter], list[DeadLetter]]:
    """The letters to replay, and those left because their webhook is not configured: all
    decided before any is replayed, so none is taken out of the dead letters and then left
    unsent by a stop halfway."""
    if args.webhook and args.webhook not in configured:
        known = (configured | {d.webhook_name for d in letters}) - {args.webhook}
        error = _no_such_webhook(args.webhook, known, source)
        held = sum(d.webhook_name == args.webhook for d in letters)
        if held:
            error.lines.append(
                f"its {held} dead letter(s) stay in the store: replay them with a "
                "configuration that has the webhook"
            )
        raise error
    if not args.ids:
        # All that can be sent: a letter whose event could not be decoded stays listed.
        wanted = [
            d
            for d in letters
            if d.replayable and (not args.webhook or d.webhook_name == args.webhook)
        ]
        return (
            [d for d in wanted if d.webhook_name in configured],
            [d for d in wanted if d.webhook_name not in configured],
        )
    by_id = {d.dead_letter_id: d for d in letters}
    problems = []
    chosen = []
    for letter_id in dict.fromkeys(args.ids):
        letter = by_id.get(letter_id)
        if letter is None:
            problems.append(f"error: no dead letter {letter_id!r} in the store")
        elif not letter.replayable:
            problems.append(
                f"error: dead letter {letter_id!r} holds an event that could not be decoded, "
                "so it cannot be replayed; its stored text is in its error.stored_event "
                "(dead-letters list --json)"
            )
        elif letter.webhook_name not in configured:
            problems.append(
                f"error: dead letter {letter_id!r} is for webhook {letter.webhook_name!r}, "
                f"which {source} does not have"
            )
        else:
            chosen.append(letter)
    if problems:
        raise CliError([*problems, "nothing was replayed: every dead letter is still listed"])
    return chosen, []


def _say_left(left: list[DeadLetter], source: Any) -> None:
    by_webhook: dict[str, list[str]] = {}
    for letter in left:
        by_webhook.setdefault(letter.webhook_name, []).append(letter.dead_letter_id)
    for name, ids in sorted(by_webhook.items()):
        shown = ", ".join(ids[:5]) + (f", ... ({len(ids) - 5} more)" if len(ids) > 5 else "")
        Output.error(
            f"not replayed: {len(ids)} dead letter(s) for webhook {name!r}, which {source} "
            f"does not have; they stay dead letters ({shown})"
        )


def run_replay(args: argparse.Namespace, out: Output) -> int:
    from ._deliver import deliver

    config, pm = load(args)
    url = store_url(args, config.store)
    webhooks = list(config.webhooks)
    letters = asyncio.run(fetch(url, pm, None))
    chosen, left = _chosen(args, letters, {w.name for w in webhooks}, config.source)
    left_data = [
        {"dead_letter_id": d.dead_letter_id, "webhook": d.webhook_name, "why": "unknown webhook"}
        for d in left
    ]
    _say_left(left, config.source)
    if not chosen:
        out.data({"replayed": 0, "results": [], "left": left_data})
        out.line("no dead letters to replay")
        return EXIT_FAILED if left else EXIT_OK
    results = asyncio.run(
        deliver(webhooks, [], pm=pm, out=out, store=url, timeout=args.timeout, replay=chosen)
    )
    # A letter another process replayed meanwhile is the only "skipped" a replay reports.
    replayed = len(chosen) - sum(r.outcome == "skipped" for r in results)
    out.data({"replayed": replayed, "results": [r.to_dict() for r in results], "left": left_data})
    out.line(f"replayed {replayed} dead letter(s)")
    out.table(
        None,
        ["webhook", "event", "event id", "outcome", "status", "attempts", "detail"],
        [
            [r.webhook, r.event_type, r.event_id, r.outcome, r.status or "", r.attempts, r.detail()]
            for r in results
        ],
    )
    bad = any(r.outcome in ("failed", "pending") for r in results)
    return EXIT_FAILED if bad or left else EXIT_OK
