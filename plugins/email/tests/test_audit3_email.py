"""Audit 3: TLS that is refused or missing never becomes plain text, credentials with nowhere
to go are a final failure, and whatever the event says the wire stays RFC 5322."""

from __future__ import annotations

import base64
import email
from email import policy
from email.message import EmailMessage

import pytest
from empathy_webhooks_email import EmailWebhook, build_message, message_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from empathy_webhooks_core import Event

from .test_audit2_email import raw_smtp, raw_webhook
from .test_email import deliver, security_event

PASSWORD = "Zq9-audit3-smtp-passw0rd"


def verbs(seen: list[bytes]) -> list[bytes]:
    return [line.split()[0].upper() for line in seen if line.split()]


async def test_a_starttls_refused_with_454_is_retried_never_continued_in_clear() -> None:
    """The server offers STARTTLS, then refuses it ("TLS not available"): the classic
    downgrade. Nothing but EHLO and STARTTLS may go out; a 454 is transient, so retried."""
    seen: list[bytes] = []
    server = await raw_smtp(
        {
            "EHLO": b"250-raw.test\r\n250-AUTH PLAIN LOGIN\r\n250 STARTTLS\r\n",
            "STARTTLS": b"454 4.7.0 TLS not available due to temporary reason\r\n",
        },
        seen,
    )
    try:
        hook = raw_webhook(server, tls_mode="starttls", username="alerts", password=PASSWORD)
        [error] = (await deliver(hook, security_event())).failures
    finally:
        server.close()
        await server.wait_closed()
    assert set(verbs(seen)) == {b"EHLO", b"STARTTLS"}
    assert error.attempts == 2 and error.status == 454
    assert "transient" in error.reason and "TLS not available" in error.reason
    wire = b"".join(seen)
    assert PASSWORD.encode() not in wire
    assert base64.b64encode(f"\0alerts\0{PASSWORD}".encode()) not in wire


async def test_credentials_a_server_cannot_take_are_a_final_failure_before_mail() -> None:
    """Credentials configured, no AUTH offered: sending unauthenticated would be refused or,
    worse, relayed under another policy. It fails at once, saying so, without the password."""
    seen: list[bytes] = []
    server = await raw_smtp({"EHLO": b"250 raw.test\r\n"}, seen)
    try:
        hook = raw_webhook(server, username="alerts", password=PASSWORD, allow_insecure_auth=True)
        [error] = (await deliver(hook, security_event())).failures
    finally:
        server.close()
        await server.wait_closed()
    assert verbs(seen) == [b"EHLO"] or verbs(seen) == [b"EHLO", b"QUIT"]
    assert error.attempts == 1
    assert "EmailDeliveryRefused" in error.reason and "AUTH" in error.reason
    assert PASSWORD not in str(error) and PASSWORD not in repr(error.to_dict())


@pytest.mark.parametrize(
    ("reply", "final"), [(b"451 4.3.0 Try later\r\n", False), (b"552 5.3.4 Too big\r\n", True)]
)
async def test_mail_from_answers_follow_smtp_semantics(reply: bytes, final: bool) -> None:
    seen: list[bytes] = []
    server = await raw_smtp({"MAIL": reply}, seen)
    try:
        [error] = (await deliver(raw_webhook(server), security_event())).failures
    finally:
        server.close()
        await server.wait_closed()
    assert error.attempts == (1 if final else 2)
    assert error.reason.startswith(f"SMTP {reply[:3].decode()} at MAIL")
    assert b"DATA" not in verbs(seen)


HOOK = EmailWebhook(
    host="smtp.example.com",
    sender="alerts@example.com",
    recipients=["ops@example.com"],
    sender_name='Équipe d\'astreinte "Ops"',
)
TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=3000)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(title=TEXT, description=TEXT, word=st.text(alphabet="ab€", min_size=900, max_size=1200))
def test_any_event_text_gives_one_subject_and_lines_within_998(
    title: str, description: str, word: str
) -> None:
    """RFC 5322: lines of at most 998 characters; one Subject; no header from the data."""
    event = Event(
        event_type="alert",
        data={"title": title, "description": description, "note": word, "host": word},
        event_id="e" * 255,
    )
    raw = message_bytes(build_message(HOOK, event))
    assert raw.isascii(), "7-bit clean: no server needs SMTPUTF8 or 8BITMIME"
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert b"\r" not in raw.replace(b"\r\n", b"") and b"\n" not in raw.replace(b"\r\n", b"")
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    assert len(parsed.get_all("Subject") or []) == 1
    assert parsed.get_all("Bcc") is None and parsed.get_all("Cc") is None
    assert str(parsed["From"]).endswith("<alerts@example.com>")
    assert [str(a) for a in parsed["To"].addresses] == ["ops@example.com"]
