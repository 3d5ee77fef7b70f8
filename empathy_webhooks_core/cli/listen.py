"""`empathy-webhooks listen`: a local receiver that prints arriving webhooks readably and
verifies their signatures (the receiving side of the reference's "Verify Signatures")."""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import os
import signal
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from .._formatting import truncate
from ..redaction import REDACTED, is_secret_name, redact_text, register_secrets
from ._common import (
    EXIT_FAILED,
    EXIT_OK,
    PORT,
    CliError,
    Output,
    add_json_option,
    number_option,
)

#: A valid X-Signature without the Standard Webhooks headers, under `require_timestamp`.
NO_TIMESTAMP = "no timestamp"
SECRET_ENV = "EMPATHY_WEBHOOKS_SECRET"  # noqa: S105 - a variable name, not a secret
#: Standard Webhooks: a delivery older (or newer) than this is refused (replay protection).
TOLERANCE_SECONDS = 300


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "listen",
        help="a local receiver that prints arriving webhooks and checks their signatures",
        description="Receive webhooks on a local port, print each readably and verify its "
        "signature (X-Signature and Standard Webhooks headers). Invalid signatures are "
        "answered 401, and so are unsigned requests unless --allow-unsigned, and requests "
        "signed with X-Signature alone (no timestamp, so replayable) unless "
        "--no-require-timestamp; each refusal says why. Exits 1 if any request was refused.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=PORT, default=8000, help="port (default 8000; 0 picks a free one)"
    )
    parser.add_argument(
        "--secret",
        action="append",
        metavar="SECRET",
        help=f"signing secret to verify with (repeatable; default ${SECRET_ENV})",
    )
    parser.add_argument(
        "--allow-unsigned",
        action="store_true",
        help="with --secret: accept unsigned requests too (each marked as such) while signed "
        "ones are still verified, so one listener serves signed and unsigned webhooks",
    )
    parser.add_argument(
        "--require-timestamp",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="with --secret: require the timestamped Standard Webhooks signature (the "
        "default, as the library's require_timestamp=True); --no-require-timestamp also "
        "accepts a valid X-Signature alone, for a sender with signature_scheme = "
        '"x-signature" (such a request can be replayed forever)',
    )
    parser.add_argument(
        "--status",
        type=number_option(200, 599, integer=True),
        default=200,
        help="answer valid arrivals with this (200 to 599)",
    )
    parser.add_argument(
        "--count",
        type=number_option(1, 10**9, integer=True),
        metavar="N",
        help="exit after N arrivals (default: run until Ctrl-C)",
    )
    parser.add_argument(
        "--headers", action="store_true", help="print each arrival's headers (always in --json)"
    )
    parser.add_argument(
        "--show-secrets",
        action="store_true",
        help="print query tokens and secret-named header values (Authorization, *token*, "
        "*secret*, *signature*, ...) in full instead of *** (local debugging only)",
    )
    add_json_option(parser)
    parser.set_defaults(func=run)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


def check_x_signature(body: bytes, header: str, secrets: Sequence[str]) -> bool:
    """Any of the header's signatures (several during a secret rotation) made with any secret."""
    from .. import signing

    verify = getattr(signing, "verify_webhook_signature", None)
    if verify is not None:
        return bool(verify(body, header, list(secrets)))
    return any(
        hmac.compare_digest(signing.x_signature(body, secret), signature.strip())
        for signature in header.split(",")
        for secret in secrets
    )


def check_standard(
    body: bytes, headers: Mapping[str, str], secrets: Sequence[str], now: float
) -> bool:
    from .. import signing

    verify = getattr(signing, "verify_standard_webhook", None)
    if verify is not None:
        return bool(verify(body, headers, list(secrets), tolerance=TOLERANCE_SECONDS, now=now))
    msg_id = _header(headers, "webhook-id")
    stamp = _header(headers, "webhook-timestamp")
    header = _header(headers, "webhook-signature") or ""
    if not msg_id or not stamp or not stamp.isdigit():
        return False
    if abs(now - int(stamp)) > TOLERANCE_SECONDS:
        return False
    offered = header.split()
    for secret in secrets:
        try:
            expected = signing.standard_signature(msg_id, int(stamp), body, secret)
        except ValueError:  # a whsec_ secret that is not base64
            continue
        if any(hmac.compare_digest(expected, sig) for sig in offered):
            return True
    return False


