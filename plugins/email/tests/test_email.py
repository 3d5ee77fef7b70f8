"""Email through a real dispatcher to a real SMTP server on loopback (aiosmtpd)."""

from __future__ import annotations

import asyncio
import email
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import attrs
import empathy_webhooks_email as plugin
import pytest
import trustme
from empathy_webhooks_email import EmailWebhook
from empathy_webhooks_email.format import header_text
from empathy_webhooks_email.testing import DROP, SMTPTestServer

from empathy_webhooks_core import Event, WebhookDispatcher, hookimpl
from empathy_webhooks_core.delivery import render_request
from empathy_webhooks_core.plugins import build_plugin_manager
from empathy_webhooks_core.wire import DeliveryError, DeliveryResult

FAST = {"initial_delay_seconds": 0.001, "max_delay_seconds": 0.01, "timeout_seconds": 5}
WHEN = datetime(2025, 11, 25, 14, 30, 5, 123000, tzinfo=UTC)
PASSWORD = "s3cret-smtp-passw0rd"
SECURITY = {"title": "SQL injection", "file": "auth.py", "line": 45}


class Recorder:
    """A plugin that keeps what `on_success` and `on_failure` are told."""

    def __init__(self) -> None:
        self.successes: list[DeliveryResult] = []
        self.failures: list[DeliveryError] = []

    @hookimpl
    def on_success(self, webhook: Any, event: Any, result: DeliveryResult) -> None:
        self.successes.append(result)

    @hookimpl
    def on_failure(self, webhook: Any, event: Any, error: DeliveryError) -> None:
        self.failures.append(error)


def manager(*extra: Any) -> Any:
    return build_plugin_manager(load_entry_points=False, extra_plugins=[plugin, *extra])


def security_event(**overrides: Any) -> Event:
    fields: dict[str, Any] = {
        "event_type": "security_vulnerability",
        "data": SECURITY,
        "event_id": "evt_0123456789abcdefABCDEF",
        "timestamp": WHEN,
        "user_id": "developer_123",
    }
    fields.update(overrides)
    return Event(**fields)


def webhook_for(smtp: SMTPTestServer, **options: Any) -> EmailWebhook:
    fields: dict[str, Any] = {
        "host": smtp.host,
        "port": smtp.port,
        "tls_mode": "none",
        "sender": "alerts@empathy.example",
        "recipients": ["oncall@example.com", "security@example.com"],
        "retry_policy": FAST,
    }
    fields.update(options)
    return EmailWebhook(**fields)


async def deliver(webhook: EmailWebhook, *events: Event) -> Recorder:
    """Emit `events` through a real dispatcher and wait until each succeeded or failed."""
    recorder = Recorder()
    async with WebhookDispatcher([webhook], plugin_manager=manager(recorder)) as dispatcher:
        for event in events:
            await dispatcher.emit_event(event)
        await dispatcher.drain(timeout=10)
    return recorder


def content(message: EmailMessage, subtype: str) -> str:
    """The decoded text of the `text/<subtype>` part, with `\\n` line ends."""
    part = message.get_body((subtype,))
    assert part is not None and part.get_content_subtype() == subtype
    return str(part.get_content()).replace("\r\n", "\n")  # type: ignore[attr-defined]


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


@pytest.fixture
async def smtp() -> AsyncIterator[SMTPTestServer]:
    async with SMTPTestServer() as server:
        yield server


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture(scope="module")
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


# -- what the message says -----------------------------------------------------------------

EXPECTED_TEXT = """\
🔒 Security vulnerability

Vulnerability: SQL injection
Location: auth.py:45
Severity: High

Detected by: developer_123 | Time: 2025-11-25 14:30 UTC
Event: security_vulnerability (evt_0123456789abcdefABCDEF)
"""


