"""The gateway's intake groups concurrent events into one admission (one commit): each event
still gets its own answer, its own error, and is delivered once."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

from empathy_webhooks_core import CustomWebhook, Event, WebhookDispatcher
from empathy_webhooks_core.gateway.intake import Intake
from empathy_webhooks_core.testing import Receiver

from ._gateway_kit import auth, config_text, gateway_at, write_config


def _dispatcher(tmp_path: Path, receiver: Receiver) -> WebhookDispatcher:
    hook = CustomWebhook(name="hook", url=receiver.url())
    return WebhookDispatcher(webhooks=[hook], store=f"sqlite:///{tmp_path / 'outbox.db'}")


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
