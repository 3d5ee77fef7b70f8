"""Values that cross the hook boundary: the outgoing request, the answer, the verdict on it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Any

import attrs

from .redaction import (
    REDACTED,
    bounded,
    redact_headers,
    redact_text,
    redact_url,
    redacted_exception,
)

__all__ = [
    "DeliveryError",
    "DeliveryResult",
    "Outcome",
    "OutgoingRequest",
    "Response",
    "Verdict",
    "json_bytes",
    "json_text",
]

#: Header names whose values are credentials, kept for compatibility: the rule the core
#: applies is `redaction.SECRET_NAME` (these and any name containing `secret`, `token`,
#: `password`, `api-key`, `signature`, `cookie`, or ending in `-key`).
SENSITIVE_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "api-key",
        "dd-api-key",
        "dd-application-key",
        "x-signature",
        "webhook-signature",
        "cookie",
        "set-cookie",
        "x-auth-token",
        "private-token",
    }
)

#: How much of an answer any reason, excerpt or exception text built from it keeps.
BODY_EXCERPT_CHARS = 500

#: An `OutgoingRequest.extras` key: True when the URL's path is itself the credential. The
#: core sets it on every request of a webhook whose class says `secret_url = True`, so `repr`
#: and CLI output mask the path whatever the host; plugins need not set it themselves.
SECRET_URL = "secret_url"  # noqa: S105 - a key name, not a secret


#: Compact JSON text, UTF-8 as is, from one encoder made once: `json.dumps` with arguments
#: builds a new `JSONEncoder` per call, more than half the cost of encoding an envelope.
json_text = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def json_bytes(payload: Any) -> bytes:
    """Compact UTF-8 JSON: what every JSON target sends, so signatures cover exact bytes."""
    return json_text(payload).encode("utf-8")


#: Read-only and empty: shared by every value given none (most requests' `extras`).
_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _frozen_headers(value: Mapping[str, str] | None) -> Mapping[str, str]:
    return MappingProxyType(dict(value)) if value else _EMPTY


def masked_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers fit for a log line or a repr: values of secret-named headers (see
    `redaction.SECRET_NAME`) replaced by `***`, registered secrets masked in the others."""
    return redact_headers(headers)


def _request_repr(request: OutgoingRequest) -> str:
    url = redact_url(request.url, secret_path=bool(request.extras.get(SECRET_URL)))
    return redact_text(
        f"OutgoingRequest(method={request.method!r}, url={url!r}, "
        f"headers={masked_headers(request.headers)!r}, body=<{len(request.body)} bytes>)"
    )


@attrs.frozen(kw_only=True, repr=False)
class OutgoingRequest:
    """What a plugin's `format_payload` returns: one request, not yet signed or sent.

    `body` is the exact bytes that go on the wire (signatures are computed over them).
    `extras` carries what the owning plugin wants to read back in its own `deliver` or
    `classify_response` (for example a de-duplication fingerprint); it is never sent.
    """

    url: str
    method: str = "POST"
    headers: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_headers)
    body: bytes = b""
    extras: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_headers)

    __repr__ = _request_repr

    @classmethod
    def json(
        cls,
        url: str,
        payload: Any,
        *,
        method: str = "POST",
        headers: Mapping[str, str] | None = None,
        extras: Mapping[str, Any] | None = None,
    ) -> OutgoingRequest:
        """A JSON request: compact UTF-8 body and `Content-Type: application/json`."""
        merged = {"Content-Type": "application/json"}
        for key, value in (headers or {}).items():
            if key.lower() == "content-type":
                merged.pop("Content-Type", None)
            merged[key] = value
        return cls(
            url=url, method=method, headers=merged, body=json_bytes(payload), extras=extras or {}
        )

    def json_body(self) -> Any:
        """The body parsed as JSON (handy in tests and dry runs)."""
        return json.loads(self.body) if self.body else None

    def with_headers(self, extra: Mapping[str, str]) -> OutgoingRequest:
        """A copy with `extra` headers set (replacing same-named ones, case-insensitively)."""
        lowered = {key.lower() for key in extra}
        headers = {k: v for k, v in self.headers.items() if k.lower() not in lowered}
        headers.update(extra)
        return attrs.evolve(self, headers=headers)


def with_added_headers(request: OutgoingRequest, headers: dict[str, str]) -> OutgoingRequest:
    """A copy of a plain `OutgoingRequest` whose headers are `headers`, a dict made for it and
    handed over (no one else keeps it): frozen as the class's converter would, without copying
    it again. For the core's signing, on every attempt."""
    copy: OutgoingRequest = object.__new__(OutgoingRequest)
    _set = object.__setattr__
    _set(copy, "url", request.url)
    _set(copy, "method", request.method)
    _set(copy, "headers", MappingProxyType(headers) if headers else _EMPTY)
    _set(copy, "body", request.body)
    _set(copy, "extras", request.extras)
    return copy


