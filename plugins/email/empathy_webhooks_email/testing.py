"""A real SMTP server on 127.0.0.1 for tests: records what arrives and answers as told.

Runs in the test's own event loop (aiosmtpd's protocol on `loop.create_server`), so tests need
no threads and no sleeps::

    async with SMTPTestServer() as smtp:
        smtp.queue("451 4.3.0 Try again later")        # the next DATA is refused, then 250
        smtp.refuse("b@example.com", "450 4.2.0 Greylisted", times=1)  # its next RCPT TO
        webhook = EmailWebhook(host=smtp.host, port=smtp.port, tls_mode="none", ...)
        ...
        message = smtp.messages[0].message             # parsed, with .get_body(("html",))
        assert smtp.copies("b@example.com") == 1       # accepted messages it was an RCPT of

TLS: ``tls_mode="starttls"`` offers and requires STARTTLS, ``"tls"`` is implicit TLS from
the first byte; both need `tls_context` (a server context, e.g. from ``trustme``). With
`credentials` the server requires AUTH (PLAIN or LOGIN) before MAIL.

Needs ``aiosmtpd`` (the ``testing`` extra of empathy-webhooks-email).
"""

from __future__ import annotations

import asyncio
import email
import ssl
import warnings
from collections import deque
from email import policy
from email.message import EmailMessage
from typing import Any

import attrs
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

__all__ = ["DROP", "ReceivedMessage", "SMTPTestServer"]

#: Queue this instead of a reply: the server closes the connection when DATA ends, answering
#: nothing (what a crashing or restarting relay does).
DROP = "<drop the connection>"


