"""`empathy-webhooks validate`: check a configuration file without sending anything."""

from __future__ import annotations

import argparse
from typing import Any

import attrs

from ..redaction import is_secret_field, webhook_redactor
from ..webhooks import Webhook
from ._common import (
    EXIT_OK,
    CliError,
    Output,
    add_config_option,
    add_json_option,
    config_path,
    load,
)
from ._store import shown_store

_TARGET_FIELDS = ("url", "webhook_url", "events_url", "base_url", "api_url")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="check a configuration file without sending",
        description="Check a configuration file: every problem is printed with its place "
        "(webhooks[2].retry_policy.max_retries: ...). Exits 2 when there is one.",
    )
    add_config_option(parser)
    add_json_option(parser)
    parser.set_defaults(func=run)


def target(webhook: Webhook) -> str:
    """Where a webhook sends, fit to show: queries and userinfo masked, and the path too when
    the URL is a credential (`secret_url = True`, or a `secret_field()`)."""
    fields = {f.name: f for f in attrs.fields(type(webhook))} if attrs.has(type(webhook)) else {}
    redactor = webhook_redactor(webhook)
    for name in _TARGET_FIELDS:
        value = getattr(webhook, name, None)
        if isinstance(value, str) and value:
            field = fields.get(name)
            secret = webhook.secret_url or (
                field is not None and is_secret_field(field, type(webhook))
            )
            return redactor.url(value, secret_path=secret)
    return "-"


def describe_rate(webhook: Webhook) -> str:
    limit = webhook.rate_limit
    if limit is None or not limit.windows():
        return "-"
    units = {1.0: "s", 60.0: "min", 3600.0: "h"}
    return ", ".join(f"{count}/{units[seconds]}" for count, seconds in limit.windows())


def webhook_summary(webhook: Webhook) -> dict[str, Any]:
    redactor = webhook_redactor(webhook)
    return {
        "name": webhook.name,
        "type": webhook.kind,
        "events": list(webhook.events),
        "filter": redactor.text(str(webhook.filter)) if webhook.filter is not None else None,
        "target": target(webhook),
        "max_retries": webhook.retry_policy.max_retries,
        "rate_limit": describe_rate(webhook),
        "signed": webhook.signs,
    }


def show(
    out: Output,
    source: str | None,
    store: str | None,
    webhooks: list[Webhook],
    warnings: tuple[str, ...] = (),
) -> None:
    """Print the summary of a valid configuration (JSON with `--json`)."""
    summaries = [webhook_summary(w) for w in webhooks]
    out.data(
        {
            "valid": True,
            "file": source,
            "store": store,
            "webhooks": summaries,
            "warnings": list(warnings),
        }
    )
    warned = f" ({len(warnings)} warning(s) above)" if warnings else ""
    out.line(f"{source}: valid{warned}, {len(summaries)} webhook(s), store {store or 'memory'}")
    out.table(
        None,
        ["webhook", "type", "events", "filter", "target", "retries", "rate limit", "signed"],
        [
            [
                s["name"],
                s["type"],
                ", ".join(s["events"]),
                s["filter"] or "-",
                s["target"],
                s["max_retries"],
                s["rate_limit"],
                "yes" if s["signed"] else "no",
            ]
            for s in summaries
        ],
    )


def run(args: argparse.Namespace, out: Output) -> int:
    try:
        config, _ = load(args)
    except CliError as exc:
        if args.json:
            # After the count: the problems, then the warnings (`load` says them so).
            lines = exc.lines[1:]
            errors = [line for line in lines if not line.startswith("warning: ")]
            warnings = [line.removeprefix("warning: ") for line in lines[len(errors) :]]
            out.data(
                {
                    "valid": False,
                    "file": str(config_path(args)),
                    "errors": errors,
                    "warnings": warnings,
                }
            )
        raise
    store = shown_store(config.store) if config.store else None
    show(out, config.source, store, list(config.webhooks), config.warnings)
    return EXIT_OK
