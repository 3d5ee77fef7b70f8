"""Third audit of the delivery pipeline: what an on-call engineer could not see before. An
event taken by a closing dispatcher and then lost, a breaker that held every alert without a
line above info, a blocking `on_failure` that delayed every webhook unsaid, which events a
memory store lost at close, and blank signing secrets. Real loopback receivers throughout."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from empathy_webhooks_core import CustomWebhook, Event, WebhookDispatcher
from empathy_webhooks_core.clock import FakeClock
from empathy_webhooks_core.receiving import verification_middleware, verified_handler
from empathy_webhooks_core.signing import (
    sign_request,
    verify_request,
    verify_standard_webhook,
    verify_webhook_signature,
    x_signature,
)
from empathy_webhooks_core.testing import ReceivedRequest, Receiver, Reply


@pytest.fixture(autouse=True)
def _structlog_left_as_found() -> Iterator[None]:
    yield
    # capture_logs restores the processors but leaves structlog marked configured, which
    # would send every later test's library lines past the stdlib logger (and caplog).
    structlog.reset_defaults()


def _lines(logs: Sequence[Mapping[str, Any]], name: str) -> list[Mapping[str, Any]]:
    return [line for line in logs if line["event"] == name]


async def test_an_event_emitted_while_close_stops_the_workers_is_refused_not_lost(
    receiver: Receiver,
) -> None:
    """`closed` was already True, yet `emit` queued the event behind cancelled workers and
    returned it as accepted; the memory store then lost it, said only as a count."""
    release = asyncio.Event()

    async def hang(request: ReceivedRequest) -> Reply:
        await release.wait()
        return Reply()

    receiver.handler = hang  # an attempt in flight: stopping its worker takes a turn
    dispatcher = WebhookDispatcher(webhooks=[CustomWebhook(url=receiver.url())])
    await dispatcher.emit("alert", {"n": 0})
    await receiver.wait_for(1)
    closing = asyncio.create_task(dispatcher.close(drain=False))
    await asyncio.sleep(0)  # close has begun: its drain is skipped, the workers are stopping
    assert dispatcher.closed
    with pytest.raises(RuntimeError, match="closed"):
        await dispatcher.emit("alert", {"late": True})
    with pytest.raises(RuntimeError, match="closed"):
        await dispatcher.emit_events([Event(event_type="alert", data={"late": True})])
    await closing
    release.set()
    assert [r.json()["data"] for r in receiver.requests] == [{"n": 0}]
    with pytest.raises(RuntimeError, match="closed"):
        await dispatcher.emit("alert", {"after": True})


async def test_the_breaker_opening_and_closing_is_said() -> None:
    """Deliveries (new ones included) waited behind an open breaker with only per-attempt
    info lines in the log: an outage of the alert path looked like silence."""
    clock = FakeClock()
    async with Receiver() as receiver:
        receiver.respond(status=500)
        webhook = CustomWebhook(
            name="pager",
            url=receiver.url(),
            max_concurrency=1,
            retry_policy={"max_retries": 50, "initial_delay_seconds": 1, "max_delay_seconds": 1},
            circuit_breaker={"min_attempts": 3, "failure_rate": 0.5, "open_seconds": 30},
        )
        dispatcher = WebhookDispatcher(webhooks=[webhook], clock=clock)
        with capture_logs() as logs:
            for number in range(4):
                await dispatcher.emit("alert", {"n": number})
            await receiver.wait_for(3)
            for _ in range(50):
                if dispatcher.get_webhook_stats("pager")["breaker_state"] == "open":
                    break
                await asyncio.sleep(0.01)
            [opened] = _lines(logs, "circuit_breaker_opened")
            assert opened["log_level"] == "warning"
            assert opened["webhook"] == "pager" and opened["pending"] == 4
            assert opened["open_seconds"] == 30
            assert "none is dropped" in opened["reason"]
            await clock.advance(31)  # the probe goes, and fails: open again, said at info
            await receiver.wait_for(4)
            for _ in range(50):
                if _lines(logs, "circuit_breaker_probe_failed"):
                    break
                await asyncio.sleep(0.01)
            assert _lines(logs, "circuit_breaker_probe_failed")[0]["log_level"] == "info"
            receiver.respond(status=200)
            await clock.advance(31)
            await receiver.wait_for(4, delivered=True)
            for _ in range(5):
                await clock.advance(1)
            await dispatcher.drain(timeout=5)
            [closed] = _lines(logs, "circuit_breaker_closed")
            assert closed["webhook"] == "pager" and closed["log_level"] == "warning"
        assert len(_lines(logs, "circuit_breaker_opened")) == 1
        await dispatcher.close()


async def test_a_blocking_on_failure_callback_is_said_and_loses_nothing(
    receiver: Receiver,
) -> None:
    """A plain callback that blocks (a synchronous database write) holds the event loop, so
    every webhook's deliveries waited, and nothing said why."""
    receiver.respond(status=400)
    receiver.handler = lambda request: Reply(status=200 if request.path == "/ok" else 400)
    called: list[str] = []

    def store_failed_webhook(webhook: Any, event: Event, error: Any) -> None:
        time.sleep(0.3)
        called.append(event.event_id)

    failing = CustomWebhook(name="failing", url=receiver.url(), on_failure=store_failed_webhook)
    healthy = CustomWebhook(name="healthy", url=receiver.url("/ok"))
    with capture_logs() as logs:
        async with WebhookDispatcher(webhooks=[failing, healthy]) as dispatcher:
            event = await dispatcher.emit("alert", {})
            await dispatcher.drain(timeout=10)
            assert dispatcher.get_webhook_stats("healthy")["delivered_count"] == 1
            assert dispatcher.get_webhook_stats("failing")["dead_letters"] == 1
    assert called == [event.event_id]
    [line] = _lines(logs, "on_failure_callback_blocked")
    assert line["log_level"] == "warning"
    assert line["webhook"] == "failing" and line["event_id"] == event.event_id
    assert line["blocked_seconds"] >= 0.3
    assert "async def" in line["reason"]


