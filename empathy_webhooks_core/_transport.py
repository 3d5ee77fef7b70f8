"""The core's own HTTP/1.1 client: one request on a kept-alive connection, for the sessions a
dispatcher opens itself.

Why not aiohttp's `ClientSession` on this path: it is general (cookies, redirects, auth,
proxies, tracing, timers, multidicts), and a delivery needs none of it. Measured on the
throughput benchmark, aiohttp's client was ~40% of the pipeline's CPU per delivery; a request
here is a bytes join, one `write` and one future. Answers are parsed by llhttp (`httptools`),
not by hand: chunked bodies, obs-fold and smuggling cases are a strict C parser's job.

Only what the dispatcher's own session would do goes through here (`Transport.attach`): the
guarded session (`block_private_addresses`) and any session a user passes keep aiohttp, and so
do requests this client does not take (`target` says which: userinfo, schemes other than
http(s), methods with no body semantics it handles, the framing headers set by the caller).

What a caller may rely on, the same as the aiohttp session it stands in for:

- connections are kept alive per (scheme, host, port) and reused; at most `limit` are open at
  once (idle ones included; an idle one is closed to make room), further requests wait for
  one, except that a host with none opens one anyway while fewer than twice `limit` are
  open (endpoints that hang must not hold every connection from another host's alert);
  idle ones close after `KEEPALIVE_SECONDS`, and one the peer closed, or that answered
  `Connection: close` (or HTTP/1.0 without keep-alive), is never reused;
- an idle connection the server has closed (its FIN or RST already in our socket, though the
  event loop has not read it yet) is not used: the kernel's TCP state is asked before each
  reuse, so a server's idle timeout costs no failed attempt. A request is never sent twice:
  one the server drops unanswered is a failed attempt, retried by the pipeline, and shows as
  one in the attempt history (a receiver that read it and crashed sees one request per
  attempt);
- every failure is a transport error the pipeline retries (aiohttp's own classes: a refused
  connection is `ClientConnectorError` with aiohttp's text, a bad certificate
  `ClientConnectorCertificateError`), and no text carries the URL's path or query, which for
  chat services is the secret;
- the deadline covers waiting for a connection, connecting, sending and the answer; on timeout
  or cancellation the connection is closed, never reused;
- at most `MAX_BODY_BYTES` of an answer's body are kept; a longer one closes the connection;
- answers in gzip or deflate (asked for, as aiohttp asks) are decoded, the limit applying to
  the decoded bytes; any other encoding is a transport error, never bytes handed on as text.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import socket
import ssl
import weakref
import zlib
from collections.abc import Mapping
from typing import Any, NamedTuple

import aiohttp
import httptools
from yarl import URL

from ._log import get_logger

__all__ = [
    "KEEPALIVE_SECONDS",
    "MAX_BODY_BYTES",
    "MalformedAnswerError",
    "Target",
    "Transport",
    "target",
]

log = get_logger()

#: How much of an answer's body is kept (the core's `MAX_RESPONSE_BYTES`).
MAX_BODY_BYTES = 64 * 1024
#: aiohttp's limits on a status line and on each header name and value.
MAX_LINE = 8190
MAX_HEADERS = 128
#: The whole head of an answer (interim 1xx answers included): a server streaming endless
#: headers must not grow memory without end.
MAX_HEAD_BYTES = 64 * 1024
#: aiohttp's default keep-alive time for idle connections.
KEEPALIVE_SECONDS = 15.0
#: How often, at most, that requests wait for a free connection is said.
POOL_FULL_SAY_EVERY = 60.0
#: aiohttp's default for a host with several addresses (RFC 8305).
_HAPPY_EYEBALLS_DELAY = 0.25

#: Linux's `struct tcp_info` starts with the connection's state; ESTABLISHED is 1 (a FIN
#: received makes it CLOSE_WAIT, an RST CLOSE).
_TCP_INFO: int | None = getattr(socket, "TCP_INFO", None)
_TCP_ESTABLISHED = 1

#: Methods sent here. Others (HEAD, whose answer has no body whatever its headers say,
#: CONNECT, OPTIONS, TRACE) go to aiohttp.
_METHODS = frozenset({"POST", "PUT", "PATCH", "GET", "DELETE"})
#: Headers that frame the message: a request setting them goes to aiohttp, which knows what to
#: do with them, rather than being sent twice or contradicted here.
_FRAMING = frozenset({"host", "content-length", "transfer-encoding", "connection"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
#: The answer encodings asked for (`Accept-Encoding`, as aiohttp sends) and decoded.
_DECODED = frozenset({"gzip", "x-gzip", "deflate"})


#: The sessions whose core requests go through a transport (`Transport.attach`): weak, so a
#: session dropped without closing takes nothing with it.
_ATTACHED: weakref.WeakKeyDictionary[aiohttp.ClientSession, Transport] = weakref.WeakKeyDictionary()


class MalformedAnswerError(aiohttp.ClientError):
    """The server's answer is not HTTP/1.x as the parser accepts it, or exceeds the limits on
    its head. Retried like every transport error."""


class _ConnectionKey(NamedTuple):
    # What aiohttp's connector errors read (`host`, `port`, `ssl`, `is_ssl`) to word their
    # text the way they always have ("Cannot connect to host h:p ssl:default [...]"); `ssl`
    # True is aiohttp's default verification, which this client always does.
    host: str
    port: int
    is_ssl: bool
    ssl: bool = True


class Target(NamedTuple):
    """Where a request goes, worked out once per URL (`target`)."""

    key: tuple[bool, str, int]  # (TLS, host, port): one pool of connections each
    host: str  # to connect to (IPv6 without brackets)
    port: int
    tls: bool
    host_header: str  # `Host`: port only when not the scheme's default, IPv6 in brackets
    path: str  # raw path and query, as yarl encoded them


def target(url: URL) -> Target | None:
    """Where `url` goes, or None when this client does not take it (aiohttp does)."""
    scheme = url.scheme
    host = url.raw_host
    if (
        scheme not in _DEFAULT_PORTS
        or not url.absolute
        or not host
        or url.raw_user is not None
        or url.raw_password is not None
    ):
        return None
    port = url.port  # the scheme's default when none is given; 0 when `:0` is
    if not port:
        return None  # aiohttp refuses it, as it always has
    tls = scheme == "https"
    path = url.raw_path_qs or "/"
    return Target((tls, host, port), host, port, tls, url.host_port_subcomponent or host, path)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # Made once, on the first https request (it reads the CA files: SSL_CERT_FILE and
    # SSL_CERT_DIR are honoured by OpenSSL): the verification aiohttp does by default.
    context = ssl.create_default_context()
    context.set_alpn_protocols(("http/1.1",))
    return context


def _time_out(waiter: asyncio.Future[object]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class _Connection(asyncio.Protocol):
    """One kept-alive connection: writes a request, parses its answer with llhttp."""

    def __init__(self, pool: Transport, key: tuple[bool, str, int]) -> None:
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.socket: socket.socket | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[tuple[int, dict[str, str], bytes]] | None = None
        self.closed = False
        self.idle_since = 0.0
        self._start()

    def _start(self) -> None:
        # Per request: nothing of the last answer may leak into the next.
        self.answered = False  # any byte of the answer came
        self.reusable = False
        self.complete = False
        self.failure: BaseException | None = None
        # Interim 1xx answers count towards the head's limit too.
        self.head_bytes = 0
        self._message()

    def _message(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.header_count = 0
        self.headers_done = False
        self.body = bytearray()
        self.truncated = False
        self.ends_at_close = False
        #: The answer's `Content-Encoding` when it is compressed: its body is kept decoded.
        self.coding = ""
        self.decoder: Any = None  # zlib's decompressor, made at the body's first bytes

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.socket = transport.get_extra_info("socket")

    def open(self) -> bool:
        """Whether the peer has not closed it: the kernel may know (a FIN or RST came) before
        the event loop has read it, when the loop is busy or the close crossed our last
        answer. Asked of the kernel's TCP state where it tells (Linux)."""
        if _TCP_INFO is None or self.socket is None:
            return True
        try:
            state = self.socket.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 1)
        except OSError:
            return False
        return state[0] == _TCP_ESTABLISHED

    def data_received(self, data: bytes) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            # Bytes nobody asked for (on an idle connection, after a timeout, past the end of
            # an answer): they would be read as the next request's answer.
            self.abort()
            return
        self.answered = True
        # The head is every byte until the final answer's headers end, interim 1xx answers
        # included (their own end sets headers_done, but the final answer's head follows).
        counting = not self.headers_done or self.status < 200
        if counting:
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(MalformedAnswerError("the server switched protocols instead of answering"))
            return
        except httptools.HttpParserError as exc:
            if self.complete:
                # A whole answer, then bytes past its end: the answer stands, the connection
                # is not reused.
                self._finish()
                self.abort()
                return
            failure = self.failure or MalformedAnswerError(f"malformed answer: {exc}")
            self._fail(failure)
            return
        if (not self.headers_done or self.status < 200) and self.head_bytes > MAX_HEAD_BYTES:
            self._fail(MalformedAnswerError(f"the answer's head exceeds {MAX_HEAD_BYTES} bytes"))
        elif self.complete or self.truncated:
            self._finish()

    def eof_received(self) -> bool | None:
        return None  # close our side too: connection_lost ends or fails the answer

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool._lost(self)
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if self.headers_done and self.ends_at_close and self.status >= 200:
            # No length and not chunked: the body is what came before the close.
            self.reusable = False
            self.waiter = None
            waiter.set_result((self.status, self.headers, bytes(self.body)))
            return
        if self.pool.closing:
            # Our own shutdown (`close`), not the receiver's doing: said so.
            error: Exception = aiohttp.ClientConnectionError(
                "connection closed by the dispatcher, which is stopping"
            )
        elif not self.answered:
            error = aiohttp.ServerDisconnectedError("server closed the connection before answering")
        elif self.headers_done:
            error = aiohttp.ClientPayloadError(
                "server closed the connection in the middle of the answer's body"
            )
        else:
            error = aiohttp.ServerDisconnectedError(
                "server closed the connection in the middle of the answer's headers"
            )
        error.__cause__ = exc
        waiter.set_exception(error)

    # -- httptools callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete:
            raise MalformedAnswerError("the server sent more than one answer")
        self._message()

    def on_status(self, status: bytes) -> None:
        if len(status) > MAX_LINE:
            self.failure = MalformedAnswerError(f"the status line exceeds {MAX_LINE} bytes")
            raise self.failure

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.headers_done:
            return  # a chunked body's trailers: aiohttp does not show them either
        self.header_count += 1
        if self.header_count > MAX_HEADERS:
            self.failure = MalformedAnswerError(f"the answer has more than {MAX_HEADERS} headers")
            raise self.failure
        if len(name) > MAX_LINE or len(value) > MAX_LINE:
            self.failure = MalformedAnswerError(f"an answer's header exceeds {MAX_LINE} bytes")
            raise self.failure
        # aiohttp's decoding and stripping, so plugins see the same strings.
        self.headers[name.decode("utf-8", "surrogateescape").lower()] = value.strip(b" \t").decode(
            "utf-8", "surrogateescape"
        )

    def on_headers_complete(self) -> None:
        self.headers_done = True
        self.status = status = self.parser.get_status_code()
        if status >= 200 and status not in (204, 304):
            headers = self.headers
            coding = headers.get("transfer-encoding")
            self.ends_at_close = "content-length" not in headers and (
                coding is None or not coding.lower().rstrip().endswith("chunked")
            )
            content_coding = headers.get("content-encoding", "").strip().lower()
            if content_coding not in ("", "identity"):
                if content_coding not in _DECODED:
                    # Asked for gzip or deflate only: a body in anything else cannot be read,
                    # and a plugin judging it (Slack's error words) would judge bytes.
                    self.failure = MalformedAnswerError(
                        f"the answer's body is in an encoding not asked for "
                        f"({content_coding[:32]!r})"
                    )
                    raise self.failure
                self.coding = content_coding

    def on_body(self, chunk: bytes) -> None:
        if self.status < 200 or self.truncated:
            return
        room = MAX_BODY_BYTES - len(self.body)
        if self.coding:
            self._decode(chunk, room)
            return
        if len(chunk) > room:
            self.body += chunk[:room]
            self.truncated = True
        else:
            self.body += chunk

    def _decode(self, chunk: bytes, room: int) -> None:
        """Keep at most `room` more bytes of the decoded body: a small compressed answer may
        stand for gigabytes, so output is bounded, never input times a ratio."""
        if self.decoder is None:
            # gzip, or deflate as zlib's format; a deflate body without zlib's header (some
            # servers send raw deflate, as aiohttp also accepts) is told by its first byte.
            raw = self.coding == "deflate" and chunk[:1] and chunk[0] & 0x0F != 8
            self.decoder = zlib.decompressobj(-zlib.MAX_WBITS if raw else 32 + zlib.MAX_WBITS)
        try:
            decoded = self.decoder.decompress(chunk, room)
        except zlib.error as exc:
            self.failure = MalformedAnswerError(f"the answer's {self.coding} body is corrupt")
            raise self.failure from exc
        self.body += decoded
        if self.decoder.unconsumed_tail or len(decoded) == room:
            self.truncated = True

    def on_message_complete(self) -> None:
        if self.status < 200:
            return  # an interim answer (100 Continue, 103 Early Hints): the real one follows
        self.complete = True
        self.reusable = self.parser.should_keep_alive()

    # -- the request's side -------------------------------------------------------------------

    def _finish(self) -> None:
        waiter = self.waiter
        assert waiter is not None
        self.waiter = None
        if self.truncated:
            # The rest of a long body is not read: the connection cannot carry another answer.
            self.reusable = False
        waiter.set_result((self.status, self.headers, bytes(self.body)))

    def _fail(self, error: BaseException) -> None:
        waiter = self.waiter
        self.waiter = None
        self.abort()
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def abort(self) -> None:
        self.reusable = False
        self.pool._lost(self)
        if self.transport is not None:
            self.transport.abort()


