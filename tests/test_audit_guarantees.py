"""The core delivery guarantees, audited adversarially through a real dispatcher and a real
loopback receiver: attempt counts, hostile `Retry-After`, filters that return the wrong thing,
figures that must add up while a failure is being handled, and secrets that are not there."""

from __future__ import annotations

import asyncio
import logging
import tempfile
import uuid
import warnings
from pathlib import Path
from typing import Any

import attrs
import pytest

from empathy_webhooks_core import CustomWebhook, DeliveryError, Event, WebhookDispatcher
from empathy_webhooks_core.clock import FakeClock
from empathy_webhooks_core.retry import parse_retry_after
from empathy_webhooks_core.testing import Receiver, Reply


def _accounted(stats: dict[str, Any]) -> int:
    """Every delivery a webhook was given, as its figures account for it."""
    return stats["delivered_count"] + stats["failed_count"] + stats["queued"] + stats["in_flight"]


# -- retries: the count the policy promises, at the receiver and in the figures ----------------


@pytest.mark.parametrize("max_retries", [0, 1, 4])
async def test_attempts_at_the_receiver_are_max_retries_plus_one(
    receiver: Receiver, max_retries: int
) -> None:
    receiver.respond(status=500)
    errors: list[DeliveryError] = []
    webhook = CustomWebhook(
        url=receiver.url(),
        retry_policy={"max_retries": max_retries, "initial_delay_seconds": 0.001},
        circuit_breaker=False,
        on_failure=lambda w, e, err: errors.append(err),
    )
    async with WebhookDispatcher(webhooks=[webhook]) as dispatcher:
        await dispatcher.emit("alert", {})
        await dispatcher.drain()
        stats = dispatcher.get_webhook_stats("custom_webhook")
    assert len(receiver.requests) == max_retries + 1
    assert (stats["attempts"], stats["retries"]) == (max_retries + 1, max_retries)
    assert (stats["failed_count"], stats["dead_letters"]) == (1, 1)
    [error] = errors
    assert error.attempts == max_retries + 1


async def test_waits_grow_and_stop_at_max_delay() -> None:
    clock = FakeClock()
    async with Receiver() as receiver:
        receiver.respond(status=503)
        webhook = CustomWebhook(
            url=receiver.url(),
            retry_policy={"max_retries": 5, "initial_delay_seconds": 1, "max_delay_seconds": 3},
            circuit_breaker=False,
        )
        dispatcher = WebhookDispatcher(webhooks=[webhook], clock=clock)
        start = clock.monotonic()
        await dispatcher.emit("alert", {})
        arrived: list[float] = []
        while len(arrived) < 6:
            await receiver.wait_for(len(arrived) + 1)
            arrived.append(clock.monotonic() - start)
            for _ in range(20):  # the worker schedules its retry before time moves on
                await asyncio.sleep(0)
            await clock.advance(min(2 ** (len(arrived) - 1), 3))  # 1, 2, then capped at 3
        await dispatcher.close(drain=False)
    assert arrived == [0, 1, 3, 6, 9, 12]


# -- Retry-After: a hostile date is no reason to drop a rate-limited alert ---------------------


@pytest.mark.parametrize(
    "value",
    [
        "Wed, 21 Oct 10000000000000000000 07:28:00 GMT",
        "Wed, 21 Oct 2015 07:28:00 -99999999999999999999",
    ],
)
def test_an_absurd_retry_after_date_is_no_retry_after(value: str) -> None:
    assert parse_retry_after(value) is None


async def test_a_429_with_an_absurd_retry_after_date_still_waits_and_is_delivered(
    receiver: Receiver,
) -> None:
    receiver.queue(
        Reply(status=429, headers={"Retry-After": "Wed, 21 Oct 10000000000000000000 07:28:00 GMT"})
    )
    errors: list[DeliveryError] = []
    webhook = CustomWebhook(
        url=receiver.url(),
        retry_policy={"initial_delay_seconds": 0.001},
        on_failure=lambda w, e, err: errors.append(err),
    )
    async with WebhookDispatcher(webhooks=[webhook]) as dispatcher:
        await dispatcher.emit("alert", {})
        await dispatcher.drain(timeout=5)
        stats = dispatcher.get_webhook_stats("custom_webhook")
        assert await dispatcher.dead_letters() == []
    assert errors == []
    assert [r.answered for r in receiver.requests] == [429, 200]
    assert (stats["delivered_count"], stats["failed_count"]) == (1, 0)