@attrs.frozen
class ReceivedMessage:
    """One message the server accepted."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    #: The exact bytes of DATA (dot-unstuffed), as the client sent them.
    data: bytes
    #: The login the client authenticated as, or None.
    login: str | None
    #: Whether the connection was encrypted (implicit TLS or after STARTTLS).
    tls: bool

    @property
    def message(self) -> EmailMessage:
        """`data` parsed with the modern policy (headers decoded, `get_body` available)."""
        parsed = email.message_from_bytes(self.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    def body(self, subtype: str) -> str:
        """The decoded text of the `text/<subtype>` part (`"plain"` or `"html"`), with `\\n`
        line ends (on the wire they are CRLF)."""
        part = self.message.get_body(preferencelist=(subtype,))
        if part is None or part.get_content_subtype() != subtype:
            raise KeyError(f"no text/{subtype} part")
        return str(part.get_content()).replace("\r\n", "\n")  # type: ignore[attr-defined]


class _Handler:
    def __init__(self, server: SMTPTestServer) -> None:
        self.server = server

    async def handle_RCPT(
        self,
        smtp: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        owner = self.server
        owner.rcpt_requests.append(address)
        queued = owner.rcpt_queue.get(address)
        reply = queued.popleft() if queued else owner.rcpt_replies.get(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, smtp: SMTP, session: Session, envelope: Envelope) -> str:
        owner = self.server
        owner.data_attempts += 1
        reply = owner.replies.popleft() if owner.replies else owner.default_reply
        if reply == DROP:
            assert smtp.transport is not None
            smtp.transport.close()
            return "250 never heard"
        if reply.startswith("2"):
            login = session.auth_data  # what _authenticate put in its AuthResult
            owner.messages.append(
                ReceivedMessage(
                    mail_from=str(envelope.mail_from),
                    rcpt_tos=tuple(envelope.rcpt_tos),
                    data=bytes(envelope.original_content or b""),
                    login=login if isinstance(login, str) else None,
                    tls=session.ssl is not None or owner.tls_mode == "tls",
                )
            )
            owner._arrived.set()
        return reply


class SMTPTestServer:
    """A loopback SMTP server that records messages; see the module docstring."""

    def __init__(
        self,
        *,
        tls_mode: str = "none",
        tls_context: ssl.SSLContext | None = None,
        credentials: tuple[str, str] | None = None,
        default_reply: str = "250 2.0.0 OK: queued",
    ) -> None:
        if tls_mode not in ("none", "starttls", "tls"):
            raise ValueError(f"tls_mode must be 'none', 'starttls' or 'tls', got {tls_mode!r}")
        if tls_mode != "none" and tls_context is None:
            raise ValueError(f"tls_mode={tls_mode!r} needs a server tls_context")
        self.tls_mode = tls_mode
        self.tls_context = tls_context
        self.credentials = credentials
        self.default_reply = default_reply
        #: Replies to the next DATA commands, in order (then `default_reply`).
        self.replies: deque[str] = deque()
        #: Replies to RCPT TO for given addresses (a refusal such as "550 5.1.1 No such user").
        self.rcpt_replies: dict[str, str] = {}
        #: Replies to the next RCPT TO of given addresses, in order, before `rcpt_replies`
        #: (what `refuse` with `times` queues).
        self.rcpt_queue: dict[str, deque[str]] = {}
        #: Every RCPT TO address, in the order asked, accepted or not.
        self.rcpt_requests: list[str] = []
        self.messages: list[ReceivedMessage] = []
        #: DATA commands seen, accepted or not.
        self.data_attempts = 0
        #: AUTH attempts as (login, whether it succeeded); never the password.
        self.auth_attempts: list[tuple[str, bool]] = []
        self.host = "127.0.0.1"
        self.port = 0
        self._server: asyncio.Server | None = None
        self._arrived = asyncio.Event()
        self._connections: list[SMTP] = []

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    def queue(self, *replies: str) -> None:
        """Answer the next DATA commands with `replies` (e.g. ``"451 4.3.0 Busy"``, `DROP`)."""
        self.replies.extend(replies)

    def refuse(self, address: str, reply: str, times: int | None = None) -> None:
        """Answer RCPT TO `address` with `reply` (``"450 4.2.1 Mailbox busy"``, ``"550 5.1.1
        No such user"``): its next `times` RCPT TO commands (then accepted again), or every
        one when `times` is None. The others of the envelope are accepted as usual."""
        if times is None:
            self.rcpt_replies[address] = reply
        else:
            self.rcpt_queue.setdefault(address, deque()).extend([reply] * times)

    def copies(self, address: str) -> int:
        """How many accepted messages had `address` among their envelope recipients."""
        return sum(address in message.rcpt_tos for message in self.messages)

    def _authenticate(
        self, smtp: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if not isinstance(data, LoginPassword) or self.credentials is None:
            return AuthResult(success=False, handled=False)
        login, password = data.login.decode(), data.password.decode()
        ok = (login, password) == self.credentials
        self.auth_attempts.append((login, ok))
        return AuthResult(success=ok, handled=False, auth_data=login if ok else None)

    def _protocol(self) -> SMTP:
        with warnings.catch_warnings():
            # AUTH over plain text is what a test of a plain relay with a password asks for.
            warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS")
            protocol = self._make_protocol()
        self._connections.append(protocol)
        return protocol

    def _make_protocol(self) -> SMTP:
        return SMTP(
            _Handler(self),
            hostname="smtp.test",
            ident="empathy-webhooks test SMTP",
            tls_context=self.tls_context if self.tls_mode == "starttls" else None,
            require_starttls=self.tls_mode == "starttls",
            authenticator=self._authenticate if self.credentials else None,
            auth_required=self.credentials is not None,
            # Implicit TLS is encrypted from the first byte, which aiosmtpd cannot tell.
            auth_require_tls=self.tls_mode == "starttls",
            timeout=30,
        )

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol,
            self.host,
            0,
            ssl=self.tls_context if self.tls_mode == "tls" else None,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        # Python 3.11's Server.close leaves accepted connections open: close them, and let
        # their handler tasks finish so none is left pending when the loop closes.
        tasks = []
        for protocol in self._connections:
            if protocol.transport is not None:
                protocol.transport.close()
            # After STARTTLS the TCP transport sits under the TLS one; close it too, or a
            # connection the client abandoned mid-handshake stays open.
            original = protocol._original_transport
            if original is not None and not original.is_closing():
                original.close()
            task = protocol._handler_coroutine
            if task is not None:
                task.cancel()
                tasks.append(task)
        self._connections.clear()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> SMTPTestServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[ReceivedMessage]:
        """Wait until `count` messages have arrived (failing after `timeout` seconds)."""
        async with asyncio.timeout(timeout):
            while len(self.messages) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.messages