def test_dry_run_renders_the_exact_message() -> None:
    webhook = EmailWebhook(
        host="smtp.example.com",
        sender="alerts@empathy.example",
        recipients=["oncall@example.com", "security@example.com"],
        username="alerts",
        password=PASSWORD,
    )
    request = render_request(webhook, security_event(), plugin_manager=manager())
    assert request.method == "SMTP"
    assert request.url == "smtp://smtp.example.com:587"
    assert dict(request.extras) == {
        "sender": "alerts@empathy.example",
        "recipients": ("oncall@example.com", "security@example.com"),
        "message_id": "<evt_0123456789abcdefABCDEF@empathy.example>",
    }
    assert b"\r\n" in request.body and b"\n" not in request.body.replace(b"\r\n", b"")
    assert all(len(line) <= 998 for line in request.body.split(b"\r\n"))
    assert request.body.isascii(), "7-bit clean: no server needs 8BITMIME or SMTPUTF8"
    assert PASSWORD.encode() not in request.body

    message = parse(request.body)
    headers = {key: str(value) for key, value in message.items()}
    assert headers == {
        "From": "Empathy Framework <alerts@empathy.example>",
        "To": "oncall@example.com, security@example.com",
        "Subject": "[Empathy] Security vulnerability: SQL injection in auth.py:45",
        "Date": "Tue, 25 Nov 2025 14:30:05 +0000",
        "Message-ID": "<evt_0123456789abcdefABCDEF@empathy.example>",
        "X-Empathy-Event-Id": "evt_0123456789abcdefABCDEF",
        "X-Empathy-Event-Type": "security_vulnerability",
        "X-Empathy-Severity": "high",
        "Auto-Submitted": "auto-generated",
        "MIME-Version": "1.0",
        "Content-Type": headers["Content-Type"],
    }
    assert message.get_content_type() == "multipart/alternative"
    text_part, html_part = message.iter_parts()
    assert text_part.get_content_type() == "text/plain"
    assert html_part.get_content_type() == "text/html"
    assert content(message, "plain") == EXPECTED_TEXT
    markup = content(message, "html")
    assert "<title>[Empathy] Security vulnerability: SQL injection in auth.py:45</title>" in markup
    for cell in (
        ">Vulnerability</th><td",
        ">SQL injection</td>",
        ">auth.py:45</td>",
        ">High</td>",
        "Detected by: developer_123 | Time: 2025-11-25 14:30 UTC",
        "evt_0123456789abcdefABCDEF",
    ):
        assert cell in markup

    # Pure: rendering again gives the very same bytes (the MIME boundary included).
    again = render_request(webhook, security_event(), plugin_manager=manager())
    assert again.body == request.body


async def test_dispatcher_render_sends_nothing(smtp: SMTPTestServer) -> None:
    webhook = webhook_for(smtp)
    async with WebhookDispatcher([webhook], plugin_manager=manager()) as dispatcher:
        rendered = dispatcher.render(webhook, security_event())
    assert parse(rendered.body)["Subject"].startswith("[Empathy] Security vulnerability")
    assert smtp.data_attempts == 0 and smtp.messages == []


def test_html_escapes_all_event_text() -> None:
    event = security_event(
        data={
            "title": "<script>alert('x')</script> & co",
            "file": 'a"b<c>.py',
            "line": 1,
            "description": "<img src=x onerror=alert(1)>",
            "url": "https://example.com/finding?a=1&b=2",
        },
        user_id="<b>mallory</b>",
    )
    webhook = EmailWebhook(host="smtp.example.com", sender="a@example.com", recipients="b@c.io")
    message = parse(render_request(webhook, event, plugin_manager=manager()).body)
    markup = content(message, "html")
    assert "<script>" not in markup and "<img" not in markup and "<b>mallory" not in markup
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; co" in markup
    assert "a&quot;b&lt;c&gt;.py:1" in markup
    assert '<a href="https://example.com/finding?a=1&amp;b=2">' in markup
    text = content(message, "plain")
    assert "<script>alert('x')</script> & co" in text  # plain text stays as written
    assert "Link: https://example.com/finding?a=1&b=2" in text


