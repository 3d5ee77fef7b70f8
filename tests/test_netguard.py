"""The address guard (`block_private_addresses=True`): refused at connect time, finally, and
only loopback is ever contacted (names that "resolve" elsewhere come from a fake resolver)."""

from __future__ import annotations

import socket
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from empathy_webhooks_core import CustomWebhook, DeliveryError, WebhookDispatcher
from empathy_webhooks_core._netguard import (
    BlockedAddressError,
    GuardedConnector,
    address_refusal,
    guarded_connector,
)
from empathy_webhooks_core.testing import Receiver

from .conftest import FAST


class FakeResolver(AbstractResolver):
    """Answers from a table, so a test can make a name "resolve" anywhere without DNS."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for address in self.table[host]
        ]

    async def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback address"),
        ("127.8.9.10", "loopback address"),
        ("::1", "loopback address"),
        ("10.0.0.1", "private address"),
        ("172.16.5.4", "private address"),
        ("192.168.1.1", "private address"),
        ("100.64.0.1", "private address"),
        ("fd12:3456::1", "private address"),
        ("169.254.169.254", "cloud metadata address"),
        ("fd00:ec2::254", "cloud metadata address"),
        ("100.100.100.200", "cloud metadata address"),
        ("169.254.1.1", "link-local address"),
        ("fe80::1%eth0", "link-local address"),
        ("0.0.0.0", "unspecified address"),
        ("::", "unspecified address"),
        ("224.0.0.251", "multicast address"),
        ("240.0.0.1", "reserved (non-public) address"),
        ("::ffff:127.0.0.1", "loopback address (inside an IPv6 address)"),
        ("::ffff:169.254.169.254", "cloud metadata address (inside an IPv6 address)"),
        ("64:ff9b::a00:1", "private address (inside an IPv6 address)"),
        ("2002:a00:1::", "private address (inside an IPv6 address)"),
        ("not-an-ip", "not an IP address"),
    ],
)
def test_non_public_addresses_are_refused(address: str, reason: str) -> None:
    assert address_refusal(address) == reason


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"]
)
def test_public_addresses_pass(address: str) -> None:
    assert address_refusal(address) is None


def guarded(url: str, **options: Any) -> CustomWebhook:
    return CustomWebhook(
        name="guarded",
        url=url,
        block_private_addresses=True,
        retry_policy={**FAST, "max_retries": 3},
        **options,
    )


async def deliver(webhook: CustomWebhook, **dispatcher_options: Any) -> tuple[Any, list[Any]]:
    errors: list[DeliveryError] = []
    webhook = attrs.evolve(webhook, on_failure=lambda w, e, err: errors.append(err))
    async with WebhookDispatcher(webhooks=[webhook], **dispatcher_options) as dispatcher:
        await dispatcher.emit("alert", {"message": "x"})
        await dispatcher.drain()
        dead = await dispatcher.dead_letters()
    return errors, dead


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_guard_on_refuses_a_real_loopback_receiver_finally(
    receiver: Receiver, host: str
) -> None:
    url = receiver.url("/hook").replace("127.0.0.1", host)
    errors, dead = await deliver(guarded(url))
    assert receiver.requests == []
    [error] = errors
    assert error.attempts == 1, "a refused address must not be retried"
    assert error.status is None
    assert "refused to connect to" in str(error) and "loopback address" in str(error)
    assert "block_private_addresses=True" in str(error)
    assert isinstance(error.last_exception, BlockedAddressError)
    [letter] = dead
    assert "BlockedAddressError" in str(letter.error)


async def test_guard_off_delivers_to_the_same_receiver(receiver: Receiver) -> None:
    errors, dead = await deliver(
        CustomWebhook(name="open", url=receiver.url("/hook"), retry_policy=FAST)
    )
    assert (errors, dead, len(receiver.requests)) == ([], [], 1)


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:9/hook",
        "http://[fd00:ec2::254]/",
        "http://0.0.0.0:9/",
    ],
)
async def test_guard_on_refuses_ip_literals_before_connecting(url: str) -> None:
    # Refused before any socket is opened: the address is never contacted.
    errors, dead = await deliver(guarded(url))
    [error] = errors
    assert error.attempts == 1 and "refused to connect to" in str(error)
    assert len(dead) == 1


async def test_a_name_resolving_to_a_private_address_is_refused() -> None:
    resolver = FakeResolver(
        {
            "internal.example": ["10.0.0.1"],
            "metadata.example": ["169.254.169.254"],
            "mixed.example": ["93.184.216.34", "127.0.0.1"],
            "v6.example": ["::1"],
        }
    )
    async with aiohttp.ClientSession(connector=guarded_connector(resolver=resolver)) as session:
        for name, address in [
            ("internal.example", "10.0.0.1"),
            ("metadata.example", "169.254.169.254"),
            ("mixed.example", "127.0.0.1"),
            ("v6.example", "::1"),
        ]:
            with pytest.raises(BlockedAddressError, match=rf"{name} \({address}\)"):
                await session.get(f"http://{name}/hook")
    assert set(resolver.asked) == {
        "internal.example",
        "metadata.example",
        "mixed.example",
        "v6.example",
    }


async def test_a_name_that_resolves_to_loopback_delivers_only_with_the_guard_off(
    receiver: Receiver,
) -> None:
    port = receiver.url("/").split(":")[2].split("/")[0]
    url = f"http://service.example:{port}/hook"
    table = {"service.example": ["127.0.0.1"]}
    # Guard on: the connector the dispatcher uses for guarded webhooks, with the fake lookup.
    async with aiohttp.ClientSession(
        connector=guarded_connector(resolver=FakeResolver(table))
    ) as session:
        errors, dead = await deliver(
            CustomWebhook(name="named", url=url, retry_policy=FAST), session=session
        )
    assert receiver.requests == []
    [error] = errors
    assert error.attempts == 1
    assert "service.example (127.0.0.1): loopback address" in str(error)
    # Guard off: the same name, the same receiver, delivered.
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(resolver=FakeResolver(table))
    ) as session:
        errors, dead = await deliver(
            CustomWebhook(name="named", url=url, retry_policy=FAST), session=session
        )
    assert (errors, dead, len(receiver.requests)) == ([], [], 1)


async def test_a_cached_answer_is_checked_too() -> None:
    # The DNS cache hands out earlier answers without asking the resolver; the connector
    # still checks each one.
    resolver = FakeResolver({"cached.example": ["10.1.2.3"]})
    connector = GuardedConnector(resolver=resolver, use_dns_cache=True, ttl_dns_cache=300)
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(2):
            with pytest.raises(BlockedAddressError):
                await session.get("http://cached.example/")


async def test_guard_on_ipv6_loopback_receiver_when_available() -> None:
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    async with Receiver(host="::1") as receiver:
        url = f"http://[::1]:{receiver.port}/hook"
        errors, _ = await deliver(guarded(url))
        assert receiver.requests == [] and "loopback address" in str(errors[0])
        errors, _ = await deliver(CustomWebhook(name="open6", url=url, retry_policy=FAST))
        assert errors == [] and len(receiver.requests) == 1


# -- the rest of safe transport: TLS verified, redirects not followed, payload size bounded ---


async def test_tls_certificates_are_verified_by_default() -> None:
    import ssl

    import trustme
    from aiohttp import web

    ca = trustme.CA()  # a CA nobody trusts: the server's certificate must be refused
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    hits: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        errors, dead = await deliver(
            CustomWebhook(
                name="tls",
                url=f"https://127.0.0.1:{port}/hook",
                retry_policy={**FAST, "max_retries": 0},
            )
        )
    finally:
        await runner.cleanup()
    assert hits == [] and len(dead) == 1
    assert "certificate" in str(errors[0]).lower()


async def test_redirects_are_not_followed(receiver: Receiver) -> None:
    from empathy_webhooks_core.testing import Reply

    receiver.queue(Reply(status=307, headers={"Location": receiver.url("/elsewhere")}))
    errors, dead = await deliver(CustomWebhook(name="moved", url=receiver.url(), retry_policy=FAST))
    assert [r.path for r in receiver.requests] == ["/hook"]
    assert "redirect not followed (307)" in str(errors[0]) and len(dead) == 1


async def test_an_oversize_payload_is_refused_kept_as_a_dead_letter_and_never_sent(
    receiver: Receiver,
) -> None:
    webhook = CustomWebhook(
        name="big", url=receiver.url(), max_payload_bytes=1024, retry_policy=FAST
    )
    errors: list[DeliveryError] = []
    webhook = attrs.evolve(webhook, on_failure=lambda w, e, err: errors.append(err))
    async with WebhookDispatcher(webhooks=[webhook]) as dispatcher:
        event = await dispatcher.emit("alert", {"message": "x" * 2000})
        await dispatcher.drain()
        [letter] = await dispatcher.dead_letters()
    assert receiver.requests == []
    [error] = errors
    assert error.attempts == 1
    assert "over this webhook's max_payload_bytes (1024); not sent" in str(error)
    assert letter.event.event_id == event.event_id
    assert "max_payload_bytes" in letter.error["reason"]
    assert CustomWebhook(url="https://example.com/h").max_payload_bytes == 512 * 1024
