"""Delivery guarantees through the real pipeline: retries, failures, dead letters, limits,
the breaker, 410, fallbacks and figures, against a fault-injecting loopback receiver."""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any

import pytest

from empathy_webhooks_core import (
    CustomWebhook,
    DeliveryError,
    Event,
    Webhook,
    WebhookDispatcher,
    hookimpl,
)
from empathy_webhooks_core.clock import FakeClock
from empathy_webhooks_core.plugins import build_plugin_manager
from empathy_webhooks_core.testing import Receiver, Reply

from .conftest import FAST


class FailureListener:
    """A plugin that records what its `on_failure` and `on_success` hooks are told."""

    def __init__(self) -> None:
        self.failures: list[tuple[str, str, DeliveryError]] = []
        self.successes: list[str] = []

    @hookimpl
    def on_failure(self, webhook: Webhook, event: Event, error: DeliveryError) -> None:
        self.failures.append((webhook.name, event.event_id, error))

    @hookimpl
    def on_success(self, webhook: Webhook, event: Event, result: Any) -> None:
        self.successes.append(event.event_id)


async def settle(receiver: Receiver, count: int) -> None:
    """Let the loop run until the receiver has `count` requests (network I/O is real)."""
    await receiver.wait_for(count, timeout=5)
    for _ in range(20):
        await asyncio.sleep(0)


async def test_a_400_is_final_reaches_callbacks_and_dead_letters_and_replays(
    receiver: Receiver,
) -> None:
    receiver.respond(status=400, body='{"error": "bad field: severity"}')
    listener = FailureListener()
    pm = build_plugin_manager(load_entry_points=False, extra_plugins=[listener])
    seen: list[tuple[str, DeliveryError]] = []

    async def on_failure(webhook: Webhook, event: Event, error: DeliveryError) -> None:
        seen.append((event.event_id, error))

    webhook = CustomWebhook(url=receiver.url(), retry_policy=FAST, on_failure=on_failure)
    async with WebhookDispatcher(webhooks=[webhook], plugin_manager=pm) as dispatcher:
        event = await dispatcher.emit("bug_detected", {"file": "auth.py"})
        await dispatcher.drain()
        assert len(receiver.requests) == 1  # not retried
        [(event_id, error)] = seen
        assert event_id == event.event_id
        assert (error.status, error.attempts) == (400, 1)
        assert error.body_excerpt == '{"error": "bad field: severity"}'
        assert str(error) == (
            "custom_webhook: HTTP 400: rejected with HTTP 400 (after 1 attempt); "
            'response: {"error": "bad field: severity"}'
        )
        assert [(name, eid) for name, eid, _ in listener.failures] == [
            ("custom_webhook", event.event_id)
        ]
        [letter] = await dispatcher.dead_letters()
        assert letter.event == event
        assert letter.error["status"] == 400
        assert dispatcher.get_webhook_stats("custom_webhook")["dead_letters"] == 1

        receiver.respond(status=200)
        assert await dispatcher.replay_dead_letters() == 1
        await dispatcher.drain()
        assert await dispatcher.dead_letters() == []
        assert [r.answered for r in receiver.requests] == [400, 200]
        assert receiver.requests[1].event_id == event.event_id
        assert listener.successes == [event.event_id]
        with pytest.raises(KeyError, match="no dead letter 'dl_nope'"):
            await dispatcher.replay_dead_letter("dl_nope")


