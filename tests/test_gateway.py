"""The gateway over HTTP on a loopback port: tokens and scopes, emitting, idempotency, the
413/415/422/429 answers, webhooks (enable after a 410), dead-letter replay, /metrics."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from empathy_webhooks_core.config import ConfigError, load_config
from empathy_webhooks_core.gateway import GatewayClient, GatewayError
from empathy_webhooks_core.testing import Receiver, Reply

from ._gateway_kit import TOKENS, auth, call, config_text, gateway_at, write_config

PROBLEM = "application/problem+json"


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for a figure the gateway keeps (no event to wait on), with a deadline."""

    async def wait() -> None:
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    await asyncio.wait_for(wait(), timeout)


@pytest.fixture
def config(tmp_path: Path, receiver: Receiver) -> Path:
    return write_config(
        tmp_path, config_text(receiver.url(), store=f"sqlite:///{tmp_path / 'outbox.db'}")
    )


async def test_tokens_and_scopes(config: Path, receiver: Receiver) -> None:
    async with gateway_at(config) as (_, url), aiohttp.ClientSession() as session:
        event = {"event_type": "prediction", "data": {"n": 1}}
        events = f"{url}/v1/events"
        status, body, headers = await call(session, "POST", events, token=None, json=event)
        assert status == 401
        assert headers["Content-Type"] == PROBLEM
        assert body["type"] == "/problems/unauthorized" and body["status"] == 401
        assert headers["WWW-Authenticate"].startswith("Bearer")
        # The writer's token with its last character changed (never to itself: a random
        # token ends in "x" one time in 64).
        last = "y" if TOKENS["writer"].endswith("x") else "x"
        wrong = {"Authorization": "Bearer " + TOKENS["writer"][:-1] + last}
        status, _, _ = await call(
            session, "POST", f"{url}/v1/events", token=None, headers=wrong, json=event
        )
        assert status == 401
        status, body, _ = await call(
            session, "POST", f"{url}/v1/events", token="reader", json=event
        )
        assert status == 403
        assert "'reader' lacks the scope 'events:write'" in body["detail"]
        status, body, _ = await call(
            session, "POST", f"{url}/v1/events", token="writer", json=event
        )
        assert status == 202
        assert body["webhooks"] == ["hook"] and body["refused"] == []
        assert body["event_id"].startswith("evt_")
        await receiver.wait_for(1, delivered=True)
        assert receiver.delivered[0].json()["event_id"] == body["event_id"]
        assert receiver.delivered[0].json()["data"] == {"n": 1}
        # The writer cannot read; the reader can; admin can do both.
        assert (await call(session, "GET", f"{url}/v1/webhooks", token="writer"))[0] == 403
        assert (await call(session, "GET", f"{url}/v1/webhooks", token="reader"))[0] == 200
        assert (await call(session, "POST", f"{url}/v1/webhooks/hook/enable", token="reader"))[
            0
        ] == 403
        # Health is open; metrics are not (unless configured open).
        assert (await call(session, "GET", f"{url}/healthz", token=None))[:2] == (
            200,
            {"status": "ok"},
        )
        status, body, _ = await call(session, "GET", f"{url}/readyz", token=None)
        assert (status, body["workers"]) == (200, "running")
        assert (await call(session, "GET", f"{url}/metrics", token=None))[0] == 401
        assert (await call(session, "GET", f"{url}/metrics", token="reader"))[0] == 200
        status, body, headers = await call(session, "GET", f"{url}/nowhere", token=None)
        assert (status, headers["Content-Type"], body["type"]) == (
            404,
            PROBLEM,
            "/problems/not-found",
        )
        status, _, headers = await call(session, "DELETE", f"{url}/v1/events")
        assert status == 405 and "POST" in headers["Allow"]


