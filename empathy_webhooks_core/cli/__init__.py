"""The `empathy-webhooks` command. Each sub-command lives in its own module with a
`register(subparsers)` that adds its parser and sets `run(args, out) -> exit code`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .._version import __version__
from ._common import EXIT_CODES_HELP, EXIT_USAGE, CliError, Output, configure_logging

__all__ = ["build_parser", "main"]

_COMMANDS = (
    "plugins_cmd",
    "validate",
    "render",
    "send",
    "sample",
    "listen",
    "stats",
    "dead_letters",
    "demo_cmd",
    "worker",
    "new_plugin",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="empathy-webhooks",
        description=(
            "Deliver Empathy Framework events to the services your team watches. "
            "Webhooks come from a configuration file (webhooks.toml)."
        ),
        epilog=EXIT_CODES_HELP
        + "\n\noutput: rich tables on a terminal, plain text when piped, JSON with --json.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log retries (-vv: every attempt)"
    )
    parser.add_argument("--plain", action="store_true", help="plain text even on a terminal")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    from importlib import import_module

    for name in _COMMANDS:
        import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """The console script: runs a command and exits with its code."""
    sys.exit(run(argv))


def run(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    configure_logging(args.verbose)
    out = Output(json_mode=getattr(args, "json", False), plain=args.plain)
    try:
        code: int = args.func(args, out)
    except CliError as exc:
        for line in exc.lines:
            Output.error(line)
        return exc.code
    except KeyboardInterrupt:
        Output.error("interrupted")
        return 130
    return code
