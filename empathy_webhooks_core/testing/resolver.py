"""A resolver that sends a service's real host name to a loopback receiver.

A test (or a plugin author's) that keeps a vendor URL exactly as a user writes it
(`https://hooks.slack.com/services/...`) gives the dispatcher a session whose connector uses
`LoopbackResolver`: the named hosts resolve to 127.0.0.1 and to the receiver's port, whatever
port the URL implies, so nothing ever leaves the machine. Any other name is refused, never
looked up. With an https receiver, trust its certificate authority in the client's context.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping

from aiohttp.abc import AbstractResolver, ResolveResult

from .receiver import Receiver

__all__ = ["LoopbackResolver"]


class LoopbackResolver(AbstractResolver):
    """Resolves each host of `hosts` to its loopback receiver; refuses every other name.

    `asked` lists the names looked up, in order."""

    def __init__(self, hosts: Mapping[str, Receiver]) -> None:
        self.hosts = {name.lower(): receiver for name, receiver in hosts.items()}
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        receiver = self.hosts.get(host.lower())
        if receiver is None or receiver.port is None:
            # An OSError, as a failed DNS lookup is: the test sees a transport failure.
            raise OSError(f"{host}: not a name this test maps to loopback")
        return [
            {
                "hostname": host,
                "host": receiver.host,
                "port": receiver.port,
                "family": socket.AF_INET6 if ":" in receiver.host else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        pass