async def test_idempotency_key_gives_the_first_answer(config: Path, receiver: Receiver) -> None:
    async with gateway_at(config) as (_, url), aiohttp.ClientSession() as session:
        event = {"event_type": "alert", "data": {"x": 1}}
        key = {"Idempotency-Key": "order-42"}
        first = await call(session, "POST", f"{url}/v1/events", headers=key, json=event)
        again = await call(session, "POST", f"{url}/v1/events", headers=key, json=event)
        assert first[0] == again[0] == 202
        assert first[1] == again[1]
        assert again[2]["Idempotent-Replayed"] == "true"
        # Another body under the same key is refused; another token has its own keys.
        other = await call(
            session, "POST", f"{url}/v1/events", headers=key, json={"event_type": "other"}
        )
        assert other[0] == 422 and other[1]["type"] == "/problems/idempotency-key-reused"
        mine = await call(
            session, "POST", f"{url}/v1/events", token="writer", headers=key, json=event
        )
        assert mine[0] == 202 and mine[1]["event_id"] != first[1]["event_id"]
        await receiver.wait_for(2, delivered=True)
        ids = receiver.delivered_event_ids()
        assert ids[first[1]["event_id"]] == 1 and ids[mine[1]["event_id"]] == 1
        # A failed request releases its key: the corrected request may use it.
        bad = await call(
            session,
            "POST",
            f"{url}/v1/events",
            headers={"Idempotency-Key": "k2"},
            json={"event_type": "a", "empathy_level": 9},
        )
        good = await call(
            session,
            "POST",
            f"{url}/v1/events",
            headers={"Idempotency-Key": "k2"},
            json={"event_type": "a", "empathy_level": 3},
        )
        assert (bad[0], good[0]) == (422, 202)


async def test_too_large_invalid_and_unknown_fields(tmp_path: Path, receiver: Receiver) -> None:
    path = write_config(
        tmp_path, config_text(receiver.url(), serve="max_body_bytes = 2048\nmax_batch = 5")
    )
    store = f"sqlite:///{tmp_path / 'o.db'}"
    async with gateway_at(path, store=store) as (_, url), aiohttp.ClientSession() as session:
        events = f"{url}/v1/events"
        big = {"event_type": "x", "data": {"blob": "a" * 4096}}
        status, body, headers = await call(session, "POST", events, json=big)
        assert status == 413 and headers["Content-Type"] == PROBLEM
        assert "2048 bytes" in body["detail"]
        status, body, _ = await call(
            session, "POST", events, json={"event_type": "x", "empathy_level": 7, "bogus": 1}
        )
        assert status == 422 and body["type"] == "/problems/invalid-body"
        paths = {error["path"] for error in body["errors"]}
        assert paths == {"$.empathy_level", "$.bogus"}
        status, body, _ = await call(
            session, "POST", events, json={"event_type": "x", "data": {"deep": [1, 2**60]}}
        )
        assert status == 422 and body["errors"][0]["path"] == "$.data.deep[1]"
        for field in ("event_type", "user_id"):  # a lone surrogate: 422 naming it, not a 500
            text = b'{"event_type":"x","%s":"a\\ud800"}' % field.encode()
            status, body, _ = await call(
                session, "POST", events, data=text, headers={"Content-Type": "application/json"}
            )
            assert status == 422 and body["errors"][0]["path"] == f"$.{field}", body
        status, body, _ = await call(session, "POST", events, data=b"{not json")
        assert status == 415  # not declared JSON
        status, body, _ = await call(
            session, "POST", events, data=b"{not json", headers={"Content-Type": "application/json"}
        )
        assert status == 422 and body["type"] == "/problems/invalid-json"
        batch = {"events": [{"event_type": "a"}, {"event_type": "b", "data": [1]}, {}]}
        status, body, _ = await call(session, "POST", f"{url}/v1/events:batch", json=batch)
        assert status == 422
        assert [e["path"] for e in body["errors"]] == ["$.events[1].data", "$.events[2].event_type"]
        assert receiver.requests == []  # nothing of a refused batch was queued
        batch = {"events": [{"event_type": "a", "data": {"i": i}} for i in range(3)]}
        status, body, _ = await call(session, "POST", f"{url}/v1/events:batch", json=batch)
        assert status == 202 and len(body["events"]) == 3
        await receiver.wait_for(3, delivered=True)
        assert {r.json()["data"]["i"] for r in receiver.delivered} == {0, 1, 2}
        status, body, _ = await call(
            session, "POST", f"{url}/v1/events:batch", json={"events": [{"event_type": "a"}] * 6}
        )
        assert status == 422 and body["errors"][0]["path"] == "$.events"


