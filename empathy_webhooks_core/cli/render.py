"""`empathy-webhooks render`: what each webhook would send for an event (a dry run)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .._routing import EventMatcher, passes_filter
from ..events import Event
from ..plugins import PluginManager
from ..redaction import request_secret_values, webhook_redactor
from ..webhooks import Webhook
from ..wire import SECRET_URL
from ._common import (
    EXIT_FAILED,
    EXIT_OK,
    CliError,
    Output,
    add_config_option,
    add_event_options,
    add_json_option,
    event_from_args,
    load,
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "render",
        help="show what each webhook would send for an event (nothing is sent)",
        description="Show the request each configured webhook would send for an event: "
        "method, URL (secrets masked), headers and body. Nothing is sent.",
    )
    parser.add_argument("event_type", metavar="EVENT_TYPE", help="prediction, alert, ...")
    add_event_options(
        parser, data_help="event data as JSON, or @file (default: the built-in sample)"
    )
    parser.add_argument("--webhook", action="append", metavar="NAME", help="only this webhook")
    add_config_option(parser)
    add_json_option(parser)
    parser.set_defaults(func=run)


def why_skipped(webhook: Any, event: Event) -> str | None:
    if not EventMatcher(webhook.events)(event.event_type):
        return f"not subscribed (events: {', '.join(webhook.events)})"
    if not passes_filter(webhook, event):
        return f"filtered out ({webhook.filter})"
    return None


def body_text(body: bytes) -> str:
    try:
        return json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except ValueError:
        return body.decode("utf-8", errors="replace")


def render_entry(webhook: Webhook, event: Event, dispatcher: Any) -> dict[str, Any]:
    """What `render` shows of one webhook's request: every value the webhook declares
    secret, every credential the request carries (secret-named headers, URL credentials,
    the path of a secret URL) masked, in the body too."""
    entry: dict[str, Any] = {"webhook": webhook.name, "type": webhook.kind}
    redactor = webhook_redactor(webhook)
    skipped = why_skipped(webhook, event)
    if skipped:
        entry["skipped"] = redactor.text(skipped)
        return entry
    try:
        request = dispatcher.render(webhook, event)
    except Exception as exc:
        entry["error"] = redactor.text(f"{type(exc).__name__}: {exc}")
        return entry
    redactor = redactor.union(request_secret_values(request))
    secret_path = webhook.secret_url or bool(request.extras.get(SECRET_URL))
    entry.update(
        method=request.method,
        url=redactor.url(request.url, secret_path=secret_path),
        headers=redactor.headers(request.headers),
        body=redactor.text(body_text(request.body)),
        signed=webhook.signature_scheme if webhook.signs else None,
    )
    return entry


def render_entries(
    webhooks: list[Webhook], event: Event, pm: PluginManager
) -> list[dict[str, Any]]:
    """`render_entry` for each webhook, through a dispatcher of `pm`'s plugins (not started:
    nothing is sent or queued)."""
    from ..dispatcher import WebhookDispatcher

    dispatcher = WebhookDispatcher(webhooks=webhooks, plugin_manager=pm)
    return [render_entry(webhook, event, dispatcher) for webhook in webhooks]


def show(out: Output, event: Event, results: list[dict[str, Any]]) -> None:
    """Print `render_entries` results: JSON with `--json`, else per webhook."""
    out.data({"event": event.to_envelope(), "requests": results})
    for entry in results:
        out.heading(f"── {entry['webhook']} ({entry['type']})")
        if "skipped" in entry:
            out.line(f"   skipped: {entry['skipped']}")
        elif "error" in entry:
            out.line(f"   cannot render: {entry['error']}", style="red")
        else:
            out.line(f"{entry['method']} {entry['url']}")
            for key, value in entry["headers"].items():
                out.line(f"{key}: {value}", style="dim")
            if entry["signed"]:
                # Signatures cover the attempt's timestamp, so they are made when sent.
                out.line(f"(signed when sent: {entry['signed']} signature headers)", style="dim")
            out.line()
            out.line(entry["body"])
        out.line()


def run(args: argparse.Namespace, out: Output) -> int:
    from .._demo.samples import SAMPLES

    config, pm = load(args)
    event = event_from_args(args.event_type, args, defaults=SAMPLES.get(args.event_type))
    webhooks = list(config.webhooks)
    if args.webhook:
        unknown = [n for n in args.webhook if n not in {w.name for w in webhooks}]
        if unknown:
            raise CliError(f"error: no webhook named {unknown[0]!r} in {config.source}")
        webhooks = [w for w in webhooks if w.name in args.webhook]
    results = render_entries(webhooks, event, pm)
    show(out, event, results)
    return EXIT_FAILED if any("error" in entry for entry in results) else EXIT_OK
