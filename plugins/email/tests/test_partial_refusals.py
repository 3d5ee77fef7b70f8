"""A server that accepts some recipients and refuses others at RCPT, against a real SMTP server
on loopback: the deferred (4xx) are retried alone, nobody gets a second copy, and recipients
refused for good (5xx) fail the delivery by name."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path
from typing import Any

import empathy_webhooks_email as plugin
import pytest
from empathy_webhooks_email import EmailState, EmailWebhook
from empathy_webhooks_email.state import MAX_REMEMBERED, REMEMBERED_AT_LEAST, remembered_for
from empathy_webhooks_email.testing import SMTPTestServer

from empathy_webhooks_core import RetryPolicy, WebhookDispatcher
from empathy_webhooks_core.delivery import render_request
from empathy_webhooks_core.wire import Outcome

from .test_email import FAST, Recorder, manager, security_event, webhook_for

ONCALL, SECURITY, AUDIT = "oncall@example.com", "security@example.com", "audit@example.com"
EVERYONE = [ONCALL, SECURITY, AUDIT]
BUSY = "450 4.2.1 Mailbox busy"
NO_SUCH_USER = "550 5.1.1 No such user"
PASSWORD = "Partial-refusal-smtp-passw0rd"


def three(smtp: SMTPTestServer, **options: Any) -> EmailWebhook:
    return webhook_for(smtp, recipients=EVERYONE, **options)


def refusal_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "email_recipients_refused" in r.getMessage()]


async def test_a_greylisted_recipient_gets_its_one_copy_on_the_retry(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="empathy_webhooks")
    recorder = Recorder()
    async with SMTPTestServer() as smtp:
        smtp.refuse(SECURITY, "450 4.7.1 Greylisted, try again later", times=1)
        hook = three(smtp)
        async with WebhookDispatcher([hook], plugin_manager=manager(recorder)) as dispatcher:
            await dispatcher.emit_event(security_event())
            await dispatcher.drain(timeout=10)
            stats = dispatcher.get_webhook_stats(hook.name)
    assert {address: smtp.copies(address) for address in EVERYONE} == dict.fromkeys(EVERYONE, 1)
    # The retry asked for the deferred recipient alone, with the very same message (the To
    # header still names all three: only the envelope changed).
    assert smtp.rcpt_requests == [ONCALL, SECURITY, AUDIT, SECURITY]
    first, second = smtp.messages
    assert first.rcpt_tos == (ONCALL, AUDIT) and second.rcpt_tos == (SECURITY,)
    assert second.data == first.data
    assert second.message["To"] == ", ".join(EVERYONE)

    [result] = recorder.successes
    assert result.attempts == 2 and not recorder.failures
    assert result.details["retried_recipients"] == SECURITY
    assert stats["delivered_count"] == 1 and stats["failed_count"] == 0
    assert stats["retries"] == 1 and stats["dead_letters"] == 0
    reason = (
        "SMTP 450 at RCPT (transient): 2 of 3 recipients got it; "
        f"deferred {SECURITY}: 450 4.7.1 Greylisted, try again later"
    )
    assert stats["last_error"] == reason
    [retry] = [r for r in caplog.records if "delivery_retry_scheduled" in r.getMessage()]
    assert reason in retry.getMessage()
    [line] = refusal_lines(caplog)
    assert line.levelno == logging.WARNING
    text = line.getMessage()
    assert "reached='2 of 3'" in text and "<evt_0123456789abcdefABCDEF@empathy.example>" in text
    assert f"deferred='{SECURITY}: 450 4.7.1 Greylisted, try again later'" in text


async def test_a_recipient_deferred_on_every_attempt_is_dead_lettered_by_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="empathy_webhooks")
    recorder = Recorder()
    async with SMTPTestServer() as smtp:
        smtp.refuse(SECURITY, BUSY)
        hook = three(smtp, retry_policy={**FAST, "max_retries": 2})
        async with WebhookDispatcher([hook], plugin_manager=manager(recorder)) as dispatcher:
            await dispatcher.emit_event(security_event())
            await dispatcher.drain(timeout=10)
            [letter] = await dispatcher.dead_letters()
            stats = dispatcher.get_webhook_stats(hook.name)
    assert [smtp.copies(address) for address in EVERYONE] == [1, 0, 1]
    assert smtp.rcpt_requests == [ONCALL, SECURITY, AUDIT, SECURITY, SECURITY]
    [error] = recorder.failures
    assert not recorder.successes
    assert error.attempts == 3 and error.status == 450
    assert error.reason == (
        f"SMTP 450 at RCPT (transient): 2 of 3 recipients got it; deferred {SECURITY}: "
        f"{BUSY}; gave up after 3 attempts"
    )
    assert error.body_excerpt == f"{SECURITY}: {BUSY}"
    assert letter.error["reason"] == error.reason and letter.attempts == 3
    assert stats["failed_count"] == 1 and stats["dead_letters"] == 1
    assert len(refusal_lines(caplog)) == 3


async def test_a_permanently_refused_recipient_fails_the_delivery_and_a_replay_reaches_it_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The others got the alert, so it is not retried; but one addressee never will, and the
    team is told (on_failure, a dead letter naming them) rather than shown a success."""
    caplog.set_level(logging.INFO, logger="empathy_webhooks")
    recorder = Recorder()
    async with SMTPTestServer() as smtp:
        smtp.refuse(SECURITY, NO_SUCH_USER)
        hook = three(smtp)
        async with WebhookDispatcher([hook], plugin_manager=manager(recorder)) as dispatcher:
            await dispatcher.emit_event(security_event())
            await dispatcher.drain(timeout=10)
            [letter] = await dispatcher.dead_letters()
            assert [smtp.copies(address) for address in EVERYONE] == [1, 0, 1]
            [error] = recorder.failures
            assert error.attempts == 1 and error.status == 550 and not recorder.successes
            assert error.reason == (
                f"SMTP 550 at RCPT: 2 of 3 recipients got it; refused {SECURITY}: {NO_SUCH_USER}"
            )
            assert letter.error["reason"] == error.reason
            [line] = refusal_lines(caplog)
            assert f"refused='{SECURITY}: {NO_SUCH_USER}'" in line.getMessage()

            # The mailbox is fixed and the dead letter replayed: it goes to the one who
            # missed it, not again to the two who have it.
            del smtp.rcpt_replies[SECURITY]
            await dispatcher.replay_dead_letter(letter.dead_letter_id)
            await dispatcher.drain(timeout=10)
            assert await dispatcher.dead_letters() == []
    assert [smtp.copies(address) for address in EVERYONE] == [1, 1, 1]
    assert smtp.rcpt_requests == [ONCALL, SECURITY, AUDIT, SECURITY]
    [result] = recorder.successes
    assert result.details["retried_recipients"] == SECURITY


