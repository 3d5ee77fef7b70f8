"""What happens after an attempt: succeed, retry at a time, fail, or disable the webhook.

Pure: given the attempt (verdict, response, exception), the delivery's counts, the webhook's
retry policy, the time now and a random source, `decide` returns a `Decision` and touches
nothing else; the dispatcher carries it out. It builds the one `DeliveryError` a final
failure or a 410 hands to `on_failure` and the dead letters (`delivery_error`).
"""

from __future__ import annotations

import enum
import random

import attrs

from ..redaction import redact_text
from ..retry import RetryPolicy
from ..wire import DeliveryError, Outcome, Response, Verdict
from .unit import Delivery

__all__ = ["SUCCEEDED", "Action", "Decision", "decide", "delivery_error", "protocol_of"]


class Action(enum.Enum):
    SUCCEED = "succeed"
    RETRY = "retry"
    FAIL = "fail"
    #: The endpoint is gone (410, or a plugin's verdict such as Slack's archived channel): the
    #: webhook is disabled until `enable_webhook`, and the delivery waits in its queue.
    DISABLE = "disable"


@attrs.frozen(kw_only=True)
class Decision:
    action: Action
    #: The delivery's count of rate-limited attempts after this one (the caller stores it).
    rate_limited: int
    #: Why the attempt did not succeed (the verdict's reason, "failed" if it gave none); the
    #: error's reason may say more ("gave up after 4 attempts").
    reason: str | None = None
    #: RETRY: seconds to wait, and the monotonic time the next attempt may go.
    wait: float = 0.0
    retry_at: float = 0.0
    #: RETRY: the whole lane waits (a rate-limit answer applies to the endpoint).
    pause_lane: bool = False
    #: FAIL and DISABLE: what `on_failure` and the dead letter are given.
    error: DeliveryError | None = None


#: The decision after most successes (no rate-limited attempt before): frozen, so shared
#: (the worker takes it without calling `decide` when the verdict is a success).
SUCCEEDED = Decision(action=Action.SUCCEED, rate_limited=0)


def protocol_of(delivery: Delivery) -> str:
    """What a status code belongs to, from the request's scheme: "HTTP", "SMTP", ..."""
    url = delivery.request.url if delivery.request is not None else ""
    if not isinstance(url, str):  # a plugin's bug, named elsewhere: never a second error here
        url = ""
    scheme = url.split(":", 1)[0].upper() if ":" in url else "HTTP"
    return "HTTP" if scheme.startswith("HTTP") else scheme


def delivery_error(
    reason: str,
    delivery: Delivery,
    *,
    attempts: int | None = None,
    response: Response | None = None,
    exception: BaseException | None = None,
) -> DeliveryError:
    """The error of a delivery that ended (or stopped its webhook): the answer's status and a
    redacted excerpt of its body, the exception, and which protocol the status belongs to."""
    return DeliveryError(
        reason,
        webhook_name=delivery.webhook_name,
        event_id=delivery.event.event_id,
        attempts=delivery.attempts if attempts is None else attempts,
        status=response.status if response is not None else None,
        body_excerpt=redact_text(response.excerpt()) if response is not None else None,
        last_exception=exception,
        protocol=protocol_of(delivery),
    )


def decide(
    verdict: Verdict,
    delivery: Delivery,
    policy: RetryPolicy,
    *,
    now: float,
    rng: random.Random,
    response: Response | None = None,
    exception: BaseException | None = None,
) -> Decision:
    """The decision after `delivery`'s attempt number `delivery.attempts` got `verdict`.

    A rate-limit answer (RETRY with `pause_webhook`) waits the service's time and does not use
    up `max_retries`, up to `max_rate_limited_attempts` such answers; any other RETRY waits
    the backoff (or a longer `Retry-After`) while retries are left. Out of either, it fails,
    saying after how many attempts it gave up.
    """
    rate_limited = delivery.rate_limited
    if verdict.outcome is Outcome.SUCCESS:
        if not rate_limited:
            return SUCCEEDED
        return Decision(action=Action.SUCCEED, rate_limited=rate_limited)
    reason = verdict.reason or "failed"
    pause = verdict.outcome is Outcome.RETRY and verdict.pause_webhook
    if pause:
        rate_limited += 1
    budget_used = delivery.attempts - rate_limited
    if (
        verdict.outcome is Outcome.RETRY
        and budget_used < policy.max_attempts
        and rate_limited <= policy.max_rate_limited_attempts
    ):
        if pause:
            wait = policy.rate_limit_wait(rate_limited, verdict.retry_after, rng)
        else:
            wait = policy.wait_before_retry(budget_used, verdict.retry_after, rng)
        return Decision(
            action=Action.RETRY,
            rate_limited=rate_limited,
            reason=reason,
            wait=wait,
            retry_at=now + wait,
            pause_lane=pause,
        )
    if verdict.outcome is Outcome.GONE:
        # The refused attempt is not held against the delivery: it is attempted again once
        # the webhook is re-enabled, and the error counts it (attempts + 0 - 1 + 1).
        error = delivery_error(
            f"{reason}; webhook disabled until enable_webhook({delivery.webhook_name!r})",
            delivery,
            response=response,
            exception=exception,
        )
        return Decision(
            action=Action.DISABLE, rate_limited=rate_limited, reason=reason, error=error
        )
    text = reason
    if verdict.outcome is Outcome.RETRY:
        tries = "attempt" if delivery.attempts == 1 else "attempts"
        text = f"{reason}; gave up after {delivery.attempts} {tries}"
    error = delivery_error(text, delivery, response=response, exception=exception)
    return Decision(action=Action.FAIL, rate_limited=rate_limited, reason=reason, error=error)