@pytest.mark.parametrize(
    "title",
    [
        "SQL injection\r\nBcc: attacker@example.com",
        "SQL injection\nBcc: attacker@example.com",
        "SQL injection\rBcc: attacker@example.com",
        "SQL injection\u2028Bcc: attacker@example.com",
        "SQL injection\x85Bcc: attacker@example.com",
    ],
)
async def test_header_injection_from_event_data_adds_no_header(
    smtp: SMTPTestServer, title: str
) -> None:
    # The subject template puts the raw title in the Subject; the event type, the id and the
    # user carry line breaks too (the core refuses CR, LF and other control characters in an
    # event type or id at emit, so those two carry the Unicode line separator instead).
    webhook = webhook_for(smtp, templates={"*": {"subject": "Alert: {data[title]}"}})
    with pytest.raises(ValueError, match="control characters"):
        security_event(event_type="bug\r\nBcc: attacker@example.com")
    with pytest.raises(ValueError, match="control characters"):
        security_event(event_id="evt_x\r\nBcc: attacker@example")
    event = security_event(
        event_type="bug\u2028Bcc: attacker@example.com",
        data={"title": title},
        event_id="evt_x\u2028Bcc: attacker@example",  # event ids hold no dots
        user_id="dev\r\nBcc: attacker@example.com",
        ordering_key="key\r\nBcc: attacker@example.com",
    )
    recorder = await deliver(webhook, event)
    assert not recorder.failures, recorder.failures
    [received] = smtp.messages
    message = received.message
    assert message.get_all("Bcc") is None
    assert len(message.get_all("Subject") or []) == 1
    assert " ".join(message["Subject"].split()) == "Alert: SQL injection Bcc: attacker@example.com"
    assert message["X-Empathy-Event-Id"] == "evt_x Bcc: attacker@example"
    assert received.rcpt_tos == ("oncall@example.com", "security@example.com")
    header_block = received.data.split(b"\r\n\r\n", 1)[0]
    assert not any(line.lower().startswith(b"bcc:") for line in header_block.split(b"\r\n"))
    # The Message-ID is still a valid, stable id (a digest of the odd event id).
    assert message["Message-ID"].startswith("<evt-") and "\r" not in message["Message-ID"]


def test_header_text_makes_one_clean_line() -> None:
    assert header_text("a\r\nb\n\nc\x00d\x1b[31m  e\u2029f\tg") == "a b cd[31m e f g"
    assert len(header_text("x" * 500, 200)) == 200


def test_subject_is_cut_and_non_ascii_survives() -> None:
    webhook = EmailWebhook(host="smtp.example.com", sender="a@example.com", recipients="b@c.io")
    event = Event(event_type="alert", data={"title": "Überlastung 🚨 " + "x" * 400})
    message = parse(render_request(webhook, event, plugin_manager=manager()).body)
    subject = message["Subject"]
    assert subject.startswith("[Empathy] Alert: Überlastung 🚨 xxx")
    assert len(subject) == 200 and subject.endswith("…")


def test_message_id_threads_and_severity_headers() -> None:
    webhook = EmailWebhook(host="smtp.example.com", sender="a@example.com", recipients="b@c.io")
    first = security_event(event_id="evt_one", ordering_key="auth.py:45", severity="critical")
    second = security_event(event_id="evt_two", ordering_key="auth.py:45")
    one = parse(render_request(webhook, first, plugin_manager=manager()).body)
    two = parse(render_request(webhook, second, plugin_manager=manager()).body)
    assert one["Message-ID"] == "<evt_one@example.com>"
    assert two["Message-ID"] == "<evt_two@example.com>"
    assert one["References"] == two["References"]  # one finding, one thread
    assert one["Importance"] == "high" and one["X-Priority"] == "1"
    assert two["Importance"] is None


# -- templates -----------------------------------------------------------------------------