async def test_deferred_and_refused_together_retry_the_deferred_then_fail_on_the_refused() -> None:
    """A recipient refused for good is asked again when the retry goes anyway (it never got
    the message, so no copy is doubled), and its latest answer is the final outcome."""
    recorder = Recorder()
    async with SMTPTestServer() as smtp:
        smtp.refuse(ONCALL, BUSY, times=1)
        smtp.refuse(SECURITY, NO_SUCH_USER)
        hook = three(smtp)
        async with WebhookDispatcher([hook], plugin_manager=manager(recorder)) as dispatcher:
            await dispatcher.emit_event(security_event())
            await dispatcher.drain(timeout=10)
    assert [smtp.copies(address) for address in EVERYONE] == [1, 0, 1]
    assert smtp.rcpt_requests == [ONCALL, SECURITY, AUDIT, ONCALL, SECURITY]
    [error] = recorder.failures
    assert error.attempts == 2 and error.status == 550
    assert error.reason == (
        f"SMTP 550 at RCPT: 2 of 3 recipients got it; refused {SECURITY}: {NO_SUCH_USER}"
    )


async def test_a_retry_refused_at_data_still_says_who_got_it_earlier() -> None:
    recorder = Recorder()
    async with SMTPTestServer() as smtp:
        smtp.refuse(SECURITY, BUSY, times=1)
        hook = three(smtp, retry_policy={**FAST, "max_retries": 1})
        async with WebhookDispatcher([hook], plugin_manager=manager(recorder)) as dispatcher:
            # The first DATA goes through (to the two accepted), the retry's is refused.
            smtp.queue("250 2.0.0 OK", "451 4.3.0 Try again later")
            await dispatcher.emit_event(security_event())
            await dispatcher.drain(timeout=10)
    assert [smtp.copies(address) for address in EVERYONE] == [1, 0, 1]
    [error] = recorder.failures
    assert error.reason == (
        "SMTP 451 at DATA (transient): 4.3.0 Try again later; 2 of 3 recipients got it "
        "earlier; gave up after 2 attempts"
    )


async def test_no_password_in_the_reason_nor_the_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="empathy_webhooks")
    recorder = Recorder()
    async with SMTPTestServer(credentials=("alerts", PASSWORD)) as smtp:
        # A server that echoes what it was sent (some have) in its refusal.
        smtp.refuse(SECURITY, f"450 4.2.1 Busy for alerts/{PASSWORD}")
        hook = three(
            smtp,
            username="alerts",
            password=PASSWORD,
            allow_insecure_auth=True,
            retry_policy={**FAST, "max_retries": 1},
        )
        async with WebhookDispatcher([hook], plugin_manager=manager(recorder)) as dispatcher:
            await dispatcher.emit_event(security_event())
            await dispatcher.drain(timeout=10)
            [letter] = await dispatcher.dead_letters()
            stats = dispatcher.get_webhook_stats(hook.name)
    [error] = recorder.failures
    assert "2 of 3 recipients got it" in error.reason and SECURITY in error.reason
    for shown in (error.reason, str(error), repr(error), str(letter.error), str(stats)):
        assert PASSWORD not in shown
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("empathy_webhooks")]
    assert refusal_lines(caplog) and not [line for line in ours if PASSWORD in line]


