"""An opt-in guard for hosts that accept webhook URLs from their own users (SSRF).

`Webhook(block_private_addresses=True)` sends through a session whose connector refuses, at
connect time, any address that is loopback, private, link-local, reserved or a cloud metadata
address, so a DNS name that resolves to one is refused too.
"""

from __future__ import annotations

import aiohttp

__all__ = ["guarded_connector"]


def guarded_connector(limit: int = 100) -> aiohttp.TCPConnector:
    """A connector that refuses non-public addresses (placeholder until the guard lands)."""
    return aiohttp.TCPConnector(limit=limit)
