"""Audit: SMTP answers against a real server on loopback: partial refusals said loudly, no
credentials where TLS is missing, silence bounded, long replies capped."""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import Any

import pytest
from empathy_webhooks_email import EmailWebhook
from empathy_webhooks_email.testing import SMTPTestServer

from .test_email import FAST, deliver, security_event, webhook_for

PASSWORD = "Zq9-audit2-smtp-passw0rd"


async def test_a_recipient_refused_while_others_got_it_is_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Before: one recipient refused (here transiently) was only a detail of a success, logged
    at DEBUG, and never retried: nobody watching the logs was told, and it never got the alert.
    Now it is said at WARNING and that recipient alone is tried again
    (test_partial_refusals.py has the rest)."""
    caplog.set_level(logging.INFO, logger="empathy_webhooks")
    async with SMTPTestServer() as smtp:
        smtp.refuse("security@example.com", "450 4.2.1 Mailbox busy", times=1)
        recorder = await deliver(webhook_for(smtp), security_event())
    assert [m.rcpt_tos for m in smtp.messages] == [
        ("oncall@example.com",),
        ("security@example.com",),
    ]
    [result] = recorder.successes
    assert result.attempts == 2
    assert result.details["retried_recipients"] == "security@example.com"
    [record] = [r for r in caplog.records if "email_recipients_refused" in r.getMessage()]
    assert record.levelno == logging.WARNING
    text = record.getMessage()
    assert "security@example.com: 450 4.2.1 Mailbox busy" in text
    assert "email_webhook" in text and "<evt_0123456789abcdefABCDEF@empathy.example>" in text


async def raw_smtp(script: dict[str, bytes | None], seen: list[bytes]) -> asyncio.Server:
    """A hand-driven SMTP server: answers each command by its verb from `script` (None: say
    nothing, ever), keeping every byte it was sent in `seen`."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 raw.test ESMTP\r\n")
        in_data = False
        try:
            while line := await reader.readline():
                seen.append(line)
                if in_data:
                    if line != b".\r\n":
                        continue
                    in_data, verb = False, "."
                else:
                    verb = line.split()[0].decode().upper() if line.split() else ""
                reply = script.get(verb, b"354 go on\r\n" if verb == "DATA" else b"250 ok\r\n")
                if reply is None:
                    await asyncio.sleep(3600)
                writer.write(reply)
                await writer.drain()
                in_data = verb == "DATA"
                if verb == "QUIT":
                    break
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def raw_webhook(server: asyncio.Server, **options: Any) -> EmailWebhook:
    fields: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": server.sockets[0].getsockname()[1],
        "tls_mode": "none",
        "sender": "a@example.com",
        "recipients": "b@example.com",
        "retry_policy": {**FAST, "max_retries": 1},
    }
    fields.update(options)
    return EmailWebhook(**fields)


async def test_starttls_required_but_missing_sends_no_credentials(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The server offers AUTH in clear but no STARTTLS: nothing after EHLO may go out.
    seen: list[bytes] = []
    server = await raw_smtp({"EHLO": b"250-raw.test\r\n250 AUTH PLAIN LOGIN\r\n"}, seen)
    caplog.set_level(logging.DEBUG)
    try:
        hook = raw_webhook(server, tls_mode="starttls", username="alerts", password=PASSWORD)
        [error] = (await deliver(hook, security_event())).failures
    finally:
        server.close()
        await server.wait_closed()
    assert error.attempts == 1 and "STARTTLS" in error.reason
    verbs = [line.split()[0].upper() for line in seen if line.split()]
    assert verbs[0] == b"EHLO" and b"AUTH" not in verbs and b"MAIL" not in verbs
    wire = b"".join(seen)
    plain = base64.b64encode(f"\0alerts\0{PASSWORD}".encode())
    assert PASSWORD.encode() not in wire and plain not in wire
    assert PASSWORD not in caplog.text


async def test_a_server_silent_after_the_message_is_bounded_by_the_timeout() -> None:
    seen: list[bytes] = []
    server = await raw_smtp({".": None}, seen)
    try:
        hook = raw_webhook(server, retry_policy={**FAST, "max_retries": 1, "timeout_seconds": 0.3})
        started = asyncio.get_running_loop().time()
        [error] = (await deliver(hook, security_event())).failures
        took = asyncio.get_running_loop().time() - started
    finally:
        server.close()
        await server.wait_closed()
    assert error.attempts == 2 and error.status is None
    assert isinstance(error.last_exception, TimeoutError)
    assert took < 3


async def test_a_long_permanent_reply_is_capped_in_the_reason() -> None:
    lines = [f"550-5.7.1 line {i} {'x' * 200}\r\n".encode() for i in range(30)]
    seen: list[bytes] = []
    server = await raw_smtp({".": b"".join(lines) + b"550 5.7.1 end\r\n"}, seen)
    try:
        [error] = (await deliver(raw_webhook(server), security_event())).failures
    finally:
        server.close()
        await server.wait_closed()
    assert error.attempts == 1 and error.status == 550
    assert error.reason.startswith("SMTP 550 at DATA: 5.7.1 line 0 xxx")
    assert len(error.reason) <= 500 and error.reason.endswith("…")


@pytest.mark.parametrize(
    ("reply", "said"),
    [
        (b"".join(b"550-" + b"x" * 1000 + b"\r\n" for _ in range(40)), "Response too long"),
        (b"OK THEN\r\n", "Malformed SMTP response line: OK THEN"),
    ],
)
async def test_an_unreadable_reply_is_retried_not_a_final_smtp_minus_one(
    reply: bytes, said: str
) -> None:
    """Before: aiosmtplib's code -1 for a reply it cannot read (too long, no reply code) was
    taken as the server's: a final failure reading `SMTP -1 at SMTP`, status -1."""
    seen: list[bytes] = []
    server = await raw_smtp({".": reply}, seen)
    try:
        [error] = (await deliver(raw_webhook(server), security_event())).failures
    finally:
        server.close()
        await server.wait_closed()
    assert error.attempts == 2 and error.status is None
    assert isinstance(error.last_exception, ConnectionError)
    assert error.reason.startswith("ConnectionError: smtp://127.0.0.1:")
    assert f"unreadable reply from the server ({said}" in error.reason
    assert len(error.reason) <= 500
