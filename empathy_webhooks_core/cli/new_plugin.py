"""`empathy-webhooks new-plugin NAME`: a working plugin distribution to start from."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any

from ..plugins import get_plugin_manager, hooks_for
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


def clash(name: str) -> str | None:
    """Why plugin `name` would collide with one already installed (its entry-point name or its
    webhook type), or None."""
    from ..scaffold import plugin_names

    pm = get_plugin_manager()
    kind = plugin_names(name)["name"]
    owner = None
    if kind in pm.installed:
        owner = pm.distributions.get(kind, (None, None))[0] or f"the installed {kind!r} plugin"
    elif kind in hooks_for(pm).webhook_types():
        owner = hooks_for(pm).webhook_types()[kind].__module__.split(".", 1)[0].replace("_", "-")
    if owner is None:
        return None
    return (
        f"warning: {owner} already provides the plugin and webhook type {kind!r}; two plugins "
        "with one type cannot be loaded together, so choose another name unless you mean to "
        "replace it"
    )


def run(args: argparse.Namespace, out: Output) -> int:
    from ..scaffold import create_plugin

    try:
        created = create_plugin(args.name, Path(args.dest))
    except (ValueError, FileExistsError) as exc:
        raise CliError(f"error: {exc}") from None
    except OSError as exc:  # --dest in a folder that cannot be made: one line, no traceback
        where = exc.filename or args.dest
        raise CliError(
            f"error: cannot write the plugin to {where}: {exc.strerror or exc}"
        ) from None
    warning = clash(args.name)
    if warning is not None:
        Output.error(warning)
    # ./ marks a path (pip reads a bare name as a project to download); the quotes keep a shell
    # from expanding [test].
    target = str(created) if created.is_absolute() else f"./{created}"
    out.line(f"created {created}")
    out.line(f"next: pip install -e {shlex.quote(target + '[test]')} && pytest {created}")
    return EXIT_OK