def test_templates_override_per_event_type() -> None:
    webhook = EmailWebhook(
        host="smtp.example.com",
        sender="a@example.com",
        recipients="b@c.io",
        templates={
            "security_vulnerability": {
                "subject": "SECURITY {data[title]}",
                "text": "Fix {data[file]} line {data[line]} now.",
            },
            "alert": {"html": "<p>Alert: <b>{data[title]}</b></p>"},
            "*": lambda event: f"Something happened: {event.event_type}",
        },
    )
    pm = manager()
    security = parse(render_request(webhook, security_event(), plugin_manager=pm).body)
    assert security["Subject"] == "SECURITY SQL injection"
    assert content(security, "plain") == "Fix auth.py line 45 now.\n"  # type: ignore[union-attr]
    markup = content(security, "html")
    assert "<p>Fix auth.py line 45 now.</p>" in markup  # the HTML part says the same

    alert = Event(event_type="alert", data={"title": "<i>disk</i> full"})
    alert_message = parse(render_request(webhook, alert, plugin_manager=pm).body)
    assert alert_message["Subject"] == "[Empathy] Alert: <i>disk</i> full"
    alert_markup = content(alert_message, "html")
    assert alert_markup == "<p>Alert: <b>&lt;i&gt;disk&lt;/i&gt; full</b></p>\n"

    other = Event(event_type="prediction", data={"prediction": "rain"})
    other_message = parse(render_request(webhook, other, plugin_manager=pm).body)
    assert content(other_message, "plain") == (  # type: ignore[union-attr]
        "Something happened: prediction\n"
    )


def test_template_with_unknown_key_is_a_clear_error() -> None:
    webhook = EmailWebhook(
        host="smtp.example.com",
        sender="a@example.com",
        recipients="b@c.io",
        templates={"*": {"subjet": "typo"}},
    )
    with pytest.raises(ValueError, match=r"unknown email template keys \['subjet'\]"):
        render_request(webhook, security_event(), plugin_manager=manager())


# -- delivery ------------------------------------------------------------------------------


async def test_delivers_the_rendered_bytes(smtp: SMTPTestServer) -> None:
    webhook = webhook_for(smtp)
    event = security_event()
    rendered = render_request(webhook, event, plugin_manager=manager())
    recorder = await deliver(webhook, event)
    assert [r.event_id for r in recorder.successes] == [event.event_id]
    assert dict(recorder.successes[0].details) == {
        "smtp_reply": "250 2.0.0 OK: queued",
        "message_id": "<evt_0123456789abcdefABCDEF@empathy.example>",
    }
    [received] = smtp.messages
    assert received.data == rendered.body
    assert received.mail_from == "alerts@empathy.example"
    assert received.rcpt_tos == ("oncall@example.com", "security@example.com")
    assert received.tls is False
    assert received.message["Subject"] == (
        "[Empathy] Security vulnerability: SQL injection in auth.py:45"
    )
    assert received.body("plain") == EXPECTED_TEXT
    assert ">SQL injection</td>" in received.body("html")


async def test_451_then_250_delivers_once(smtp: SMTPTestServer) -> None:
    smtp.queue("451 4.3.0 Mail server temporarily rejected message")
    recorder = await deliver(webhook_for(smtp), security_event())
    assert not recorder.failures
    assert len(recorder.successes) == 1 and recorder.successes[0].attempts == 2
    assert smtp.data_attempts == 2
    assert len(smtp.messages) == 1


async def test_dropped_connection_is_retried(smtp: SMTPTestServer) -> None:
    smtp.queue(DROP)
    recorder = await deliver(webhook_for(smtp), security_event())
    assert not recorder.failures
    assert recorder.successes[0].attempts == 2
    assert len(smtp.messages) == 1


