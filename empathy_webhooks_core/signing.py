"""Signing outgoing requests: `X-Signature` (the reference's scheme) and Standard Webhooks."""

from __future__ import annotations

import base64
import hashlib
import hmac

from .webhooks import Webhook
from .wire import OutgoingRequest

__all__ = ["sign_request", "standard_signature", "x_signature"]

X_SIGNATURE = "X-Signature"


def x_signature(body: bytes, secret: str) -> str:
    """Hex HMAC-SHA256 of the exact body, keyed with the secret's UTF-8 bytes (the reference)."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def standard_key(secret: str) -> bytes:
    """Standard Webhooks: a `whsec_` secret is base64 (padding optional); any other is UTF-8."""
    if secret.startswith("whsec_"):
        encoded = secret.removeprefix("whsec_")
        return base64.b64decode(encoded + "=" * (-len(encoded) % 4))
    return secret.encode("utf-8")


def standard_signature(msg_id: str, timestamp: int, body: bytes, secret: str) -> str:
    """`v1,<base64>` over `id.timestamp.body`, as the Standard Webhooks spec defines."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(standard_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def sign_request(
    webhook: Webhook, request: OutgoingRequest, *, event_id: str, timestamp: int
) -> OutgoingRequest:
    """The request with this attempt's signature headers, or unchanged if the webhook does not
    sign. Several secrets (rotation) give several signatures."""
    if not webhook.signs:
        return request
    headers: dict[str, str] = {}
    scheme = webhook.signature_scheme
    if scheme in ("both", "x-signature"):
        headers[X_SIGNATURE] = ",".join(
            x_signature(request.body, s) for s in webhook.signing_secret
        )
    if scheme in ("both", "standard-webhooks"):
        headers["webhook-id"] = event_id
        headers["webhook-timestamp"] = str(timestamp)
        headers["webhook-signature"] = " ".join(
            standard_signature(event_id, timestamp, request.body, s) for s in webhook.signing_secret
        )
    return request.with_headers(headers)
