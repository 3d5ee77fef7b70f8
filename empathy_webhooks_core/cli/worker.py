"""`empathy-webhooks worker`: deliver what producers put in a shared store."""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any

from ..plugins import hooks_for
from ..stores import StoreOpenError, open_store
from ._common import EXIT_OK, CliError, Output, add_config_option, load
from ._store import shown_store


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "worker",
        help="deliver what producers queued in a shared store (Ctrl-C stops)",
        description="Run a delivery worker for the configured webhooks on a shared store "
        "(redis://..., sqlite:///...). SIGINT or SIGTERM stops it after in-flight attempts.",
    )
    add_config_option(parser, store=True)
    parser.set_defaults(func=run)


async def _serve(webhooks: list[Any], store: str, started: Any = None) -> str | None:
    """Run the worker until SIGINT or SIGTERM; what it left in the store, if anything."""
    try:
        from ..worker import (  # type: ignore[import-not-found,unused-ignore]
            DEFAULT_GRACE_SECONDS,
            run_worker,
        )
    except ImportError:
        raise CliError(
            "error: this installation has no worker (empathy_webhooks_core.worker)"
        ) from None
    stop = asyncio.Event()

    def stopping() -> None:
        if not stop.is_set():
            # The grace can last seconds: a worker that says nothing looks like one that hangs.
            Output.error(
                f"stopping: finishing the deliveries under way (up to {DEFAULT_GRACE_SECONDS:g} s)"
            )
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping)
    left: str | None = await run_worker(webhooks, store, stop=stop, started=started)
    return left


def run(args: argparse.Namespace, out: Output) -> int:
    config, pm = load(args)
    store = args.store or config.store
    if not store or store in ("memory", "memory://"):
        raise CliError(
            "error: a worker needs a shared store: --store URL or store = ... in the configuration"
        )
    try:
        open_store(store, hooks_for(pm).store_backends())  # a bad URL is said before starting
    except (ValueError, TypeError) as exc:
        raise CliError(f"error: cannot open the store {shown_store(store)}: {exc}") from None
    # One line each way, even without -v: a worker that says nothing looks like one that hangs.
    line = (
        f"worker started: {len(config.webhooks)} webhook(s), store {shown_store(store)} "
        "(Ctrl-C stops)"
    )
    began = False

    def started() -> None:
        nonlocal began
        began = True
        out.line(line)

    try:
        left = asyncio.run(_serve(list(config.webhooks), store, started))
    except StoreOpenError as exc:  # it names the store and what is wrong
        raise CliError(f"error: {exc}") from None
    finally:
        if began:
            out.line("worker stopped")
    if left:
        Output.error(
            f"left in the store: {left}; another worker, or this one started again, delivers "
            "them (on a shared store, once its visibility timeout has passed)"
        )
    return EXIT_OK