async def test_550_is_a_final_failure_with_the_servers_reply(smtp: SMTPTestServer) -> None:
    smtp.queue("550 5.7.1 Message rejected as spam")
    told: list[DeliveryError] = []
    webhook = webhook_for(smtp, on_failure=lambda w, e, error: told.append(error))
    recorder = await deliver(webhook, security_event())
    assert smtp.data_attempts == 1, "a 5xx answer is never retried"
    assert not recorder.successes and not smtp.messages
    [error] = told
    assert recorder.failures == [error]
    assert error.attempts == 1 and error.status == 550
    assert error.reason == "SMTP 550 at DATA: 5.7.1 Message rejected as spam"
    assert error.body_excerpt == "5.7.1 Message rejected as spam"
    assert error.event_id == "evt_0123456789abcdefABCDEF"
    assert str(error).startswith("email_webhook: SMTP 550: SMTP 550 at DATA: 5.7.1 Message")


async def test_4xx_until_retries_run_out_fails(smtp: SMTPTestServer) -> None:
    smtp.queue(*["452 4.3.1 Insufficient system storage"] * 10)
    webhook = webhook_for(smtp, retry_policy={**FAST, "max_retries": 2})
    recorder = await deliver(webhook, security_event())
    assert smtp.data_attempts == 3
    [error] = recorder.failures
    assert error.reason.startswith("SMTP 452 at DATA (transient): 4.3.1 Insufficient")
    assert "gave up after 3 attempts" in error.reason


async def test_recipients_refused(smtp: SMTPTestServer) -> None:
    # One of two refused for good: the other got it (once: not retried), the delivery failed
    # by name (test_partial_refusals.py has the rest).
    smtp.rcpt_replies["security@example.com"] = "550 5.1.1 No such user"
    recorder = await deliver(webhook_for(smtp), security_event())
    assert [m.rcpt_tos for m in smtp.messages] == [("oncall@example.com",)]
    [error] = recorder.failures
    assert error.attempts == 1 and error.status == 550
    assert error.reason == (
        "SMTP 550 at RCPT: 1 of 2 recipients got it; "
        "refused security@example.com: 550 5.1.1 No such user"
    )

    # Every recipient refused: final when permanent, retried when any refusal is transient.
    smtp.rcpt_replies["oncall@example.com"] = "450 4.2.1 Mailbox busy"
    smtp.messages.clear()
    webhook = webhook_for(smtp, retry_policy={**FAST, "max_retries": 1})
    recorder = await deliver(webhook, security_event(event_id="evt_second"))
    [error] = recorder.failures
    assert error.attempts == 2 and error.status == 450
    assert "oncall@example.com: 450 4.2.1 Mailbox busy" in error.reason
    assert not smtp.messages


async def test_nobody_listening_is_retried_then_fails() -> None:
    async with SMTPTestServer() as closed:
        port = closed.port
    webhook = EmailWebhook(
        host="127.0.0.1",
        port=port,
        tls_mode="none",
        sender="a@example.com",
        recipients="b@example.com",
        retry_policy={**FAST, "max_retries": 1},
    )
    recorder = await deliver(webhook, security_event())
    [error] = recorder.failures
    assert error.attempts == 2 and error.status is None
    assert isinstance(error.last_exception, ConnectionError)
    assert f"smtp://127.0.0.1:{port}" in error.reason


async def raw_server(greeting: bytes | None) -> asyncio.Server:
    """A TCP server on loopback that sends `greeting` and closes, or (None) says nothing."""
    held: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if greeting is None:
            held.append(writer)  # silent: the client must time out
            return
        writer.write(greeting)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    server.held = held  # type: ignore[attr-defined]
    return server


async def close_raw(server: asyncio.Server) -> None:
    for writer in server.held:  # type: ignore[attr-defined]
        writer.close()
    server.close()
    await server.wait_closed()