class Transport:
    """The connections of one dispatcher session: `request` sends, `close` closes them all."""

    def __init__(self, limit: int, user_agent: str) -> None:
        self._limit = limit
        self._user_agent_line = f"User-Agent: {user_agent}\r\n"
        self._open = 0  # connections open or being opened: what `limit` bounds
        # The same, per scheme, host and port: a host with none may always open one.
        self._open_to: collections.Counter[tuple[bool, str, int]] = collections.Counter()
        self._full_said = -POOL_FULL_SAY_EVERY
        self._connections: set[_Connection] = set()
        self._idle: dict[tuple[bool, str, int], list[_Connection]] = {}
        # Requests waiting for a connection, in line: the key they want one for, and the
        # future `_wake` sets when they can go.
        self._waiters: collections.deque[tuple[tuple[bool, str, int], asyncio.Future[None]]] = (
            collections.deque()
        )
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def closing(self) -> bool:
        """Whether `close` has begun (connections it aborts end with that reason)."""
        return self._closed

    # -- which sessions use it ----------------------------------------------------------------

    def attach(self, session: aiohttp.ClientSession) -> None:
        """Send the core's requests for `session` through this transport (`of`)."""
        _ATTACHED[session] = self

    @staticmethod
    def of(session: aiohttp.ClientSession) -> Transport | None:
        """The transport attached to `session`, if any (and not closed)."""
        transport = _ATTACHED.get(session)
        return None if transport is None or transport._closed else transport

    # -- sending ------------------------------------------------------------------------------

    def head(
        self, where: Target, method: str, headers: Mapping[str, str], body: bytes
    ) -> bytes | None:
        """The request's head, or None when this client does not take the request. Raises
        `ValueError` for a CR, LF or NUL in a header (header injection), before anything is
        sent."""
        if method not in _METHODS:
            return None
        parts = [f"{method} {where.path} HTTP/1.1\r\nHost: {where.host_header}\r\n"]
        user_agent = accept = accept_encoding = content_type = True
        for name, value in headers.items():
            lowered = name.lower()
            if lowered in _FRAMING:
                return None
            if lowered == "user-agent":
                user_agent = False
            elif lowered == "accept":
                accept = False
            elif lowered == "accept-encoding":
                accept_encoding = False
            elif lowered == "content-type":
                content_type = False
            parts.append(f"{name}: {value}\r\n")
        if user_agent:
            parts.append(self._user_agent_line)
        if accept:
            parts.append("Accept: */*\r\n")
        if accept_encoding:
            parts.append("Accept-Encoding: gzip, deflate\r\n")
        if body and content_type:
            parts.append("Content-Type: application/octet-stream\r\n")  # as aiohttp sends bytes
        if body or method in ("POST", "PUT", "PATCH"):
            parts.append(f"Content-Length: {len(body)}\r\n")
        parts.append("\r\n")
        text = "".join(parts)
        # Each part ends with one CRLF and the first has two: any other CR or LF came from a
        # header.
        lines = len(parts) + 1
        if text.count("\n") != lines or text.count("\r") != lines or "\0" in text:
            _refuse_injection(headers)
        # As aiohttp writes a head: text decoded with `surrogateescape` (bytes that were not
        # UTF-8) goes back out as those bytes, rather than failing every attempt.
        return text.encode("utf-8", "surrogateescape")

    async def request(
        self, where: Target, head: bytes, body: bytes, timeout: float
    ) -> tuple[int, dict[str, str], bytes]:
        """Send one request (`head` from `head`) and return (status, headers, body)."""
        if self._closed:
            raise RuntimeError("the dispatcher's HTTP transport is closed")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        conn = self._idle_connection(where.key, loop.time())
        if conn is None:
            conn = await self._acquire(where, deadline, loop)
        waiter = conn.waiter = loop.create_future()
        conn._start()
        assert conn.transport is not None
        if len(body) <= MAX_BODY_BYTES:
            conn.transport.write(head + body)
        else:
            conn.transport.write(head)
            conn.transport.write(body)
        timer = loop.call_at(deadline, _time_out, waiter)
        try:
            answer = await waiter
        except BaseException:
            # Timed out, cancelled or failed: whatever it holds is not the next answer.
            conn.abort()
            raise
        finally:
            timer.cancel()
        self._release(conn, loop)
        return answer

    # -- the pool -----------------------------------------------------------------------------

    def _idle_connection(self, key: tuple[bool, str, int], now: float) -> _Connection | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < KEEPALIVE_SECONDS and conn.open():
                return conn
            self._close(conn)
        return None

    async def _acquire(
        self, where: Target, deadline: float, loop: asyncio.AbstractEventLoop
    ) -> _Connection:
        """A connection for `where` (idle, or new) within the deadline.

        At the limit, an idle connection (to any host) is closed to make room. With none to
        close, a host with no connection opens one anyway, up to twice the limit in all:
        at the limit, endpoints that hang held every connection, and a webhook of another
        host waited out its own timeout without sending a byte, dead-lettered as if its
        endpoint had not answered. Otherwise the request waits in line until `_wake` finds
        it can go (see `_may_go`)."""
        woken = False
        key = where.key
        async with asyncio.timeout_at(deadline):
            while True:
                if woken:
                    conn = self._idle_connection(key, loop.time())
                    if conn is not None:
                        return conn
                if self._open < self._limit:
                    break
                if self._evict_idle():
                    continue
                if not self._open_to[key] and self._open < 2 * self._limit:
                    break
                self._say_full(loop.time())
                waiter = loop.create_future()
                entry = (key, waiter)
                if woken:
                    # Woken, but the room went to another: back at the head of the line,
                    # not behind later comers.
                    self._waiters.appendleft(entry)
                else:
                    self._waiters.append(entry)
                try:
                    await waiter
                except BaseException:
                    if waiter.done() and not waiter.cancelled():
                        self._wake()  # woken and then cancelled: the turn goes to the next
                    raise
                finally:
                    if entry in self._waiters:
                        self._waiters.remove(entry)
                woken = True
            self._open += 1
            self._open_to[key] += 1
            try:
                return await self._open_connection(where, loop)
            except BaseException:
                self._open -= 1
                self._forget(key)
                self._wake()
                raise

    def _forget(self, key: tuple[bool, str, int]) -> None:
        left = self._open_to[key] - 1
        if left > 0:
            self._open_to[key] = left
        else:
            del self._open_to[key]

    def _say_full(self, now: float) -> None:
        """Said at most every `POOL_FULL_SAY_EVERY` seconds: requests wait for a connection,
        and which hosts hold them (endpoints that hang hold theirs until their timeout)."""
        if now - self._full_said < POOL_FULL_SAY_EVERY:
            return
        self._full_said = now
        log.warning(
            "http_connections_all_in_use",
            max_connections=self._limit,
            holding={
                f"{'https' if tls else 'http'}://{host}:{port}": count
                for (tls, host, port), count in self._open_to.most_common(5)
            },
            reason="requests wait for a connection (within their timeout); a host with none "
            "still gets one until twice max_connections are open. Raise max_connections, or "
            "lower the max_concurrency or timeout_seconds of the webhooks whose hosts hold "
            "them",
        )

    async def _open_connection(self, where: Target, loop: asyncio.AbstractEventLoop) -> _Connection:
        key = _ConnectionKey(where.host, where.port, where.tls)
        try:
            _, conn = await loop.create_connection(
                lambda: _Connection(self, where.key),
                where.host,
                where.port,
                ssl=_tls_context() if where.tls else None,
                server_hostname=where.host.rstrip(".") if where.tls else None,
                happy_eyeballs_delay=_HAPPY_EYEBALLS_DELAY,
            )
        except (ssl.SSLCertVerificationError, ssl.CertificateError) as exc:
            raise aiohttp.ClientConnectorCertificateError(key, exc) from exc  # type: ignore[arg-type]
        except ssl.SSLError as exc:
            raise aiohttp.ClientConnectorSSLError(key, exc) from exc  # type: ignore[arg-type]
        except socket.gaierror as exc:
            raise aiohttp.ClientConnectorDNSError(key, exc) from exc  # type: ignore[arg-type]
        except TimeoutError:
            raise
        except OSError as exc:
            raise aiohttp.ClientConnectorError(key, exc) from exc  # type: ignore[arg-type]
        if conn.closed:
            raise aiohttp.ServerDisconnectedError("server closed the connection before answering")
        if self._closed:
            conn.abort()
            raise RuntimeError("the dispatcher's HTTP transport is closed")
        self._connections.add(conn)
        return conn

    def _release(self, conn: _Connection, loop: asyncio.AbstractEventLoop) -> None:
        if conn.closed or not conn.reusable or self._closed:
            self._close(conn)
            return
        conn.idle_since = now = loop.time()
        self._idle.setdefault(conn.key, []).append(conn)
        if self._sweeper is None:
            self._sweeper = loop.call_at(now + KEEPALIVE_SECONDS, self._sweep)
        if self._waiters:
            self._wake()

    def _sweep(self) -> None:
        """Close connections idle for `KEEPALIVE_SECONDS`; run again while any are idle."""
        self._sweeper = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        soonest = None
        for idle in list(self._idle.values()):
            for conn in list(idle):
                expires = conn.idle_since + KEEPALIVE_SECONDS
                if expires <= now:
                    self._close(conn)
                elif soonest is None or expires < soonest:
                    soonest = expires
        if soonest is not None:
            self._sweeper = loop.call_at(soonest, self._sweep)

    def _evict_idle(self) -> bool:
        """Close the longest idle connection, if there is one."""
        oldest = None
        for idle in self._idle.values():
            if idle and (oldest is None or idle[0].idle_since < oldest.idle_since):
                oldest = idle[0]
        if oldest is None:
            return False
        self._close(oldest)
        return True

    def _close(self, conn: _Connection) -> None:
        self._lost(conn)
        if conn.transport is not None and not conn.closed:
            conn.transport.close()

    def _lost(self, conn: _Connection) -> None:
        """`conn` no longer counts: it is closed or closing (whichever comes first)."""
        if conn not in self._connections:
            return
        self._connections.discard(conn)
        idle = self._idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)
        self._open -= 1
        self._forget(conn.key)
        self._wake()

    def _may_go(self, key: tuple[bool, str, int], idle: int) -> bool:
        """Whether a request for `key` waiting in line could have a connection now (the
        conditions of `_acquire`, `idle` the idle connections in all)."""
        return bool(
            self._idle.get(key)
            or self._open - idle < self._limit
            or (not self._open_to[key] and self._open < 2 * self._limit)
        )

    def _wake(self) -> None:
        """Wake the first request in line that can have a connection now: one for a host
        with an idle connection first (handed over, not closed to make room for another),
        then the first that can open one. Those that cannot stay in line: a woken request
        that finds no room only goes back to the head of the line, and the one behind it
        that could have gone waits out its timeout."""
        waiters = self._waiters
        while waiters and waiters[0][1].done():
            waiters.popleft()
        if not waiters:
            return
        for key, waiter in waiters:
            if not waiter.done() and self._idle.get(key):
                waiter.set_result(None)
                return
        idle = sum(len(conns) for conns in self._idle.values())
        for key, waiter in waiters:
            if not waiter.done() and self._may_go(key, idle):
                waiter.set_result(None)
                return

    async def close(self) -> None:
        """Close every connection and wait (briefly) until their sockets are closed. Requests
        after this raise `RuntimeError`, as aiohttp's closed session does."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        connections = list(self._connections)
        for conn in connections:
            conn.abort()
        for _, waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(RuntimeError("the dispatcher's HTTP transport is closed"))
        self._waiters.clear()
        # abort() closes each socket on the loop's next turns (TLS ones a turn or two later).
        for _ in range(10):
            if all(conn.closed for conn in connections):
                break
            await asyncio.sleep(0)


def _refuse_injection(headers: Mapping[str, str]) -> None:
    for name, value in headers.items():
        if any(c in name or c in value for c in "\r\n\0"):
            # The value may be a credential: only the name is said, and only as repr.
            raise ValueError(
                f"header {name[:64]!r} contains a CR, LF or NUL character: refused, as it "
                "would let the text after it be read as more headers (header injection)"
            )
    raise ValueError("a CR, LF or NUL character in the request's head: refused")