def verify(
    body: bytes,
    headers: Mapping[str, str],
    secrets: Sequence[str],
    now: float | None = None,
    *,
    require_timestamp: bool = True,
) -> tuple[str, dict[str, bool]]:
    """`valid`, `invalid`, `unsigned`, `no timestamp` (X-Signature alone, which
    `require_timestamp` refuses) or `not checked` (no secret), and each scheme's result."""
    if not secrets:
        return "not checked", {}
    checks: dict[str, bool] = {}
    x_header = _header(headers, "X-Signature")
    if x_header is not None:
        checks["x-signature"] = check_x_signature(body, x_header, secrets)
    if _header(headers, "webhook-signature") is not None:
        checks["standard-webhooks"] = check_standard(
            body, headers, secrets, time.time() if now is None else now
        )
    if not checks:
        return "unsigned", checks
    if not all(checks.values()):
        return "invalid", checks
    if require_timestamp and "standard-webhooks" not in checks:
        # As `receiving.verify_request`: an X-Signature covers the body only, so a captured
        # request, its Standard Webhooks headers stripped, would verify forever.
        return NO_TIMESTAMP, checks
    return "valid", checks


def refusal(
    state: str,
    checks: dict[str, bool],
    headers: Mapping[str, str],
    now: float | None = None,
    *,
    require_timestamp: bool = True,
) -> str:
    """Why a request was refused, in words a sender's author can act on."""
    if state == "unsigned":
        return (
            "unsigned: no X-Signature or webhook-signature header (--allow-unsigned accepts "
            "unsigned requests)"
        )
    reasons = []
    if checks.get("x-signature") is False:
        reasons.append("X-Signature matches no secret (another secret, or a changed body?)")
    if checks.get("standard-webhooks") is False:
        stamp = _header(headers, "webhook-timestamp") or ""
        when = time.time() if now is None else now
        if not _header(headers, "webhook-id") or not stamp.isdigit():
            reasons.append("webhook-id or webhook-timestamp missing or malformed")
        elif abs(when - int(stamp)) > TOLERANCE_SECONDS:
            reasons.append(
                f"webhook-timestamp is {abs(when - int(stamp)):.0f} s from now "
                f"(tolerance {TOLERANCE_SECONDS} s: a replay, or a clock off)"
            )
        else:
            reasons.append("webhook-signature matches no secret")
    if require_timestamp and checks and "standard-webhooks" not in checks:
        reasons.append(
            "signed with X-Signature alone: no webhook-signature and webhook-timestamp "
            "headers, and without a timestamp a captured request could be replayed forever "
            "(--no-require-timestamp accepts it, for a sender that signs only so)"
        )
    return "; ".join(reasons) or state


def summary(body: bytes) -> tuple[str | None, str | None, str]:
    """Event type, event id and a compact one-line body."""
    try:
        payload = json.loads(body)
    except ValueError:
        return None, None, truncate(body.decode("utf-8", errors="replace"), 300)
    event_type = event_id = None
    if isinstance(payload, dict):
        event_type = payload.get("event_type")
        event_id = payload.get("event_id")
    compact = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    return event_type, event_id, truncate(compact, 300)


def shown_path(path_qs: str, show_secrets: bool = False) -> str:
    """The path and query as printed: credential query values (`token`, `key`, `sig`,
    `code`, ...) masked unless `show_secrets`."""
    return path_qs if show_secrets else redact_text(path_qs)


def shown_headers(headers: Mapping[str, str], show_secrets: bool = False) -> dict[str, str]:
    """Headers as printed: values of secret-named ones masked, and credentials in the others
    (a URL's userinfo), unless `show_secrets`."""
    if show_secrets:
        return dict(headers)
    return {
        key: REDACTED if is_secret_name(key) else redact_text(value)
        for key, value in headers.items()
    }