async def test_a_restart_on_sqlite_still_sends_to_the_deferred_recipient_only(
    tmp_path: Path,
) -> None:
    """The memory is the store's: a process that stops between the attempts, and another that
    takes the delivery over from the file, do not send the others a second copy."""
    db = tmp_path / "outbox.db"
    # The retry is a minute away: the first process stops before it.
    policy = {**FAST, "initial_delay_seconds": 60, "max_delay_seconds": 60}
    async with SMTPTestServer() as smtp:
        smtp.refuse(SECURITY, BUSY, times=1)
        first = WebhookDispatcher(
            [three(smtp, retry_policy=policy)], store=f"sqlite:///{db}", plugin_manager=manager()
        )
        await first.emit_event(security_event())
        # The attempt count is written behind the attempt: wait for the file to have it.
        while attempts(db) != [(1,)]:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        await first.close(drain=False)
        assert [smtp.copies(address) for address in EVERYONE] == [1, 0, 1]

        recorder = Recorder()
        # A new webhook object, as a new process builds: its state starts empty.
        hook = three(smtp, retry_policy=policy)
        async with WebhookDispatcher(
            [hook], store=f"sqlite:///{db}", plugin_manager=manager(recorder)
        ) as second:
            await second.drain(timeout=10)
    assert [smtp.copies(address) for address in EVERYONE] == [1, 1, 1]
    [result] = recorder.successes
    assert result.attempts == 2 and result.details["retried_recipients"] == SECURITY


def attempts(path: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT attempts FROM deliveries").fetchall()


# -- the state's own bounds ----------------------------------------------------------------


async def test_the_state_without_a_dispatcher_forgets_after_its_time_and_beyond_its_cap() -> None:
    clock = [0.0]
    state = EmailState(60.0, now=lambda: clock[0])
    await state.remember("<m1@x>", {ONCALL}, "email_webhook")
    assert await state.reached("<m1@x>", "email_webhook") == {ONCALL}
    clock[0] = 61.0
    assert await state.reached("<m1@x>", "email_webhook") == frozenset()
    for n in range(MAX_REMEMBERED + 1):
        await state.remember(f"<m{n}@x>", {ONCALL}, "email_webhook")
    assert await state.reached("<m0@x>", "email_webhook") == frozenset()
    assert await state.reached(f"<m{MAX_REMEMBERED}@x>", "email_webhook") == {ONCALL}
    await state.forget(f"<m{MAX_REMEMBERED}@x>", "email_webhook")
    assert await state.reached(f"<m{MAX_REMEMBERED}@x>", "email_webhook") == frozenset()


def test_entries_outlive_the_longest_retry_of_the_policy() -> None:
    assert remembered_for(RetryPolicy()) == REMEMBERED_AT_LEAST
    slow = RetryPolicy(max_retries=100, max_delay_seconds=86_400.0)
    assert remembered_for(slow) > 100 * 86_400.0


class BrokenMemory:
    async def get(self, key: str) -> str | None:
        raise OSError("the memory's server is down")

    async def set(self, key: str, value: str, ttl_seconds: float) -> None:
        raise OSError("the memory's server is down")

    async def add(self, key: str, value: str, ttl_seconds: float) -> bool:
        raise OSError("the memory's server is down")

    async def delete(self, key: str) -> None:
        raise OSError("the memory's server is down")


async def test_a_failing_memory_sends_to_everyone_rather_than_failing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """At least once: without the memory the retry goes to all (a second copy for some), and
    the delivery is not failed for it."""
    caplog.set_level(logging.INFO, logger="empathy_webhooks")
    async with SMTPTestServer() as smtp:
        smtp.refuse(SECURITY, BUSY, times=1)
        hook = three(smtp)
        request = render_request(hook, security_event(), plugin_manager=manager())
        state = EmailState(60.0)
        state._memory = BrokenMemory()
        first = await plugin.send_message(hook, request, state)
        second = await plugin.send_message(hook, request, state)
    assert plugin.classify_response(hook, request, first).outcome is Outcome.RETRY
    assert plugin.classify_response(hook, request, second).outcome is Outcome.SUCCESS
    assert [smtp.copies(address) for address in EVERYONE] == [2, 1, 2]
    lines = [r for r in caplog.records if "email_recipients_memory_failed" in r.getMessage()]
    assert {r.levelno for r in lines} == {logging.WARNING} and len(lines) == 3
    assert "the memory's server is down" in lines[0].getMessage()


async def test_one_recipient_never_touches_the_memory() -> None:
    async with SMTPTestServer() as smtp:
        hook = webhook_for(smtp, recipients=[ONCALL])
        request = render_request(hook, security_event(), plugin_manager=manager())
        state = EmailState(60.0)
        state._memory = BrokenMemory()
        answer = await plugin.send_message(hook, request, state)
    assert answer.status == 250 and smtp.copies(ONCALL) == 1
