"""`GET /v1/events/{id}`: an event accepted with a 202 but routed to no webhook is answered
(no deliveries, and why), not "no event on record"; and every field of the event shown is
masked as its data is (`user_id` showed the admin token that `data` masked)."""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path

import aiohttp

from empathy_webhooks_core.config import load_config
from empathy_webhooks_core.gateway import Gateway, running
from empathy_webhooks_core.testing import Receiver

from ._console_kit import browser_session, log_in
from ._gateway_kit import TOKENS, call, config_text, gateway_at, write_config


def _config(tmp_path: Path, url: str) -> Path:
    return write_config(
        tmp_path,
        config_text(
            url, store=f"sqlite:///{tmp_path / 'outbox.db'}", webhook='events = ["wanted"]'
        ),
    )


async def test_an_event_routed_nowhere_is_on_record(tmp_path: Path, receiver: Receiver) -> None:
    async with gateway_at(_config(tmp_path, receiver.url())) as (_, url):
        async with aiohttp.ClientSession() as session:
            status, accepted, _ = await call(
                session,
                "POST",
                f"{url}/v1/events",
                token="writer",
                json={"event_type": "unwanted", "data": {"n": 1}},
            )
            assert status == 202 and accepted["webhooks"] == []
            event_id = accepted["event_id"]
            status, shown, _ = await call(
                session, "GET", f"{url}/v1/events/{event_id}", token="reader"
            )
            assert status == 200, shown
            assert shown["event"]["event_id"] == event_id
            assert shown["event"]["event_type"] == "unwanted"
            assert shown["event"]["data"] == {"n": 1}
            assert shown["deliveries"] == [] and shown["routed_to"] == []
            assert "routed to no webhook" in shown["note"]
            assert "'unwanted'" in shown["note"]
            # A batch's events routed nowhere too.
            status, batch, _ = await call(
                session,
                "POST",
                f"{url}/v1/events:batch",
                token="writer",
                json={"events": [{"event_type": "wanted"}, {"event_type": "other"}]},
            )
            assert status == 202
            other = batch["events"][1]["event_id"]
            status, shown, _ = await call(
                session, "GET", f"{url}/v1/events/{other}", token="reader"
            )
            assert status == 200 and shown["deliveries"] == []
            # An id never seen: the 404 says what is and is not kept.
            status, missing, _ = await call(
                session, "GET", f"{url}/v1/events/evt_nothing_here", token="reader"
            )
            assert status == 404
            assert "routed to no webhook" in missing["detail"]
        async with browser_session() as browser:
            assert (await log_in(browser, url, TOKENS["reader"]))[0] == 303
            async with browser.get(f"{url}/events/{event_id}") as page:
                html = await page.text()
            assert "routed to no webhook" in html


async def test_every_field_of_a_shown_event_is_masked(tmp_path: Path, receiver: Receiver) -> None:
    """The admin token given through the environment is a registered secret: wherever a
    producer puts it in an event, the event shown masks it."""
    admin = "tk-env-admin-" + secrets.token_urlsafe(24)
    text = config_text(
        receiver.url(),
        store=f"sqlite:///{tmp_path / 'outbox.db'}",
        webhook='events = ["wanted"]',
        tokens={},
    )
    text += '\n[[serve.tokens]]\nname = "ops"\ntoken = "${GW_ADMIN}"\nscopes = ["admin"]\n'
    config = load_config(write_config(tmp_path, text), env={"GW_ADMIN": admin})
    gateway = Gateway.from_config(config)
    auth = {"Authorization": f"Bearer {admin}"}
    async with running(gateway) as url, aiohttp.ClientSession(headers=auth) as session:
        event = {
            "event_type": "wanted",
            "user_id": admin,
            "severity": admin,
            "data": {"note": admin},
            "metadata": {"who": admin},
        }
        status, accepted, _ = await call(
            session, "POST", f"{url}/v1/events", token=None, json=event
        )
        assert status == 202 and accepted["webhooks"] == ["hook"]
        await receiver.wait_for(1)
        for _ in range(200):
            status, shown, _ = await call(
                session, "GET", f"{url}/v1/events/{accepted['event_id']}", token=None
            )
            if status == 200:
                break
            await asyncio.sleep(0.02)
        assert status == 200, shown
        assert shown["event"]["data"]["note"] != admin  # masked before this change too
        assert shown["event"]["user_id"] != admin, shown["event"]
        assert admin not in json.dumps(shown)
        assert shown["event"]["event_type"] == "wanted"
        # An event routed nowhere is shown masked the same way.
        status, nowhere, _ = await call(
            session,
            "POST",
            f"{url}/v1/events",
            token=None,
            json={**event, "event_type": "unwanted"},
        )
        assert status == 202
        status, shown, _ = await call(
            session, "GET", f"{url}/v1/events/{nowhere['event_id']}", token=None
        )
        assert status == 200
        assert admin not in json.dumps(shown)
