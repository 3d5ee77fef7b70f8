"""`empathy-webhooks deliveries [list|show ID]`: what happened to each delivery, attempt by
attempt, and what the service answered (from the durable store's history)."""

from __future__ import annotations

import argparse
import asyncio
import math
import re
import time
from datetime import UTC, datetime
from typing import Any

from ..history import DELIVERY_STATUSES, MAX_PAGE, DeliveryQuery, KeepsHistory
from ._common import (
    EXIT_FAILED,
    EXIT_OK,
    CliError,
    Output,
    add_config_option,
    add_json_option,
    load,
)
from ._store import open_durable, shown_store, store_url

_AGO = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_TIMES = (
    "give epoch seconds, an ISO 8601 time (2026-11-30T12:00:00Z) or a span back from now "
    "(30m, 2h, 1d)"
)


def moment(text: str) -> float:
    """A time as epoch seconds: `1764500000`, an ISO 8601 date or time (UTC unless it says
    otherwise), or a span back from now: `30m`, `2h`, `1d`."""
    text = text.strip()
    ago = _AGO.match(text)
    try:
        seconds = time.time() - float(ago.group(1)) * _UNIT[ago.group(2)] if ago else float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            # `nan` compares false with every time: an empty list, as if nothing was sent.
            raise argparse.ArgumentTypeError(f"{text!r} is not a time: {_TIMES}")
        return seconds
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time: {_TIMES}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_PAGE:
        raise argparse.ArgumentTypeError(f"a whole number from 1 to {MAX_PAGE}, got {text!r}")
    return value


def _add_filters(parser: argparse.ArgumentParser, default: Any) -> None:
    # `deliveries --webhook x` and `deliveries list --webhook x` both work: the action's
    # copies default to SUPPRESS, so they never reset what was given before it.
    parser.add_argument("--webhook", metavar="NAME", default=default, help="only this webhook's")
    parser.add_argument(
        "--status", choices=DELIVERY_STATUSES, default=default, help="only those in this status"
    )
    parser.add_argument("--event-type", metavar="TYPE", default=default, help="only this type's")
    parser.add_argument("--event-id", metavar="ID", default=default, help="only this event's")
    parser.add_argument(
        "--since", type=moment, metavar="TIME", default=default, help="queued at or after TIME"
    )
    parser.add_argument(
        "--until", type=moment, metavar="TIME", default=default, help="queued before TIME"
    )
    parser.add_argument(
        "--limit", type=_limit, metavar="N", default=50 if default is None else default
    )
    parser.add_argument(
        "--cursor", metavar="CURSOR", default=default, help="the next page (printed by the last)"
    )


def _add_store_options(parser: argparse.ArgumentParser, default: Any) -> None:
    # The sub-commands' copies default to SUPPRESS, so `deliveries --store URL show ID` keeps
    # the URL given before the action.
    add_config_option(parser)
    parser.add_argument(
        "--store", metavar="URL", default=default, help="store URL, overriding the file's `store`"
    )
    add_json_option(parser)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "deliveries",
        help="list deliveries, or show one with its attempts (from the durable store)",
        description="Every delivery is kept with its attempts: when, how long, the status or "
        "transport error, the verdict, an excerpt of the answer (secrets masked), the "
        "request's headers (secrets masked) and when the next attempt goes. `list` (the "
        "default) shows the newest first, a page at a time; `show ID` one with its attempts. "
        "Times: epoch seconds, ISO 8601, or a span back from now (30m, 2h, 1d).",
    )
    _add_store_options(parser, None)
    _add_filters(parser, None)
    parser.set_defaults(func=run_list)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    listing = actions.add_parser("list", help="the deliveries, newest first (the default)")
    _add_filters(listing, argparse.SUPPRESS)
    show = actions.add_parser("show", help="one delivery with its attempts")
    show.add_argument("delivery_id", metavar="ID")
    for sub in (listing, show):
        _add_store_options(sub, argparse.SUPPRESS)
    listing.set_defaults(func=run_list)
    show.set_defaults(func=run_show)


