"""The gateway and its console, third audit: connections that never finish a request are
closed, a body with a key twice or not in UTF-8 is refused, what admission raises is told
apart (a bug is a 500, the store down a 503, the event's own fault a 422), a batch partly
queued is never a 2xx, headers that could mean two things are refused, a gateway without
tokens answers no web page, and a dead letter replayed twice at once is sent once."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from empathy_webhooks_core.events import EventDataError
from empathy_webhooks_core.gateway import bodies, connections
from empathy_webhooks_core.testing import Receiver

from ._console_kit import browser_session, console_config, csrf_of, log_in, page_csrf
from ._gateway_kit import TOKENS, auth, call, config_text, gateway_at, write_config

PROBLEM = "application/problem+json"


def _store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'outbox.db'}"


@pytest.fixture
def config(tmp_path: Path, receiver: Receiver) -> Path:
    return write_config(tmp_path, config_text(receiver.url(), store=_store(tmp_path)))


def _address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    """Whether the server closes the connection within `seconds` (whatever it sent first)."""
    try:
        async with asyncio.timeout(seconds):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


async def _raw(url: str, request: bytes, timeout: float = 5) -> bytes:
    """Send `request` as it is; everything the server answers until it closes (or
    `timeout`)."""
    reader, writer = await asyncio.open_connection(*_address(url))
    writer.write(request)
    await writer.drain()
    answer = b""
    try:
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(65536):
                answer += chunk
    except TimeoutError:
        pass
    finally:
        writer.close()
    return answer


async def _answer(url: str, request: bytes, timeout: float = 5) -> bytes:
    """Send `request`; the answer's head and body (by its Content-Length), without waiting
    for the server to close (aiohttp lingers a while to drain an unread body)."""
    reader, writer = await asyncio.open_connection(*_address(url))
    writer.write(request)
    await writer.drain()
    try:
        async with asyncio.timeout(timeout):
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"Content-Length: (\d+)", head)
            assert length is not None, head
            return head + await reader.readexactly(int(length.group(1)))
    finally:
        writer.close()


def _post(
    body: bytes,
    *headers: tuple[str, str],
    path: str = "/v1/events",
    content_type: str = "application/json",
) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    head += f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers)
    return head.encode() + b"\r\n" + body


# -- connections that hold no request --------------------------------------------------------


async def test_connections_that_never_finish_a_request_head_are_closed(
    config: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Slowloris: a connection that sends nothing, one that trickles its head a header at a
    time, and one left idle after its request were kept for as long as the client liked
    (aiohttp's keep-alive timeout is an hour, and before 3.14 not armed before a request)."""
    monkeypatch.setattr(connections, "IDLE_SECONDS", 1.0)
    async with gateway_at(config) as (gateway, url):
        silent = await asyncio.open_connection(*_address(url))
        trickling = await asyncio.open_connection(*_address(url))
        trickling[1].write(b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        idle = await asyncio.open_connection(*_address(url))
        idle[1].write(
            _post(b'{"event_type":"a"}', *auth("writer").items()).replace(
                b"Connection: close\r\n", b""
            )
        )

        async def trickle() -> None:
            for n in range(40):
                await asyncio.sleep(0.1)
                trickling[1].write(f"X-Slow-{n}: 1\r\n".encode())
                try:
                    await trickling[1].drain()
                except ConnectionError:
                    return

        trickler = asyncio.create_task(trickle())
        head = await asyncio.wait_for(idle[0].readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 202 "), head
        for reader, _ in (silent, trickling, idle):
            assert await _closed_within(reader, 4)
        trickler.cancel()
        for _, writer in (silent, trickling, idle):
            writer.close()
        # The gateway still answers new connections.
        async with aiohttp.ClientSession() as session:
            status, _, _ = await call(session, "GET", f"{url}/healthz", token=None)
            assert status == 200
        assert gateway.connections is not None
    assert gateway.connections.sweep(0.0) == 0  # nothing watched once stopped


async def test_a_request_under_way_is_not_cut_for_idleness(
    config: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Idle means holding no request: a body still arriving (within its own 30 s) is not."""
    monkeypatch.setattr(connections, "IDLE_SECONDS", 0.5)
    body = json.dumps({"event_type": "slow", "data": {"pad": "x" * 200}}).encode()
    request = _post(body, *auth("writer").items())
    cut = len(request) - len(body) + 20
    async with gateway_at(config) as (_, url):
        reader, writer = await asyncio.open_connection(*_address(url))
        writer.write(request[:cut])
        for start in range(cut, len(request), 40):
            await asyncio.sleep(0.3)  # 2 s in all: four times the idle limit
            writer.write(request[start : start + 40])
        answer = await asyncio.wait_for(reader.read(65536), 5)
        writer.close()
    assert answer.startswith(b"HTTP/1.1 202 "), answer


async def test_a_console_form_that_never_finishes_is_cut_off_with_408(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The login form is open to anyone: its body, trickled, held the request forever."""
    monkeypatch.setattr(bodies, "BODY_SECONDS", 0.5)
    path = console_config(tmp_path, receiver.url())
    async with gateway_at(path) as (gateway, url):
        head = (
            "POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 200\r\n\r\n"
        )
        answer = await _answer(url, head.encode() + b"csrf=abc&token=")
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert b"did not arrive in time" in answer
        assert b"Connection: close" in answer
        assert gateway.in_flight == 0


async def test_a_client_that_goes_away_mid_body_is_no_server_error(
    config: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """Its body cut short was logged as a failure of the gateway (a 500 and an error line)."""
    caplog.set_level(logging.INFO, logger="empathy_webhooks")
    body = b'{"event_type": "gone", "data": {"pad": "' + b"x" * 500 + b'"}}'
    async with gateway_at(config) as (gateway, url):
        for path, kind in (
            ("/v1/events", "application/json"),
            ("/login", "application/x-www-form-urlencoded"),
        ):
            request = _post(body, *auth("writer").items(), path=path, content_type=kind)
            _, writer = await asyncio.open_connection(*_address(url))
            writer.write(request[: len(request) - 300])
            await writer.drain()
            await asyncio.sleep(0.2)
            writer.transport.abort()
            for _ in range(100):
                if gateway.in_flight == 0:
                    break
                await asyncio.sleep(0.02)
            assert gateway.in_flight == 0
    lines = [record.getMessage() for record in caplog.records]
    assert not [line for line in lines if "gateway_request_failed" in line], lines
    assert sum("status=499" in line for line in lines) == 2, lines
    assert receiver.requests == []


# -- bodies ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (b'{"event_type": "alert", "event_type": "x"}', "$.event_type"),
        (b'{"event_type": "alert", "data": {"to": "ops", "to": "ceo"}}', "$.data.to"),
        (b'{"event_type": "a", "data": {"l": [{"k": 1}, {"k": 1, "k": 2}]}}', "$.data.l[1].k"),
        (b'{"event_type": "a", "metadata": {"m": 1, "m": 1}}', "$.metadata.m"),
    ],
)
async def test_a_key_sent_twice_is_refused_naming_its_place(
    config: Path, receiver: Receiver, body: bytes, path: str
) -> None:
    """Which of two values counts differs between parsers (Python's: the last): a proxy
    or a signature check that read the other must not see the gateway act on this one."""
    async with gateway_at(config) as (_, url), aiohttp.ClientSession() as session:
        for headers in ({}, {"Idempotency-Key": "dup-1"}):
            status, answer, got = await call(
                session,
                "POST",
                f"{url}/v1/events",
                token="writer",
                data=body,
                headers={"Content-Type": "application/json", **headers},
            )
            assert status == 422, answer
            assert got["Content-Type"] == PROBLEM
            assert answer["type"] == "/problems/invalid-body"
            assert answer["errors"][0]["path"] == path
            assert "more than once" in answer["errors"][0]["message"]
        batch = b'{"events": [{"event_type": "a"}], "events": [{"event_type": "b"}]}'
        status, answer, _ = await call(
            session,
            "POST",
            f"{url}/v1/events:batch",
            token="writer",
            data=batch,
            headers={"Content-Type": "application/json"},
        )
        assert status == 422 and answer["errors"][0]["path"] == "$.events", answer
    assert receiver.requests == []


async def test_bodies_not_in_utf8_are_refused_and_a_bom_is_ignored(
    config: Path, receiver: Receiver
) -> None:
    """JSON on the wire is UTF-8 (RFC 8259 8.1): UTF-16 was decoded anyway, by guessing."""
    event = '{"event_type": "café"}'
    async with gateway_at(config) as (_, url), aiohttp.ClientSession() as session:
        for body in (event.encode("utf-16"), event.encode("utf-32"), event.encode("latin-1")):
            status, answer, _ = await call(
                session,
                "POST",
                f"{url}/v1/events",
                token="writer",
                data=body,
                headers={"Content-Type": "application/json"},
            )
            assert status == 422, answer
            assert answer["type"] == "/problems/invalid-json"
            assert "not UTF-8" in answer["detail"]
        status, answer, _ = await call(
            session,
            "POST",
            f"{url}/v1/events",
            token="writer",
            data=b"\xef\xbb\xbf" + event.encode(),
            headers={"Content-Type": "application/json"},
        )
        assert status == 202, answer
        status, shown, _ = await call(
            session, "GET", f"{url}/v1/events/{answer['event_id']}", token="reader"
        )
        assert shown["event"]["event_type"] == "café"


# -- what admission raises -------------------------------------------------------------------


class DriverDown(Exception):
    """What a third-party store's driver might raise: not one we know."""


def _failing_admit(exc: BaseException) -> Any:
    async def admit(event: Any) -> list[str]:
        raise exc

    return admit


@pytest.mark.parametrize(
    ("raised", "status", "kind"),
    [
        (sqlite3.OperationalError("database is locked"), 503, "/problems/store-unavailable"),
        (ConnectionError("connection refused"), 503, "/problems/store-unavailable"),
        (TimeoutError(), 503, "/problems/store-unavailable"),
        (DriverDown("cluster down"), 503, "/problems/store-unavailable"),
        (RuntimeError("the SQLite store is not open"), 503, "/problems/store-unavailable"),
        (TypeError("unsupported operand"), 500, "/problems/server-error"),
        (AttributeError("'NoneType' object has no attribute 'x'"), 500, "/problems/server-error"),
        (KeyError("lane"), 500, "/problems/server-error"),
        (EventDataError("data['a'] is nested too deep"), 422, "/problems/invalid-body"),
    ],
)
async def test_admission_errors_are_told_apart(
    config: Path,
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    raised: BaseException,
    status: int,
    kind: str,
) -> None:
    """Every exception was a 503 "the store did not answer": a bug in our code looked like
    overload, and clients retried it for ever. Now a bug is a 500 with its traceback logged;
    the store (whatever its driver raises) stays a 503 with Retry-After."""
    caplog.set_level(logging.INFO, logger="empathy_webhooks")
    async with gateway_at(config) as (gateway, url), aiohttp.ClientSession() as session:
        monkeypatch.setattr(gateway.intake, "admit", _failing_admit(raised))
        for route, body, headers in (
            ("/v1/events", {"event_type": "a"}, {}),
            ("/v1/events", {"event_type": "a"}, {"Idempotency-Key": "adm-1"}),
            ("/v1/events:batch", {"events": [{"event_type": "a"}, {"event_type": "b"}]}, {}),
        ):
            answer_status, answer, got = await call(
                session, "POST", f"{url}{route}", token="writer", json=body, headers=headers
            )
            assert answer_status == status, (route, answer)
            assert answer["type"] == kind
            assert got["Content-Type"] == PROBLEM
            assert ("Retry-After" in got) == (status == 503)
            assert TOKENS["writer"] not in json.dumps(answer)
        # The key of a failed request is free again.
        monkeypatch.undo()
        answer_status, _, _ = await call(
            session,
            "POST",
            f"{url}/v1/events",
            token="writer",
            json={"event_type": "a"},
            headers={"Idempotency-Key": "adm-1"},
        )
        assert answer_status == 202
    lines = [record.getMessage() for record in caplog.records]
    failed = [line for line in lines if "gateway_request_failed" in line]
    if status == 500:
        assert len(failed) == 3, lines
        assert all("Traceback" in line and type(raised).__name__ in line for line in failed)
    else:
        assert failed == [], failed
    assert not any(TOKENS["writer"] in line for line in lines)


async def test_data_deeper_than_the_dispatcher_takes_is_a_422_not_a_503_for_ever(
    tmp_path: Path, receiver: Receiver
) -> None:
    """The gateway built events under the default nesting limit (64) and the dispatcher
    refused them at admission under its own (`max_data_depth`): answered 503 "retry", so
    the event was retried and refused for ever."""
    path = write_config(tmp_path, config_text(receiver.url(), store=_store(tmp_path)))
    deep: dict[str, Any] = {"leaf": 1}
    for _ in range(6):
        deep = {"d": deep}
    async with (
        gateway_at(path, max_data_depth=4) as (_, url),
        aiohttp.ClientSession() as session,
    ):
        status, answer, _ = await call(
            session,
            "POST",
            f"{url}/v1/events",
            token="writer",
            json={"event_type": "a", "data": deep},
        )
        assert status == 422, answer
        assert answer["errors"][0]["path"].startswith("$.data.d.d.d.d")
        batch = {"events": [{"event_type": "a"}, {"event_type": "b", "data": deep}]}
        status, answer, _ = await call(
            session, "POST", f"{url}/v1/events:batch", token="writer", json=batch
        )
        assert status == 422, answer
        assert answer["errors"][0]["path"].startswith("$.events[1].data.d")
        status, _, _ = await call(
            session,
            "POST",
            f"{url}/v1/events",
            token="writer",
            json={"event_type": "a", "data": {"d": {"d": 1}}},
        )
        assert status == 202
    await receiver.wait_for(1)
    assert len(receiver.requests) == 1


# -- a batch partly queued -------------------------------------------------------------------


async def test_a_batch_partly_queued_is_never_a_2xx(tmp_path: Path, receiver: Receiver) -> None:
    """A batch whose last event every webhook refused (its queue full) was answered 202,
    "all or none" and "every event queued" in the documentation: a caller that reads the
    status thought it sent. Now a 503 naming which were queued, kept under its key, so a
    retry with the key queues none of them twice."""
    receiver.respond(200, delay=30)  # deliveries stay in flight: the queue stays full
    path = write_config(
        tmp_path,
        config_text(receiver.url(), store=_store(tmp_path), webhook="max_pending = 2"),
    )
    batch = {"events": [{"event_type": "a"}, {"event_type": "b"}, {"event_type": "c"}]}
    async with gateway_at(path) as (_, url), aiohttp.ClientSession() as session:
        status, answer, headers = await call(
            session,
            "POST",
            f"{url}/v1/events:batch",
            token="writer",
            json=batch,
            headers={"Idempotency-Key": "part-1"},
        )
        assert status == 503, answer
        assert headers["Content-Type"] == PROBLEM and int(headers["Retry-After"]) >= 1
        assert answer["type"] == "/problems/batch-partly-queued"
        assert [event["queued"] for event in answer["events"]] == [True, True, False]
        assert answer["events"][2]["refused"] == ["hook"]
        assert "2 of the 3 events were queued" in answer["detail"]
        queued = {event["event_id"] for event in answer["events"][:2]}
        # The same key again: the same answer, nothing queued twice.
        status, again, headers = await call(
            session,
            "POST",
            f"{url}/v1/events:batch",
            token="writer",
            json=batch,
            headers={"Idempotency-Key": "part-1"},
        )
        assert status == 503 and headers["Idempotent-Replayed"] == "true"
        assert headers["Content-Type"] == PROBLEM
        assert again["events"] == answer["events"]
        # Nothing of a batch at all: 503, retrying all of it is safe.
        status, answer, _ = await call(
            session, "POST", f"{url}/v1/events:batch", token="writer", json=batch
        )
        assert status == 503 and answer["type"] == "/problems/queue-full", answer
        status, page, _ = await call(session, "GET", f"{url}/v1/deliveries", token="reader")
        assert {record["event_id"] for record in page["deliveries"]} == queued


# -- headers that could mean two things ------------------------------------------------------


async def test_two_authorization_or_idempotency_headers_are_refused(
    config: Path, receiver: Receiver
) -> None:
    """The first of two Authorization headers counted: a proxy that checked the other
    would let a request through on a token it never saw."""
    writer = f"Bearer {TOKENS['writer']}"
    async with gateway_at(config) as (_, url):
        for first, second in ((writer, "Bearer wrong"), ("Bearer wrong", writer), (writer, writer)):
            answer = await _raw(
                url,
                _post(b'{"event_type": "a"}', ("Authorization", first), ("Authorization", second)),
            )
            assert answer.startswith(b"HTTP/1.1 401 "), answer[:100]
            assert b"one Authorization header" in answer
            assert TOKENS["writer"].encode() not in answer
        answer = await _raw(
            url,
            _post(
                b'{"event_type": "a"}',
                ("Authorization", writer),
                ("Idempotency-Key", "k-1"),
                ("Idempotency-Key", "k-2"),
            ),
        )
        assert answer.startswith(b"HTTP/1.1 422 "), answer[:100]
        assert b"header:Idempotency-Key" in answer
        # One of each, in any case of the scheme: accepted.
        answer = await _raw(
            url,
            _post(
                b'{"event_type": "a"}',
                ("authorization", "bearer " + TOKENS["writer"]),
                ("Idempotency-Key", "k-3"),
            ),
        )
        assert answer.startswith(b"HTTP/1.1 202 "), answer[:100]


async def test_a_token_in_the_query_string_is_no_token_and_is_not_logged(
    config: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="empathy_webhooks")
    async with gateway_at(config) as (_, url), aiohttp.ClientSession() as session:
        for name in ("access_token", "token", "bearer"):
            status, answer, _ = await call(
                session,
                "POST",
                f"{url}/v1/events",
                token=None,
                json={"event_type": "a"},
                params={name: TOKENS["writer"]},
            )
            assert status == 401, answer
        for header in ("", "Bearer", "Bearer ", "Basic " + TOKENS["writer"], TOKENS["writer"]):
            status, _, _ = await call(
                session,
                "POST",
                f"{url}/v1/events",
                token=None,
                json={"event_type": "a"},
                headers={"Authorization": header},
            )
            assert status == 401, header
    lines = [record.getMessage() for record in caplog.records]
    assert any("status=401" in line for line in lines)
    assert not any(TOKENS["writer"] in line for line in lines)
    assert receiver.requests == []


# -- a gateway without tokens ----------------------------------------------------------------


async def test_a_gateway_without_tokens_answers_no_web_page(
    tmp_path: Path, receiver: Receiver
) -> None:
    """Without tokens every local caller may do everything: a web page of another site
    could post a form to 127.0.0.1 (replay every dead letter, no preflight needed) or
    rebind its own name to 127.0.0.1 and read the answers."""
    path = write_config(tmp_path, config_text(receiver.url(), store=_store(tmp_path), tokens={}))
    async with gateway_at(path) as (_, url):
        port = _address(url)[1]
        refused = [
            ("POST", "/v1/dead-letters/replay", "Host: 127.0.0.1", "Origin: https://evil.example"),
            ("POST", "/v1/dead-letters/replay", "Host: 127.0.0.1", "Origin: null"),
            ("GET", "/v1/dead-letters", f"Host: evil.example:{port}", ""),
            ("GET", "/v1/webhooks", f"Host: 127.0.0.1.evil.example:{port}", ""),
            ("GET", "/v1/webhooks", "Host: 127.0.0.1", f"Origin: http://evil.example:{port}"),
        ]
        for method, route, host, origin in refused:
            head = f"{method} {route} HTTP/1.1\r\n{host}\r\nConnection: close\r\n"
            head += f"{origin}\r\n" if origin else ""
            head += "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 0\r\n"
            answer = await _raw(url, head.encode() + b"\r\n")
            assert answer.startswith(b"HTTP/1.1 403 "), (host, origin, answer[:300])
            assert b"/problems/forbidden" in answer
        allowed = [
            f"Host: 127.0.0.1:{port}",
            f"Host: localhost:{port}",
            f"Host: 127.0.0.1:{port}\r\nOrigin: http://127.0.0.1:{port}",
            f"Host: localhost\r\nOrigin: http://localhost:{port}",
        ]
        for host in allowed:
            head = f"GET /v1/webhooks HTTP/1.1\r\n{host}\r\nConnection: close\r\n\r\n"
            answer = await _raw(url, head.encode())
            assert answer.startswith(b"HTTP/1.1 200 "), (host, answer[:300])
        async with aiohttp.ClientSession() as session:
            status, _, _ = await call(
                session, "POST", f"{url}/v1/events", token=None, json={"event_type": "a"}
            )
            assert status == 202
            status, _, _ = await call(session, "GET", f"{url}/healthz", token=None)
            assert status == 200


# -- the console -----------------------------------------------------------------------------


async def _dead_letter(session: aiohttp.ClientSession, url: str, receiver: Receiver) -> str:
    receiver.respond(500, b"down")
    status, _, _ = await call(
        session, "POST", f"{url}/v1/events", token="writer", json={"event_type": "alert"}
    )
    assert status == 202
    await receiver.wait_for(1)
    for _ in range(200):
        _, letters, _ = await call(session, "GET", f"{url}/v1/dead-letters", token="reader")
        if letters["dead_letters"]:
            return str(letters["dead_letters"][0]["dead_letter_id"])
        await asyncio.sleep(0.05)
    raise AssertionError("no dead letter")


async def test_a_dead_letter_replayed_twice_at_once_is_sent_once(
    tmp_path: Path, receiver: Receiver
) -> None:
    path = console_config(tmp_path, receiver.url())
    async with (
        gateway_at(path) as (_, url),
        browser_session() as browser,
        aiohttp.ClientSession() as api,
    ):
        letter = await _dead_letter(api, url, receiver)
        assert (await log_in(browser, url, TOKENS["admin"]))[0] == 303
        csrf = await page_csrf(browser, url, "/dead-letters")
        receiver.respond(200)
        sent_before = len(receiver.requests)

        async def from_console() -> int:
            async with browser.post(
                f"{url}/dead-letters/{letter}/replay", data={"csrf": csrf}, allow_redirects=False
            ) as answer:
                return answer.status

        async def from_api() -> int:
            status, _, _ = await call(
                api, "POST", f"{url}/v1/dead-letters/{letter}/replay", token="admin"
            )
            return status

        statuses = await asyncio.gather(from_console(), from_api(), from_console(), from_api())
        assert statuses.count(303) == 2  # the console answers with its notice
        assert sorted(s for s in statuses if s != 303) in ([202, 404], [404, 404])
        await receiver.wait_for(sent_before + 1)
        await asyncio.sleep(0.3)
        assert len(receiver.requests) == sent_before + 1
        async with browser.get(f"{url}/dead-letters") as page:
            html = await page.text()
        assert "Replayed" in html or "Not replayed" in html
        assert not re.search(r"<script>", html)


async def test_the_login_form_is_rate_limited_per_address(
    tmp_path: Path, receiver: Receiver
) -> None:
    path = console_config(tmp_path, receiver.url())
    async with gateway_at(path) as (_, url), browser_session() as browser:
        async with browser.get(f"{url}/login") as page:
            form = csrf_of(await page.text())
        statuses = []
        for n in range(32):
            async with browser.post(
                f"{url}/login",
                data={"csrf": form, "token": f"guess-{n}", "next": "/"},
                allow_redirects=False,
            ) as answer:
                statuses.append(answer.status)
                form = csrf_of(await answer.text())  # each answer is a new form
        assert statuses[:30] == [401] * 30
        assert statuses[30:] == [429, 429]
        # Even the right token waits: the limit is on attempts, not on failures.
        async with browser.post(
            f"{url}/login",
            data={"csrf": form, "token": TOKENS["admin"], "next": "/"},
            allow_redirects=False,
        ) as answer:
            assert answer.status == 429


def test_login_attempts_from_one_ipv6_subscriber_share_one_limit() -> None:
    """A limit per address limited nobody on IPv6: one subscriber holds a /64 (2^64)."""
    from empathy_webhooks_core.console.login import _client

    assert _client("2001:db8::1") == _client("2001:db8::ffff:1234") == "2001:db8::/64"
    assert _client("2001:db8:0:1::1") != _client("2001:db8::1")
    assert _client("::ffff:192.0.2.7") == _client("192.0.2.7") == "192.0.2.7"
    assert _client("192.0.2.7") != _client("192.0.2.8")
    assert _client(None) == "None"
