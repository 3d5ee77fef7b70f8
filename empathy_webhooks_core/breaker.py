"""The circuit breaker: stop hammering an endpoint that keeps failing, probe it, resume."""

from __future__ import annotations

import collections
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

import attrs

from ._bounds import bounded
from .clock import Clock
from .converter import structure

__all__ = [
    "MAX_BREAKER_SECONDS",
    "Breaker",
    "BreakerPolicy",
    "BreakerState",
    "CircuitBreaker",
]


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


# The states as module names: read on every attempt, where `BreakerState.X` is a global
# and an attribute look-up each.
_CLOSED, _OPEN, _HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN

#: The longest window or open time (a day): a breaker that stays open longer is a webhook
#: switched off without anyone deciding it.
MAX_BREAKER_SECONDS = 86_400.0


def _fraction(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ValueError(f"{attribute.name} must be a fraction above 0 and at most 1")


_seconds = bounded(above=0, at_most=MAX_BREAKER_SECONDS)


@attrs.frozen(kw_only=True)
class BreakerPolicy:
    """When the breaker opens: at least `min_attempts` attempts in the last `window_seconds`
    and a failure rate of `failure_rate` or more. It stays open `open_seconds`, then lets one
    probe through; a probe that succeeds closes it, one that fails opens it again."""

    enabled: bool = True
    failure_rate: float = attrs.field(default=0.5, validator=_fraction)
    min_attempts: int = attrs.field(default=10, validator=bounded(at_least=1, integer=True))
    window_seconds: float = attrs.field(default=60.0, validator=_seconds)
    open_seconds: float = attrs.field(default=30.0, validator=_seconds)

    @classmethod
    def coerce(cls, value: BreakerPolicy | Mapping[str, Any] | bool | None) -> BreakerPolicy:
        if value is None or value is True:
            return cls()
        if value is False:
            return cls(enabled=False)
        if isinstance(value, cls):
            return value

        return structure(value, cls, path="circuit_breaker")


@runtime_checkable
class Breaker(Protocol):
    """What a lane asks of a circuit breaker: `CircuitBreaker` in one process, or a shared
    store's (`SharesBreakers.make_circuit_breaker`) across workers. Synchronous: it is asked
    on every attempt, so a shared one answers from a local mirror."""

    def wait_time(self) -> float | None:
        """0 if an attempt may go now; seconds until the next probe when open; None while a
        half-open probe is out (wait for its result)."""
        ...

    def before_attempt(self) -> None:
        """An attempt passed the gate (a half-open breaker's probe is now out)."""
        ...

    def record(self, success: bool) -> None:
        """An attempt finished: `success` is False for a retryable failure or a 410."""
        ...

    def current_state(self) -> BreakerState: ...


class CircuitBreaker:
    """One webhook's breaker. Attempts are recorded as they finish."""

    def __init__(self, policy: BreakerPolicy, clock: Clock) -> None:
        self.policy = policy
        self._clock = clock
        self._results: collections.deque[tuple[float, bool]] = collections.deque()
        # Kept alongside the window so recording stays O(1) on the delivery path.
        self._failures = 0
        self.state = BreakerState.CLOSED
        self._opened_at = 0.0
        self._probe_in_flight = False
        self.times_opened = 0

    def _trim(self, now: float) -> None:
        horizon = now - self.policy.window_seconds
        while self._results and self._results[0][0] < horizon:
            _, ok = self._results.popleft()
            if not ok:
                self._failures -= 1

    def wait_time(self) -> float | None:
        """0 if an attempt may go now; seconds until the next probe when open; None while a
        half-open probe is out (wait for its result)."""
        state = self.state
        if state is _CLOSED or not self.policy.enabled:
            return 0.0
        if state is _OPEN:
            remaining = self._opened_at + self.policy.open_seconds - self._clock.monotonic()
            if remaining > 0:
                return remaining
            self.state = _HALF_OPEN
        return None if self._probe_in_flight else 0.0

    def before_attempt(self) -> None:
        if self.state is _HALF_OPEN:
            self._probe_in_flight = True

    def record(self, success: bool) -> None:
        policy = self.policy
        if not policy.enabled:
            return
        now = self._clock.monotonic()
        if self._probe_in_flight and self.state is _HALF_OPEN:
            self._probe_in_flight = False
            if success:
                self.state = _CLOSED
                self._results.clear()
                self._failures = 0
            else:
                self._open(now)
            return
        results = self._results
        results.append((now, success))
        if not success:
            self._failures += 1
        if results[0][0] < now - policy.window_seconds:
            self._trim(now)
        # With no failure in the window the rate is 0, below any threshold (most attempts).
        if self._failures and self.state is _CLOSED and len(results) >= policy.min_attempts:
            if self._failures / len(results) >= policy.failure_rate:
                self._open(now)

    def _open(self, now: float) -> None:
        self.state = BreakerState.OPEN
        self._opened_at = now
        self._results.clear()
        self._failures = 0
        self.times_opened += 1

    def current_state(self) -> BreakerState:
        """The state as of now (an open breaker whose wait is over reads as half-open)."""
        if (
            self.state is BreakerState.OPEN
            and self._clock.monotonic() >= self._opened_at + self.policy.open_seconds
        ):
            return BreakerState.HALF_OPEN
        return self.state
