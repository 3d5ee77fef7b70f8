"""What the gateway's tests share: tokens, a configuration file, a running gateway."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from empathy_webhooks_core.config import load_config
from empathy_webhooks_core.config.serve import hash_token
from empathy_webhooks_core.gateway import Gateway, running

#: One token per role, made for this test run (never written anywhere but as hashes).
TOKENS = {
    name: "tk-" + name + "-" + secrets.token_urlsafe(24) for name in ("writer", "reader", "admin")
}
SCOPES = {"writer": ["events:write"], "reader": ["read"], "admin": ["admin"]}


def config_text(
    hook_url: str,
    *,
    store: str | None = None,
    serve: str = "",
    webhook: str = "",
    tokens: dict[str, str] | None = None,
    token_options: str = "",
    retry_policy: str = "{ max_retries = 0 }",
) -> str:
    lines = []
    if store:
        lines.append(f'store = "{store}"')
    lines += [
        "[serve]",
        "" if "shutdown_grace_seconds" in serve else "shutdown_grace_seconds = 2",
        serve,
        "",
        "[[webhooks]]",
        'type = "custom"',
        'name = "hook"',
        f'url = "{hook_url}"',
        f"retry_policy = {retry_policy}",
        webhook,
        "",
    ]
    for name, token in (tokens if tokens is not None else TOKENS).items():
        lines += [
            "[[serve.tokens]]",
            f'name = "{name}"',
            f'sha256 = "{hash_token(token)}"',
            f"scopes = {SCOPES.get(name, ['admin'])!r}".replace("'", '"'),
            token_options,
            "",
        ]
    return "\n".join(lines)


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "webhooks.toml"
    path.write_text(text)
    return path


@contextlib.asynccontextmanager
async def gateway_at(path: Path, **options: Any) -> AsyncIterator[tuple[Gateway, str]]:
    gateway = Gateway.from_config(load_config(path), **options)
    async with running(gateway) as url:
        yield gateway, url


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name]}"}


async def call(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    token: str | None = "admin",
    **kwargs: Any,
) -> tuple[int, Any, aiohttp.typedefs.LooseHeaders]:
    headers = dict(kwargs.pop("headers", {}))
    if token is not None:
        headers.update(auth(token))
    async with session.request(method, url, headers=headers, **kwargs) as response:
        text = await response.text()
        try:
            import json

            body: Any = json.loads(text)
        except ValueError:
            body = text
        return response.status, body, response.headers
