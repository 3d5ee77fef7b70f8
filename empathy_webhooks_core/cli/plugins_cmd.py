"""`empathy-webhooks plugins`: what is installed, its versions and webhook types, and what
failed to load (with the reason)."""

from __future__ import annotations

import argparse
from typing import Any

from ..plugins import get_plugin_manager, plugin_infos
from ._common import EXIT_FAILED, EXIT_OK, Output, add_json_option


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "plugins",
        help="list installed plugins and any that failed to load",
        description="List installed plugins, their versions and webhook types, and any plugin "
        "that failed to load with the reason. Exits 1 when one failed.",
    )
    add_json_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, out: Output) -> int:
    pm = get_plugin_manager()
    infos = plugin_infos(pm)
    errors = list(pm.load_errors)
    out.data(
        {
            "plugins": [
                {
                    "name": info.name,
                    "distribution": info.distribution,
                    "version": info.version,
                    "webhook_types": list(info.webhook_types),
                    "hooks": list(info.hooks),
                }
                for info in infos
            ],
            "load_errors": [
                {"name": e.name, "distribution": e.distribution, "error": e.error} for e in errors
            ],
        }
    )
    out.table(
        "Plugins",
        ["plugin", "distribution", "version", "webhook types", "hooks"],
        [
            [
                info.name,
                info.distribution or "",
                info.version or "",
                ", ".join(info.webhook_types) or "-",
                ", ".join(info.hooks),
            ]
            for info in infos
        ],
    )
    if errors:
        out.line()
        out.table(
            "Failed to load",
            ["plugin", "distribution", "error"],
            [[e.name, e.distribution or "", e.error] for e in errors],
        )
    return EXIT_FAILED if errors else EXIT_OK
