"""`empathy-webhooks new-plugin NAME`: a working plugin distribution to start from."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._common import EXIT_OK, CliError, Output


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "new-plugin",
        help="create a plugin distribution (code, tests, README) to start from",
        description="Write empathy-webhooks-NAME: a webhook type, its formatter, tests that "
        "pass (the conformance suite included) and a README.",
    )
    parser.add_argument("name", metavar="NAME", help="the plugin's name, e.g. acme")
    parser.add_argument(
        "--dest", default=".", metavar="DIR", help="where to create it (default: here)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, out: Output) -> int:
    from ..scaffold import create_plugin

    try:
        created = create_plugin(args.name, Path(args.dest))
    except (ValueError, FileExistsError) as exc:
        raise CliError(f"error: {exc}") from None
    out.line(f"created {created}")
    out.line(f"next: pip install -e {created} && pytest {created}")
    return EXIT_OK
