"""Retry, rate-limit and breaker policies on their own, driven by a fake clock."""

from __future__ import annotations

import random

import pytest

from empathy_webhooks_core import BreakerPolicy, ConfigError, RateLimit, RetryPolicy
from empathy_webhooks_core.breaker import BreakerState, CircuitBreaker
from empathy_webhooks_core.clock import FakeClock
from empathy_webhooks_core.ratelimit import RateLimiter
from empathy_webhooks_core.retry import parse_retry_after


def test_defaults_follow_the_reference() -> None:
    policy = RetryPolicy()
    assert policy.max_retries == 3
    assert policy.timeout_seconds == 30
    assert policy.retry_on_status == {408, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524}
    assert [RetryPolicy(max_retries=5).delay(n) for n in range(1, 6)] == [1, 2, 4, 8, 16]


def test_waits_are_capped_and_jittered_within_bounds() -> None:
    policy = RetryPolicy(max_retries=10, max_delay_seconds=5, jitter=0.2)
    rng = random.Random(7)
    for number in range(1, 11):
        base = min(2 ** (number - 1), 5)
        assert base * 0.8 <= policy.delay(number, rng) <= base * 1.2


def test_retry_after_is_honoured_but_capped() -> None:
    policy = RetryPolicy(max_retry_after_seconds=60)
    assert policy.wait_before_retry(1, 10) == 10
    assert policy.wait_before_retry(1, 3600) == 60
    assert policy.wait_before_retry(3, 0.5) == 4  # the backoff is longer


def test_retry_after_header_forms() -> None:
    assert parse_retry_after("120") == 120
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0
    for bad in (None, "", "soon", "-3", "nan"):
        assert parse_retry_after(bad) is None


def test_timeouts_above_thirty_seconds_are_refused_clearly() -> None:
    with pytest.raises(ValueError, match="timeout_seconds is 45; at most 30 seconds is allowed"):
        RetryPolicy(timeout_seconds=45)
    with pytest.raises(ConfigError) as caught:
        RetryPolicy.coerce({"max_retries": "three", "timeout_seconds": 60})
    assert caught.value.problems == ["retry_policy.max_retries: expected an integer, got 'three'"]
    with pytest.raises(
        ConfigError, match=r"unknown key 'max_retrys' \(did you mean 'max_retries'\?\)"
    ):
        RetryPolicy.coerce({"max_retrys": 3})


def test_rate_limit_options_are_checked() -> None:
    assert RateLimit.coerce(None) is None
    limit = RateLimit.coerce({"max_requests_per_minute": 60, "strategy": "sliding_window"})
    assert limit == RateLimit(max_requests_per_minute=60)
    with pytest.raises(ValueError, match="strategy must be 'sliding_window' or 'fixed_window'"):
        RateLimit(strategy="leaky")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_requests_per_minute must be a whole number above 0"):
        RateLimit(max_requests_per_minute=0)


def test_sliding_window_never_exceeds_the_limit_in_any_window() -> None:
    clock = FakeClock(start=0.0)
    limiter = RateLimiter(RateLimit(max_requests_per_minute=60, max_requests_per_hour=100), clock)
    sent: list[float] = []
    for _ in range(400):
        while not limiter.try_acquire():
            clock._now += limiter.wait_time()
        sent.append(clock.monotonic())
    for index, moment in enumerate(sent):
        in_minute = [t for t in sent[: index + 1] if t > moment - 60]
        in_hour = [t for t in sent[: index + 1] if t > moment - 3600]
        assert len(in_minute) <= 60
        assert len(in_hour) <= 100
    assert sent[59] == 0 and sent[60] == 60  # 60 at once, the 61st a minute later


def test_fixed_window_resets_on_the_boundary() -> None:
    clock = FakeClock(start=30.0)
    limiter = RateLimiter(RateLimit(max_requests_per_minute=2, strategy="fixed_window"), clock)
    assert limiter.try_acquire() and limiter.try_acquire()
    assert not limiter.try_acquire()
    assert limiter.wait_time() == 30
    clock._now = 60.0
    assert limiter.try_acquire()


def test_breaker_opens_on_sustained_failure_then_probes_and_closes() -> None:
    clock = FakeClock(start=0.0)
    breaker = CircuitBreaker(
        BreakerPolicy(failure_rate=0.5, min_attempts=4, window_seconds=60, open_seconds=30), clock
    )
    for ok in (True, False, True):
        breaker.record(ok)
    assert breaker.state is BreakerState.CLOSED  # too few attempts to judge
    breaker.record(False)
    assert breaker.state is BreakerState.OPEN
    assert breaker.wait_time() == 30
    clock._now = 30
    assert breaker.current_state() is BreakerState.HALF_OPEN
    assert breaker.wait_time() == 0
    breaker.before_attempt()
    assert breaker.wait_time() is None  # one probe at a time
    breaker.record(False)
    assert breaker.state is BreakerState.OPEN and breaker.times_opened == 2
    clock._now = 60
    assert breaker.wait_time() == 0
    breaker.before_attempt()
    breaker.record(True)
    assert breaker.state is BreakerState.CLOSED


def test_old_failures_leave_the_window() -> None:
    clock = FakeClock(start=0.0)
    breaker = CircuitBreaker(BreakerPolicy(min_attempts=4, window_seconds=10), clock)
    breaker.record(False)
    breaker.record(False)
    clock._now = 20
    breaker.record(True)
    breaker.record(True)
    breaker.record(False)
    breaker.record(True)
    assert breaker.state is BreakerState.CLOSED


def test_breaker_options() -> None:
    assert BreakerPolicy.coerce(False).enabled is False
    assert BreakerPolicy.coerce({"open_seconds": 5}).open_seconds == 5
    with pytest.raises(ValueError, match="failure_rate must be a fraction"):
        BreakerPolicy(failure_rate=2)
