"""The gateway's intake groups concurrent events into one admission (one commit): each event
still gets its own answer, its own error, and is delivered once."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from empathy_webhooks_core import CustomWebhook, Event, QueueFull, WebhookDispatcher
from empathy_webhooks_core._pipeline.admission import Held
from empathy_webhooks_core.config import ConfigError, load_config
from empathy_webhooks_core.gateway.intake import Intake
from empathy_webhooks_core.gateway.routes import _accepted, _json
from empathy_webhooks_core.testing import Receiver

from ._gateway_kit import auth, config_text, gateway_at, write_config


def _dispatcher(tmp_path: Path, receiver: Receiver) -> WebhookDispatcher:
    hook = CustomWebhook(name="hook", url=receiver.url())
    return WebhookDispatcher(webhooks=[hook], store=f"sqlite:///{tmp_path / 'outbox.db'}")


#: `[serve]` holding deliveries longer than any of these tests runs (the longest allowed).
HOLD_LONG = "hold_quiet_seconds = 10\nhold_max_seconds = 60"


async def test_each_event_of_a_group_gets_its_own_answer(
    tmp_path: Path, receiver: Receiver
) -> None:
    dispatcher = _dispatcher(tmp_path, receiver)
    intake = Intake(dispatcher)
    events = [Event(event_type="prediction", data={"n": n}) for n in range(30)]
    not_an_event: Any = {"event_type": "prediction"}
    async with dispatcher:
        answers = await asyncio.gather(
            *(intake.admit(event) for event in events[:15]),
            intake.admit(not_an_event),
            *(intake.admit(event) for event in events[15:]),
            return_exceptions=True,
        )
        # The one bad call fails alone; every other event is routed and queued.
        assert isinstance(answers[15], TypeError)
        assert "expected an Event, got dict" in str(answers[15])
        assert answers[:15] + answers[16:] == [["hook"]] * 30
        await receiver.wait_for(30, delivered=True)
    delivered = sorted(request.json()["data"]["n"] for request in receiver.delivered)
    assert delivered == list(range(30))


async def test_a_request_cancelled_at_the_gate_holds_up_no_other(
    tmp_path: Path, receiver: Receiver
) -> None:
    dispatcher = _dispatcher(tmp_path, receiver)
    intake = Intake(dispatcher)
    first, cancelled, third = (Event(event_type="prediction", data={"n": n}) for n in range(3))
    async with dispatcher:
        running = asyncio.create_task(intake.admit(first))
        await asyncio.sleep(0)  # under way: the others wait for its commit
        waiting = asyncio.create_task(intake.admit(cancelled))
        behind = asyncio.create_task(intake.admit(third))
        await asyncio.sleep(0)
        waiting.cancel()
        assert await running == ["hook"]
        assert await behind == ["hook"]
        await asyncio.gather(waiting, return_exceptions=True)
        # Whatever the moment of the cancel, the intake is not stuck: one more goes through.
        assert await intake.admit(Event(event_type="prediction", data={"n": 3})) == ["hook"]
        await receiver.wait_for(3, delivered=True)
    delivered = {request.json()["data"]["n"] for request in receiver.delivered}
    assert {0, 2, 3} <= delivered


async def test_concurrent_requests_are_each_answered_with_their_event(
    tmp_path: Path, receiver: Receiver
) -> None:
    config = write_config(
        tmp_path, config_text(receiver.url(), store=f"sqlite:///{tmp_path / 'outbox.db'}")
    )
    async with gateway_at(config) as (gateway, url), aiohttp.ClientSession() as session:

        async def post(n: int) -> dict[str, Any]:
            async with session.post(
                f"{url}/v1/events",
                json={"event_type": "prediction", "data": {"n": n}},
                headers=auth("writer"),
            ) as answer:
                assert answer.status == 202
                return dict(await answer.json())

        answers = await asyncio.gather(*(post(n) for n in range(40)))
        # Every 202 names an event that is on record (committed) at the time it is read.
        for answer in answers:
            assert answer["webhooks"] == ["hook"]
            assert await gateway.dispatcher.event(answer["event_id"]) is not None
        await receiver.wait_for(40, delivered=True)
    sent = {
        request.json()["event_id"]: request.json()["data"]["n"] for request in receiver.delivered
    }
    assert sent == {answer["event_id"]: n for n, answer in enumerate(answers)}


async def test_emit_events_answers_each_event_as_emit_event_would(
    tmp_path: Path, receiver: Receiver
) -> None:
    hook = CustomWebhook(name="hook", url=receiver.url(), max_pending=3)
    dispatcher = WebhookDispatcher(webhooks=[hook], store=f"sqlite:///{tmp_path / 'outbox.db'}")
    events = [Event(event_type="prediction", data={"n": n}) for n in range(5)]
    not_an_event: Any = "prediction"
    async with dispatcher:
        held = Held()
        results = await dispatcher.emit_events([events[0], not_an_event, *events[1:]], held=held)
        # max_pending counts the deliveries of the events before in the same group.
        assert results[0] == ["hook"]
        assert isinstance(results[1], TypeError)
        assert results[2:4] == [["hook"], ["hook"]]
        for refused, event in zip(results[4:], events[3:], strict=True):
            assert isinstance(refused, QueueFull)
            assert refused.event is event and refused.refused == ["hook"]
        # The three admitted are on record (committed) before any of them is sent.
        for event in events[:3]:
            assert await dispatcher.event(event.event_id) is not None
        try:
            assert len(held) == 3
            assert receiver.requests == []
        finally:
            held.release()
        await receiver.wait_for(3, delivered=True)
    assert sorted(r.json()["data"]["n"] for r in receiver.delivered) == [0, 1, 2]


async def test_deliveries_held_during_a_burst_are_counted_and_delivered_after_it(
    tmp_path: Path, receiver: Receiver
) -> None:
    # No quiet moment ever ends the burst here, nor a timer: only `release` does.
    hook = CustomWebhook(name="hook", url=receiver.url(), max_pending=20)
    dispatcher = WebhookDispatcher(webhooks=[hook], store=f"sqlite:///{tmp_path / 'outbox.db'}")
    intake = Intake(dispatcher, quiet_seconds=3600, max_hold_seconds=3600)
    events = [Event(event_type="prediction", data={"n": n}) for n in range(25)]
    async with dispatcher:
        try:
            answers = await asyncio.gather(
                *(intake.admit(event) for event in events), return_exceptions=True
            )
            # Held deliveries count against max_pending, and show as queued, as queued
            # ones do; none is sent.
            assert answers[:20] == [["hook"]] * 20
            assert all(isinstance(answer, QueueFull) for answer in answers[20:])
            assert intake.held == 20
            assert dispatcher.lane_state("hook").queued == 20  # type: ignore[union-attr]
            assert receiver.requests == []
            # drain waits for held deliveries (they are pending) until they are released.
            draining = asyncio.create_task(dispatcher.drain())
            await asyncio.sleep(0.05)
            assert not draining.done()
        finally:
            intake.release()
        await draining
        assert intake.held == 0
    assert sorted(r.json()["data"]["n"] for r in receiver.delivered) == list(range(20))


async def post_events(session: aiohttp.ClientSession, url: str, count: int) -> None:
    """POST `count` events one after the other (data `{"n": 0}`, ...), each accepted."""
    for n in range(count):
        async with session.post(
            f"{url}/v1/events",
            json={"event_type": "prediction", "data": {"n": n}},
            headers=auth("writer"),
        ) as answer:
            assert answer.status == 202


async def test_a_stopping_gateway_delivers_what_its_last_burst_held(
    tmp_path: Path, receiver: Receiver
) -> None:
    config = write_config(
        tmp_path,
        config_text(receiver.url(), store=f"sqlite:///{tmp_path / 'outbox.db'}", serve=HOLD_LONG),
    )
    async with gateway_at(config) as (gateway, url), aiohttp.ClientSession() as session:
        await post_events(session, url, 5)
        assert gateway.intake.held == 5
    # Leaving stops as SIGTERM does: the held deliveries went to the workers, which drained.
    assert sorted(r.json()["data"]["n"] for r in receiver.delivered) == list(range(5))


async def test_held_deliveries_go_out_once_the_burst_is_over(
    tmp_path: Path, receiver: Receiver
) -> None:
    dispatcher = _dispatcher(tmp_path, receiver)
    intake = Intake(dispatcher)
    async with dispatcher:
        await asyncio.gather(
            *(intake.admit(Event(event_type="prediction", data={"n": n})) for n in range(10))
        )
        # Nobody releases them by hand: the quiet moment after the burst does.
        await receiver.wait_for(10, delivered=True)
        assert intake.held == 0


async def test_held_deliveries_of_a_dispatcher_closed_without_draining_wait_in_the_store(
    tmp_path: Path, receiver: Receiver
) -> None:
    dispatcher = _dispatcher(tmp_path, receiver)
    intake = Intake(dispatcher, quiet_seconds=3600, max_hold_seconds=3600)
    await dispatcher.start()
    await asyncio.gather(
        *(intake.admit(Event(event_type="prediction", data={"n": n})) for n in range(4))
    )
    await dispatcher.close(drain=False)
    intake.release()  # too late: nothing starts on a closed dispatcher
    assert receiver.requests == []
    # Committed before each 202: the next start on the same file delivers them.
    async with _dispatcher(tmp_path, receiver) as again:
        await again.drain(timeout=30)
    assert sorted(r.json()["data"]["n"] for r in receiver.delivered) == [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("webhooks", "refused"),
    [
        (["hook"], []),
        ([], ["full"]),
        (['q"uote', "back\\slash", "ctrl\x01\n", "ünïcode ✓", "\u2028"], ["a", "b"]),
    ],
)
def test_the_accepted_answer_is_the_json_of_its_fields(
    webhooks: list[str], refused: list[str]
) -> None:
    """`POST /v1/events` puts its 202 together directly: the very bytes (and headers) the
    generic JSON answer gives for the same fields."""
    event = Event(event_type="prediction")
    direct = _accepted(event, webhooks, refused)
    generic = _json({"event_id": event.event_id, "webhooks": webhooks, "refused": refused}, 202)
    assert direct.body == generic.body
    assert direct.status == generic.status == 202
    assert dict(direct.headers) == dict(generic.headers)


async def test_a_gateway_set_to_hold_nothing_hands_each_delivery_over_at_once(
    tmp_path: Path, receiver: Receiver
) -> None:
    # No quiet moment would release these while the gateway is up: only
    # `hold_max_seconds = 0` sends them.
    config = write_config(
        tmp_path,
        config_text(
            receiver.url(),
            store=f"sqlite:///{tmp_path / 'outbox.db'}",
            serve="hold_quiet_seconds = 10\nhold_max_seconds = 0",
        ),
    )
    async with gateway_at(config) as (gateway, url), aiohttp.ClientSession() as session:
        await post_events(session, url, 5)
        assert gateway.intake.held == 0
        await receiver.wait_for(5, delivered=True)
    assert sorted(r.json()["data"]["n"] for r in receiver.delivered) == list(range(5))


async def test_the_hold_times_come_from_serve(tmp_path: Path, receiver: Receiver) -> None:
    config = write_config(tmp_path, config_text(receiver.url(), serve=HOLD_LONG))
    async with gateway_at(config) as (gateway, url), aiohttp.ClientSession() as session:
        await post_events(session, url, 1)
        # Well past the default quiet (0.02 s), well within the configured one (10 s).
        await asyncio.sleep(0.3)
        assert gateway.intake.held == 1
        assert receiver.requests == []
    # Stopping hands it to the workers, which deliver it before the gateway ends.
    assert len(receiver.delivered) == 1


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("hold_quiet_seconds = 0", "serve.hold_quiet_seconds: expected more than 0, up to 10"),
        ("hold_quiet_seconds = 11", "serve.hold_quiet_seconds: expected more than 0, up to 10"),
        ("hold_max_seconds = -1", "serve.hold_max_seconds: expected 0 (never hold) to 60"),
        ("hold_max_seconds = inf", "serve.hold_max_seconds: expected 0 (never hold) to 60"),
        ("hold_max_seconds = nan", "serve.hold_max_seconds: expected 0 (never hold) to 60"),
    ],
)
def test_hold_times_out_of_range_are_refused_with_their_place(
    tmp_path: Path, setting: str, message: str
) -> None:
    config = write_config(tmp_path, config_text("http://127.0.0.1:9/hook", serve=setting))
    with pytest.raises(ConfigError) as error:
        load_config(config)
    (problem,) = [p for p in error.value.problems if p.startswith("serve.hold")]
    assert problem.startswith(message), problem
