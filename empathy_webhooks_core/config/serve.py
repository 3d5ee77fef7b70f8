"""`[serve]`: the gateway's settings (`empathy-webhooks serve`), its bearer tokens included.

    [serve]
    host = "127.0.0.1"
    port = 8787
    max_body_bytes = 262144
    metrics_open = false            # true: /metrics without a token

    [[serve.tokens]]
    name = "ci"                     # what the logs show, never the token
    sha256 = "9f86d081..."          # its SHA-256 in hex: empathy-webhooks serve --hash-token
    scopes = ["events:write"]       # events:write, read, admin (admin includes the other two)
    requests_per_minute = 600

    [[serve.tokens]]
    name = "ops"
    token = "${GATEWAY_OPS_TOKEN}"  # or the token itself, from the environment only
    scopes = ["read", "admin"]

A token written in the file itself is refused: the file holds hashes, the environment holds
tokens, so a configuration in a repository never gives access.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

import attrs

from ..converter import ConfigError, did_you_mean, structure
from ..redaction import secret_field
from ._problems import _at_or_under, _Problems

__all__ = ["SCOPES", "ServeConfig", "TokenConfig", "hash_token", "parse_serve"]

#: What a token may be allowed to do. `admin` includes the others.
SCOPES = ("events:write", "read", "admin")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787
DEFAULT_MAX_BODY_BYTES = 256 * 1024
DEFAULT_IDEMPOTENCY_SECONDS = 24 * 3600.0
#: During a burst of requests (gateway/intake.py): no event to admit for this long ends the
#: burst, and the held deliveries go to the workers; none is held longer than the other.
DEFAULT_HOLD_QUIET_SECONDS = 0.02
DEFAULT_HOLD_MAX_SECONDS = 1.0
_HEX64 = re.compile(r"[0-9a-f]{64}")
_ONLY_ENV = re.compile(r"\s*\$\{[A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?\}\s*")
#: Shortest token accepted from the environment: a guessable token is no protection.
MIN_TOKEN_CHARS = 16


def hash_token(token: str) -> str:
    """The hex SHA-256 of a token: what `sha256 = ...` in `[[serve.tokens]]` holds."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@attrs.frozen(kw_only=True)
class TokenConfig:
    """One bearer token: its name (for logs), its scopes, and its hash or its value."""

    name: str
    scopes: tuple[str, ...]
    sha256: str | None = None
    token: str | None = secret_field(default=None)
    requests_per_minute: int | None = None

    @property
    def digest(self) -> bytes:
        """The token's SHA-256 (what a presented token's hash is compared with)."""
        if self.token is not None:
            return hashlib.sha256(self.token.encode("utf-8")).digest()
        assert self.sha256 is not None
        return bytes.fromhex(self.sha256)


