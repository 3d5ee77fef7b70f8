"""The gateway and its console under hostile or unlucky requests, over loopback: nothing
accepted is answered 2xx unless it was queued, a body that never finishes is cut off, time
filters refuse NaN, secrets in event data are masked in API answers as on the pages, and
the console's login and forms hold against crafted input."""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from empathy_webhooks_core.gateway import bodies
from empathy_webhooks_core.testing import Receiver

from ._console_kit import browser_session, console_config, csrf_of, log_in, page_csrf
from ._gateway_kit import TOKENS, call, config_text, gateway_at, write_config

PROBLEM = "application/problem+json"


def _store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'outbox.db'}"


async def test_an_event_no_webhook_could_queue_is_503_with_retry_after(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.respond(200, delay=30)  # the first delivery stays in flight
    path = write_config(
        tmp_path, config_text(receiver.url(), store=_store(tmp_path), webhook="max_pending = 1")
    )
    async with gateway_at(path) as (_, url), aiohttp.ClientSession() as session:
        events = f"{url}/v1/events"
        status, body, _ = await call(
            session, "POST", events, token="writer", json={"event_type": "a"}
        )
        assert status == 202 and body["webhooks"] == ["hook"]
        await receiver.wait_for(1)
        status, body, headers = await call(
            session, "POST", events, token="writer", json={"event_type": "b"}
        )
        assert status == 503, body
        assert headers["Content-Type"] == PROBLEM and int(headers["Retry-After"]) >= 1
        assert body["type"] == "/problems/queue-full" and "'hook'" in body["detail"]
        # The key of a refused request is free again: a retry is not told "in use".
        for _ in range(2):
            status, body, _ = await call(
                session,
                "POST",
                events,
                token="writer",
                json={"event_type": "b"},
                headers={"Idempotency-Key": "full-1"},
            )
            assert status == 503 and body["type"] == "/problems/queue-full"
        batch = {"events": [{"event_type": "c"}, {"event_type": "d"}]}
        status, body, headers = await call(
            session, "POST", f"{url}/v1/events:batch", token="writer", json=batch
        )
        assert status == 503 and "Retry-After" in headers, body
    assert len(receiver.requests) == 1


class _Proxy:
    """A TCP relay to the shared Redis that can be cut: the store going away mid-run."""

    def __init__(self) -> None:
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", 6379)
        self._writers += [writer, up_writer]

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()


def _redis_up() -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", 6379), 1):
        return True
    return False


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    if not _redis_up():
        pytest.skip("no Redis on 127.0.0.1:6379")
    pytest.importorskip("empathy_webhooks_redis")
    prefix = f"audit-gateway-{secrets.token_hex(6)}:"
    yield prefix
    from empathy_webhooks_redis.testing import delete_prefix

    await delete_prefix(prefix)


async def test_a_store_that_stops_answering_is_503_with_retry_after(
    tmp_path: Path, receiver: Receiver, redis_prefix: str
) -> None:
    proxy = _Proxy()
    port = await proxy.start()
    store = (
        f"redis://127.0.0.1:{port}/0?prefix={redis_prefix}"
        "&socket_timeout=2&socket_connect_timeout=2"
    )
    path = write_config(tmp_path, config_text(receiver.url(), store=store))
    async with gateway_at(path) as (_, url), aiohttp.ClientSession() as session:
        events = f"{url}/v1/events"
        status, _, _ = await call(session, "POST", events, token="writer", json={"event_type": "a"})
        assert status == 202
        proxy.cut()
        for headers in ({}, {"Idempotency-Key": "down-1"}):
            status, body, answer = await call(
                session, "POST", events, token="writer", json={"event_type": "b"}, headers=headers
            )
            assert status == 503, body  # a 500 would tell clients not to retry
            assert int(answer["Retry-After"]) >= 1
            assert body["type"] == "/problems/store-unavailable"
            assert "nothing was queued" in body["detail"]


async def _raw(url: str, request: bytes, timeout: float = 5) -> bytes:
    """Send `request` as it is; the answer's head and its JSON body (aiohttp then lingers
    a while to drain the unread body before it closes)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    await writer.drain()
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
        return head + await asyncio.wait_for(reader.readexactly(length), timeout)
    finally:
        writer.close()


async def test_a_body_that_never_finishes_is_cut_off_with_408(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bodies, "BODY_SECONDS", 0.5)
    path = write_config(tmp_path, config_text(receiver.url(), store=_store(tmp_path)))
    head = (
        "POST /v1/events HTTP/1.1\r\nHost: gateway\r\n"
        f"Authorization: Bearer {TOKENS['writer']}\r\nContent-Type: application/json\r\n"
    )
    async with gateway_at(path) as (gateway, url):
        for framing, sent in (
            ("Content-Length: 100\r\n\r\n", b'{"event_type": "x"}'),  # declared more than sent
            ("Transfer-Encoding: chunked\r\n\r\n", b'5\r\n{"eve\r\n'),  # no last chunk
        ):
            answer = await _raw(url, (head + framing).encode() + sent)
            assert answer.startswith(b"HTTP/1.1 408 "), answer
            assert b"/problems/body-timeout" in answer
            assert b"Connection: close" in answer
        assert gateway.in_flight == 0
    assert receiver.requests == []


async def test_time_filters_refuse_nan_and_infinity(tmp_path: Path, receiver: Receiver) -> None:
    path = write_config(tmp_path, config_text(receiver.url(), store=_store(tmp_path)))
    async with gateway_at(path) as (_, url), aiohttp.ClientSession() as session:
        for name, value in (("since", "nan"), ("until", "inf"), ("since", "-Infinity")):
            status, body, _ = await call(
                session, "GET", f"{url}/v1/deliveries", token="reader", params={name: value}
            )
            assert status == 422, body
            assert body["errors"] == [{"path": f"query:{name}", "message": "not a time"}]
        status, _, _ = await call(
            session, "GET", f"{url}/v1/deliveries", token="reader", params={"since": "1.5"}
        )
        assert status == 200


async def test_api_answers_mask_secrets_in_event_data_as_the_console_does(
    tmp_path: Path, receiver: Receiver
) -> None:
    signing = "whsec-audit-marker-0c4e91"
    password = "pw-audit-marker-7d2b55"
    path = write_config(
        tmp_path,
        config_text(
            receiver.url(), store=_store(tmp_path), webhook=f'signing_secret = "{signing}"'
        ),
    )
    receiver.respond(500, b"down")
    event = {
        "event_type": "leak",
        "data": {"note": f"copied {signing}", "password": password, "n": 1},
        "metadata": {"api_key": password},
    }
    async with gateway_at(path) as (_, url), aiohttp.ClientSession() as session:
        status, body, _ = await call(
            session, "POST", f"{url}/v1/events", token="writer", json=event
        )
        assert status == 202
        event_id = body["event_id"]
        await receiver.wait_for(1)
        for _ in range(200):
            status, letters, _ = await call(
                session, "GET", f"{url}/v1/dead-letters", token="reader"
            )
            if letters["dead_letters"]:
                break
            await asyncio.sleep(0.05)
        status, shown, _ = await call(session, "GET", f"{url}/v1/events/{event_id}", token="reader")
        assert status == 200
        for text in (str(letters), str(shown)):
            assert signing not in text and password not in text
        assert shown["event"]["event_type"] == "leak"
        assert shown["event"]["data"]["n"] == 1
        assert letters["dead_letters"][0]["event"]["data"]["password"] == "***"


@pytest.fixture
def console_path(tmp_path: Path, receiver: Receiver) -> Path:
    return console_config(tmp_path, receiver.url())


@pytest.mark.parametrize(
    "target", ["/\t/evil.example/", "/\n/evil.example", "/\r\n/x", "/ /evil.example", "/\x7f/x"]
)
async def test_login_never_sends_the_browser_to_another_site(
    console_path: Path, target: str
) -> None:
    async with gateway_at(console_path) as (_, url), browser_session() as session:
        async with session.get(f"{url}/login", params={"next": target}) as page:
            html = await page.text()
        assert 'name="next" value="/"' in html
        async with session.post(
            f"{url}/login",
            data={"csrf": csrf_of(html), "token": TOKENS["reader"], "next": target},
            allow_redirects=False,
        ) as answer:
            assert answer.status == 303
            assert answer.headers["Location"] == "/"


_HOSTILE_FORMS = [
    ("multipart/form-data", b"no boundary"),
    ("multipart/form-data; boundary=xx", b"--xx\r\nnot a header\r\n\r\n"),
    ("application/x-www-form-urlencoded", b"csrf=%ff%fe"),
    ("application/x-www-form-urlencoded; charset=no-such-charset", b"csrf=x"),
]


async def test_console_forms_that_do_not_parse_are_refused_not_a_server_error(
    console_path: Path,
) -> None:
    async with gateway_at(console_path) as (_, url), browser_session() as session:
        assert (await log_in(session, url, TOKENS["admin"]))[0] == 303
        for content_type, body in _HOSTILE_FORMS:
            for action in ("/login", "/dead-letters/replay", "/webhooks/hook/enable", "/logout"):
                async with session.post(
                    f"{url}{action}",
                    data=body,
                    headers={"Content-Type": content_type},
                    allow_redirects=False,
                ) as answer:
                    text = await answer.text()
                    assert answer.status == 403, (action, content_type, answer.status, text)
                    assert answer.content_type == "text/html"
        await page_csrf(session, url)  # still logged in: nothing was done
        async with session.get(f"{url}/dead-letters") as page:
            assert not re.search("Enabled|Replayed", await page.text())


def test_the_login_limiter_forgets_addresses_and_stays_bounded() -> None:
    """A bucket per address that ever tried to log in, kept forever: memory grew with every
    address. A full bucket is forgotten; under a flood, the least recently used go."""
    from empathy_webhooks_core.gateway.auth import _MAX_BUCKETS, RateLimiter

    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    for _ in range(5):
        assert limiter.take("console-login:10.0.0.1", 5) == 0.0
    assert limiter.take("console-login:10.0.0.1", 5) > 0  # exhausted
    for n in range(3 * _MAX_BUCKETS):
        now[0] += 0.001
        limiter.take(f"console-login:192.0.2.{n}", 5)
        assert len(limiter._buckets) <= _MAX_BUCKETS
    # Within the same minute, a recent address keeps its state; an old full one is gone.
    limiter.take("console-login:10.0.0.9", 5)
    for _ in range(4):
        limiter.take("console-login:10.0.0.9", 5)
    assert limiter.take("console-login:10.0.0.9", 5) > 0


def test_notices_of_sessions_that_never_came_back_are_bounded() -> None:
    from types import SimpleNamespace

    from empathy_webhooks_core.console.keys import _MAX_NOTICES, Console

    console = Console(gateway=None, env=None)  # type: ignore[arg-type]
    for n in range(_MAX_NOTICES + 500):
        console.notify(SimpleNamespace(session_id=f"s{n}"), "ok", "replayed")  # type: ignore[arg-type]
    assert len(console._notices) == _MAX_NOTICES
    last = SimpleNamespace(session_id=f"s{_MAX_NOTICES + 499}")
    assert console.take_notice(last) == ("ok", "replayed")  # type: ignore[arg-type]
