"""The core's own HTTP/1.1 client (`_transport.py`), over real loopback sockets.

Well-formed answers come from a raw asyncio server writing exact bytes, so that what the
client must cope with (chunked bodies, 1xx, no length, endless headers, a socket closed as we
write) is on the wire byte for byte; it counts connections as the server sees them. The
dispatcher-level tests use the dispatcher as users do.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import re
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest
from yarl import URL

from empathy_webhooks_core import CustomWebhook, DeliveryError, WebhookDispatcher
from empathy_webhooks_core._pipeline.sessions import USER_AGENT, Sessions
from empathy_webhooks_core._transport import MalformedAnswerError, target
from empathy_webhooks_core.default_plugins.http import MAX_RESPONSE_BYTES, send
from empathy_webhooks_core.delivery import TRANSPORT_ERRORS
from empathy_webhooks_core.wire import OutgoingRequest

FAST = {"max_retries": 0, "initial_delay_seconds": 0.001, "timeout_seconds": 5}
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
#: Never answer (the client's timeout ends it).
HANG = "hang"
#: Close the connection without a byte of answer.
DROP = "drop"


class RawServer:
    """A loopback HTTP/1.1 server that answers the n-th request with the n-th script entry
    (exact bytes, HANG or DROP; the last entry repeats), and counts connections."""

    def __init__(
        self,
        *script: bytes | str,
        close_after: bool = False,
        delay: float = 0.0,
        host: str = "127.0.0.1",
    ) -> None:
        self.host = host
        self.script = list(script) or [OK]
        self.close_after = close_after  # close each connection after its answer
        self.delay = delay  # before each answer: keeps connections busy
        self.requests: list[bytes] = []
        self.connections = 0
        self.open = 0
        self.most_open = 0
        self.closed = asyncio.Event()  # set whenever a connection ends
        self.received = asyncio.Event()  # set when a request has come
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def url(self, path: str = "/hook") -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{path}"

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    async def wait_all_closed(self) -> None:
        async with asyncio.timeout(10):
            while self.open:
                self.closed.clear()
                await self.closed.wait()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        self._writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                self.received.set()
                step = self.script[min(len(self.requests), len(self.script)) - 1]
                if step == DROP:
                    return
                if step == HANG:
                    await reader.read()  # until the client gives up and closes
                    return
                assert isinstance(step, bytes)
                if self.delay:
                    await asyncio.sleep(self.delay)
                writer.write(step)
                await writer.drain()
                if self.close_after:
                    return
        finally:
            self._writers.discard(writer)
            writer.close()
            self.open -= 1
            self.closed.set()


@pytest.fixture
async def sessions() -> AsyncIterator[Sessions]:
    """The dispatcher's own sessions (the transport attached), closed after the test."""
    owned = Sessions(None, 10)
    owned.open()
    try:
        yield owned
    finally:
        await owned.close()


async def post(sessions: Sessions, url: str, timeout: float = 5, **options: Any) -> Any:
    request = OutgoingRequest(
        url=url,
        body=options.pop("body", b'{"n":1}'),
        headers=options.pop("headers", {"Content-Type": "application/json"}),
        **options,
    )
    return await send(request, sessions.shared, timeout)


def head_lines(raw: bytes) -> list[str]:
    return raw.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")


# -- what goes on the wire ---------------------------------------------------------------------


async def test_the_request_on_the_wire_and_one_kept_alive_connection_for_many() -> None:
    async with RawServer() as server:
        webhook = CustomWebhook(
            url=server.url("/hook?team=a%20b"), retry_policy=FAST, max_concurrency=1
        )
        async with WebhookDispatcher(webhooks=[webhook]) as dispatcher:
            for n in range(5):
                await dispatcher.emit("alert", {"n": n})
            await dispatcher.drain()
            assert dispatcher.get_webhook_stats("custom_webhook")["delivered_count"] == 5
        assert (server.connections, len(server.requests)) == (1, 5)
        lines = head_lines(server.requests[0])
        assert lines[0] == "POST /hook?team=a%20b HTTP/1.1"
        assert lines[1] == f"Host: 127.0.0.1:{server.port}"
        names = [line.split(":", 1)[0].lower() for line in lines[1:]]
        assert len(names) == len(set(names))  # nothing sent twice
        headers = dict(line.split(": ", 1) for line in lines[1:])
        assert headers["User-Agent"] == USER_AGENT and headers["Accept"] == "*/*"
        assert headers["Content-Type"] == "application/json"
        body = server.requests[0].split(b"\r\n\r\n", 1)[1]
        assert headers["Content-Length"] == str(len(body))
        # What aiohttp asked for; the answer's body is decoded (test below).
        assert headers["Accept-Encoding"] == "gzip, deflate"


