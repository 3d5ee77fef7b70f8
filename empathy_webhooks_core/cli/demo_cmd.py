"""`empathy-webhooks demo`: the README's first command (see `empathy_webhooks_core._demo`)."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import Output, add_json_option


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="see it work: local stand-ins for Slack, Jira, GitHub, Datadog, PagerDuty",
        description="Start loopback stand-ins for Slack, Jira, GitHub, Datadog, PagerDuty and "
        "a custom endpoint, send the reference's example events through the installed "
        "plugins and the SQLite outbox (one service fails at first, so a retry shows), and "
        "print what each service received and the delivery figures. Nothing leaves the "
        "machine.",
    )
    add_json_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, out: Output) -> int:
    from .._demo.run import main

    return main(out)