async def _read(url: str, pm: Any, read: Any) -> Any:
    store, _ = await open_durable(url, pm)
    try:
        if not isinstance(store, KeepsHistory):
            raise CliError(f"error: the store {shown_store(url)} keeps no delivery history")
        return await read(store)
    finally:
        await store.close()


def _when(value: float | None) -> str:
    if value is None:
        return ""
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _last(record: Any) -> str:
    if not record.attempts:
        return ""
    last = record.attempts[-1]
    if last.status is not None:
        return str(last.status)
    return last.error or last.reason or ""


def run_list(args: argparse.Namespace, out: Output) -> int:
    config, pm = load(args)
    url = store_url(args, config.store)
    try:
        query = DeliveryQuery(
            webhook=getattr(args, "webhook", None),
            status=getattr(args, "status", None),
            event_type=getattr(args, "event_type", None),
            event_id=getattr(args, "event_id", None),
            since=getattr(args, "since", None),
            until=getattr(args, "until", None),
            limit=getattr(args, "limit", 50),
            cursor=getattr(args, "cursor", None),
        )
        query.after()
    except ValueError as exc:
        raise CliError(f"error: {exc}") from None
    page = asyncio.run(_read(url, pm, lambda store: store.delivery_records(query)))
    out.data(
        {
            "store": shown_store(url),
            "deliveries": [record.to_dict() for record in page.items],
            "next_cursor": page.next_cursor,
        }
    )
    out.line(f"{len(page.items)} deliveries in {shown_store(url)}, newest first")
    out.table(
        None,
        ["id", "webhook", "event", "event id", "status", "attempts", "last", "queued (UTC)"],
        [
            [
                r.delivery_id,
                r.webhook,
                r.event_type,
                r.event_id,
                r.status,
                len(r.attempts),
                _last(r),
                _when(r.created_at),
            ]
            for r in page.items
        ],
    )
    if page.next_cursor:
        out.line(f"more: --cursor {page.next_cursor}")
    return EXIT_OK


def run_show(args: argparse.Namespace, out: Output) -> int:
    config, pm = load(args)
    url = store_url(args, config.store)
    record = asyncio.run(_read(url, pm, lambda store: store.delivery_record(args.delivery_id)))
    if record is None:
        out.data({"store": shown_store(url), "delivery": None})
        out.error(
            f"no delivery {args.delivery_id!r} in {shown_store(url)} (never queued there, "
            "or older than the store keeps)"
        )
        return EXIT_FAILED
    out.data({"store": shown_store(url), "delivery": record.to_dict()})
    out.heading(f"delivery {record.delivery_id}: {record.status}")
    out.line(f"webhook    {record.webhook}")
    out.line(f"event      {record.event_type} {record.event_id}")
    out.line(f"queued     {_when(record.created_at)} UTC")
    out.line(f"updated    {_when(record.updated_at)} UTC")
    if record.dead_letter_id:
        out.line(f"dead letter {record.dead_letter_id}")
    out.table(
        f"{len(record.attempts)} attempt(s)",
        ["#", "started (UTC)", "ms", "status", "verdict", "reason", "next attempt (UTC)"],
        [
            [
                a.attempt,
                _when(a.started_at),
                f"{a.duration_s * 1000:.1f}",
                a.status if a.status is not None else "no answer",
                a.verdict,
                a.error or a.reason or "",
                _when(a.next_retry_at),
            ]
            for a in record.attempts
        ],
    )
    for a in record.attempts:
        out.line(f"attempt {a.attempt}: {a.body_bytes} bytes sent")
        for name, value in a.request_headers.items():
            out.line(f"  > {name}: {value}")
        if a.response_excerpt is not None:
            out.line(f"  < {a.response_excerpt}")
    return EXIT_OK