async def test_a_body_that_arrives_after_its_headers(config: Path, receiver: Receiver) -> None:
    """The body is read whole whether it came in with the headers (taken from the buffer at
    once) or in pieces after the handler started (read as it comes)."""
    body = json.dumps({"event_type": "split", "data": {"n": 1, "text": "é" * 40}}).encode()
    async with gateway_at(config) as (_, url):
        host, port = url.removeprefix("http://").rsplit(":", 1)
        for pause in (None, 0.05):
            reader, writer = await asyncio.open_connection(host, int(port))
            head = (
                f"POST /v1/events HTTP/1.1\r\nHost: gateway\r\n"
                f"Authorization: Bearer {TOKENS['writer']}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            ).encode()
            if pause is None:
                writer.write(head + body)
            else:
                writer.write(head + body[:10])
                await writer.drain()
                await asyncio.sleep(pause)  # the handler has started with part of the body
                writer.write(body[10:])
            await writer.drain()
            answer = await reader.read()
            writer.close()
            assert answer.startswith(b"HTTP/1.1 202 "), answer
        await receiver.wait_for(2, delivered=True)
    assert [r.json()["data"] for r in receiver.delivered] == [{"n": 1, "text": "é" * 40}] * 2


async def test_rate_limit_per_token(tmp_path: Path, receiver: Receiver) -> None:
    path = write_config(
        tmp_path, config_text(receiver.url(), token_options="requests_per_minute = 2")
    )
    async with gateway_at(path, store="memory") as (_, url), aiohttp.ClientSession() as session:
        answers = [
            await call(session, "GET", f"{url}/v1/webhooks", token="reader") for _ in range(3)
        ]
        assert [a[0] for a in answers] == [200, 200, 429]
        _, body, headers = answers[2]
        assert headers["Content-Type"] == PROBLEM and int(headers["Retry-After"]) >= 1
        assert "'reader' may make 2 requests a minute" in body["detail"]
        # Each token has its own budget.
        assert (await call(session, "GET", f"{url}/v1/webhooks", token="admin"))[0] == 200


async def test_dead_letter_replay_through_the_api(config: Path, receiver: Receiver) -> None:
    receiver.respond(500, b"down")
    async with gateway_at(config) as (gateway, url), aiohttp.ClientSession() as session:
        for n in range(2):
            status, _, _ = await call(
                session, "POST", f"{url}/v1/events", json={"event_type": "a", "data": {"n": n}}
            )
            assert status == 202
        await _until(lambda: gateway.dispatcher.get_webhook_stats("hook")["dead_letters"] == 2)
        status, body, _ = await call(session, "GET", f"{url}/v1/dead-letters?webhook=hook")
        assert status == 200 and body["total"] == 2
        letter = body["dead_letters"][0]
        assert letter["webhook_name"] == "hook" and letter["attempts"] == 1
        receiver.respond(200)
        status, body, _ = await call(
            session, "POST", f"{url}/v1/dead-letters/{letter['dead_letter_id']}/replay"
        )
        assert status == 202 and body["event_id"] == letter["event"]["event_id"]
        await receiver.wait_for(1, delivered=True)
        status, body, _ = await call(session, "POST", f"{url}/v1/dead-letters/replay?webhook=hook")
        assert status == 202 and len(body["replayed"]) == 1 and body["skipped"] == []
        await receiver.wait_for(2, delivered=True)
        assert (await call(session, "GET", f"{url}/v1/dead-letters"))[1]["total"] == 0
        status, body, _ = await call(session, "POST", f"{url}/v1/dead-letters/dl_nope/replay")
        assert status == 404 and body["type"] == "/problems/not-found"
        status, body, _ = await call(session, "GET", f"{url}/v1/dead-letters?webhook=nope")
        assert status == 404 and "known: hook" in body["detail"]
        status, body, _ = await call(session, "GET", f"{url}/v1/dead-letters?limit=0")
        assert status == 422 and body["errors"][0]["path"] == "query:limit"


async def test_enable_after_a_410(config: Path, receiver: Receiver) -> None:
    receiver.queue(Reply(status=410))
    async with gateway_at(config) as (gateway, url), aiohttp.ClientSession() as session:
        await call(session, "POST", f"{url}/v1/events", json={"event_type": "a", "data": {"n": 1}})
        await _until(lambda: not gateway.dispatcher.is_enabled("hook"))
        status, body, _ = await call(session, "GET", f"{url}/v1/webhooks")
        (hook,) = body["webhooks"]
        assert (hook["name"], hook["type"], hook["disabled"]) == ("hook", "custom", True)
        await call(session, "POST", f"{url}/v1/events", json={"event_type": "a", "data": {"n": 2}})
        status, body, _ = await call(session, "POST", f"{url}/v1/webhooks/hook/enable")
        assert status == 200 and body["disabled"] is False
        # The delivery the 410 stopped stays queued: both go out once the webhook is enabled.
        await receiver.wait_for(2, delivered=True)
        assert sorted(r.json()["data"]["n"] for r in receiver.delivered) == [1, 2]
        status, body, _ = await call(session, "GET", f"{url}/v1/webhooks/hook/stats")
        assert status == 200 and body["delivered_count"] == 2 and body["disabled"] is False
        status, body, _ = await call(session, "POST", f"{url}/v1/webhooks/nope/enable")
        assert status == 404


async def test_metrics_parse_as_prometheus_text(config: Path, receiver: Receiver) -> None:
    async with gateway_at(config) as (_, url), aiohttp.ClientSession() as session:
        for _ in range(3):
            await call(session, "POST", f"{url}/v1/events", json={"event_type": "a"})
        await receiver.wait_for(3, delivered=True)
        async with session.get(f"{url}/metrics", headers=auth("reader")) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            text = await response.text()
        samples = {
            (sample.name, sample.labels.get("webhook")): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }
        assert samples[("empathy_webhooks_delivered_total", "hook")] == 3
        assert samples[("empathy_webhooks_dead_letters", "hook")] == 0


async def test_metrics_open_when_configured(tmp_path: Path, receiver: Receiver) -> None:
    path = write_config(tmp_path, config_text(receiver.url(), serve="metrics_open = true"))
    async with gateway_at(path, store="memory") as (_, url), aiohttp.ClientSession() as session:
        assert (await call(session, "GET", f"{url}/metrics", token=None))[0] == 200


async def test_stopping_gateway_answers_503(config: Path) -> None:
    async with gateway_at(config) as (gateway, url), aiohttp.ClientSession() as session:
        gateway.begin_stopping()
        status, body, headers = await call(
            session, "POST", f"{url}/v1/events", json={"event_type": "a"}
        )
        assert status == 503 and body["type"] == "/problems/shutting-down"
        assert headers["Retry-After"]
        assert (await call(session, "GET", f"{url}/readyz", token=None))[0] == 503


async def test_client_emits_with_an_idempotency_key(config: Path, receiver: Receiver) -> None:
    async with gateway_at(config) as (_, url):
        async with GatewayClient(url, TOKENS["writer"]) as client:
            accepted = await client.emit("prediction", {"p": 1}, empathy_level=4, severity="high")
            assert accepted.webhooks == ("hook",) and not accepted.replayed
            again = await client.emit("prediction", {"p": 2}, idempotency_key="same")
            replayed = await client.emit("prediction", {"p": 2}, idempotency_key="same")
            assert replayed.replayed and replayed.event_id == again.event_id
            with pytest.raises(GatewayError) as refused:
                await client.emit("prediction", {"p": 3}, empathy_level=9)
            assert refused.value.status == 422
            assert refused.value.problem["errors"][0]["path"] == "$.empathy_level"
            assert TOKENS["writer"] not in repr(client)
        await receiver.wait_for(2, delivered=True)
        body = receiver.delivered[0].json()
        assert (body["data"], body["empathy_level"], body["severity"]) == ({"p": 1}, 4, "high")
        async with GatewayClient(url, "tk-wrong-" + "x" * 20) as client:
            with pytest.raises(GatewayError) as unauthorized:
                await client.emit("prediction")
            assert unauthorized.value.status == 401


async def test_client_retries_until_the_gateway_listens(config: Path, receiver: Receiver) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    async with GatewayClient(url, TOKENS["writer"], retries=1, backoff=0.01) as client:
        with pytest.raises(GatewayError) as unreachable:
            await client.emit("prediction")
        assert unreachable.value.status == 0
        assert "cannot reach the gateway" in str(unreachable.value)
    from empathy_webhooks_core.config import load_config
    from empathy_webhooks_core.gateway import Gateway, running

    async with GatewayClient(url, TOKENS["writer"], retries=50, backoff=0.02) as client:
        emitting = asyncio.ensure_future(client.emit("prediction", {"late": True}))
        gateway = Gateway.from_config(load_config(config))
        async with running(gateway, port=port):
            accepted = await emitting
            await receiver.wait_for(1, delivered=True)
    assert receiver.delivered_event_ids() == {accepted.event_id: 1}


def test_a_token_written_in_the_file_is_refused(tmp_path: Path) -> None:
    text = config_text("http://127.0.0.1:9/hook", tokens={})
    text += (
        '\n[[serve.tokens]]\nname = "bad"\ntoken = "tk-literal-secret-value-123"\n'
        'scopes = ["read"]\n'
    )
    with pytest.raises(ConfigError) as error:
        load_config(write_config(tmp_path, text))
    (line,) = error.value.problems
    assert line.startswith("serve.tokens[0].token: a token is never written in the file")
    assert "tk-literal-secret-value-123" not in str(error.value)
    text = config_text("http://127.0.0.1:9/hook", tokens={})
    text += '\n[[serve.tokens]]\nname = "env"\ntoken = "${GW_TEST_TOKEN}"\nscopes = ["reed"]\n'
    with pytest.raises(ConfigError) as error:
        load_config(write_config(tmp_path, text), env={"GW_TEST_TOKEN": "t" * 32})
    assert "unknown scope 'reed' (did you mean 'read'?)" in str(error.value)
    config = load_config(
        write_config(tmp_path, text.replace("reed", "read")), env={"GW_TEST_TOKEN": "t" * 32}
    )
    assert config.serve is not None and "t" * 32 not in repr(config.serve)


async def test_token_from_the_environment_and_logs_name_only(
    tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    token = "tk-env-" + "s3cr3t" * 5
    text = config_text(receiver.url(), tokens={})
    text += '\n[[serve.tokens]]\nname = "from-env"\ntoken = "${GW_ENV_TOKEN}"\nscopes = ["admin"]\n'
    config = load_config(write_config(tmp_path, text), env={"GW_ENV_TOKEN": token})
    from empathy_webhooks_core.gateway import Gateway, running

    caplog.set_level(logging.INFO, logger="empathy_webhooks")
    gateway = Gateway.from_config(config, store="memory")
    async with running(gateway) as url, aiohttp.ClientSession() as session:
        headers = {"Authorization": f"Bearer {token}"}
        async with session.post(f"{url}/v1/events", json={"event_type": "a"}, headers=headers) as r:
            assert r.status == 202
            answer = await r.text()
        async with session.get(f"{url}/v1/webhooks", headers=headers) as r:
            answer += await r.text()
    assert token not in answer
    lines = [record.getMessage() for record in caplog.records]
    requests = [line for line in lines if "gateway_request" in line]
    assert any("caller='from-env'" in line and "status=202" in line for line in requests), lines
    assert not any(token in line for line in lines)


def test_serve_refuses_a_public_address_without_tokens(tmp_path: Path) -> None:
    from empathy_webhooks_core.cli import run

    path = write_config(tmp_path, config_text("http://127.0.0.1:9/hook", tokens={}))
    assert run(["serve", "--config", str(path), "--host", "0.0.0.0"]) == 2


async def test_events_and_deliveries_show_every_attempt(tmp_path: Path, receiver: Receiver) -> None:
    """Injected faults (a 503, a dropped connection, then a 200): the event's page and the
    delivery listing show each attempt with its status or transport error and verdict."""
    path = write_config(
        tmp_path,
        config_text(
            receiver.url(),
            store=f"sqlite:///{tmp_path / 'outbox.db'}",
            retry_policy="{ max_retries = 3, initial_delay_seconds = 0.001, "
            "max_delay_seconds = 0.01 }",
        ),
    )
    receiver.queue(Reply(status=503, body=b"busy, try later"), Reply(reset=True))
    async with gateway_at(path) as (_, url), aiohttp.ClientSession() as session:
        _, first, _ = await call(session, "POST", f"{url}/v1/events", json={"event_type": "a"})
        event_id = first["event_id"]
        await receiver.wait_for(1, delivered=True)

        async def delivered() -> dict:  # type: ignore[type-arg]
            async def poll() -> dict:  # type: ignore[type-arg]
                while True:  # the record is written with the store's next commit
                    status, body, _ = await call(session, "GET", f"{url}/v1/events/{event_id}")
                    if status == 200 and body["deliveries"][0]["status"] == "delivered":
                        return body  # type: ignore[no-any-return]
                    await asyncio.sleep(0.02)

            return await asyncio.wait_for(poll(), 10)

        body = await delivered()
        assert body["event"]["event_id"] == event_id and body["event"]["event_type"] == "a"
        (delivery,) = body["deliveries"]
        assert delivery["webhook"] == "hook"
        attempts = delivery["attempts"]
        assert [a["attempt"] for a in attempts] == [1, 2, 3]
        assert [a["status"] for a in attempts] == [503, None, 200]
        assert [a["verdict"] for a in attempts] == ["retry", "retry", "success"]
        assert "busy, try later" in attempts[0]["response_excerpt"]
        assert attempts[1]["error"] and attempts[1]["next_retry_at"] is not None
        assert attempts[2]["body_bytes"] > 0

        status, one, _ = await call(
            session, "GET", f"{url}/v1/deliveries/{delivery['delivery_id']}"
        )
        assert status == 200 and one == delivery
        await call(session, "POST", f"{url}/v1/events", json={"event_type": "b"})
        await receiver.wait_for(2, delivered=True)
        status, page, _ = await call(session, "GET", f"{url}/v1/deliveries?webhook=hook&limit=1")
        assert status == 200 and len(page["deliveries"]) == 1 and page["next_cursor"]
        newest = page["deliveries"][0]
        status, rest, _ = await call(
            session, "GET", f"{url}/v1/deliveries?limit=1&cursor={page['next_cursor']}"
        )
        assert status == 200 and rest["deliveries"][0]["event_id"] == event_id
        assert newest["event_type"] == "b" and rest["next_cursor"] is None
        status, only, _ = await call(session, "GET", f"{url}/v1/deliveries?event_type=a")
        assert [d["event_id"] for d in only["deliveries"]] == [event_id]
        status, since, _ = await call(
            session, "GET", f"{url}/v1/deliveries?since=2999-01-01T00:00:00Z"
        )
        assert (status, since["deliveries"]) == (200, [])
        for bad in ("status=lost", "cursor=nope", "since=yesterday", "limit=501"):
            status, problem, _ = await call(session, "GET", f"{url}/v1/deliveries?{bad}")
            assert status == 422 and problem["type"] == "/problems/invalid-query", bad
        assert (await call(session, "GET", f"{url}/v1/events/evt_nope"))[0] == 404
        assert (await call(session, "GET", f"{url}/v1/deliveries/nope"))[0] == 404


async def test_no_public_address_without_a_token(tmp_path: Path) -> None:
    from empathy_webhooks_core.gateway import Gateway, running

    path = write_config(tmp_path, config_text("http://127.0.0.1:9/hook", tokens={}))
    gateway = Gateway.from_config(load_config(path), store="memory")
    with pytest.raises(ValueError, match="refusing to listen on 0.0.0.0 without a token"):
        async with running(gateway, host="0.0.0.0"):
            pass
