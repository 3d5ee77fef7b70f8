"""The dispatcher's own HTTP sessions keep no cookies: a receiver's `Set-Cookie` is never sent
back, to it or to another webhook on the same host (a webhook sender has no session with a
receiver, and one receiver's cookie is none of another's business)."""

from __future__ import annotations

import aiohttp

from empathy_webhooks_core import CustomWebhook, WebhookDispatcher
from empathy_webhooks_core.testing import Receiver, Reply


def _by_name(url: str) -> str:
    return url.replace("127.0.0.1", "localhost")


async def test_a_receivers_cookie_is_never_sent_back(receiver: Receiver) -> None:
    receiver.queue(Reply(status=200, headers={"Set-Cookie": "session=abc123; Path=/"}))
    # By host name: aiohttp's default jar keeps no cookie for an IP address anyway.
    first = CustomWebhook(name="first", url=_by_name(receiver.url("/first")))
    second = CustomWebhook(name="second", url=_by_name(receiver.url("/second")))
    async with WebhookDispatcher(webhooks=[first, second]) as dispatcher:
        await dispatcher.emit("alert", {"n": 1})
        await dispatcher.drain(timeout=10)
        await dispatcher.emit("alert", {"n": 2})
        await dispatcher.drain(timeout=10)
    assert len(receiver.requests) == 4
    assert all(request.header("cookie") is None for request in receiver.requests)


async def test_a_session_given_keeps_its_own_jar(receiver: Receiver) -> None:
    # The user's session is the user's: its jar (and what it replays) is left as it is.
    receiver.queue(Reply(status=200, headers={"Set-Cookie": "session=abc123; Path=/"}))
    hook = CustomWebhook(name="hook", url=receiver.url("/hook"))
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        async with WebhookDispatcher(webhooks=[hook], session=session) as dispatcher:
            await dispatcher.emit("alert", {"n": 1})
            await dispatcher.drain(timeout=10)
            await dispatcher.emit("alert", {"n": 2})
            await dispatcher.drain(timeout=10)
    assert [request.header("cookie") for request in receiver.requests] == [None, "session=abc123"]
