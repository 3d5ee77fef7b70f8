"""The `empathy-webhooks` command. Each sub-command lives in its own module with a
`register(subparsers)` that adds its parser and sets `run(args, out) -> exit code`.

Every command's parser is built at start-up, so a command module imports at its top only what
its parser and the whole CLI already load (config, plugins, events); what one command alone
needs and is costly to load (the gateway, the dispatcher, aiohttp.web, the scaffold, the
demo) is imported inside its `run`. That is start-up time, never a cycle: `--help` and
`validate` start in about 0.27 s, not 0.4 s."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib import import_module
from typing import Any

from .._version import __version__
from ._common import (
    EXIT_CODES_HELP,
    EXIT_USAGE,
    CliError,
    Output,
    add_config_option,
    add_json_option,
    configure_logging,
)

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
    "deliveries",
    "demo_cmd",
    "worker",
    "serve",
    "console_cmd",
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
    _add_global_options(parser, None)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMANDS:
        import_module(f"{__name__}.{name}").register(subparsers)
    for command in _commands(parser).values():
        _add_global_options(command, argparse.SUPPRESS)
    return parser


def _add_global_options(parser: argparse.ArgumentParser, default: object) -> None:
    """-c/--config, --json, --plain and -v, accepted before or after the command's name. A
    command's copies default to SUPPRESS, so they never reset what the main parser read."""
    have = parser._option_string_actions
    if "--config" not in have:
        add_config_option(parser, default=default)
    if "--json" not in have:
        add_json_option(parser, default=False if default is None else default)
        parser.set_defaults(json_output=default is None)
    if "--plain" not in have:
        parser.add_argument(
            "--plain",
            action="store_true",
            default=False if default is None else default,
            help="plain text even on a terminal",
        )
    if "--verbose" not in have:
        parser.add_argument(
            "-v",
            "--verbose",
            action="count",
            default=0 if default is None else default,
            help="log retries (-vv: every attempt)",
        )


def _commands(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, Any]:
    """Every command's parser by its full name (`dead-letters list` included)."""
    found: dict[str, Any] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[prefix + name] = sub
                found.update(_commands(sub, prefix + name + " "))
    return found


def _misplaced(parser: argparse.ArgumentParser, argv: Sequence[str]) -> str | None:
    """An option given where it does not belong, and where it does (argparse would only say
    'unrecognized arguments', or take the option's value for the command's name)."""
    commands = _commands(parser)
    words = list(argv)
    # The command's words (`dead-letters`, then `list`) and where each starts.
    chain: list[tuple[int, str]] = []
    for index, word in enumerate(words):
        name = f"{chain[-1][1]} {word}" if chain else word
        if name in commands:
            chain.append((index, name))
    command = chain[-1][1] if chain else None
    for index, word in enumerate(words):
        if word == "--":
            break
        if not word.startswith("-") or word == "-":
            continue
        option = word.split("=", 1)[0]
        in_effect = [name for start, name in chain if start < index]
        here = commands[in_effect[-1]] if in_effect else parser
        if option in here._option_string_actions:
            continue
        owners = [name for name, sub in commands.items() if option in sub._option_string_actions]
        if command in owners:
            return (
                f"{option} is an option of {command!r}: put it after the command's name "
                f"(empathy-webhooks {command} {option} ...)"
            )
        if owners and command is not None:
            return f"{option} is not an option of {command!r}; it belongs to: {', '.join(owners)}"
    return None


def main(argv: Sequence[str] | None = None) -> None:
    """The console script: runs a command and exits with its code."""
    try:
        code = run(argv)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`... | head`): no traceback, and none at exit either, when
        # Python flushes what is left into the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 1
    sys.exit(code)


def run(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    misplaced = _misplaced(parser, argv)
    if misplaced is not None:
        parser.print_usage(sys.stderr)
        Output.error(f"{parser.prog}: error: {misplaced}")
        return EXIT_USAGE
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    if args.json and not getattr(args, "json_output", False):
        Output.error(f"{parser.prog}: error: --json: the {args.command!r} command prints no JSON")
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