async def test_a_requests_own_user_agent_and_accept_win(sessions: Sessions) -> None:
    async with RawServer() as server:
        await post(
            sessions,
            server.url(),
            headers={"user-agent": "mine/1", "ACCEPT": "application/json"},
            body=b"x",
        )
        lines = head_lines(server.requests[0])
        assert "user-agent: mine/1" in lines and "ACCEPT: application/json" in lines
        assert not any(line.startswith(("User-Agent", "Accept:")) for line in lines)
        # bytes without a type: aiohttp's default, kept
        assert "Content-Type: application/octet-stream" in lines


def _ipv6_loopback() -> bool:
    try:
        with socket.create_server(("::1", 0), family=socket.AF_INET6):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here")
async def test_an_ipv6_host_is_bracketed_in_the_host_header(sessions: Sessions) -> None:
    async with RawServer(host="::1") as server:
        assert (await post(sessions, server.url())).body == b"ok"
        assert head_lines(server.requests[0])[1] == f"Host: [::1]:{server.port}"


async def test_a_url_with_user_info_is_still_sent_through_aiohttp(sessions: Sessions) -> None:
    # The lean client does not take it; aiohttp turns the user info into Basic auth as ever.
    async with RawServer() as server:
        url = server.url().replace("http://", "http://user:pw@")
        assert (await post(sessions, url)).body == b"ok"
        assert "Authorization: Basic dXNlcjpwdw==" in head_lines(server.requests[0])


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Evil": "s3cret\r\nX-Injected: yes"},
        {"X-Evil": "s3cret\nb"},
        {"X-Evil": "s3cret\rb"},
        {"X-Evil": "s3cret\x00b"},
        {"X-Evil\r\nX-Injected": "s3cret"},
    ],
)
async def test_header_injection_is_refused_before_anything_is_sent(
    sessions: Sessions, headers: dict[str, str]
) -> None:
    async with RawServer() as server:
        with pytest.raises(ValueError, match="CR, LF or NUL") as caught:
            await post(sessions, server.url(), headers=headers)
        assert server.connections == 0
        assert "s3cret" not in str(caught.value)  # a header's value may be a credential


# -- answers ----------------------------------------------------------------------------------


async def test_a_chunked_answer_with_headers_lower_cased_last_one_winning(
    sessions: Sessions,
) -> None:
    answer = (
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nX-Id: one\r\nX-ID:  two \r\n\r\n"
        b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    async with RawServer(answer, OK) as server:
        response = await post(sessions, server.url())
        assert (response.status, response.body) == (201, b"hello world")
        assert response.headers["x-id"] == "two" and "x-trailer" not in response.headers
        assert (await post(sessions, server.url())).body == b"ok"
        assert server.connections == 1


async def test_an_answer_without_length_ends_when_the_server_closes(sessions: Sessions) -> None:
    async with RawServer(b"HTTP/1.1 500 Oops\r\n\r\nall of it", close_after=True) as server:
        response = await post(sessions, server.url())
        assert (response.status, response.body) == (500, b"all of it")
        await post(sessions, server.url())
        assert server.connections == 2


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ],
)
async def test_connection_close_and_http_1_0_are_not_reused(
    sessions: Sessions, answer: bytes
) -> None:
    async with RawServer(answer) as server:
        for _ in range(2):
            assert (await post(sessions, server.url())).body == b"ok"
        assert server.connections == 2


async def test_interim_answers_are_skipped_and_204_has_no_body(sessions: Sessions) -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
    async with RawServer(interim + OK, b"HTTP/1.1 204 No Content\r\n\r\n", OK) as server:
        first = await post(sessions, server.url())
        assert (first.status, first.body, "link" in first.headers) == (200, b"ok", False)
        second = await post(sessions, server.url())
        assert (second.status, second.body) == (204, b"")
        assert (await post(sessions, server.url())).body == b"ok"
        assert server.connections == 1


