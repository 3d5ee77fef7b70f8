"""An opt-in guard for hosts that accept webhook URLs from their own users (SSRF).

`Webhook(block_private_addresses=True)` sends through a session whose connector refuses, at
connect time, any address that is loopback, private, link-local, shared (CGNAT), reserved,
multicast or a cloud metadata address. The check runs on the addresses the connection will
actually use, after DNS resolution, so a public-looking name that resolves to 127.0.0.1 (or
re-resolves to it later: DNS rebinding) is refused too; IP-literal URLs, which aiohttp never
sends to a resolver, are checked the same way. If any resolved address is refused, the whole
host is refused: one public address among private ones is a classic trick.

A refusal raises `BlockedAddressError`, which is deliberately neither an `OSError` nor an
aiohttp `ClientError`: the delivery pipeline treats those as transient and retries, whereas a
refused address will be refused again, so the delivery fails finally (and is kept as a dead
letter) on the first attempt.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Sequence
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

__all__ = [
    "BlockedAddressError",
    "GuardedConnector",
    "GuardedResolver",
    "address_refusal",
    "guarded_connector",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Cloud metadata endpoints, named in the refusal so the reason is obvious.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean...
        "169.254.170.2",  # AWS ECS task metadata
        "fd00:ec2::254",  # AWS IPv6 metadata
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud
    )
)
#: Ranges refused even where `is_global` says otherwise on some Python versions.
_ALWAYS_REFUSED = tuple(
    ipaddress.ip_network(n)
    for n in ("100.64.0.0/10", "169.254.0.0/16", "fe80::/10", "fc00::/7", "0.0.0.0/8")
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class BlockedAddressError(Exception):
    """A connection refused by the address guard: the host is, or resolves to, an address
    that is not public. Final: retrying would be refused again."""


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, NAT64), which is what is reached."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_refusal(address: str | IPAddress) -> str | None:
    """Why `address` may not be connected to under the guard, or None if it is public.

    >>> address_refusal("10.0.0.1")
    'private address'
    >>> address_refusal("93.184.216.34") is None
    True
    """
    try:
        ip = ipaddress.ip_address(str(address).split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            reason = address_refusal(inner)
            return f"{reason} (inside an IPv6 address)" if reason else None
    if ip in METADATA_ADDRESSES:
        return "cloud metadata address"
    if ip.is_loopback:
        return "loopback address"
    if ip.is_unspecified:
        return "unspecified address"
    if ip.is_link_local:
        return "link-local address"
    if ip.is_multicast:
        return "multicast address"
    if ip.is_reserved:
        return "reserved (non-public) address"
    if ip.is_private or any(ip in net for net in _ALWAYS_REFUSED if ip.version == net.version):
        return "private address"
    if not ip.is_global:
        return "reserved (non-public) address"
    return None


def _check(host: str, addresses: Iterable[str]) -> None:
    for address in addresses:
        reason = address_refusal(address)
        if reason is not None:
            shown = host if host == address else f"{host} ({address})"
            raise BlockedAddressError(
                f"refused to connect to {shown}: {reason}; this webhook has "
                "block_private_addresses=True, which allows public addresses only"
            )


class GuardedResolver(AbstractResolver):
    """Wraps a resolver (aiohttp's default unless given) and refuses any answer holding a
    non-public address. Used by `GuardedConnector`; also useful with a connector of your own,
    though only the connector sees IP-literal URLs."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner if inner is not None else aiohttp.DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        _check(host, (result["host"] for result in results))
        return results

    async def close(self) -> None:
        await self._inner.close()


class GuardedConnector(aiohttp.TCPConnector):
    """A `TCPConnector` that checks every address it is about to connect to.

    aiohttp resolves every host, literal or not, through `_resolve_host` (and its DNS cache),
    and connects only to what that returns, so checking its result covers IP literals, cached
    answers and fresh lookups alike, with no window between check and connect.
    """

    def __init__(self, *, resolver: AbstractResolver | None = None, **kwargs: Any) -> None:
        guarded = resolver if isinstance(resolver, GuardedResolver) else GuardedResolver(resolver)
        super().__init__(resolver=guarded, **kwargs)

    async def _resolve_host(
        self, host: str, port: int, traces: Sequence[Any] | None = None
    ) -> list[ResolveResult]:
        results = await super()._resolve_host(host, port, traces=traces)
        _check(host, (result["host"] for result in results))
        return results


def guarded_connector(
    limit: int = 100, *, resolver: AbstractResolver | None = None
) -> aiohttp.TCPConnector:
    """A connector that refuses non-public addresses (see the module's text). `resolver`
    replaces aiohttp's default lookup (it is wrapped, never trusted)."""
    return GuardedConnector(limit=limit, resolver=resolver)
