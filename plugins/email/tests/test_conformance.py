"""The email plugin passes the conformance suite, with a real SMTP server as the service."""

from __future__ import annotations

import asyncio
import contextlib
import email
from collections.abc import AsyncIterator, Sequence
from email import policy
from urllib.parse import urlsplit

import attrs
import empathy_webhooks_email
from empathy_webhooks_email import EmailWebhook
from empathy_webhooks_email.testing import SMTPTestServer

from empathy_webhooks_core import Event, OutgoingRequest, Webhook
from empathy_webhooks_core.testing.conformance import (
    FakeService,
    ServiceMode,
    WebhookConformance,
)

PASSWORD = "conformance-smtp-passw0rd"
LOGIN = "conformance-login"


@attrs.define
class GarbledSMTP:
    url: str
    connections: list[bytes]

    def received(self) -> Sequence[bytes]:
        return self.connections


@attrs.define
class SMTPService:
    server: SMTPTestServer

    @property
    def url(self) -> str:
        return self.server.url

    def received(self) -> Sequence[bytes]:
        return [message.data for message in self.server.messages]


class TestEmailConformance(WebhookConformance):
    plugin = empathy_webhooks_email
    secrets = (PASSWORD, LOGIN)

    def make_webhook(self, url: str) -> Webhook:
        parts = urlsplit(url)
        return EmailWebhook(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 25,
            tls_mode="none",
            sender="alerts@empathy.example",
            recipients=["oncall@example.com"],
            username=LOGIN,
            password=PASSWORD,
            # Loopback only: the suite checks what happens to the credentials, not TLS.
            allow_insecure_auth=True,
        )

    @contextlib.asynccontextmanager
    async def fake_service(self, mode: ServiceMode) -> AsyncIterator[FakeService]:
        replies = {
            "success": "250 2.0.0 OK: queued",
            "failure": "550 5.7.1 conformance: rejected",
            # A server that echoes the credentials in its refusal.
            "leak": f"550 5.7.1 {LOGIN} {PASSWORD} rejected",
        }
        async with SMTPTestServer(
            credentials=(LOGIN, PASSWORD), default_reply=replies[mode]
        ) as server:
            yield SMTPService(server)

    @contextlib.asynccontextmanager
    async def garbled_service(self) -> AsyncIterator[FakeService]:
        """A server whose greeting is not SMTP: a malformed reply line tens of thousands of
        characters long, quoting the credentials."""
        connections: list[bytes] = []

        async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            connections.append(b"connected")
            try:
                line = f"2x0 {LOGIN} {PASSWORD} ".encode() + b"Z" * 30_000 + b"\r\n"
                writer.write(line)
                await writer.drain()
                await asyncio.wait_for(reader.read(1024), 5)
            except (OSError, TimeoutError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(greet, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            yield GarbledSMTP(f"smtp://127.0.0.1:{port}", connections)
        finally:
            server.close()
            await server.wait_closed()

    def check_delivered(
        self, service: FakeService, event: Event, rendered: OutgoingRequest
    ) -> None:
        assert list(service.received()) == [rendered.body]

    def check_limits(self, request: OutgoingRequest, webhook: Webhook) -> None:
        super().check_limits(request, webhook)
        assert request.body.isascii()
        assert all(len(line) <= 998 for line in request.body.split(b"\r\n"))
        message = email.message_from_bytes(request.body, policy=policy.default)
        assert len(message.get_all("Subject") or []) == 1
        assert message.get_all("Bcc") is None
        # Measured with runs of white space folded: the standard library's header folding can
        # put a second space before an encoded word, which a reader never sees.
        assert 0 < len(" ".join(message["Subject"].split())) <= 200
        assert message.get_content_type() == "multipart/alternative"
        subtypes = [part.get_content_type() for part in message.iter_parts()]  # type: ignore[attr-defined]
        assert subtypes == ["text/plain", "text/html"]