@attrs.frozen(kw_only=True)
class ServeConfig:
    """How `empathy-webhooks serve` listens, who may call it, and its limits."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    tokens: tuple[TokenConfig, ...] = ()
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_batch: int = 100
    metrics_open: bool = False
    #: How long an Idempotency-Key's first answer is kept (seconds).
    idempotency_seconds: float = DEFAULT_IDEMPOTENCY_SECONDS
    #: After SIGTERM: how long requests and deliveries under way may take to finish.
    shutdown_grace_seconds: float = 10.0
    #: The rate limit of a token that sets none (None: unlimited).
    requests_per_minute: int | None = None
    #: While requests keep coming, accepted deliveries wait (durable, counted as queued)
    #: until no event arrived for `hold_quiet_seconds`, or for at most `hold_max_seconds`
    #: (0: never held).
    hold_quiet_seconds: float = DEFAULT_HOLD_QUIET_SECONDS
    hold_max_seconds: float = DEFAULT_HOLD_MAX_SECONDS


def parse_serve(
    raw: Any, expanded: Any, problems: _Problems, path: str = "serve"
) -> ServeConfig | None:
    """`[serve]` from the file: `raw` as written (to refuse a token written in the file) and
    `expanded` after `${NAME}` expansion. Problems are added with their place."""
    mark = len(problems.lines)
    config = _parse_serve(raw, expanded, problems, path)
    # A place whose variable is unset was reported by the expansion: judging the empty string
    # left there would add a second, misleading line (`port: expected an integer, got ''`).
    problems.lines[mark:] = [
        line
        for line in problems.lines[mark:]
        if not any(_at_or_under(line.partition(": ")[0], u) for u in problems.unset)
    ]
    return config


def _parse_serve(raw: Any, expanded: Any, problems: _Problems, path: str) -> ServeConfig | None:
    if expanded is None:
        return None
    if not isinstance(expanded, Mapping):
        problems.add(path, "expected a table: write [serve]")
        return None
    try:
        config = structure(dict(expanded), ServeConfig, path=path)
    except ConfigError as exc:
        problems.extend(exc.problems)
        return None
    raw_tokens = raw.get("tokens", []) if isinstance(raw, Mapping) else []
    names: set[str] = set()
    for index, token in enumerate(config.tokens):
        where = f"{path}.tokens[{index}]"
        written = raw_tokens[index] if index < len(raw_tokens) else {}
        _check_token(token, written, where, problems)
        if token.name in names:
            problems.add(f"{where}.name", f"{token.name!r} names another token already")
        names.add(token.name)
    _check_numbers(config, path, problems)
    return config


def _check_token(token: TokenConfig, written: Any, where: str, problems: _Problems) -> None:
    if not token.name.strip():
        problems.add(f"{where}.name", "a token needs a name (the logs show it)")
    for scope in token.scopes:
        if scope not in SCOPES:
            problems.add(
                f"{where}.scopes",
                f"unknown scope {scope!r}{did_you_mean(scope, SCOPES)} (known: "
                f"{', '.join(SCOPES)})",
            )
    if not token.scopes:
        problems.add(f"{where}.scopes", f"give at least one scope ({', '.join(SCOPES)})")
    if (token.sha256 is None) == (token.token is None):
        problems.add(where, 'give either sha256 (the token\'s hash) or token = "${NAME}"')
    if token.sha256 is not None and not _HEX64.fullmatch(token.sha256):
        problems.add(
            f"{where}.sha256",
            "expected 64 lowercase hex digits (empathy-webhooks serve --hash-token prints them)",
        )
    if token.token is not None:
        literal = written.get("token") if isinstance(written, Mapping) else None
        if isinstance(literal, str) and not _ONLY_ENV.fullmatch(literal):
            problems.add(
                f"{where}.token",
                "a token is never written in the file: give its sha256, or take it from "
                'the environment with token = "${NAME}"',
            )
            problems.secrets.add(literal)
        elif len(token.token) < MIN_TOKEN_CHARS:
            problems.add(
                f"{where}.token",
                f"the token from the environment is shorter than {MIN_TOKEN_CHARS} characters",
            )
        problems.secrets.add(token.token)
    if token.requests_per_minute is not None and token.requests_per_minute < 1:
        problems.add(f"{where}.requests_per_minute", "expected 1 or more")


def _check_numbers(config: ServeConfig, path: str, problems: _Problems) -> None:
    if not 0 <= config.port <= 65535:
        problems.add(f"{path}.port", f"expected 0 to 65535, got {config.port}")
    if config.max_body_bytes < 1024:
        problems.add(f"{path}.max_body_bytes", "expected 1024 or more")
    if not 1 <= config.max_batch <= 1000:
        problems.add(f"{path}.max_batch", "expected 1 to 1000")
    if not 1 <= config.idempotency_seconds <= 30 * 86400:
        problems.add(f"{path}.idempotency_seconds", "expected 1 to 2592000 (30 days)")
    if not 0 <= config.shutdown_grace_seconds <= 3600:
        problems.add(f"{path}.shutdown_grace_seconds", "expected 0 to 3600")
    if config.requests_per_minute is not None and config.requests_per_minute < 1:
        problems.add(f"{path}.requests_per_minute", "expected 1 or more")
    if not 0 < config.hold_quiet_seconds <= 10:
        problems.add(f"{path}.hold_quiet_seconds", "expected more than 0, up to 10 (seconds)")
    if not 0 <= config.hold_max_seconds <= 60:
        problems.add(f"{path}.hold_max_seconds", "expected 0 (never hold) to 60 (seconds)")
