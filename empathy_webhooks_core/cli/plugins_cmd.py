"""`empathy-webhooks plugins`: what is installed, its versions and webhook types, and what
failed to load (with the reason)."""

from __future__ import annotations

import argparse
from typing import Any

from ..converter import did_you_mean
from ..plugins import LOAD_PLUGINS_ENV, get_plugin_manager, plugin_infos
from ._common import EXIT_FAILED, EXIT_OK, Output, add_json_option


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "plugins",
        help="list installed plugins and any that failed to load",
        description="List installed plugins, their versions and webhook types, and any plugin "
        "that failed to load with the reason, or that $EMPATHY_WEBHOOKS_LOAD_PLUGINS names "
        "but is not installed. Exits 1 when there is one.",
    )
    add_json_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, out: Output) -> int:
    pm = get_plugin_manager()
    infos = plugin_infos(pm)
    errors = list(pm.load_errors)
    installed = pm.installed
    unknown = [
        f"{LOAD_PLUGINS_ENV} names {name!r}, which is not installed"
        f"{did_you_mean(name, installed)}; installed: {', '.join(installed)}"
        for name in pm.unknown_in_load_plugins
    ]
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
            "load_plugins": pm.load_plugins,
            "left_out": list(pm.left_out),
            "not_installed": [
                {"name": name, "error": text}
                for name, text in zip(pm.unknown_in_load_plugins, unknown, strict=True)
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
    if pm.left_out:
        out.line()
        out.line(f"Left out by {LOAD_PLUGINS_ENV}={pm.load_plugins!r}: {', '.join(pm.left_out)}")
    for text in unknown:
        out.line()
        out.line(f"error: {text}")
    return EXIT_FAILED if errors or unknown else EXIT_OK
