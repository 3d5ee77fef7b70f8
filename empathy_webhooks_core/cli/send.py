"""`empathy-webhooks send`: emit an event (or a JSON-lines file of them) to the configured
webhooks and report what happened at each."""

from __future__ import annotations

import argparse
import asyncio
import collections
from pathlib import Path
from typing import Any

from .._doubts import event_type_doubt
from ..converter import did_you_mean
from ..events import Event
from ._common import (
    EXIT_FAILED,
    EXIT_OK,
    CliError,
    Outcome,
    Output,
    add_config_option,
    add_event_options,
    add_json_option,
    add_wait_timeout,
    event_from_args,
    event_from_object,
    load,
    loads_json,
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "send",
        help="emit an event to the configured webhooks and report per webhook",
        description="Emit an event to the configured webhooks, wait until each delivery "
        "succeeded or finally failed (retries included), and report per webhook. When other "
        "processes' workers make the store's deliveries (a Redis store), the wait follows "
        "each delivery's record in the store, so a worker must run on that store. "
        "Exits 1 when a delivery failed or was still pending when the wait ended (--timeout), "
        "and when no webhook took any of the events (each one skipped it: not subscribed, or "
        "filtered out). With --no-wait it only queues, and exits 0 once the store holds the "
        "events.",
        epilog='examples:\n  empathy-webhooks send prediction --data \'{"prediction": "..."}\' '
        "--level 4\n  empathy-webhooks send alert --data @alert.json --severity high\n"
        "  empathy-webhooks send --events-file events.jsonl   # one JSON object per line",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("event_type", nargs="?", metavar="EVENT_TYPE", help="prediction, ...")
    add_event_options(parser, data_help="event data as JSON, or @file, or @- for stdin")
    parser.add_argument(
        "--events-file",
        metavar="FILE",
        help="send many events: one JSON object per line (event_type, data, user_id, "
        "empathy_level, severity, classification, metadata, ordering_key)",
    )
    parser.add_argument("--webhook", action="append", metavar="NAME", help="only this webhook")
    add_config_option(parser, store=True)
    parser.add_argument(
        "--no-wait",
        dest="wait",
        action="store_false",
        help="return once the events are in the durable store (needs a store)",
    )
    add_wait_timeout(parser)
    add_json_option(parser)
    parser.set_defaults(func=run)


def read_events_file(path: str) -> list[Event]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise CliError(f"error: --events-file: cannot read {path!r}: {exc.strerror}") from None
    events = []
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        obj = loads_json(line, f"{path}:{number}")
        events.append(event_from_object(obj, f"{path}:{number}"))
    if not events:
        raise CliError(f"error: {path} holds no events")
    return events


def select(webhooks: list[Any], names: list[str] | None, source: str | None) -> list[Any]:
    if not names:
        return webhooks
    known = {w.name for w in webhooks}
    for name in names:
        if name not in known:
            raise CliError(
                f"error: no webhook named {name!r}{did_you_mean(name, known)} in {source}"
            )
    return [w for w in webhooks if w.name in names]


def report(out: Output, results: list[Outcome], events: list[Event]) -> None:
    """Per webhook for one event; totals per webhook and the failures for many."""
    if len(events) == 1:
        event = events[0]
        out.line(f"{event.event_type} {event.event_id}")
        out.table(
            None,
            ["webhook", "outcome", "status", "attempts", "detail"],
            [[r.webhook, r.outcome, r.status or "", r.attempts or "", r.detail()] for r in results],
        )
        return
    totals: dict[str, collections.Counter[str]] = {}
    for r in results:
        totals.setdefault(r.webhook, collections.Counter())[r.outcome] += 1
    out.line(f"{len(events)} events")
    columns = ["delivered", "failed", "skipped", "pending", "queued"]
    out.table(
        None,
        ["webhook", *columns, "retries"],
        [
            [
                name,
                *(counts[c] for c in columns),
                sum(max(0, r.attempts - 1) for r in results if r.webhook == name),
            ]
            for name, counts in totals.items()
        ],
    )
    failures = [r for r in results if r.outcome == "failed"]
    for r in failures[:20]:
        out.line(f"failed: {r.webhook} {r.event_type} {r.event_id}: {r.detail()}")
    if len(failures) > 20:
        out.line(f"... and {len(failures) - 20} more failures")


def run(args: argparse.Namespace, out: Output) -> int:
    from ._deliver import deliver
    from ._store import new_store_file

    if bool(args.event_type) == bool(args.events_file):
        raise CliError("error: give an EVENT_TYPE or --events-file FILE (one of them)")
    config, pm = load(args)
    if args.events_file:
        events = read_events_file(args.events_file)
    else:
        events = [event_from_args(args.event_type, args)]
    webhooks = select(list(config.webhooks), args.webhook, config.source)
    store = args.store or config.store
    if not args.wait and store in (None, "memory", "memory://"):
        raise CliError(
            'error: --no-wait needs a durable store (store = "sqlite:///outbox.db" in the '
            "configuration, or --store): with the memory store nothing would deliver the events"
        )
    fresh = None if args.wait else new_store_file(store, pm)
    results = asyncio.run(
        deliver(
            webhooks,
            events,
            pm=pm,
            out=out,
            store=store,
            wait=args.wait,
            timeout=args.timeout,
            progress=len(events) > 1,
        )
    )
    if fresh is not None and fresh.exists():
        Output.error(
            f"note: {fresh} did not exist: it was made for these events, which wait there "
            "until `empathy-webhooks worker` runs on this very file"
        )
    out.data(
        {
            "events": [e.event_id for e in events],
            "results": [r.to_dict() for r in results],
        }
    )
    report(out, results, events)
    bad = any(r.outcome in ("failed", "pending") for r in results)
    return EXIT_FAILED if bad or nothing_sent(results, events, webhooks) else EXIT_OK


def nothing_sent(results: list[Outcome], events: list[Event], webhooks: list[Any]) -> bool:
    """Whether no webhook took any event (each skipped it, or none is configured): said on
    stderr, and not a success, so a script never takes an event sent nowhere for one sent."""
    if any(r.outcome != "skipped" for r in results):
        return False
    if not webhooks:
        Output.error("nothing was sent: the configuration has no webhooks")
        return True
    what = f"{events[0].event_type!r}" if len(events) == 1 else f"any of the {len(events)} events"
    Output.error(f"nothing was sent: no webhook took {what}")
    for hint in sorted({h for e in events if (h := event_type_doubt(e.event_type))})[:5]:
        Output.error(f"note: {hint}")
    return True