async def test_a_raising_callback_is_logged_and_breaks_nothing(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.queue(Reply(status=422))
    caplog.set_level(logging.ERROR, logger="empathy_webhooks")

    def explode(webhook: Webhook, event: Event, error: DeliveryError) -> None:
        raise RuntimeError("callback bug")

    webhook = CustomWebhook(url=receiver.url(), on_failure=explode)
    async with WebhookDispatcher(webhooks=[webhook]) as dispatcher:
        await dispatcher.emit("alert", {})
        await dispatcher.emit("alert", {})
    assert [r.answered for r in receiver.requests] == [422, 200]
    assert any(
        "on_failure_callback_failed" in r.getMessage() and "callback bug" in r.getMessage()
        for r in caplog.records
    )


async def test_redirects_are_failures_never_followed(receiver: Receiver) -> None:
    receiver.respond(status=302, headers={"Location": receiver.url("/elsewhere")})
    errors: list[DeliveryError] = []
    webhook = CustomWebhook(url=receiver.url(), on_failure=lambda w, e, err: errors.append(err))
    async with WebhookDispatcher(webhooks=[webhook]) as dispatcher:
        await dispatcher.emit("alert", {})
    assert [r.path for r in receiver.requests] == ["/hook"]
    assert errors[0].reason == "redirect not followed (302)"


async def test_resets_refusals_and_timeouts_are_retried(receiver: Receiver) -> None:
    receiver.queue(Reply(reset=True), Reply(delay=0.5), Reply(status=200))
    errors: list[DeliveryError] = []
    webhook = CustomWebhook(
        url=receiver.url(),
        retry_policy={**FAST, "timeout_seconds": 0.1},
        on_failure=lambda w, e, err: errors.append(err),
    )
    refused = CustomWebhook(
        name="refused",
        url="http://127.0.0.1:9/",  # the discard port: nothing listens
        retry_policy={**FAST, "max_retries": 2},
        on_failure=lambda w, e, err: errors.append(err),
    )
    async with WebhookDispatcher(webhooks=[webhook, refused]) as dispatcher:
        await dispatcher.emit("alert", {})
        await dispatcher.drain()
        stats = dispatcher.get_webhook_stats("custom_webhook")
        assert (stats["attempts"], stats["delivered_count"]) == (3, 1)
        assert dispatcher.get_webhook_stats("refused")["attempts"] == 3
    [error] = errors
    assert error.webhook_name == "refused" and error.status is None and error.attempts == 3
    assert "gave up after 3 attempts" in error.reason
    assert "Cannot connect to host 127.0.0.1:9" in error.reason
    assert error.last_exception is not None


async def test_retry_after_is_honoured_on_503() -> None:
    clock = FakeClock()
    async with Receiver() as receiver:
        receiver.queue(Reply(status=503, headers={"Retry-After": "120"}))
        webhook = CustomWebhook(url=receiver.url(), circuit_breaker=False)
        dispatcher = WebhookDispatcher(webhooks=[webhook], clock=clock)
        await dispatcher.emit("alert", {})
        await settle(receiver, 1)
        await clock.advance(119)
        await asyncio.sleep(0.05)
        assert len(receiver.requests) == 1
        await clock.advance(1)
        await settle(receiver, 2)
        await dispatcher.close()
        assert [r.answered for r in receiver.requests] == [503, 200]


async def test_a_429_pauses_the_whole_webhook_for_its_retry_after() -> None:
    clock = FakeClock()
    async with Receiver() as receiver, Receiver() as other:
        receiver.queue(Reply(status=429, headers={"Retry-After": "60"}))
        limited = CustomWebhook(name="limited", url=receiver.url(), max_concurrency=1)
        free = CustomWebhook(name="free", url=other.url())
        dispatcher = WebhookDispatcher(webhooks=[limited, free], clock=clock)
        for number in range(3):
            await dispatcher.emit("alert", {"n": number})
        await settle(receiver, 1)
        await other.wait_for(3, delivered=True)  # another webhook is not held back
        await clock.advance(59)
        await asyncio.sleep(0.05)
        assert len(receiver.requests) == 1  # the other two waited with it
        await clock.advance(1)
        await settle(receiver, 4)
        await dispatcher.close()
        assert sorted(r.json()["data"]["n"] for r in receiver.delivered) == [0, 1, 2]


async def test_rate_limit_answers_wait_without_using_up_the_retry_budget(
    receiver: Receiver,
) -> None:
    receiver.queue(*[Reply(status=429, headers={"Retry-After": "0"})] * 6, Reply(status=503))
    errors: list[DeliveryError] = []
    webhook = CustomWebhook(
        url=receiver.url(),
        retry_policy={"max_retries": 1, "initial_delay_seconds": 0.001},
        on_failure=lambda w, e, err: errors.append(err),
        circuit_breaker=False,
        events=["alert"],
    )
    capped = CustomWebhook(
        name="capped",
        url=receiver.url("/capped"),
        retry_policy={
            "max_retries": 1,
            "initial_delay_seconds": 0.001,
            "max_rate_limited_attempts": 2,
        },
        on_failure=lambda w, e, err: errors.append(err),
        circuit_breaker=False,
        events=["capped"],
    )
    async with WebhookDispatcher(webhooks=[webhook, capped]) as dispatcher:
        await dispatcher.emit("alert", {})
        await dispatcher.drain()
        stats = dispatcher.get_webhook_stats("custom_webhook")
        # six 429s waited, the 503 used the one retry, then the 200
        assert (stats["attempts"], stats["delivered_count"], errors) == (8, 1, [])
        receiver.respond(status=429, headers={"Retry-After": "0"})
        await dispatcher.emit("capped", {})
    [error] = errors
    assert error.webhook_name == "capped" and error.attempts == 3
    assert error.reason == "HTTP 429; gave up after 3 attempts"


async def test_rate_limit_60_per_minute_queues_the_rest_and_drops_none() -> None:
    clock = FakeClock()
    async with Receiver() as receiver, Receiver() as other:
        limited = CustomWebhook(
            name="limited",
            url=receiver.url(),
            rate_limit={"max_requests_per_minute": 60, "strategy": "sliding_window"},
        )
        free = CustomWebhook(name="free", url=other.url())
        dispatcher = WebhookDispatcher(webhooks=[limited, free], clock=clock)
        for number in range(65):
            await dispatcher.emit("alert", {"n": number})
        await receiver.wait_for(60)
        await other.wait_for(65)  # unhindered by its neighbour's limit
        await asyncio.sleep(0.05)
        stats = dispatcher.get_webhook_stats("limited")
        assert len(receiver.requests) == 60
        assert stats["queued"] == 5
        assert stats["delivered_count"] == 60
        await clock.advance(60)
        await receiver.wait_for(65)
        await dispatcher.close()
        assert sorted(r.json()["data"]["n"] for r in receiver.delivered) == list(range(65))
        assert dispatcher.get_webhook_stats("limited")["queued"] == 0


async def test_the_breaker_opens_stops_attempts_probes_and_recovers() -> None:
    clock = FakeClock()
    async with Receiver() as receiver:
        receiver.respond(status=500)
        webhook = CustomWebhook(
            url=receiver.url(),
            max_concurrency=1,
            retry_policy={"max_retries": 50, "initial_delay_seconds": 1, "max_delay_seconds": 1},
            circuit_breaker={"min_attempts": 5, "failure_rate": 0.5, "open_seconds": 30},
        )
        dispatcher = WebhookDispatcher(webhooks=[webhook], clock=clock)
        for number in range(8):
            await dispatcher.emit("alert", {"n": number})
        await settle(receiver, 5)
        await asyncio.sleep(0.05)
        stats = dispatcher.get_webhook_stats("custom_webhook")
        assert stats["breaker_state"] == "open"
        attempts = stats["attempts"]
        assert attempts == 5
        for _ in range(5):  # retries come due, but the open breaker holds them
            await clock.advance(5)
            await asyncio.sleep(0.02)
        assert dispatcher.get_webhook_stats("custom_webhook")["attempts"] == attempts
        receiver.respond(status=200)
        await clock.advance(10)  # 30 s since opening: one probe goes through and succeeds
        await receiver.wait_for(8, delivered=True)
        for _ in range(3):
            await clock.advance(1)
        await dispatcher.drain()
        stats = dispatcher.get_webhook_stats("custom_webhook")
        assert stats["breaker_state"] == "closed"
        assert stats["delivered_count"] == 8 and stats["failed_count"] == 0
        assert sorted(r.json()["data"]["n"] for r in receiver.delivered) == list(range(8))
        await dispatcher.close()


async def test_410_disables_the_webhook_keeps_its_queue_and_is_re_enabled(
    receiver: Receiver,
) -> None:
    receiver.queue(Reply(status=410, body="gone"))
    told: list[DeliveryError] = []
    webhook = CustomWebhook(
        url=receiver.url(), max_concurrency=1, on_failure=lambda w, e, err: told.append(err)
    )
    dispatcher = WebhookDispatcher(webhooks=[webhook])
    for number in range(3):
        await dispatcher.emit("alert", {"n": number})
    await dispatcher.drain()  # does not wait for a disabled webhook
    assert len(receiver.requests) == 1
    stats = dispatcher.get_webhook_stats("custom_webhook")
    assert stats["disabled"] is True and stats["queued"] == 3
    assert told[0].status == 410
    assert "webhook disabled until enable_webhook('custom_webhook')" in told[0].reason
    dispatcher.enable_webhook("custom_webhook")
    await dispatcher.drain()
    assert sorted(r.json()["data"]["n"] for r in receiver.delivered) == [0, 1, 2]
    assert dispatcher.get_webhook_stats("custom_webhook")["disabled"] is False
    await dispatcher.close()


async def test_a_fallback_receives_what_the_primary_finally_failed() -> None:
    async with Receiver() as pagerduty, Receiver() as slack:
        pagerduty.respond(status=503)
        backup = CustomWebhook(name="slack_backup", url=slack.url(), events=["nothing"])
        primary = CustomWebhook(
            name="pagerduty",
            url=pagerduty.url(),
            retry_policy=FAST,
            fallback=backup,
            circuit_breaker=False,
        )
        async with WebhookDispatcher(webhooks=[primary]) as dispatcher:
            event = await dispatcher.emit("alert", {"message": "db down"}, severity="high")
            other = await dispatcher.emit("prediction", {})  # routed to primary only
        assert len(pagerduty.requests) == 8
        # Both failed for good; with no ordering key their retries race, so either may fall
        # back first.
        assert sorted(r.event_id for r in slack.delivered) == sorted(
            [event.event_id, other.event_id]
        )
        assert dispatcher.get_webhook_stats("slack_backup")["delivered_count"] == 2
        with pytest.raises(ValueError, match="names fallback 'missing'"):
            async with WebhookDispatcher(
                webhooks=[CustomWebhook(url=pagerduty.url(), fallback="missing")]
            ) as broken:
                await broken.emit("alert", {})


async def test_thousands_of_events_through_random_faults_arrive_once_each() -> None:
    """500/503/429 with Retry-After, resets and stalls past the timeout, at random (seeded)."""
    events = 2000
    async with Receiver() as receiver:
        receiver.faults(
            [
                (Reply(status=500), 0.08),
                (Reply(status=503, headers={"Retry-After": "0"}), 0.05),
                (Reply(status=429, headers={"Retry-After": "0"}), 0.04),
                (Reply(reset=True), 0.04),
                (Reply(delay=2.5), 0.01),
            ],
            seed=1234,
        )
        webhook = CustomWebhook(
            url=receiver.url(),
            retry_policy={
                "max_retries": 25,
                "initial_delay_seconds": 0.001,
                "max_delay_seconds": 0.005,
                # Far above an ordinary answer's time even on a loaded machine: only the
                # stalls (2.5 s) time out. A tighter timeout made a slow ordinary answer time
                # out after the receiver accepted it, a legitimate at-least-once duplicate
                # that this test's "accepted once" cannot tell from a bug.
                "timeout_seconds": 1.5,
            },
            circuit_breaker=False,
            max_concurrency=20,
        )
        async with WebhookDispatcher(webhooks=[webhook]) as dispatcher:
            emitted = [(await dispatcher.emit("alert", {"n": n})).event_id for n in range(events)]
            await dispatcher.drain()
            stats = dispatcher.get_webhook_stats("custom_webhook")
        accepted = receiver.delivered_event_ids()
        assert set(accepted) == set(emitted)  # none lost, none invented
        assert all(count == 1 for count in accepted.values())  # each accepted once
        per_event = collections.Counter(r.event_id for r in receiver.requests)
        # Every answer but a 2xx led to another attempt, and no event exceeded the policy.
        assert max(per_event.values()) <= webhook.retry_policy.max_attempts
        failed = len(receiver.requests) - len(receiver.delivered)
        assert failed > 200  # the faults really happened
        # On a loaded machine an attempt can time out before the receiver records it, so
        # the receiver may have seen fewer requests than were attempted, never more.
        assert stats["attempts"] >= len(receiver.requests)
        assert stats["retries"] == stats["attempts"] - events
        assert stats["delivered_count"] == events and stats["failed_count"] == 0
        assert stats["total_sent"] == events and stats["success_rate"] == 1.0


async def test_monitor_figures_equal_what_the_receiver_counted(receiver: Receiver) -> None:
    receiver.queue(Reply(status=500), Reply(status=400), Reply(status=200), Reply(status=404))
    webhook = CustomWebhook(
        name="figures", url=receiver.url(), retry_policy=FAST, max_concurrency=1
    )
    async with WebhookDispatcher(webhooks=[webhook]) as dispatcher:
        for number in range(6):
            await dispatcher.emit("alert", {"n": number})
        await dispatcher.drain()
        stats = dispatcher.get_webhook_stats("figures")
    answered = [r.answered for r in receiver.requests]
    assert stats["attempts"] == len(answered) == 7
    assert stats["delivered_count"] == answered.count(200) == 4
    assert stats["failed_count"] == 2 and stats["total_sent"] == 6
    assert stats["success_rate"] == pytest.approx(4 / 6)
    assert stats["retries"] == 1 and stats["dead_letters"] == 2
    assert stats["last_error"] == "rejected with HTTP 404"
    assert stats["last_success_at"] is not None
    for key in (
        "avg_response_time_ms",
        "p50_response_time_ms",
        "p95_response_time_ms",
        "p99_response_time_ms",
    ):
        assert stats[key] > 0
    assert (
        stats["p50_response_time_ms"]
        <= stats["p95_response_time_ms"]
        <= stats["p99_response_time_ms"]
    )