async def test_a_quick_callback_says_nothing_more(receiver: Receiver) -> None:
    receiver.respond(status=400)
    told: list[str] = []
    webhook = CustomWebhook(url=receiver.url(), on_failure=lambda w, e, err: told.append("x"))
    with capture_logs() as logs:
        async with WebhookDispatcher(webhooks=[webhook]) as dispatcher:
            await dispatcher.emit("alert", {})
    assert told == ["x"]
    assert not _lines(logs, "on_failure_callback_blocked")


async def test_close_names_every_event_the_memory_store_loses() -> None:
    """Only a count was said: the team could not tell which alerts never went out. Lost here
    from each place a delivery waits: a retry timer, behind its ordering key, at the rate
    limit's gate with a worker, and in the lane's queue."""
    clock = FakeClock()
    async with Receiver() as receiver:
        receiver.handler = lambda request: Reply(status=503 if request.path == "/down" else 200)
        down = CustomWebhook(
            name="down", url=receiver.url("/down"), events=["incident"], retry_policy={}
        )
        slow = CustomWebhook(
            name="slow",
            url=receiver.url("/slow"),
            events=["metric"],
            max_concurrency=1,
            rate_limit={"max_requests_per_hour": 1},
        )
        dispatcher = WebhookDispatcher(webhooks=[down, slow], clock=clock)
        lost: set[str] = set()
        for number in range(3):
            event = await dispatcher.emit("incident", {"n": number}, ordering_key="db-1")
            lost.add(event.event_id)
        event = await dispatcher.emit("incident", {"n": 3})
        lost.add(event.event_id)
        first = await dispatcher.emit("metric", {"n": 0})
        for number in range(1, 4):
            event = await dispatcher.emit("metric", {"n": number})
            lost.add(event.event_id)
        await receiver.wait_for(3)  # two first attempts of "down", the first of "slow"
        for _ in range(20):
            await asyncio.sleep(0.01)
        assert dispatcher.get_webhook_stats("slow")["delivered_count"] == 1
        with capture_logs() as logs:
            await dispatcher.close(drain=False)
    [line] = _lines(logs, "closed_with_pending_deliveries")
    assert line["log_level"] == "error" and line["count"] == 7
    assert line["webhooks"] == {"down": 4, "slow": 3}
    assert sorted(line["event_ids"]) == sorted(lost)
    assert first.event_id not in line["event_ids"]
    assert "event_ids_not_shown" not in line


async def test_blank_signing_secrets_are_refused_by_the_receiving_helpers() -> None:
    """A receiver given "   " (an unset variable padded by a template) verified requests
    signed with a key anyone can compute."""
    for blank in ("   ", "\t\n", ["", "  "]):
        with pytest.raises(ValueError, match="blank"):
            verified_handler(blank, lambda request, event: None)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="blank"):
            verification_middleware(blank)  # type: ignore[arg-type]
    body = b'{"event_type": "alert"}'
    forged = x_signature(body, "   ")
    assert not verify_webhook_signature(body, forged, "   ")
    webhook = CustomWebhook(url="http://127.0.0.1:9/", signing_secret="not-blank")
    signed = sign_request(webhook, webhook.render("alert"), event_id="evt_1", timestamp=100)
    headers = dict(signed.headers)
    assert verify_request(signed.body, headers, "not-blank", now=100)
    assert not verify_standard_webhook(signed.body, headers, "   ", now=100)
    # A blank entry beside a real one (a rotation) is dropped, the real one still verifies.
    assert verify_request(signed.body, headers, ["  ", "not-blank"], now=100)