class Listener:
    def __init__(
        self,
        out: Output,
        secrets: list[str],
        status: int,
        count: int | None,
        allow_unsigned: bool = False,
        *,
        headers: bool = False,
        show_secrets: bool = False,
        require_timestamp: bool = True,
    ) -> None:
        self.out = out
        # With --allow-unsigned a request with no signature at all is let in: one with a
        # valid X-Signature and no timestamp is no worse, so it is let in too.
        self.require_timestamp = require_timestamp and not allow_unsigned
        self.headers = headers
        self.show_secrets = show_secrets
        self.secrets = secrets
        self.allow_unsigned = allow_unsigned
        self.status = status
        self.count = count
        self.seen = 0
        self.invalid = 0
        self.done = asyncio.Event()

    async def handle(self, request: Any) -> Any:
        from aiohttp import web

        body = await request.read()
        headers = dict(request.headers)
        required = self.require_timestamp
        state, checks = verify(body, headers, self.secrets, require_timestamp=required)
        event_type, event_id = summary(body)[:2]
        event_id = event_id or _header(headers, "webhook-id")
        bad = state in ("invalid", NO_TIMESTAMP) or (
            state == "unsigned" and not self.allow_unsigned
        )
        why = refusal(state, checks, headers, require_timestamp=required) if bad else None
        status = 401 if bad else self.status
        self.seen += 1
        self.invalid += bad
        self.print(request, state, checks, event_type, event_id, status, body, why, headers)
        if self.count is not None and self.seen >= self.count:
            self.done.set()
        if why is not None:
            return web.json_response({"error": why}, status=401)
        return web.json_response({"status": "ok"}, status=status)

    def print(
        self,
        request: Any,
        state: str,
        checks: dict[str, bool],
        event_type: str | None,
        event_id: str | None,
        status: int,
        body: bytes,
        refused: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        when = datetime.now().strftime("%H:%M:%S")
        path = shown_path(request.path_qs, self.show_secrets)
        shown = shown_headers(headers or {}, self.show_secrets)
        shown_body = summary(body)[2]
        if self.out.json:
            line = {
                "time": when,
                "method": request.method,
                "path": path,
                "headers": shown,
                "event_type": event_type,
                "event_id": event_id,
                "signature": state,
                "schemes": checks,
                "answered": status,
                "refused": refused,
                # Masked as the text lines are (they pass through `Output.line`).
                "body": shown_body if self.show_secrets else redact_text(shown_body),
            }
            print(json.dumps(line, ensure_ascii=False), flush=True)
            return
        schemes = ", ".join(f"{k} {'ok' if v else 'BAD'}" for k, v in checks.items())
        detail = f" ({schemes})" if schemes else ""
        if state == "unsigned" and not refused:
            state = "unsigned (accepted: --allow-unsigned)"
        style = "bold red" if refused else "green" if state == "valid" else None
        self._print(
            f"{when}  {request.method} {path}  {event_type or '-'}  {event_id or '-'}"
            f"  signature {state}{detail}  -> {status}",
            style=style,
        )
        if refused:
            self._print(f"    refused: {refused}", style="red")
        if self.headers:
            for key, value in shown.items():
                self._print(f"    {key}: {value}", style="dim")
        self._print(f"    {shown_body}", style="dim")

    def _print(self, text: str, style: str | None = None) -> None:
        if not self.show_secrets:
            self.out.line(text, style=style)
        elif self.out.rich:  # past Output's masking: the user asked to see everything
            self.out.console.print(text, style=style, markup=False)
        else:
            print(text, flush=True)


async def serve(args: argparse.Namespace, out: Output, secrets: list[str]) -> int:
    from aiohttp import web

    listener = Listener(
        out,
        secrets,
        args.status,
        args.count,
        args.allow_unsigned,
        headers=args.headers,
        show_secrets=args.show_secrets,
        require_timestamp=args.require_timestamp,
    )
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", listener.handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, args.host, args.port)
        try:
            await site.start()
        except OSError as exc:
            raise CliError(
                f"error: cannot listen on {args.host}:{args.port}: {exc.strerror}"
            ) from None
        server = site._server
        port = server.sockets[0].getsockname()[1] if server is not None else args.port  # type: ignore[attr-defined]
        url = f"http://{args.host}:{port}/"
        checking = f"verifying with {len(secrets)} secret(s)" if secrets else "no secret given"
        if secrets and args.allow_unsigned:
            checking += ", accepting unsigned requests"
        elif secrets and not args.require_timestamp:
            checking += ", accepting X-Signature alone (no timestamp: replayable)"
        showing = "; SHOWING SECRETS IN FULL (--show-secrets)" if args.show_secrets else ""
        if out.json:
            started: dict[str, Any] = {"listening": url, "verifying": bool(secrets)}
            if secrets:
                started["require_timestamp"] = listener.require_timestamp
            if args.show_secrets:
                started["show_secrets"] = True
            print(json.dumps(started), flush=True)
        else:
            out.line(f"listening on {url} ({checking}){showing}; Ctrl-C stops")
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, listener.done.set)
        await listener.done.wait()
    finally:
        await runner.cleanup()
    if not out.json:
        out.line(
            f"{listener.seen} received, {listener.invalid} refused "
            "(bad or missing signature, or no timestamp)"
        )
    return EXIT_FAILED if listener.invalid else EXIT_OK


def run(args: argparse.Namespace, out: Output) -> int:
    secrets = list(args.secret or [])
    if any(not secret.strip() for secret in secrets):
        # `--secret "$SECRET"` with the variable unset: every signed request would be
        # refused, under a banner that says one secret verifies them.
        raise CliError("error: --secret is empty (is its environment variable set?)")
    if not secrets and os.environ.get(SECRET_ENV):
        secrets = [os.environ[SECRET_ENV]]
    # A sender that echoes its secret (in a body, a header we do not know) never shows it
    # here either, unless --show-secrets asks for everything.
    register_secrets(secrets)
    return asyncio.run(serve(args, out, secrets))
