"""Signing outgoing requests, and verifying them on the receiving side.

Two schemes, both on by default (`signature_scheme="both"`):

* `X-Signature` (the reference's): the hex HMAC-SHA256 of the exact body bytes, keyed with the
  secret string's UTF-8 bytes as written. With several secrets (rotation) the header holds one
  signature per secret, comma-separated: ``X-Signature: <hex>,<hex>``.
* Standard Webhooks: ``webhook-id`` (the event id, the same on every retry),
  ``webhook-timestamp`` (Unix seconds of this attempt) and ``webhook-signature: v1,<base64>``
  over ``id.timestamp.body``; several secrets give several space-separated entries. A
  ``whsec_`` secret is base64 (padding optional); any other secret's UTF-8 bytes are the key.

The verifiers never raise on bad input: a missing, empty or malformed header is simply not a
valid signature. Comparisons are constant-time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import time
from collections.abc import Iterable, Mapping
from typing import Any

from ._signing_keys import standard_key
from .webhooks import Webhook
from .wire import OutgoingRequest, with_added_headers

try:
    # What `hmac.digest` calls when OpenSSL is there, without its Python frame (one or two
    # signatures an attempt); the same bytes.
    from _hashlib import hmac_digest as _hmac_digest
except ImportError:  # pragma: no cover - a Python built without OpenSSL
    _hmac_digest = hmac.digest  # type: ignore[assignment]

__all__ = [
    "DEFAULT_TOLERANCE_SECONDS",
    "X_SIGNATURE",
    "WebhookVerificationError",
    "sign_request",
    "standard_key",
    "standard_signature",
    "verify_request",
    "verify_standard_webhook",
    "verify_standard_webhook_strict",
    "verify_webhook_signature",
    "x_signature",
]

X_SIGNATURE = "X-Signature"
#: Standard Webhooks: signatures older or newer than this are refused (replay protection).
DEFAULT_TOLERANCE_SECONDS = 300
#: A header offering more signatures than this is not a rotation, it is an attack on our CPU.
MAX_SIGNATURES = 16
_HEX = frozenset("0123456789abcdefABCDEF")


class WebhookVerificationError(ValueError):
    """A Standard Webhooks request that does not verify. The message says which check failed
    (missing header, stale timestamp, no matching signature), never a secret or signature."""


def x_signature(body: bytes, secret: str) -> str:
    """Hex HMAC-SHA256 of the exact body, keyed with the secret's UTF-8 bytes (the reference)."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def standard_signature(msg_id: str, timestamp: int, body: bytes, secret: str) -> str:
    """`v1,<base64>` over `id.timestamp.body`, as the Standard Webhooks spec defines."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(standard_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


#: HMAC keys by secret, derived once (a `whsec_` secret is base64-decoded): signing is on the
#: path of every attempt. Bounded, as secrets rotate.
_KEYS_LIMIT = 1024
_x_keys: dict[str, bytes] = {}
_standard_keys: dict[str, bytes] = {}


def _key(cache: dict[str, bytes], secret: str, derive: Any) -> bytes:
    key = cache.get(secret)
    if key is None:
        key = derive(secret)  # may raise (a bad `whsec_` secret): nothing is cached then
        if len(cache) >= _KEYS_LIMIT:
            cache.clear()
        cache[secret] = key
    return key  # type: ignore[no-any-return]


def _utf8(secret: str) -> bytes:
    return secret.encode("utf-8")


def sign_request(
    webhook: Webhook, request: OutgoingRequest, *, event_id: str, timestamp: int
) -> OutgoingRequest:
    """The request with this attempt's signature headers, or unchanged if the webhook does not
    sign. Several secrets (rotation) give several signatures.

    The same bytes as `x_signature` and `standard_signature`, computed with one C call per
    signature (no HMAC object) over keys derived once per secret."""
    if not webhook.signs:
        return request
    return signed_request(webhook, request, event_id, timestamp)


def signed_request(
    webhook: Webhook, request: OutgoingRequest, event_id: str, timestamp: int
) -> OutgoingRequest:
    """`sign_request` for a webhook known to sign (the caller checked `webhook.signs`)."""
    headers: dict[str, str] = {}
    body = request.body
    secrets = webhook.signing_secret
    scheme = webhook.signature_scheme
    # One secret (most webhooks): no generator and join per signature.
    if scheme in ("both", "x-signature"):
        if len(secrets) == 1:
            key = _x_keys.get(secrets[0]) or _key(_x_keys, secrets[0], _utf8)
            headers[X_SIGNATURE] = _hmac_digest(key, body, "sha256").hex()
        else:
            headers[X_SIGNATURE] = ",".join(
                _hmac_digest(_key(_x_keys, s, _utf8), body, "sha256").hex() for s in secrets
            )
    if scheme in ("both", "standard-webhooks"):
        signed = f"{event_id}.{timestamp}.".encode() + body
        headers["webhook-id"] = event_id
        headers["webhook-timestamp"] = str(timestamp)
        if len(secrets) == 1:
            key = _standard_keys.get(secrets[0]) or _key(_standard_keys, secrets[0], standard_key)
            headers["webhook-signature"] = "v1," + _b64(_hmac_digest(key, signed, "sha256"))
        else:
            headers["webhook-signature"] = " ".join(
                "v1," + _b64(_hmac_digest(_key(_standard_keys, s, standard_key), signed, "sha256"))
                for s in secrets
            )
    return _with_signatures(request, headers)


def _b64(digest: bytes) -> str:
    # `base64.b64encode(digest).decode()` without the module's Python frame.
    return binascii.b2a_base64(digest, newline=False).decode("ascii")


#: Whether a request's header names (as a tuple, in order) include one the signatures set,
#: whatever its case: asked per attempt, the same answer for every request of a webhook.
_collides: dict[tuple[str, ...], bool] = {}
_SIGNATURE_NAMES = frozenset(
    {X_SIGNATURE.lower(), "webhook-id", "webhook-timestamp", "webhook-signature"}
)


def _with_signatures(request: OutgoingRequest, signatures: dict[str, str]) -> OutgoingRequest:
    """`request.with_headers(signatures)`, without its per-call lower-casing and `evolve`
    when no header of the request has a signature's name (the case of nearly every one)."""
    names = tuple(request.headers)
    collides = _collides.get(names)
    if collides is None:
        if len(_collides) >= _KEYS_LIMIT:
            _collides.clear()
        collides = _collides[names] = any(name.lower() in _SIGNATURE_NAMES for name in names)
    if collides or type(request) is not OutgoingRequest:
        return request.with_headers(signatures)
    return with_added_headers(request, {**request.headers, **signatures})