def test_a_blank_signing_secret_is_refused_when_the_webhook_is_built() -> None:
    for blank in ("   ", ["\t"], ["real-secret", " "]):
        with pytest.raises(ValueError, match="signing_secret .*not blank"):
            CustomWebhook(url="http://127.0.0.1:9/", signing_secret=blank)


async def test_a_backlog_behind_a_rate_limit_is_named_by_drain_and_close(
    receiver: Receiver,
) -> None:
    """1 request an hour and 10,000 alerts: `drain(timeout)` said a total and nothing of
    where they wait; `close` now names the webhook, and the first lost events' ids."""
    clock = FakeClock()
    slow = CustomWebhook(name="slow", url=receiver.url(), rate_limit={"max_requests_per_hour": 1})
    fast = CustomWebhook(name="fast", url=receiver.url("/fast"), events=["other"])
    dispatcher = WebhookDispatcher(webhooks=[slow, fast], clock=clock)
    events = [await dispatcher.emit("alert", {"n": number}) for number in range(10_000)]
    await receiver.wait_for(1)
    with pytest.raises(
        TimeoutError, match=r"9999 deliveries still pending after 0.05 s \('slow': 9999\)"
    ):
        await dispatcher.drain(timeout=0.05)
    with capture_logs() as logs:
        with pytest.raises(TimeoutError, match="'slow': 9999"):
            await dispatcher.close(timeout=0.05)
    [line] = _lines(logs, "closed_with_pending_deliveries")
    assert line["count"] == 9999 and line["webhooks"] == {"slow": 9999}
    assert len(line["event_ids"]) == 100 and line["event_ids_not_shown"] == 9899
    assert set(line["event_ids"]) <= {event.event_id for event in events[1:]}
    assert len(receiver.requests) == 1


async def test_a_retry_after_over_the_cap_is_capped_and_said() -> None:
    """A `Retry-After` of a day was cut to the policy's cap in silence (an INFO line saying
    only the wait): nobody could tell the service would likely refuse again."""
    clock = FakeClock()
    async with Receiver() as receiver:
        receiver.queue(
            Reply(status=429, headers={"Retry-After": "99999"}),
            Reply(status=429, headers={"Retry-After": "soon, please"}),  # garbage: backoff
            Reply(status=200),
        )
        webhook = CustomWebhook(
            name="limited", url=receiver.url(), retry_policy={"max_rate_limit_wait_seconds": 60}
        )
        dispatcher = WebhookDispatcher(webhooks=[webhook], clock=clock)
        with capture_logs() as logs:
            await dispatcher.emit("alert", {})
            await receiver.wait_for(1)
            for _ in range(50):
                if _lines(logs, "delivery_retry_scheduled"):
                    break
                await asyncio.sleep(0.01)
            await clock.advance(60)
            await receiver.wait_for(2)
            for _ in range(50):
                if len(_lines(logs, "delivery_retry_scheduled")) == 2:
                    break
                await asyncio.sleep(0.01)
            await clock.advance(2)
            await dispatcher.drain(timeout=5)
        capped, garbage = _lines(logs, "delivery_retry_scheduled")
        assert capped["log_level"] == "warning"
        assert (capped["wait_seconds"], capped["retry_after_asked"]) == (60, 99999)
        assert "max_rate_limit_wait_seconds" in capped["capped"]
        assert garbage["log_level"] == "info" and "capped" not in garbage
        assert garbage["wait_seconds"] == 2  # the backoff: neither forever nor at once
        assert dispatcher.get_webhook_stats("limited")["delivered_count"] == 1
        await dispatcher.close()


async def test_fallbacks_that_go_round_are_refused_at_start() -> None:
    """c falls back to d and d to c: before, a failed event went round them for ever (a new
    delivery and a dead letter each lap). The config file refused it; the Python API did not."""
    c = CustomWebhook(name="c", url="http://127.0.0.1:9/c", fallback="d")
    d = CustomWebhook(name="d", url="http://127.0.0.1:9/d", fallback="c")
    e = CustomWebhook(name="e", url="http://127.0.0.1:9/e", fallback="c")
    dispatcher = WebhookDispatcher(webhooks=[e, c, d])
    with pytest.raises(ValueError, match=r"fallbacks go round \(c -> d -> c\)"):
        await dispatcher.start()
    await dispatcher.close()
    # A chain that ends, and a webhook that is its own fallback (skipped), still start.
    chain = WebhookDispatcher(
        webhooks=[
            CustomWebhook(name="a", url="http://127.0.0.1:9/a", fallback="b"),
            CustomWebhook(name="b", url="http://127.0.0.1:9/b", fallback="b"),
        ]
    )
    await chain.start()
    await chain.close()
