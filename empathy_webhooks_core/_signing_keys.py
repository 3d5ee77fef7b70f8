"""The key a signing secret stands for: needed both where a webhook's secret is checked
(`webhooks`, when it is built) and where requests are signed (`signing`), so it sits below
both and imports nothing of the package."""

from __future__ import annotations

import base64
import binascii

__all__ = ["standard_key"]


def standard_key(secret: str) -> bytes:
    """Standard Webhooks: a `whsec_` secret is base64 (padding optional); any other is UTF-8.

    Decoding is as lenient as the reference Python library's (`base64.b64decode`), so both
    sides derive the same key from the same string. Raises `ValueError` (without the secret)
    when a `whsec_` secret is not base64 at all."""
    if secret.startswith("whsec_"):
        encoded = secret.removeprefix("whsec_")
        try:
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4))
        except (binascii.Error, ValueError):
            key = b""
        if not key:
            raise ValueError("a signing secret starting with 'whsec_' must be base64 after it")
        return key
    return secret.encode("utf-8")