async def test_a_long_body_is_cut_at_the_cap_and_its_connection_not_reused(
    sessions: Sessions,
) -> None:
    size = MAX_RESPONSE_BYTES * 3
    big = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + b"x" * size
    async with RawServer(big, OK) as server:
        response = await post(sessions, server.url())
        assert response.body == b"x" * MAX_RESPONSE_BYTES
        assert (await post(sessions, server.url())).body == b"ok"
        assert server.connections == 2


@pytest.mark.parametrize(
    ("answer", "text"),
    [
        (b"HTTP/1.1 200 OK\r\n" + b"X-Endless: a\r\n" * 20_000, "more than 128 headers"),
        (b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 200_000, "head exceeds"),
        (b"HTTP/1.1 200 " + b"K" * 100_000, "status line exceeds 8190"),
        (b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n", "header exceeds 8190"),
        (b"HTTX/1.1 200 OK\r\n\r\n", "malformed answer"),
        (b"HTTP/1.1 2000 OK\r\n\r\n", "malformed answer"),
        (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
            "switched protocols",
        ),
    ],
)
async def test_malformed_and_endless_answers_are_transport_errors(
    sessions: Sessions, answer: bytes, text: str
) -> None:
    async with RawServer(answer, HANG) as server:
        with pytest.raises(MalformedAnswerError, match=text) as caught:
            await post(sessions, server.url("/hook?token=s3cret"))
        assert isinstance(caught.value, TRANSPORT_ERRORS)
        assert "s3cret" not in str(caught.value) and "/hook" not in str(caught.value)
        await server.wait_all_closed()  # the connection is not kept


def encoded(coding: bytes, body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nContent-Length: %d\r\n\r\n%s" % (
        coding,
        len(body),
        body,
    )


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize(
    "answer",
    [
        encoded(b"gzip", gzip.compress(b"invalid_payload", mtime=0)),
        encoded(b"x-gzip", gzip.compress(b"invalid_payload", mtime=0)),
        encoded(b"deflate", zlib.compress(b"invalid_payload")),
        encoded(b"deflate", raw_deflate(b"invalid_payload")),
        # Chunked, the compressed bytes split across chunks.
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"".join(
            b"%x\r\n%s\r\n" % (len(part), part)
            for packed in [gzip.compress(b"invalid_payload", mtime=0)]
            for part in (packed[:10], packed[10:])
        )
        + b"0\r\n\r\n",
    ],
)
async def test_a_compressed_answer_is_read_decoded(sessions: Sessions, answer: bytes) -> None:
    # A 200 whose body says it failed (Slack's words): plugins judge the words, not gzip.
    async with RawServer(answer, OK) as server:
        assert (await post(sessions, server.url())).body == b"invalid_payload"
        assert (await post(sessions, server.url())).body == b"ok"
        assert server.connections == 1  # read to its end: the connection carries the next


async def test_a_compressed_answer_is_decoded_up_to_the_cap_only(sessions: Sessions) -> None:
    bomb = gzip.compress(b"\0" * (64 * MAX_RESPONSE_BYTES))  # 4 MiB in ~4 KiB
    async with RawServer(encoded(b"gzip", bomb), OK) as server:
        response = await post(sessions, server.url())
        assert response.body == b"\0" * MAX_RESPONSE_BYTES
        assert (await post(sessions, server.url())).body == b"ok"
        assert server.connections == 2  # the rest not read: the connection is not reused


@pytest.mark.parametrize(
    ("answer", "text"),
    [
        (encoded(b"br", b"\x1b\x0e"), "encoding not asked for ('br')"),
        (encoded(b"gzip", b"\x1f\x8b not gzip at all"), "gzip body is corrupt"),
    ],
)
async def test_an_answer_that_cannot_be_decoded_is_a_transport_error(
    sessions: Sessions, answer: bytes, text: str
) -> None:
    async with RawServer(answer) as server:
        with pytest.raises(MalformedAnswerError, match=re.escape(text)) as caught:
            await post(sessions, server.url())
        assert isinstance(caught.value, TRANSPORT_ERRORS)


async def test_interim_answers_count_towards_the_head_limit() -> None:
    """1xx answers sent one by one, without end: refused once they pass the head's limit,
    not waited on until the timeout."""
    hint = b"HTTP/1.1 103 Early Hints\r\nLink: <" + b"a" * 4000 + b">\r\n\r\n"

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        try:
            for _ in range(1000):
                writer.write(hint)
                await writer.drain()
                await asyncio.sleep(0.005)  # each its own segment
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(flood, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    owned = Sessions(None, 10)
    owned.open()
    try:
        request = OutgoingRequest(url=f"http://127.0.0.1:{port}/hook", body=b"{}")
        with pytest.raises(MalformedAnswerError, match="head exceeds"):
            await send(request, owned.shared, 30)
    finally:
        await owned.close()
        server.close()
        await server.wait_closed()


async def test_an_explicit_port_0_is_refused_not_sent_to_the_schemes_port(
    sessions: Sessions,
) -> None:
    assert target(URL("http://127.0.0.1:0/hook")) is None  # aiohttp takes it, and refuses
    assert target(URL("http://127.0.0.1/hook")) is not None
    with pytest.raises(TRANSPORT_ERRORS):
        await post(sessions, "http://127.0.0.1:0/hook")


async def test_a_body_cut_short_by_the_server_is_a_transport_error(sessions: Sessions) -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf"
    async with RawServer(answer, close_after=True) as server:
        with pytest.raises(aiohttp.ClientPayloadError, match="middle of the answer's body"):
            await post(sessions, server.url())


# -- connections ------------------------------------------------------------------------------


def _whole_request(data: bytes) -> bool:
    head, found, body = data.partition(b"\r\n\r\n")
    if not found:
        return False
    lengths = [line for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:")]
    return len(body) >= (int(lengths[0].split(b":")[1]) if lengths else 0)


class IdleClosingServer:
    """A blocking server in a thread: answers each connection's first request (kept alive),
    then closes that connection when told to, as a server's idle timeout does, while the
    client's event loop is not running."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.requests = 0
        self.close_now = threading.Event()
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> IdleClosingServer:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self.listener.close()
        self.close_now.set()
        self.thread.join(10)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                data = b""
                while not _whole_request(data):
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                self.requests += 1
                conn.sendall(OK)
                self.close_now.wait(10)
            self.closed.set()


async def test_an_idle_connection_the_server_closed_is_not_used_even_before_the_loop_saw_it() -> (
    None
):
    with IdleClosingServer() as server:
        webhook = CustomWebhook(
            url=f"http://127.0.0.1:{server.port}/hook", retry_policy=FAST, max_concurrency=1
        )
        errors: list[DeliveryError] = []
        webhook = attrs.evolve(webhook, on_failure=lambda w, e, err: errors.append(err))
        async with WebhookDispatcher(webhooks=[webhook]) as dispatcher:
            await dispatcher.emit("alert", {"n": 1})
            await dispatcher.drain()
            # Blocking on purpose: the server's FIN reaches the socket while the loop cannot
            # read it, so only asking the kernel keeps the dead connection from being used.
            server.close_now.set()
            assert server.closed.wait(10)
            server.close_now.clear()
            await dispatcher.emit("alert", {"n": 2})
            await dispatcher.drain()
            stats = dispatcher.get_webhook_stats("custom_webhook")
            server.close_now.set()
        assert errors == []
        assert (stats["attempts"], stats["delivered_count"], stats["retries"]) == (2, 2, 0)
        assert (server.connections, server.requests) == (2, 2)


@pytest.mark.parametrize("script", [(DROP,), (OK, DROP)])
async def test_a_request_the_server_drops_is_sent_once_a_failed_attempt(
    sessions: Sessions, script: tuple[bytes | str, ...]
) -> None:
    # Sending it again would hide the failure from the attempt history, and a receiver that
    # read it and then crashed would see two requests for one attempt.
    async with RawServer(*script) as server:
        for _ in script[:-1]:
            await post(sessions, server.url())
        with pytest.raises(aiohttp.ServerDisconnectedError, match="closed the connection before"):
            await post(sessions, server.url())
        assert (len(server.requests), server.connections) == (len(script), 1)


async def test_no_answer_within_the_timeout(sessions: Sessions) -> None:
    async with RawServer(HANG, OK) as server:
        with pytest.raises(TimeoutError, match=r"no answer within 0\.2 s"):
            await post(sessions, server.url(), timeout=0.2)
        await server.wait_all_closed()  # closed, never reused
        assert (await post(sessions, server.url())).body == b"ok"
        assert server.connections == 2


async def test_a_refused_connection_says_so_as_aiohttp_did_without_the_path() -> None:
    async with RawServer() as server:
        port = server.port
        url = server.url("/services/T0/B0/s3cret?token=s3cret")
    webhook = CustomWebhook(url=url, retry_policy=FAST)
    errors: list[DeliveryError] = []
    webhook = attrs.evolve(webhook, on_failure=lambda w, e, err: errors.append(err))
    async with WebhookDispatcher(webhooks=[webhook]) as dispatcher:
        await dispatcher.emit("alert", {})
        await dispatcher.drain()
    [error] = errors
    assert f"Cannot connect to host 127.0.0.1:{port}" in error.reason
    assert isinstance(error.last_exception, aiohttp.ClientConnectorError)
    assert "s3cret" not in error.reason and "s3cret" not in repr(error.last_exception)


async def test_the_connection_limit_is_never_exceeded_and_waiters_are_served() -> None:
    async with RawServer(OK, delay=0.05) as server:
        owned = Sessions(None, 2)
        owned.open()
        try:
            answers = await asyncio.gather(*(post(owned, server.url()) for _ in range(7)))
        finally:
            await owned.close()
        assert [a.status for a in answers] == [200] * 7
        assert server.most_open == 2 and len(server.requests) == 7


async def test_a_waiter_that_loses_its_turn_keeps_its_place_in_line() -> None:
    """Limit 1: W1 is woken by a connection to another host going idle, closes it to make
    room, and that wakes W2 too; W2 finds no room and waits again, before W3, not after."""
    async with RawServer(OK, delay=0.05) as other, RawServer(OK, delay=0.05) as server:
        owned = Sessions(None, 1)
        owned.open()
        try:
            first = asyncio.create_task(post(owned, other.url("/W0")))
            await other.received.wait()  # W0 holds the only connection
            queued = []
            for name in ("W1", "W2", "W3"):
                queued.append(asyncio.create_task(post(owned, server.url(f"/{name}"))))
                await asyncio.sleep(0.005)  # in this order
            answers = await asyncio.gather(first, *queued)
        finally:
            await owned.close()
    assert [a.status for a in answers] == [200] * 4
    paths = [head_lines(r)[0].split()[1] for r in server.requests]
    assert paths == ["/W1", "/W2", "/W3"]


class _Pool:
    """A pool of `limit` connections (`Sessions`), and requests started on it as tasks,
    cancelled and the pool closed on leaving."""

    def __init__(self, limit: int) -> None:
        self.sessions = Sessions(None, limit)
        self.tasks: list[asyncio.Task[Any]] = []

    async def __aenter__(self) -> _Pool:
        self.sessions.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.sessions.close()

    async def held(self, server: RawServer, path: str, timeout: float = 30) -> asyncio.Task[Any]:
        """A request the server has received (and may never answer)."""
        task = self.start(server, path, timeout)
        await asyncio.wait_for(server.received.wait(), 10)
        server.received.clear()
        return task

    def start(self, server: RawServer, path: str, timeout: float = 5) -> asyncio.Task[Any]:
        task = asyncio.create_task(post(self.sessions, server.url(path), timeout=timeout))
        self.tasks.append(task)
        return task


async def test_a_host_without_a_connection_gets_one_at_the_limit_up_to_twice_it() -> None:
    """Limit 1 and three hosts that hang: the first holds the only connection, the second
    still gets one (a host with none always does, or its requests wait behind endpoints that
    hang), the third waits: twice the limit bounds the sockets many hosts could hold."""
    async with RawServer(HANG) as one, RawServer(HANG) as two, RawServer(HANG) as three:
        async with _Pool(1) as pool:
            await pool.held(one, "/1")
            await pool.held(two, "/2")
            with pytest.raises(TimeoutError):
                await post(pool.sessions, three.url("/3"), timeout=0.5)
            assert three.requests == []


CLOSE_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


async def test_a_request_waiting_at_twice_the_limit_goes_when_a_connection_closes() -> None:
    """Limit 1, hosts a and b hang (two open, twice the limit), c waits; a's request ends:
    c may open its first connection now, and is woken for it (an audit's case: a close was
    said to make room only below the limit, and c waited out its timeout)."""
    async with RawServer(HANG) as a, RawServer(HANG) as b, RawServer(OK) as c:
        async with _Pool(1) as pool:
            first = await pool.held(a, "/a")
            await pool.held(b, "/b")
            third = pool.start(c, "/c")
            await asyncio.sleep(0.1)
            assert not c.requests
            first.cancel()
            assert (await third).status == 200


async def test_a_waiter_is_woken_when_its_hosts_only_connection_closes_over_the_limit() -> None:
    """Limit 1: a's first request holds a connection (answered in 0.5 s with `Connection:
    close`), b's hangs over the limit, a's second waits; a's connection closes without going
    idle, so a has none and may open one: it is woken for it."""
    async with RawServer(CLOSE_OK, delay=0.5) as a, RawServer(HANG) as b:
        async with _Pool(1) as pool:
            first = await pool.held(a, "/a1")
            await pool.held(b, "/b")
            again = pool.start(a, "/a2")
            assert (await first).status == 200
            assert (await again).status == 200


async def test_an_idle_connection_goes_to_a_request_for_its_host_not_closed_for_another() -> None:
    """Limit 1: x hangs; a (its first connection, over the limit) answers in 0.5 s; a request
    for x waits, then one for a. a's connection, idle, is handed to a's request: the x
    request, first in line, had closed it to make room it did not make, and a's waited out
    its timeout."""
    async with RawServer(HANG) as x, RawServer(OK, delay=0.5) as a:
        async with _Pool(1) as pool:
            await pool.held(x, "/x1")
            first = await pool.held(a, "/a1")
            pool.start(x, "/x2", timeout=3)
            await asyncio.sleep(0.05)
            for_a = pool.start(a, "/a2")
            assert (await first).status == 200
            assert (await for_a).status == 200
            assert a.connections == 1


async def test_closing_the_dispatcher_closes_its_sockets() -> None:
    async with RawServer() as server:
        webhooks = [
            CustomWebhook(name=f"h{n}", url=server.url(f"/h{n}"), retry_policy=FAST)
            for n in range(3)
        ]
        dispatcher = WebhookDispatcher(webhooks=webhooks)
        async with dispatcher:
            for n in range(10):
                await dispatcher.emit("alert", {"n": n})
            await dispatcher.drain()
            assert server.open > 0
        await server.wait_all_closed()
        assert server.open == 0


async def test_closing_without_drain_cancels_a_request_in_flight_and_closes_its_socket() -> None:
    async with RawServer(HANG) as server:
        webhook = CustomWebhook(url=server.url(), retry_policy={**FAST, "timeout_seconds": 30})
        dispatcher = WebhookDispatcher(webhooks=[webhook])
        await dispatcher.start()
        await dispatcher.emit("alert", {})
        await asyncio.wait_for(server.received.wait(), 10)
        await dispatcher.close(drain=False)
        await server.wait_all_closed()
        assert (server.connections, server.open) == (1, 0)


# -- TLS --------------------------------------------------------------------------------------


@pytest.fixture
def ca() -> Any:
    trustme = pytest.importorskip("trustme")
    return trustme.CA()


async def _tls_server(ca: Any) -> tuple[asyncio.Server, int]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(OK)
            await writer.drain()
            await reader.read()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
    return server, int(server.sockets[0].getsockname()[1])


async def test_tls_with_an_untrusted_certificate_is_refused(ca: Any, sessions: Sessions) -> None:
    server, port = await _tls_server(ca)
    try:
        with pytest.raises(aiohttp.ClientConnectorCertificateError, match="certificate"):
            await post(sessions, f"https://127.0.0.1:{port}/hook?token=s3cret")
    finally:
        server.close()


async def test_tls_with_a_private_ca_trusted_through_ssl_cert_file(ca: Any, tmp_path: Path) -> None:
    # The way users trust a private CA without a session of their own: SSL_CERT_FILE, read
    # by OpenSSL when the process makes its TLS context (a fresh process here).
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    server, port = await _tls_server(ca)
    script = textwrap.dedent(
        f"""
        import asyncio
        from empathy_webhooks_core import CustomWebhook, WebhookDispatcher

        async def main():
            webhook = CustomWebhook(url="https://localhost:{port}/hook",
                                    retry_policy={{"max_retries": 0}})
            async with WebhookDispatcher(webhooks=[webhook]) as dispatcher:
                await dispatcher.emit("alert", {{}})
                await dispatcher.drain()
                print(dispatcher.get_webhook_stats("custom_webhook")["delivered_count"])

        asyncio.run(main())
        """
    )
    try:
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            script,
            env={**os.environ, "SSL_CERT_FILE": str(bundle)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = await child.communicate()
    finally:
        server.close()
    assert child.returncode == 0, err.decode()
    assert out.decode().strip() == "1"
