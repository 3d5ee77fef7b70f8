"""The decision after an attempt, alone: a fake clock's time, a seeded random source, no
dispatcher, no network. What the dispatcher does with each decision is tested end to end in
test_dispatcher.py and test_guarantees.py."""

from __future__ import annotations

import random

import attrs

from empathy_webhooks_core._pipeline.outcome import Action, decide
from empathy_webhooks_core.clock import FakeClock
from empathy_webhooks_core.events import Event
from empathy_webhooks_core.redaction import register_secrets
from empathy_webhooks_core.retry import RetryPolicy
from empathy_webhooks_core.stores import Delivery
from empathy_webhooks_core.wire import Outcome, OutgoingRequest, Response, Verdict

POLICY = RetryPolicy(max_retries=2, initial_delay_seconds=1.0, backoff_multiplier=2.0, jitter=0.5)
CLOCK = FakeClock()


def delivery(attempts: int = 1, rate_limited: int = 0, url: str = "https://h.test/x") -> Delivery:
    return Delivery(
        webhook_name="ops",
        event=Event(event_type="alert", event_id="evt_1", data={}),
        attempts=attempts,
        rate_limited=rate_limited,
        request=OutgoingRequest(url=url, body=b"{}"),
    )


def retry(
    reason: str = "HTTP 503", *, retry_after: float | None = None, pause_webhook: bool = False
) -> Verdict:
    return Verdict(
        outcome=Outcome.RETRY, reason=reason, retry_after=retry_after, pause_webhook=pause_webhook
    )


def test_a_success_is_a_success_and_nothing_else() -> None:
    success = Verdict(outcome=Outcome.SUCCESS)
    decision = decide(success, delivery(), POLICY, now=CLOCK.monotonic(), rng=random.Random(1))
    assert decision.action is Action.SUCCEED
    assert (decision.error, decision.rate_limited, decision.wait) == (None, 0, 0.0)


def test_a_retry_waits_the_seeded_backoff_from_now_and_touches_nothing() -> None:
    held = delivery(attempts=2)
    before = attrs.evolve(held)
    decision = decide(retry(), held, POLICY, now=CLOCK.monotonic(), rng=random.Random(7))
    expected = POLICY.wait_before_retry(2, None, random.Random(7))
    assert decision.action is Action.RETRY
    assert decision.wait == expected and 1.0 <= expected <= 3.0  # 2 s, jitter 50 %
    assert decision.retry_at == CLOCK.monotonic() + expected
    assert (decision.pause_lane, decision.reason, decision.error) == (False, "HTTP 503", None)
    assert held == before  # pure: the dispatcher applies the decision


def test_a_longer_retry_after_wins_over_the_backoff() -> None:
    decision = decide(
        retry(retry_after=90.0), delivery(), POLICY, now=CLOCK.monotonic(), rng=random.Random(1)
    )
    assert decision.wait == 90.0


def test_out_of_retries_it_fails_saying_after_how_many_attempts() -> None:
    register_secrets(["hunter2-outcome-token"])
    answer = Response(status=503, body=b"down; token=hunter2-outcome-token")
    decision = decide(
        retry(), delivery(attempts=3), POLICY, now=0.0, rng=random.Random(1), response=answer
    )
    assert decision.action is Action.FAIL
    assert decision.reason == "HTTP 503"  # the attempt's reason, for the figures
    error = decision.error
    assert error is not None
    assert error.reason == "HTTP 503; gave up after 3 attempts"
    assert (error.webhook_name, error.event_id, error.attempts) == ("ops", "evt_1", 3)
    assert error.status == 503 and error.protocol == "HTTP"
    assert error.body_excerpt is not None and "hunter2-outcome-token" not in error.body_excerpt


def test_one_attempt_is_said_in_the_singular() -> None:
    decision = decide(
        retry("timed out"), delivery(), RetryPolicy(max_retries=0), now=0.0, rng=random.Random(1)
    )
    assert decision.error is not None
    assert decision.error.reason == "timed out; gave up after 1 attempt"


def test_a_final_verdict_fails_at_once_with_its_reason_and_exception() -> None:
    broken = ConnectionRefusedError("refused")
    decision = decide(
        Verdict(outcome=Outcome.FAIL, reason="HTTP 400"),
        delivery(url="smtp://mail.test:25"),
        POLICY,
        now=0.0,
        rng=random.Random(1),
        exception=broken,
    )
    assert decision.action is Action.FAIL
    assert decision.error is not None
    assert decision.error.reason == "HTTP 400"
    # The error keeps the exception (a redacted copy: wire.DeliveryError's own rule).
    assert isinstance(decision.error.last_exception, ConnectionRefusedError)
    assert str(decision.error.last_exception) == str(broken)
    assert decision.error.protocol == "SMTP"


def test_a_rate_limit_pauses_the_lane_without_using_up_the_retry_budget() -> None:
    # Five attempts, four of them (this one included) rate-limited: one of max_retries=2's
    # three attempts is used, so it retries, waiting the service's time.
    decision = decide(
        retry("HTTP 429", pause_webhook=True, retry_after=120.0),
        delivery(attempts=5, rate_limited=3),
        POLICY,
        now=CLOCK.monotonic(),
        rng=random.Random(1),
    )
    assert decision.action is Action.RETRY
    assert decision.pause_lane is True
    assert decision.rate_limited == 4
    assert decision.wait == 120.0


def test_too_many_rate_limits_fail() -> None:
    policy = RetryPolicy(max_rate_limited_attempts=2)
    decision = decide(
        retry("HTTP 429", pause_webhook=True),
        delivery(attempts=3, rate_limited=2),
        policy,
        now=0.0,
        rng=random.Random(1),
    )
    assert decision.action is Action.FAIL
    assert decision.rate_limited == 3
    assert decision.error is not None
    assert decision.error.reason == "HTTP 429; gave up after 3 attempts"


def test_gone_disables_with_the_one_error_shape() -> None:
    decision = decide(
        Verdict(outcome=Outcome.GONE, reason="HTTP 410"),
        delivery(attempts=2),
        POLICY,
        now=0.0,
        rng=random.Random(1),
        response=Response(status=410, body=b"gone"),
    )
    assert decision.action is Action.DISABLE
    assert decision.reason == "HTTP 410"
    error = decision.error
    assert error is not None
    assert error.reason == "HTTP 410; webhook disabled until enable_webhook('ops')"
    assert (error.attempts, error.status, error.body_excerpt) == (2, 410, "gone")
