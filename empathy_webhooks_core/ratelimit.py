"""Rate limits: deliveries over the limit wait their turn; none is dropped."""

from __future__ import annotations

import collections
from collections.abc import Mapping
from typing import Any, Literal, Protocol, runtime_checkable

import attrs

from .clock import Clock
from .converter import structure

__all__ = ["Limiter", "RateLimit", "RateLimiter"]

Strategy = Literal["sliding_window", "fixed_window"]
_WINDOWS = {
    "max_requests_per_second": 1.0,
    "max_requests_per_minute": 60.0,
    "max_requests_per_hour": 3600.0,
}


@runtime_checkable
class Limiter(Protocol):
    """What a lane asks of a rate limiter: `RateLimiter` in one process, or a shared store's
    (`SharesRateLimits.make_rate_limiter`) across workers."""

    async def reserve(self) -> float:
        """Take a slot now and return 0, or take none and return the seconds to wait before
        asking again."""
        ...


def _optional_positive_int(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be a whole number above 0, got {value!r}")


def _strategy(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value not in ("sliding_window", "fixed_window"):
        raise ValueError(f"strategy must be 'sliding_window' or 'fixed_window', got {value!r}")


@attrs.frozen(kw_only=True)
class RateLimit:
    """How many requests a webhook may send per second, minute and hour.

    `sliding_window` (the default) never lets more than the limit through in any window of
    that length, however the requests fall. `fixed_window` counts per calendar-aligned window
    (as many services meter), which allows up to twice the limit across a window boundary;
    choose it only to mirror a service that resets its counter on the clock.
    """

    max_requests_per_second: int | None = attrs.field(
        default=None, validator=_optional_positive_int
    )
    max_requests_per_minute: int | None = attrs.field(
        default=None, validator=_optional_positive_int
    )
    max_requests_per_hour: int | None = attrs.field(default=None, validator=_optional_positive_int)
    strategy: Strategy = attrs.field(default="sliding_window", validator=_strategy)

    @classmethod
    def coerce(cls, value: RateLimit | Mapping[str, Any] | None) -> RateLimit | None:
        if value is None or isinstance(value, cls):
            return value

        return structure(value, cls, path="rate_limit")

    def windows(self) -> list[tuple[int, float]]:
        return [
            (getattr(self, name), seconds)
            for name, seconds in _WINDOWS.items()
            if getattr(self, name) is not None
        ]


class _SlidingWindow:
    """Exact sliding log: the times of the last `limit` sends."""

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit, self.seconds = limit, seconds
        self.sent: collections.deque[float] = collections.deque()

    def wait(self, now: float) -> float:
        while self.sent and self.sent[0] <= now - self.seconds:
            self.sent.popleft()
        if len(self.sent) < self.limit:
            return 0.0
        return self.sent[0] + self.seconds - now

    def record(self, now: float) -> None:
        self.sent.append(now)


class _FixedWindow:
    def __init__(self, limit: int, seconds: float) -> None:
        self.limit, self.seconds = limit, seconds
        self.window_start = float("-inf")
        self.count = 0

    def wait(self, now: float) -> float:
        start = now - (now % self.seconds)
        if start != self.window_start:
            self.window_start, self.count = start, 0
        return 0.0 if self.count < self.limit else start + self.seconds - now

    def record(self, now: float) -> None:
        self.wait(now)
        self.count += 1


class RateLimiter:
    """Hands out send slots under every window of a `RateLimit`, in arrival order."""

    def __init__(self, limit: RateLimit, clock: Clock) -> None:
        kind = _SlidingWindow if limit.strategy == "sliding_window" else _FixedWindow
        self._windows = [kind(count, seconds) for count, seconds in limit.windows()]
        self._clock = clock

    def wait_time(self) -> float:
        """Seconds until a slot is free (0 when one is free now)."""
        now = self._clock.monotonic()
        return max((window.wait(now) for window in self._windows), default=0.0)

    def try_acquire(self) -> bool:
        if self.wait_time() > 0:
            return False
        now = self._clock.monotonic()
        for window in self._windows:
            window.record(now)
        return True

    async def reserve(self) -> float:
        """Take a slot if one is free (returns 0), else return the seconds to wait.

        The lane's gate calls this; a store shared by several workers (Redis) provides a
        limiter with the same method whose state lives in the store.
        """
        return 0.0 if self.try_acquire() else max(self.wait_time(), 0.001)

    async def acquire(self) -> None:
        """Wait for a slot and take it. Callers serialise on a lock, so order is kept."""
        while not self.try_acquire():
            await self._clock.sleep(self.wait_time())