async def test_421_greeting_is_retried_and_silence_times_out() -> None:
    busy = await raw_server(b"421 4.3.2 Service not available, closing channel\r\n")
    try:
        port = busy.sockets[0].getsockname()[1]
        webhook = EmailWebhook(
            host="127.0.0.1",
            port=port,
            tls_mode="none",
            sender="a@example.com",
            recipients="b@example.com",
            retry_policy={**FAST, "max_retries": 1},
        )
        [error] = (await deliver(webhook, security_event())).failures
        assert error.attempts == 2 and error.status == 421
        assert "4.3.2 Service not available" in error.reason
    finally:
        await close_raw(busy)

    silent = await raw_server(None)
    try:
        port = silent.sockets[0].getsockname()[1]
        webhook = attrs.evolve(
            webhook, port=port, retry_policy={**FAST, "max_retries": 1, "timeout_seconds": 0.2}
        )
        [error] = (await deliver(webhook, security_event())).failures
        assert error.attempts == 2 and error.status is None
        assert isinstance(error.last_exception, TimeoutError)
        assert "within 0.2 s" in error.reason
    finally:
        await close_raw(silent)


async def test_private_addresses_refused_when_asked(smtp: SMTPTestServer) -> None:
    webhook = webhook_for(smtp, block_private_addresses=True)
    [error] = (await deliver(webhook, security_event())).failures
    assert error.attempts == 1, "a refused address is final"
    assert "loopback address" in error.reason and "block_private_addresses" in error.reason
    assert smtp.data_attempts == 0


# -- TLS and authentication ----------------------------------------------------------------


async def test_starttls_with_auth(server_tls: ssl.SSLContext, client_tls: ssl.SSLContext) -> None:
    async with SMTPTestServer(
        tls_mode="starttls", tls_context=server_tls, credentials=("alerts", PASSWORD)
    ) as smtp:
        webhook = webhook_for(
            smtp, tls_mode="starttls", tls_context=client_tls, username="alerts", password=PASSWORD
        )
        recorder = await deliver(webhook, security_event())
    assert not recorder.failures, recorder.failures
    [received] = smtp.messages
    assert received.tls is True and received.login == "alerts"
    assert smtp.auth_attempts == [("alerts", True)]


async def test_starttls_trusts_a_cert_bundle(
    ca: trustme.CA, server_tls: ssl.SSLContext, tmp_path: Path
) -> None:
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    async with SMTPTestServer(tls_mode="starttls", tls_context=server_tls) as smtp:
        webhook = webhook_for(smtp, tls_mode="starttls", cert_bundle=str(bundle))
        recorder = await deliver(webhook, security_event())
    assert recorder.successes and smtp.messages[0].tls


async def test_implicit_tls(server_tls: ssl.SSLContext, client_tls: ssl.SSLContext) -> None:
    async with SMTPTestServer(
        tls_mode="tls", tls_context=server_tls, credentials=("alerts", PASSWORD)
    ) as smtp:
        webhook = webhook_for(
            smtp, tls_mode="tls", tls_context=client_tls, username="alerts", password=PASSWORD
        )
        recorder = await deliver(webhook, security_event())
    assert not recorder.failures, recorder.failures
    assert smtp.messages[0].tls and smtp.messages[0].login == "alerts"


async def test_untrusted_certificate_is_a_final_failure(server_tls: ssl.SSLContext) -> None:
    # No tls_context: the system trust store, which does not know the test CA.
    async with SMTPTestServer(tls_mode="starttls", tls_context=server_tls) as smtp:
        recorder = await deliver(webhook_for(smtp, tls_mode="starttls"), security_event())
    [error] = recorder.failures
    assert error.attempts == 1
    assert "TLS certificate" in error.reason and "not trusted" in error.reason
    assert not smtp.messages


async def test_starttls_required_never_falls_back_to_plain_text(smtp: SMTPTestServer) -> None:
    # The server offers no STARTTLS: the message must not go out in clear.
    recorder = await deliver(webhook_for(smtp, tls_mode="starttls"), security_event())
    [error] = recorder.failures
    assert error.attempts == 1 and "STARTTLS" in error.reason
    assert smtp.data_attempts == 0


