"""`empathy-webhooks serve`: the gateway, an authenticated HTTP API that emits events, and
its console (web pages at `/`)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
from collections.abc import Callable
from typing import Any

from ..config.serve import MIN_TOKEN_CHARS, ServeConfig, hash_token
from ._common import (
    EXIT_OK,
    PORT,
    CliError,
    Output,
    add_config_option,
    configure_logging,
    load,
)
from ._store import shown_store


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the HTTP gateway: any service emits events with a bearer token",
        description="Serve the HTTP API (/v1/events, /v1/webhooks, /v1/dead-letters, /metrics, "
        "/openapi.json) and the console (web pages at /) on 127.0.0.1:8787 unless [serve] or "
        "--host/--port say otherwise. "
        "Events are kept in the configured store (SQLite by default) and delivered by "
        "in-process workers unless --no-workers. SIGTERM stops it gracefully.",
    )
    add_config_option(parser, store=True)
    parser.add_argument("--host", help="address to listen on (default: [serve] host, 127.0.0.1)")
    parser.add_argument("--port", type=PORT, help="port (default: [serve] port, 8787; 0: any)")
    parser.add_argument(
        "--no-workers",
        action="store_true",
        help="only queue: `empathy-webhooks worker` processes deliver from the shared store",
    )
    parser.add_argument(
        "--hash-token",
        action="store_true",
        help="read a token on standard input and print its sha256 for [[serve.tokens]]",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, out: Output) -> int:
    if args.hash_token:
        token = sys.stdin.readline().strip()
        if len(token) < MIN_TOKEN_CHARS:
            raise CliError(f"error: a token needs at least {MIN_TOKEN_CHARS} characters")
        out.line(hash_token(token))
        return EXIT_OK
    config, pm = load(args)
    return serve_config(args, out, config, pm)


def serve_config(
    args: argparse.Namespace,
    out: Output,
    config: Any,
    pm: Any,
    *,
    announce: Callable[[str], None] | None = None,
) -> int:
    """Serve `config`'s gateway (and its console) until SIGTERM; `announce(url)` is called
    once it listens (the `console` command prints its login link there)."""
    settings = config.serve or ServeConfig()
    host = args.host or settings.host
    port = settings.port if args.port is None else args.port
    # The gateway (aiohttp.web, the console, about 150 ms) loads only for the command that
    # serves it: every other command, `--help` included, starts without it.
    from ..gateway import Gateway, is_loopback, run_gateway
    from ..gateway.app import DEFAULT_STORE

    if not is_loopback(host) and not settings.tokens:
        raise CliError(
            [
                f"error: refusing to listen on {host} without a token: anyone who reaches it "
                "could emit events and replay dead letters.",
                "Add a [[serve.tokens]] table (empathy-webhooks serve --hash-token prints a "
                "token's hash), or listen on 127.0.0.1.",
            ]
        )
    store_url = args.store or config.store or DEFAULT_STORE
    workers = not getattr(args, "no_workers", False)
    try:
        gateway = Gateway.from_config(config, store=store_url, workers=workers, plugin_manager=pm)
    except (ValueError, TypeError) as exc:
        raise CliError(f"error: cannot open the store {shown_store(store_url)}: {exc}") from None
    # The gateway's request lines (token names, statuses) are its access log: shown by default.
    if not args.verbose:  # -v already set it up (one handler, not two)
        configure_logging(1)

    def started(url: str) -> None:
        # What start-up made (modules, plugins, the configuration, the routes) lives as long
        # as the process: frozen, the garbage collector stops walking it at every full
        # collection while requests are answered.
        gc.freeze()
        mode = "in-process workers" if workers else "no workers (queue only)"
        out.line(
            f"gateway listening on {url} ({len(config.webhooks)} webhook(s), store "
            f"{shown_store(store_url)}, {mode}, {len(settings.tokens)} token(s); SIGTERM stops)"
        )
        if announce is not None:
            announce(url)
        elif settings.tokens:
            out.line(f"console: {url}/ (log in with a read or admin token)")
        else:
            # No token to log in with: the console stays closed (docs/console.md).
            out.line(
                "console: closed (no token configured; `empathy-webhooks console` opens one "
                "on this store)"
            )
        sys.stdout.flush()

    from ..stores import StoreOpenError

    try:
        asyncio.run(run_gateway(gateway, host, port, started=started))
    except StoreOpenError as exc:
        raise CliError(f"error: {exc}") from None
    except OSError as exc:
        raise CliError(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    out.line("gateway stopped")
    return EXIT_OK