@attrs.frozen(kw_only=True)
class Response:
    """What came back from one attempt. Header names are lower-case."""

    status: int
    headers: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_headers)
    body: bytes = b""
    elapsed_ms: float = 0.0
    #: Which call of a multi-step `deliver` gave this answer (Jira's "search" before its
    #: "create"), for `classify_response` to say what failed; None for a single request.
    step: str | None = None
    #: What that call learnt (an issue key, a comment id), for the verdict's details. The
    #: default is one shared empty mapping (read-only): no dict made per answer.
    details: Mapping[str, Any] = attrs.field(default=_EMPTY)

    def at_step(self, step: str, *, elapsed_ms: float | None = None, **details: Any) -> Response:
        """This answer as `step`'s, with `details` (None values left out): what a multi-step
        `deliver` returns, so that `classify_response` reads `response.step` and
        `response.details` typed."""
        return attrs.evolve(
            self,
            step=step,
            elapsed_ms=self.elapsed_ms if elapsed_ms is None else elapsed_ms,
            details={key: value for key, value in details.items() if value is not None},
        )

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body as JSON, or None when it is empty or not JSON."""
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def excerpt(self, limit: int = BODY_EXCERPT_CHARS) -> str:
        """The start of the body, secrets masked (before cutting, so no part of one shows)."""
        return bounded(self.text(), limit)


class Outcome(StrEnum):
    SUCCESS = "success"
    """Delivered: the service accepted it."""
    RETRY = "retry"
    """A transient failure: try again under the retry policy."""
    FAIL = "fail"
    """A final failure: no further attempt will help."""
    GONE = "gone"
    """The endpoint no longer exists (410): the webhook is disabled until re-enabled."""


def _reason(value: Any) -> str | None:
    """A verdict's reason is often built from the answer: masked and bounded."""
    if value is None:  # every success
        return None
    return bounded(value)


def _details(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """A verdict's details are often read from the answer (an id, a key, a link) and shown
    where its reason is (stats, `on_success`, the console): a string is masked where it shows
    a secret (an echo of the credential sent) and cut to `BODY_EXCERPT_CHARS`. Only then:
    a link keeps its fragment, an id its every character."""
    if not value:
        return _EMPTY
    kept = dict(value)
    for key, item in kept.items():
        if isinstance(item, str) and item:
            text = item[: 64 * 1024]  # a bound on the masking's work, as `bounded` has
            masked = redact_text(text)
            if masked.count(REDACTED) > text.count(REDACTED):
                text = masked
            if len(text) > BODY_EXCERPT_CHARS:
                text = text[: BODY_EXCERPT_CHARS - 1] + "…"
            kept[key] = text
    return MappingProxyType(kept)


@attrs.frozen(kw_only=True)
class Verdict:
    """How one attempt went, as `classify_response` decides.

    `retry_after` (seconds) is the service's own wait, honoured (capped) before the next
    attempt. `pause_webhook` stops every delivery of the webhook for that wait, not just this
    one (a rate limit applies to the endpoint). `details` reaches `DeliveryResult.details`
    (for example the created Jira key). `reason` is kept masked and at most
    `BODY_EXCERPT_CHARS` long, as it is often built from the answer.
    """

    outcome: Outcome
    reason: str | None = attrs.field(default=None, converter=_reason)
    retry_after: float | None = None
    pause_webhook: bool = False
    details: Mapping[str, Any] = attrs.field(factory=dict, converter=_details)

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.SUCCESS


@attrs.frozen(kw_only=True)
class DeliveryResult:
    """A delivery that succeeded: handed to `on_success`."""

    webhook_name: str
    event_id: str
    status: int | None
    attempts: int
    elapsed_ms: float
    details: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_headers)


class DeliveryError(Exception):
    """A delivery that finally failed: what `on_failure` callbacks receive as `error`.

    Carries the last status (None when no answer came) and the `protocol` it belongs to
    ("HTTP", or "SMTP" for email), a bounded excerpt of the answer's body, the number of
    attempts, the reason and the last exception, if any.

    Nothing in it shows a secret: `reason`, `body_excerpt`, its text and `to_dict()` are
    masked and bounded (`BODY_EXCERPT_CHARS`), and `last_exception` is a redacted copy of the
    exception (same type, masked text, no traceback; see `redaction.redacted_exception`),
    never the original, whose text may hold a URL with its credentials.
    """

    def __init__(
        self,
        reason: str,
        *,
        webhook_name: str,
        event_id: str,
        attempts: int,
        status: int | None = None,
        body_excerpt: str | None = None,
        last_exception: BaseException | None = None,
        protocol: str = "HTTP",
    ) -> None:
        self.reason = bounded(reason)
        self.protocol = protocol
        self.webhook_name = webhook_name
        self.event_id = event_id
        self.attempts = attempts
        self.status = status
        self.body_excerpt = bounded(body_excerpt) if body_excerpt is not None else None
        self.last_exception = redacted_exception(last_exception)
        super().__init__(self._message())

    def _message(self) -> str:
        return redact_text(self._text())

    def _text(self) -> str:
        tries = f"{self.attempts} attempt{'s' if self.attempts != 1 else ''}"
        status = f"{self.protocol} {self.status}: " if self.status is not None else ""
        text = f"{self.webhook_name}: {status}{self.reason} (after {tries})"
        if self.body_excerpt:
            text += f"; response: {self.body_excerpt}"
        return text

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe summary, as dead-letter records keep it (masked and bounded)."""

        def masked(text: str | None) -> str | None:
            return bounded(text) if text is not None else None

        return {
            "reason": masked(self.reason),
            "status": self.status,
            "attempts": self.attempts,
            "body_excerpt": masked(self.body_excerpt),
            "exception": (
                masked(f"{type(self.last_exception).__name__}: {self.last_exception}")
                if self.last_exception is not None
                else None
            ),
        }