# -- filters: a wrong answer is said, with the webhook and the event ---------------------------


async def test_a_filter_that_returns_none_is_logged_not_a_silent_drop(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    def forgot_return(event: Event) -> bool:
        event.severity == "high"  # type: ignore[func-returns-value]  # noqa: B015

    caplog.set_level(logging.WARNING, logger="empathy_webhooks")
    name = f"quiet-{uuid.uuid4().hex[:8]}"  # said once per webhook name, in this process
    quiet = CustomWebhook(name=name, url=receiver.url("/quiet"), filter=forgot_return)
    other = CustomWebhook(name="other", url=receiver.url("/other"))
    async with WebhookDispatcher(webhooks=[quiet, other]) as dispatcher:
        event = await dispatcher.emit("alert", {}, severity="high")
        await dispatcher.emit("alert", {}, severity="high")
    assert [r.path for r in receiver.requests] == ["/other", "/other"]
    # Once, not once an event: `lambda e: e.data.get("urgent")` returns None by design.
    [line] = [r.getMessage() for r in caplog.records if "filter_returned_none" in r.getMessage()]
    assert f"webhook='{name}'" in line and f"event_id='{event.event_id}'" in line
    assert "check the filter has a `return`" in line


def test_an_async_filter_is_refused_when_the_webhook_is_built() -> None:
    async def high(event: Event) -> bool:
        return event.severity == "high"

    with pytest.raises(TypeError, match="filter must be a plain function"):
        CustomWebhook(url="http://127.0.0.1:9/", filter=high)


async def test_a_filter_returning_an_awaitable_is_logged_and_skips_only_that_webhook(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    async def check(event: Event) -> bool:
        return event.severity == "high"

    caplog.set_level(logging.ERROR, logger="empathy_webhooks")
    wrapped = CustomWebhook(
        name="wrapped", url=receiver.url("/wrapped"), filter=lambda event: check(event)
    )
    other = CustomWebhook(name="other", url=receiver.url("/other"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "coroutine ... was never awaited" left behind
        async with WebhookDispatcher(webhooks=[wrapped, other]) as dispatcher:
            event = await dispatcher.emit("alert", {}, severity="low")
    # Before: the coroutine was truthy, so every event passed, the low ones too.
    assert [r.path for r in receiver.requests] == ["/other"]
    [line] = [r.getMessage() for r in caplog.records if "filter_failed" in r.getMessage()]
    assert "webhook='wrapped'" in line and f"event_id='{event.event_id}'" in line
    assert "awaitable" in line


# -- figures add up at every moment, also while a failure is being handled ---------------------


@pytest.mark.parametrize("durable", [False, True])
async def test_figures_account_for_every_delivery_while_on_failure_runs(
    receiver: Receiver, durable: bool
) -> None:
    receiver.respond(status=400)
    seen: list[int] = []
    dispatcher: WebhookDispatcher | None = None

    async def on_failure(webhook: Any, event: Event, error: DeliveryError) -> None:
        assert dispatcher is not None
        await asyncio.sleep(0)  # a pager's client: the callback awaits
        seen.append(_accounted(dispatcher.get_webhook_stats(webhook.name)))

    with tempfile.TemporaryDirectory() as folder:
        store = f"sqlite:///{Path(folder) / 'audit.db'}" if durable else None
        webhook = CustomWebhook(url=receiver.url(), on_failure=on_failure)
        dispatcher = WebhookDispatcher(webhooks=[webhook], store=store)
        async with dispatcher:
            for number in range(3):
                await dispatcher.emit("alert", {"n": number})
            await dispatcher.drain()
            stats = dispatcher.get_webhook_stats("custom_webhook")
    # Before: the failure was counted while the delivery still counted as queued (4 of 3).
    assert seen == [3, 3, 3]
    assert _accounted(stats) == 3 and stats["failed_count"] == 3


# -- signing: a secret list with nothing in it is not an unsigned webhook ----------------------


def test_an_empty_list_of_signing_secrets_is_refused() -> None:
    # e.g. [s for s in (os.getenv("NEW"), os.getenv("OLD")) if s] with both unset
    with pytest.raises(ValueError, match="signing_secret"):
        CustomWebhook(url="http://127.0.0.1:9/", signing_secret=[])
    unsigned = CustomWebhook(url="http://127.0.0.1:9/")
    assert not unsigned.signs
    assert not attrs.evolve(unsigned, name="copy").signs  # an unsigned copy stays unsigned