# -- receiving --------------------------------------------------------------------------------


def _as_bytes(payload: Any) -> bytes | None:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, bytearray | memoryview):
        return bytes(payload)
    if isinstance(payload, str):
        # The reference's receiver called .encode() on the body; a str is only right if it
        # is the body's exact text, which for JSON sent as UTF-8 it is.
        return payload.encode("utf-8")
    return None


def _secret_list(secret: Any) -> list[str]:
    """One secret or several (a receiver mid-rotation); empty, blank and non-string ones
    dropped."""
    if isinstance(secret, bytes | bytearray):
        secret = bytes(secret).decode("utf-8", errors="strict")
    if isinstance(secret, str):
        secret = [secret]
    if not isinstance(secret, Iterable):
        return []
    found: list[str] = []
    for item in secret:
        if isinstance(item, bytes | bytearray):
            item = bytes(item).decode("utf-8", errors="strict")
        # Blank (only whitespace) is an unset variable padded by a template or a shell, not
        # a secret: anyone can compute its signatures.
        if isinstance(item, str) and item.strip():
            found.append(item)
    return found


def verify_webhook_signature(payload: bytes | str, signature: str | None, secret: Any) -> bool:
    """Whether `signature` (an `X-Signature` header value) is the body's HMAC under `secret`.

    `payload` is the raw body (`bytes`, or its exact `str`); `signature` may hold several
    comma-separated hex signatures (the sender's secret rotation) and is accepted if any one
    matches; `secret` may be one string or several (the receiver's rotation). Returns False,
    never raises, for a missing, empty or malformed signature or secret.
    """
    try:
        body = _as_bytes(payload)
        if isinstance(signature, bytes | bytearray):
            signature = bytes(signature).decode("ascii")
        if body is None or not isinstance(signature, str):
            return False
        offered = [part.strip().lower() for part in signature.split(",")]
        offered = [part for part in offered if len(part) == 64 and set(part) <= _HEX]
        secrets = _secret_list(secret)
        if not offered or not secrets or len(offered) > MAX_SIGNATURES:
            return False
        matched = False
        for key in secrets:
            expected = x_signature(body, key).encode("ascii")
            for candidate in offered:
                # No early exit: the time taken does not say which entry matched.
                matched |= hmac.compare_digest(expected, candidate.encode("ascii"))
        return matched
    except Exception:
        return False


