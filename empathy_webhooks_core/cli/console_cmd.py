"""`empathy-webhooks console`: the gateway and its console on this machine, with a token
made for this run, so an operator looks at a local store without configuring any.

It listens on loopback only (another address needs `serve` and configured tokens), and the
console still asks for a token: the printed link carries it in its fragment
(`/login#token=...`), which the browser never sends to a server, so it is in no log. The
token lives as long as the process; its hash is all the gateway keeps.
"""

from __future__ import annotations

import argparse
import secrets
import webbrowser
from typing import Any

import attrs

from ..config.serve import ServeConfig, TokenConfig, hash_token
from ._common import PORT, CliError, Output, add_config_option, load

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "console",
        help="open the web console on a local store (loopback, a token for this run)",
        description="Serve the gateway and its console on 127.0.0.1 with an admin token made "
        "for this run, print the login link and open it in a browser (unless --no-browser). "
        "The configuration's own tokens still work. SIGTERM or Ctrl-C stops it.",
    )
    add_config_option(parser, store=True)
    parser.add_argument("--port", type=PORT, help="port (default: [serve] port, 8787; 0: any)")
    parser.add_argument(
        "--no-browser", action="store_true", help="print the link only, open no browser"
    )
    parser.set_defaults(func=run, host=None, no_workers=False)


def run(args: argparse.Namespace, out: Output) -> int:
    # The gateway loads only for the commands that serve it (see serve.run).
    from ..gateway import is_loopback
    from .serve import serve_config

    config, pm = load(args)
    settings = config.serve or ServeConfig()
    if not is_loopback(settings.host):
        raise CliError(
            f"error: the console command listens on loopback only ([serve] host is "
            f"{settings.host}); use `empathy-webhooks serve` with configured tokens"
        )
    token = "ewc-" + secrets.token_urlsafe(32)
    run_token = TokenConfig(name="console", scopes=("admin",), sha256=hash_token(token))
    config = attrs.evolve(
        config, serve=attrs.evolve(settings, tokens=(*settings.tokens, run_token))
    )

    def announce(url: str) -> None:
        link = f"{url}/login#token={token}"
        # Printed as it is: the operator's own terminal, and the token dies with the process.
        print(f"console: {link}", flush=True)
        print("(an admin token for this run only; the link's #fragment is never sent)")
        if not args.no_browser:
            try:
                webbrowser.open(link)
            except webbrowser.Error:
                pass

    return serve_config(args, out, config, pm, announce=announce)
