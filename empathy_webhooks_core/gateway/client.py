"""`GatewayClient`: emit to a gateway from Python with `WebhookDispatcher.emit`'s signature.

    async with GatewayClient("http://127.0.0.1:8787", token) as gateway:
        accepted = await gateway.emit("prediction", {"prediction": "..."}, empathy_level=4)

Each `emit` carries an `Idempotency-Key` made for it, so retrying it (on a connection error,
a 503 while a gateway restarts, a 429) never queues the event twice. The token is sent in
the `Authorization` header only, and never shown in a repr or an error.
"""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import Mapping
from typing import Any

import aiohttp
import attrs

from ..redaction import register_secrets

__all__ = ["Accepted", "GatewayClient", "GatewayError"]

_RETRY_STATUSES = frozenset({429, 502, 503, 504})


class GatewayError(Exception):
    """The gateway refused the request (or kept failing). `status` is its HTTP status (0 when
    it could not be reached) and `problem` its problem details (`errors` names each place)."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        self.status = status
        self.problem = dict(problem)
        detail = self.problem.get("detail") or self.problem.get("title") or "no detail"
        super().__init__(f"gateway answered {status}: {detail}" if status else str(detail))


@attrs.frozen
class Accepted:
    """What the gateway queued: the event's id, the webhooks it was routed to, those whose
    queue was full (`refused`), and whether this was the first answer replayed."""

    event_id: str
    webhooks: tuple[str, ...]
    refused: tuple[str, ...] = ()
    replayed: bool = False


class GatewayClient:
    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        session: aiohttp.ClientSession | None = None,
        retries: int = 5,
        timeout: float = 10.0,
        backoff: float = 0.2,
    ) -> None:
        self.url = url.rstrip("/")
        self._token = token
        if token:
            register_secrets([token])
        self._session = session
        self._own_session = session is None
        self.retries = retries
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.backoff = backoff

    def __repr__(self) -> str:
        return f"GatewayClient({self.url!r})"

    async def __aenter__(self) -> GatewayClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _headers(self, key: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        if key:
            headers["Idempotency-Key"] = key
        return headers

    async def emit(
        self,
        event_type: str,
        data: Mapping[str, Any] | None = None,
        *,
        user_id: str | None = None,
        empathy_level: int | None = None,
        severity: str | None = None,
        classification: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        ordering_key: str | None = None,
        idempotency_key: str | None = None,
    ) -> Accepted:
        """Queue one event on the gateway; returns once it is durably queued there.
        Raises `GatewayError` when the gateway refuses it (422 names each wrong field) or
        cannot be reached after `retries` attempts."""
        body: dict[str, Any] = {"event_type": event_type}
        optional = {
            "data": dict(data) if data is not None else None,
            "user_id": user_id,
            "empathy_level": empathy_level,
            "severity": severity,
            "classification": classification,
            "metadata": dict(metadata) if metadata is not None else None,
            "ordering_key": ordering_key,
        }
        body.update({key: value for key, value in optional.items() if value is not None})
        _, answer, replayed = await self.request(
            "POST", "/v1/events", body, idempotency_key or "emit-" + secrets.token_urlsafe(16)
        )
        return Accepted(
            event_id=answer["event_id"],
            webhooks=tuple(answer.get("webhooks", ())),
            refused=tuple(answer.get("refused", ())),
            replayed=replayed,
        )

    async def request(
        self, method: str, path: str, body: Any = None, idempotency_key: str | None = None
    ) -> tuple[int, Any, bool]:
        """One call to the API, retried on connection errors, 429 and 5xx-when-restarting
        (only when it is safe: a GET, or a call with an idempotency key). Returns the
        status, the decoded JSON and whether the answer was replayed."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        safe = method == "GET" or idempotency_key is not None
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self._session.request(
                    method,
                    self.url + path,
                    json=body,
                    headers=self._headers(idempotency_key),
                    timeout=self.timeout,
                ) as response:
                    status = response.status
                    try:
                        answer = await response.json(content_type=None)
                    except ValueError:
                        answer = {"detail": (await response.text())[:200]}
                    wait = _retry_after(response.headers.get("Retry-After"))
                    replayed = response.headers.get("Idempotent-Replayed") == "true"
            except (TimeoutError, aiohttp.ClientConnectionError) as exc:
                if not safe or attempt > self.retries:
                    raise GatewayError(
                        0, {"detail": f"cannot reach the gateway {self.url}: {exc!r}"}
                    ) from None
                await asyncio.sleep(self._delay(attempt))
                continue
            if status < 400:
                return status, answer, replayed
            retry = status in _RETRY_STATUSES or (status == 409 and idempotency_key)
            if retry and safe and attempt <= self.retries:
                await asyncio.sleep(wait if wait is not None else self._delay(attempt))
                continue
            raise GatewayError(status, answer if isinstance(answer, dict) else {})

    def _delay(self, attempt: int) -> float:
        return float(self.backoff * 2 ** (attempt - 1) * (0.5 + random.random()))


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return min(30.0, max(0.0, float(value)))
    except ValueError:
        return None
