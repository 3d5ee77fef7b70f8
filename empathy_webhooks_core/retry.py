"""The retry policy: how many attempts, how long between them, which answers deserve another."""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeGuard

import attrs

from ._bounds import bounded, check_number
from .converter import structure

__all__ = [
    "DEFAULT_RETRY_ON_STATUS",
    "MAX_BACKOFF_MULTIPLIER",
    "MAX_TIMEOUT_SECONDS",
    "MAX_WAIT_SECONDS",
    "RetryPolicy",
    "parse_retry_after",
]

#: Cloudflare's 520-524 (the origin down, unreachable or too slow behind it) are as passing
#: as a 502 or 504; not retried, an alert to an endpoint behind Cloudflare was dead-lettered
#: on its first attempt.
DEFAULT_RETRY_ON_STATUS = frozenset({408, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524})

#: The reference's best practices: "Set appropriate timeouts (30s max)".
MAX_TIMEOUT_SECONDS = 30.0

#: The longest any single wait may be set to (a day): a delay, a cap on a service's
#: `Retry-After`, a rate-limit pause. Past that a delivery is not late, it is lost from view.
MAX_WAIT_SECONDS = 86_400.0

#: Waits grow by at most this factor per retry (10 gives 1 s, 10 s, 100 s...); larger ones
#: only reach `max_delay_seconds` sooner, and unbounded ones overflow a float.
MAX_BACKOFF_MULTIPLIER = 10.0

_wait = bounded(at_least=0, at_most=MAX_WAIT_SECONDS)


def _max_retries(instance: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise ValueError(f"{attribute.name} must be an integer from 0 to 100, got {value!r}")


def _timeout(instance: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    check_number(attribute.name, value, above=0)  # NaN would remove the timeout altogether
    if value > MAX_TIMEOUT_SECONDS:
        raise ValueError(
            f"timeout_seconds is {value:g}; at most {MAX_TIMEOUT_SECONDS:g} seconds "
            "is allowed (a webhook that needs longer should answer 202 and work asynchronously)"
        )


def _jitter(instance: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"jitter must be a fraction from 0 to 1, got {value!r}")


def _statuses(value: Any) -> frozenset[int]:
    statuses = frozenset(value)
    for status in statuses:
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise ValueError(f"retry_on_status holds {status!r}, not an HTTP status")
    return statuses


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """When and how often a failed delivery is tried again.

    Waits grow geometrically: `initial_delay_seconds * backoff_multiplier ** n`, so the
    defaults give 1, 2, 4, 8, 16 s as the reference says, each capped at `max_delay_seconds`
    and spread by up to `jitter` (a fraction) to avoid thundering herds. A service's own
    `Retry-After` is honoured up to `max_retry_after_seconds`.

    A rate-limit answer (429, or a plugin's rate-limit verdict) pauses the webhook and does
    not use up `max_retries`: the delivery waits the service's own time, up to
    `max_rate_limit_wait_seconds`, at most `max_rate_limited_attempts` times.
    """

    max_retries: int = attrs.field(default=3, validator=_max_retries)
    backoff_multiplier: float = attrs.field(
        default=2.0, validator=bounded(above=0, at_most=MAX_BACKOFF_MULTIPLIER)
    )
    initial_delay_seconds: float = attrs.field(default=1.0, validator=_wait)
    max_delay_seconds: float = attrs.field(default=300.0, validator=_wait)
    jitter: float = attrs.field(default=0.0, validator=_jitter)
    timeout_seconds: float = attrs.field(default=30.0, validator=_timeout)
    retry_on_status: frozenset[int] = attrs.field(
        default=DEFAULT_RETRY_ON_STATUS, converter=_statuses
    )
    max_retry_after_seconds: float = attrs.field(default=300.0, validator=_wait)
    max_rate_limit_wait_seconds: float = attrs.field(default=3600.0, validator=_wait)
    max_rate_limited_attempts: int = attrs.field(default=20, validator=_max_retries)

    @classmethod
    def coerce(cls, value: RetryPolicy | Mapping[str, Any] | None) -> RetryPolicy:
        """Accept what the reference passes (a dict), a `RetryPolicy`, or None for defaults."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value

        return structure(value, cls, path="retry_policy")

    @property
    def max_attempts(self) -> int:
        return self.max_retries + 1

    def delay(self, retry_number: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry `retry_number` (1 for the first retry)."""
        try:
            base = self.initial_delay_seconds * self.backoff_multiplier ** (retry_number - 1)
        except OverflowError:  # far past any cap
            base = self.max_delay_seconds
        base = min(base, self.max_delay_seconds)
        if self.jitter:
            spread = base * self.jitter
            base += (rng or random).uniform(-spread, spread)
        return max(0.0, base)

    def wait_before_retry(
        self, retry_number: int, retry_after: float | None, rng: random.Random | None = None
    ) -> float:
        """The wait before the next attempt: the service's `Retry-After` (capped) if larger."""
        wait = self.delay(retry_number, rng)
        if _usable(retry_after):
            wait = max(wait, min(retry_after, self.max_retry_after_seconds))
        return wait

    def rate_limit_wait(
        self, times_limited: int, retry_after: float | None, rng: random.Random | None = None
    ) -> float:
        """The wait after a rate-limit answer: the service's own wait (up to an hour by
        default, since a primary limit may reset that far away), else the backoff."""
        wait = self.delay(times_limited, rng)
        if _usable(retry_after):
            wait = max(wait, min(retry_after, self.max_rate_limit_wait_seconds))
        return wait


def _usable(retry_after: float | None) -> TypeGuard[float]:
    """A service's (or a plugin's) wait worth honouring: a number, not NaN, not negative.
    Infinity is usable: the cap applies."""
    return (
        isinstance(retry_after, int | float)
        and not isinstance(retry_after, bool)
        and retry_after == retry_after
        and retry_after >= 0
    )


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a `Retry-After` header: delay-seconds or an HTTP date. None if absent or bad."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        # OverflowError: a year or offset too large for C (a hostile answer), which
        # made a 429 unclassifiable and so a final failure.
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        reference = now if now is not None else datetime.now(UTC).timestamp()
        return max(0.0, moment.timestamp() - reference)
    if seconds != seconds or seconds < 0:  # NaN or negative
        return None
    return seconds