def _header(headers: Any, name: str) -> str | None:
    """Case-insensitive lookup that works for plain dicts, aiohttp and Starlette headers."""
    try:
        value = headers.get(name)
        if value is None and isinstance(headers, Mapping):
            lowered = name.lower()
            value = next((v for k, v in headers.items() if str(k).lower() == lowered), None)
    except Exception:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return value if isinstance(value, str) else None


def _check_standard(
    body: Any, headers: Any, secret: Any, tolerance: float, now: float | None
) -> None:
    """Raises `WebhookVerificationError` saying which check failed; returns if valid."""
    raw = _as_bytes(body)
    if raw is None:
        raise WebhookVerificationError("the body must be bytes or str")
    msg_id = _header(headers, "webhook-id")
    stamp = _header(headers, "webhook-timestamp")
    header = _header(headers, "webhook-signature")
    if not msg_id or not stamp or not header:
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature")
    stamp = stamp.strip()
    if not (stamp.isascii() and stamp.isdigit()) or len(stamp) > 12:
        raise WebhookVerificationError("webhook-timestamp is not a Unix time in seconds")
    timestamp = int(stamp)
    current = time.time() if now is None else now
    # NaN compares false both ways and infinity admits any age: either would turn replay
    # protection off without a word, so it is the caller's mistake, said as one.
    if not (math.isfinite(current) and math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError("tolerance must be a finite number of seconds, 0 or more, and now finite")
    if timestamp < current - tolerance:
        raise WebhookVerificationError("webhook-timestamp is too old")
    if timestamp > current + tolerance:
        raise WebhookVerificationError("webhook-timestamp is in the future")
    entries = header.split()
    if len(entries) > MAX_SIGNATURES:
        raise WebhookVerificationError("too many signatures")
    offered: list[bytes] = []
    for entry in entries:
        version, sep, encoded = entry.partition(",")
        if version != "v1" or not sep:
            continue  # other versions (v1a, future ones) are not ours to check
        try:
            offered.append(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            continue
    if not offered:
        raise WebhookVerificationError("no v1 signature in webhook-signature")
    keys: list[bytes] = []
    for item in _secret_list(secret):
        try:
            keys.append(standard_key(item))
        except ValueError:
            continue
    if not keys:
        raise WebhookVerificationError("no usable secret to verify with")
    signed = f"{msg_id}.{stamp}.".encode() + raw
    matched = False
    for key in keys:
        expected = hmac.new(key, signed, hashlib.sha256).digest()
        for candidate in offered:
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise WebhookVerificationError("no matching signature")


def verify_standard_webhook_strict(
    body: bytes | str,
    headers: Mapping[str, str] | Any,
    secret: Any,
    *,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> None:
    """Like `verify_standard_webhook`, but raises `WebhookVerificationError` naming the
    failed check (for the receiver's own logs; do not send the reason back to the caller)."""
    try:
        _check_standard(body, headers, secret, tolerance, now)
    except WebhookVerificationError:
        raise
    except Exception as exc:  # malformed input of a kind we did not foresee
        raise WebhookVerificationError(f"malformed request ({type(exc).__name__})") from None


def verify_standard_webhook(
    body: bytes | str,
    headers: Mapping[str, str] | Any,
    secret: Any,
    *,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """Whether a request carries a valid Standard Webhooks signature.

    `headers` is any mapping (dict, aiohttp's or Starlette's headers; looked up
    case-insensitively). `secret` is one secret or several, `whsec_` (base64) or raw (UTF-8).
    Several space-separated signatures are accepted if any matches; entries of other versions
    are ignored. Timestamps more than `tolerance` seconds old or ahead are refused. Never
    raises.
    """
    try:
        _check_standard(body, headers, secret, tolerance, now)
    except Exception:
        return False
    return True


def verify_request(
    body: bytes | str,
    headers: Mapping[str, str] | Any,
    secret: Any,
    *,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
    require_timestamp: bool = True,
) -> bool:
    """Whether a request is signed by us.

    The Standard Webhooks headers must verify, with the timestamp tolerance: they are what
    protects against replay. `require_timestamp=False` also accepts a valid `X-Signature`
    alone, for a sender that signs only so (the reference's scheme): a request without a
    timestamp can be replayed forever, and by default every captured request could be, with
    its timestamp headers stripped (and the two schemes share a key, so a timestamped
    signature could be turned into an `X-Signature` of another body). Never raises."""
    if require_timestamp or _header(headers, "webhook-signature") is not None:
        return verify_standard_webhook(body, headers, secret, tolerance=tolerance, now=now)
    return verify_webhook_signature(body, _header(headers, X_SIGNATURE), secret)
