"""`Idempotency-Key`: the same key within the configured time (24 h by default) gets the
first answer again and queues nothing new.

The keys live in the delivery store's key-value memory (`HasKeyValue`: a table in SQLite, a
key with a TTL in Redis), under the namespace `gateway:idempotency:`, so a retry finds the
first answer after a gateway restart, or on another gateway on the same Redis. A key is
claimed atomically before the events are queued (of two requests racing with one key, one
proceeds and the other is told to retry: 409), the answer is kept once they are queued, and
a failed request releases its key so it can be retried. A claim whose gateway died before
answering lapses after `CLAIM_SECONDS`.

Keys are per token (two callers cannot collide, nor read each other's answers) and per
route; a key reused with another body is refused (422), as the IETF draft
(draft-ietf-httpapi-idempotency-key-header) says.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

import attrs

from .._log import get_logger
from ..stores import HasKeyValue, KeyValue
from ..stores.memory import InProcessKeyValue
from .problems import Problem

__all__ = ["CLAIM_SECONDS", "Idempotency", "Replay"]

log = get_logger()

#: How long a claimed key waits for its answer before another request may take it.
CLAIM_SECONDS = 60.0
NAMESPACE = "gateway:idempotency:"
_KEY = re.compile(r"[\x21-\x7e]{1,255}")
#: The headers of a first answer its replays repeat: what tells a caller what to do next.
KEPT_HEADERS = ("Retry-After",)


@attrs.frozen
class Replay:
    """The first answer to a request with this key."""

    status: int
    body: dict[str, Any]
    #: The first answer's headers a replay repeats (`KEPT_HEADERS`).
    headers: dict[str, str] = attrs.field(factory=dict)


class Idempotency:
    def __init__(self, store: Any, ttl_seconds: float) -> None:
        if isinstance(store, HasKeyValue):
            self._keys: KeyValue = store.key_value(NAMESPACE)
        else:
            # A store without a key-value memory (a third-party one): this process only.
            log.warning(
                "idempotency_keys_in_memory",
                store=type(store).__name__,
                reason="the store keeps no keys; they hold until this gateway stops",
            )
            self._keys = InProcessKeyValue(NAMESPACE)
        self.ttl_seconds = ttl_seconds

    @staticmethod
    def check_key(key: str) -> None:
        if not _KEY.fullmatch(key):
            raise Problem(
                422,
                "/problems/invalid-body",
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
                errors=[{"path": "header:Idempotency-Key", "message": "invalid"}],
            )

    @staticmethod
    def _name(token: str, route: str, key: str) -> str:
        return f"{token}:{route}:{key}"

    async def begin(self, token: str, route: str, key: str, body: bytes) -> Replay | None:
        """Claim `key`: None when this request goes ahead (then `finish` or `release` it),
        or the first request's answer. Raises 409 while that request is under way and 422
        when the key came with another body."""
        self.check_key(key)
        fingerprint = hashlib.sha256(body).hexdigest()
        claim = json.dumps({"fingerprint": fingerprint})
        name = self._name(token, route, key)
        for _ in range(3):
            if await self._keys.add(name, claim, CLAIM_SECONDS):
                return None
            held = await self._keys.get(name)
            if held is not None:
                break
            # It expired between the two calls: claim it again.
        else:
            raise Problem(
                409,
                "/problems/idempotency-key-in-use",
                "this Idempotency-Key is being claimed by other requests; retry in a moment",
                headers={"Retry-After": "1"},
            )
        try:
            first = json.loads(held)
        except ValueError:
            first = {}
        if first.get("fingerprint") != fingerprint:
            raise Problem(
                422,
                "/problems/idempotency-key-reused",
                "this Idempotency-Key came with another request body; use a new key",
            )
        if "status" not in first:
            raise Problem(
                409,
                "/problems/idempotency-key-in-use",
                "a request with this Idempotency-Key is under way; retry in a moment",
                headers={"Retry-After": "1"},
            )
        kept = first.get("headers")
        headers = (
            {name: str(kept[name]) for name in KEPT_HEADERS if name in kept}
            if isinstance(kept, dict)
            else {}
        )
        return Replay(int(first["status"]), dict(first["body"]), headers)

    async def finish(
        self,
        token: str,
        route: str,
        key: str,
        body: bytes,
        status: int,
        answer: dict[str, Any],
        headers: Mapping[str, str] | None = None,
    ) -> None:
        first: dict[str, Any] = {
            "fingerprint": hashlib.sha256(body).hexdigest(),
            "status": status,
            "body": answer,
        }
        kept = {name: headers[name] for name in KEPT_HEADERS if headers and name in headers}
        if kept:
            first["headers"] = kept
        value = json.dumps(first, separators=(",", ":"))
        await self._keys.set(self._name(token, route, key), value, self.ttl_seconds)

    async def release(self, token: str, route: str, key: str) -> None:
        try:
            await self._keys.delete(self._name(token, route, key))
        except Exception as exc:  # the claim lapses by itself; say why it lingers
            log.warning("idempotency_release_failed", error=f"{type(exc).__name__}: {exc}")