async def test_authentication_failure_is_final_and_never_shows_the_password(
    server_tls: ssl.SSLContext, client_tls: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "not-the-right-passw0rd"
    async with SMTPTestServer(
        tls_mode="starttls", tls_context=server_tls, credentials=("alerts", PASSWORD)
    ) as smtp:
        told: list[DeliveryError] = []
        webhook = webhook_for(
            smtp,
            tls_mode="starttls",
            tls_context=client_tls,
            username="alerts",
            password=wrong,
            on_failure=lambda w, e, error: told.append(error),
        )
        caplog.set_level("DEBUG", logger="empathy_webhooks")
        recorder = await deliver(webhook, security_event())
    # aiosmtplib tries each mechanism the server offers (PLAIN, LOGIN) within one attempt.
    assert smtp.auth_attempts and all(not ok for _, ok in smtp.auth_attempts)
    [error] = told
    assert recorder.failures == [error] and error.status == 535
    assert error.attempts == 1, "an authentication failure is never retried"
    assert error.reason.startswith("SMTP authentication refused (535 5.7.8")
    texts = [str(error), repr(error), repr(webhook), str(error.to_dict()), caplog.text]
    for text in texts:
        assert wrong not in text


# -- configuration -------------------------------------------------------------------------


def test_defaults_and_validation() -> None:
    base = {"host": "smtp.example.com", "sender": "a@example.com", "recipients": "b@example.com"}
    assert EmailWebhook(**base).port == 587
    assert EmailWebhook(**base, tls_mode="tls").port == 465
    assert EmailWebhook(**base, tls_mode="none").port == 25
    assert EmailWebhook(**{**base, "recipients": "x@a.io, y@b.io; z@c.io"}).recipients == (
        "x@a.io",
        "y@b.io",
        "z@c.io",
    )
    webhook = EmailWebhook(**base, username="alerts-user", password=PASSWORD)
    assert PASSWORD not in repr(webhook) and "alerts-user" not in repr(webhook)
    assert {PASSWORD, "alerts-user"} <= set(webhook.secret_values())
    assert webhook.describe() == (
        "email_webhook (email to 1 recipient via smtp://smtp.example.com:587, tls=starttls)"
    )
    with pytest.raises(ValueError, match="tls_mode must be"):
        EmailWebhook(**base, tls_mode="ssl-ish")
    with pytest.raises(ValueError, match="sender must be a plain email address"):
        EmailWebhook(**{**base, "sender": "Alerts <a@example.com>\r\nBcc: x@y.z"})
    with pytest.raises(ValueError, match="recipients must list at least one"):
        EmailWebhook(**{**base, "recipients": []})
    with pytest.raises(ValueError, match="each recipient must be"):
        EmailWebhook(**{**base, "recipients": ["ok@example.com", "bad\nBcc: x@y.z"]})
    with pytest.raises(ValueError, match="username and password go together"):
        EmailWebhook(**base, username="alerts")
    with pytest.raises(ValueError, match="clear text") as refused:
        EmailWebhook(**base, tls_mode="none", username="alerts", password=PASSWORD)
    assert PASSWORD not in str(refused.value)
    with pytest.raises(ValueError, match="host must be"):
        EmailWebhook(**{**base, "host": "smtp://smtp.example.com"})


def test_configured_from_toml_data() -> None:
    from empathy_webhooks_core.config import parse_config

    config = parse_config(
        {
            "webhooks": [
                {
                    "type": "email",
                    "name": "security-mail",
                    "host": "smtp.example.com",
                    "tls_mode": "tls",
                    "sender": "alerts@example.com",
                    "recipients": ["security@example.com"],
                    "username": "alerts",
                    "password": "${SMTP_PASSWORD}",
                    "events": ["security_vulnerability"],
                }
            ]
        },
        env={"SMTP_PASSWORD": PASSWORD},
        plugin_manager=manager(),
    )
    [webhook] = config.webhooks
    assert isinstance(webhook, EmailWebhook)
    assert (webhook.port, webhook.password, webhook.events) == (
        465,
        PASSWORD,
        ("security_vulnerability",),
    )


def test_entry_point_loads() -> None:
    from empathy_webhooks_core.plugins import Hooks

    types = Hooks(build_plugin_manager()).webhook_types()
    assert types["email"] is EmailWebhook
