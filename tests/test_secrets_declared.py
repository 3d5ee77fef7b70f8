"""Declaring secrets: `secret_field()`, the `secret` metadata, `secret_url = True`, and the old
`secret_values()` override (still honoured); and `listen` masking what it prints."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import aiohttp
import attrs
import pytest

from empathy_webhooks_core import CustomWebhook, Webhook, secret_field
from empathy_webhooks_core.redaction import (
    SECRET,
    is_secret_name,
    isolated_registry,
    redacted_exception,
    webhook_redactor,
)

from ._cli_kit import listen

TOKEN = "tok_declared_0123456789abcdef"
URL = f"https://relay.example.com/hooks/T0/{TOKEN}"


@attrs.frozen(kw_only=True, eq=False)
class HelperWebhook(Webhook):
    kind: ClassVar[str] = "helper"
    token: str = secret_field()
    topic: str = secret_field(default="private-topic-name")


@attrs.frozen(kw_only=True, eq=False)
class MetadataWebhook(Webhook):
    kind: ClassVar[str] = "metadata"
    # The raw attrs way, default repr: the core's repr still masks it.
    token: str = attrs.field(metadata={SECRET: True})


@attrs.frozen(kw_only=True, eq=False)
class ChatWebhook(Webhook):
    kind: ClassVar[str] = "chat"
    secret_url: ClassVar[bool] = True
    webhook_url: str = attrs.field()


@attrs.frozen(kw_only=True, eq=False)
class OldStyleWebhook(Webhook):
    kind: ClassVar[str] = "old"
    token: str = attrs.field(repr=False)

    def secret_values(self) -> list[str]:  # the old way: still honoured
        return [*super().secret_values(), self.token]


@pytest.mark.parametrize(
    "webhook",
    [
        HelperWebhook(token=TOKEN),
        MetadataWebhook(token=TOKEN),
        ChatWebhook(webhook_url=URL),
        OldStyleWebhook(token=TOKEN),
    ],
    ids=lambda w: w.kind,
)
def test_each_way_of_declaring_keeps_the_value_out_of_repr_and_is_listed(webhook: Webhook) -> None:
    with isolated_registry():
        assert TOKEN not in repr(webhook) and TOKEN not in str(webhook)
        assert TOKEN in webhook.secret_values()
        assert TOKEN not in webhook_redactor(webhook).text(f"echo {TOKEN} {URL}")


def test_a_secret_url_shows_its_host_and_hides_its_path_whatever_the_host() -> None:
    shown = repr(ChatWebhook(webhook_url=URL))
    assert "webhook_url='https://relay.example.com/hooks/***'" in shown
    assert "private-topic-name" not in repr(HelperWebhook(token=TOKEN))


def test_header_names_that_hold_credentials() -> None:
    for name in (
        "Authorization",
        "Proxy-Authorization",
        "X-Webhook-Secret",
        "X-Api-Key",
        "Api-Token",
        "X-Service-Password",
        "X-Hub-Signature-256",
        "Cookie",
        "Set-Cookie",
        "apikey",
        "DD-APPLICATION-KEY",
    ):
        assert is_secret_name(name), name
    for name in ("Content-Type", "Accept", "X-Request-Id", "User-Agent", "webhook-id"):
        assert not is_secret_name(name), name


def test_a_custom_header_named_like_a_secret_is_a_declared_value() -> None:
    webhook = CustomWebhook(
        url="https://example.com/hook", headers={"X-Webhook-Secret": TOKEN, "Accept": "json"}
    )
    assert TOKEN in webhook.secret_values()
    assert TOKEN not in repr(webhook)


async def test_the_exception_on_failure_gets_is_a_redacted_copy() -> None:
    with isolated_registry() as registry:
        registry.add([TOKEN])
        try:
            async with aiohttp.ClientSession() as session:
                await session.get(f"http://127.0.0.1:9/x?token={TOKEN}")
        except aiohttp.ClientError as exc:
            original = exc
        cause = ValueError(f"inner {TOKEN}")
        original.__cause__ = cause
        copy = redacted_exception(original)
    assert isinstance(copy, aiohttp.ClientConnectorError)
    assert copy is not original and copy.__traceback__ is None
    import traceback

    formatted = "".join(traceback.format_exception(copy))
    for text in (str(copy), repr(copy), repr(copy.args), formatted):
        assert TOKEN not in text
    assert "inner ***" in formatted  # the chained cause is copied the same way


@pytest.mark.parametrize("args", [["--json"], ["--headers"]], ids=["json", "text"])
async def test_listen_masks_query_tokens_and_secret_headers(args: list[str]) -> None:
    for show in (False, True):
        proc, url = await listen(*args, *(["--show-secrets"] if show else []))
        async with aiohttp.ClientSession() as session:
            await session.post(
                f"{url}hook?token={TOKEN}&format=json",
                data=b'{"event_type": "alert"}',
                headers={"X-Api-Key": TOKEN, "Authorization": f"Bearer {TOKEN}", "X-Trace": "t1"},
            )
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        text = out.decode()
        assert "format=json" in text and "t1" in text
        if show:
            assert text.count(TOKEN) >= 3, text
        else:
            assert TOKEN not in text, text
