"""`empathy-webhooks test NAME`: send a sample of each event type a webhook subscribes to,
and show what happened."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from .._routing import EventMatcher
from ..events import EventType
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


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "test",
        help="send a sample of each event type a webhook subscribes to",
        description="Send one sample event of each type the webhook subscribes to (every "
        'reference event type for events = ["*"]) and show each outcome. Exits 1 when a '
        "delivery failed or was still pending, and when the webhook took no sample at all "
        "(its filter let none through).",
    )
    parser.add_argument("name", metavar="NAME", help="the webhook's name in the configuration")
    parser.add_argument(
        "--event", action="append", metavar="TYPE", help="only this event type (repeatable)"
    )
    add_config_option(parser)
    parser.add_argument("--timeout", type=TIMEOUT_SECONDS, default=60.0, metavar="SECONDS")
    add_json_option(parser)
    parser.set_defaults(func=run)


def subscribed_types(events: tuple[str, ...]) -> list[str]:
    """The reference's event types the patterns match, plus any exact name of your own."""
    matcher = EventMatcher(events)
    types = [t.value for t in EventType if matcher(t.value)]
    known = {t.value for t in EventType}
    types += [
        name
        for name in events
        if name not in known and name != "*" and matcher(name) and not any(c in name for c in "*?[")
    ]
    return types


def run(args: argparse.Namespace, out: Output) -> int:
    from .._demo.samples import sample_event
    from ._deliver import deliver
    from .send import nothing_sent

    config, pm = load(args)
    try:
        webhook = config.webhook(args.name)
    except KeyError as exc:
        raise CliError(f"error: {exc.args[0]}") from None
    types = args.event or subscribed_types(webhook.events)
    if not types:
        raise CliError(f"error: {webhook.name} subscribes to no event type a sample exists for")
    events = [sample_event(t) for t in types]
    # The memory store: a test must not leave deliveries in the real outbox.
    results = asyncio.run(
        deliver([webhook], events, pm=pm, out=out, store=None, timeout=args.timeout)
    )
    out.data({"webhook": webhook.name, "results": [r.to_dict() for r in results]})
    out.line(f"{webhook.name} ({webhook.kind}): {len(events)} sample event(s)")
    out.table(
        None,
        ["event type", "outcome", "status", "attempts", "detail"],
        [[r.event_type, r.outcome, r.status or "", r.attempts or "", r.detail()] for r in results],
    )
    bad = any(r.outcome in ("failed", "pending") for r in results)
    return EXIT_FAILED if bad or nothing_sent(results, events, [webhook]) else EXIT_OK
