"""`Sender`: the one way a plugin sends HTTP (issue 15, item 13). Plugins that make several
requests per delivery, or requests outside a delivery, send through it; it honours the
webhook's `block_private_addresses` and timeout. Per plugin, with the guard on and the service
on loopback, nothing reaches the service: see each plugin's `test_*guard*` tests."""

from __future__ import annotations

import ast
import pathlib

import aiohttp
import pytest

from empathy_webhooks_core import CustomWebhook, OutgoingRequest, WebhookDispatcher
from empathy_webhooks_core._netguard import BlockedAddressError, guarded_connector
from empathy_webhooks_core._sender import Sender, is_guarded
from empathy_webhooks_core.testing import Receiver, Reply

ROOT = pathlib.Path(__file__).resolve().parents[1]


def hook(url: str, **options: object) -> CustomWebhook:
    return CustomWebhook(url=url, **options)  # type: ignore[arg-type]


async def test_a_guarded_webhook_never_sends_through_an_unguarded_session(
    receiver: Receiver,
) -> None:
    """A plugin handing the wrong session (the dispatcher's shared one, its own) to a sender
    is refused before any connection: the bug of the Datadog metric batches cannot recur."""
    webhook = hook(receiver.url("/x"), block_private_addresses=True)
    async with aiohttp.ClientSession() as unguarded:
        with pytest.raises(BlockedAddressError, match="without the address guard"):
            await Sender(webhook, unguarded).send(OutgoingRequest.json(receiver.url("/x"), {}))
    async with aiohttp.ClientSession(connector=guarded_connector()) as session:
        assert is_guarded(session)
        with pytest.raises(BlockedAddressError, match="loopback address"):
            await Sender(webhook, session).send(OutgoingRequest.json(receiver.url("/x"), {}))
    assert receiver.requests == []


async def test_an_unguarded_webhook_sends_with_its_own_timeout(receiver: Receiver) -> None:
    receiver.respond(status=204)
    webhook = hook(receiver.url("/x"), retry_policy={"timeout_seconds": 0.2})
    async with aiohttp.ClientSession() as session:
        sender = Sender(webhook, session)
        assert sender.timeout_seconds == 0.2
        answer = await sender.send(OutgoingRequest.json(receiver.url("/x"), {"a": 1}))
        assert answer.status == 204
        receiver.queue(Reply(status=200, delay=3))
        with pytest.raises(TimeoutError, match="no answer within 0.2 s"):
            await sender.send(OutgoingRequest.json(receiver.url("/x"), {"a": 2}))
    assert receiver.requests[0].json() == {"a": 1}


async def test_the_dispatchers_sender_uses_the_guarded_session_for_guarded_webhooks(
    receiver: Receiver,
) -> None:
    guarded = hook(receiver.url("/x"), name="guarded", block_private_addresses=True)
    plain = hook(receiver.url("/x"), name="plain")
    async with WebhookDispatcher(webhooks=[guarded, plain]) as dispatcher:
        assert is_guarded(dispatcher.sender_for(guarded).session)
        assert not is_guarded(dispatcher.sender_for(plain).session)
        with pytest.raises(BlockedAddressError):
            await dispatcher.sender_for(guarded).send(OutgoingRequest.json(receiver.url("/x"), {}))
    assert receiver.requests == []
    with pytest.raises(RuntimeError, match="closed"):
        dispatcher.sender_for(plain)


#: What sends HTTP without the sender: the core's raw `send`, a session's own methods, a
#: session of the plugin's own, the dispatcher's shared session.
_FORBIDDEN_CALLS = {"request", "get", "post", "put", "patch", "delete", "head", "ws_connect"}


def _plugin_sources() -> list[pathlib.Path]:
    folders = [*ROOT.glob("plugins/*/empathy_webhooks_*"), *ROOT.glob("examples/*/empathy_*")]
    return sorted(p for folder in folders for p in folder.rglob("*.py"))


def test_first_party_plugins_send_only_through_the_sender() -> None:
    sources = _plugin_sources()
    assert len(sources) > 10
    problems = []
    for path in sources:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        where = path.relative_to(ROOT)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and "default_plugins.http" in (node.module)
            ):
                names = {alias.name for alias in node.names}
                if "send" in names:
                    problems.append(f"{where}:{node.lineno} imports the raw send")
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name in ("ClientSession", "TCPConnector"):
                    problems.append(f"{where}:{node.lineno} opens a session of its own")
            if isinstance(node, ast.Attribute):
                if node.attr == "session" and isinstance(node.value, ast.Name):
                    if node.value.id == "dispatcher":
                        problems.append(f"{where}:{node.lineno} uses the dispatcher's session")
                if (
                    node.attr in _FORBIDDEN_CALLS
                    and isinstance(node.value, ast.Name)
                    and node.value.id == "session"
                ):
                    problems.append(f"{where}:{node.lineno} calls session.{node.attr}")
    assert problems == []
