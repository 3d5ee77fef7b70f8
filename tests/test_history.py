"""Attempt history: every attempt of every delivery on record in the memory and SQLite stores
(Redis: its plugin's tests), read back through the dispatcher after faults injected by a
loopback receiver (500 then 200, a 410) and a port nobody listens on."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from empathy_webhooks_core import CustomWebhook, WebhookDispatcher
from empathy_webhooks_core.history import DeliveryRecord
from empathy_webhooks_core.stores import MemoryStore, open_store
from empathy_webhooks_core.stores.sqlite import SQLiteStore
from empathy_webhooks_core.testing import Receiver, Reply

FAST = {"initial_delay_seconds": 0.001, "max_delay_seconds": 0.01}
SIGNING = "whsec_history_signing_secret_0123456789"


@pytest.fixture(params=["memory", "sqlite"])
def store_for(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], object]:
    """A fresh store of each kind (SQLite: the same file each time, as after a restart)."""
    if request.param == "memory":
        return MemoryStore
    return lambda: SQLiteStore(tmp_path / "outbox.db")


async def settled(dispatcher: WebhookDispatcher, delivery_id: str, status: str) -> DeliveryRecord:
    """The record once it reaches `status` (SQLite writes history with its next commit); a
    failed one once its dead letter is on it too (written by a commit of its own, which may
    come after the attempt's)."""
    async with asyncio.timeout(10):
        while True:
            record = await dispatcher.delivery(delivery_id)
            if (
                record is not None
                and record.status == status
                and (status != "failed" or record.dead_letter_id is not None)
            ):
                return record
            await asyncio.sleep(0.01)


async def only_delivery(dispatcher: WebhookDispatcher) -> str:
    async with asyncio.timeout(10):
        while not (page := await dispatcher.deliveries()).items:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    (record,) = page.items
    return record.delivery_id


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A port that refuses connections for the whole test: bound, never listening. (A port
    merely closed after binding could be taken by another test's server in the meantime,
    which then answered this test's delivery.)"""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


async def test_a_500_then_a_200_is_two_attempts_on_record(
    store_for: Callable[[], object], receiver: Receiver
) -> None:
    receiver.queue(Reply(status=500, body={"error": "database on fire"}), Reply(status=200))
    hook = CustomWebhook(
        name="h", url=receiver.url("/h"), signing_secret=SIGNING, retry_policy=FAST
    )
    before = time.time()
    async with WebhookDispatcher(webhooks=[hook], store=store_for()) as dispatcher:
        event = await dispatcher.emit("prediction", {"n": 1})
        delivery_id = await only_delivery(dispatcher)
        record = await settled(dispatcher, delivery_id, "delivered")
        assert await dispatcher.event(event.event_id) == event
        assert await dispatcher.event("evt_nope") is None
    assert (record.webhook, record.event_id, record.event_type) == (
        "h",
        event.event_id,
        "prediction",
    )
    assert record.dead_letter_id is None
    assert before <= record.created_at <= record.updated_at
    first, second = record.attempts
    assert (first.attempt, first.status, first.verdict, first.error) == (1, 500, "retry", None)
    assert first.reason is not None and "500" in first.reason
    assert first.response_excerpt == '{"error": "database on fire"}'
    assert first.next_retry_at is not None and first.next_retry_at >= first.started_at
    assert (second.attempt, second.status, second.verdict, second.reason) == (
        2,
        200,
        "success",
        None,
    )
    assert second.next_retry_at is None
    assert first.started_at <= second.started_at and first.duration_s >= 0
    # The headers as sent, signature included, masked; the body's size as on the wire.
    sent = receiver.requests[0]
    assert first.body_bytes == len(sent.body)
    headers = {k.lower(): v for k, v in first.request_headers.items()}
    assert headers["content-type"] == "application/json"
    assert headers["webhook-signature"] == "***"
    assert sent.headers["webhook-signature"] != "***"
    assert SIGNING not in str(record.to_dict())


async def test_a_410_disables_and_the_record_says_so(
    store_for: Callable[[], object], receiver: Receiver
) -> None:
    receiver.respond(status=410, body="gone")
    hook = CustomWebhook(name="h", url=receiver.url("/h"), retry_policy=FAST)
    async with WebhookDispatcher(webhooks=[hook], store=store_for()) as dispatcher:
        await dispatcher.emit("prediction", {"n": 1})
        delivery_id = await only_delivery(dispatcher)
        record = await settled(dispatcher, delivery_id, "disabled")
        (attempt,) = record.attempts
        assert (attempt.status, attempt.verdict, attempt.response_excerpt) == (410, "gone", "gone")
        assert (await dispatcher.deliveries(status="disabled")).items == (record,)
        # Re-enabled, it goes again as attempt 1 (the 410's is not held against it): both
        # attempts are on record.
        receiver.respond(status=200, body="welcome back")
        dispatcher.enable_webhook("h")
        record = await settled(dispatcher, delivery_id, "delivered")
        assert [(a.attempt, a.status, a.verdict) for a in record.attempts] == [
            (1, 410, "gone"),
            (1, 200, "success"),
        ]


async def test_a_refused_connection_is_on_record_with_its_error_and_dead_letter(
    store_for: Callable[[], object], refused_port: int
) -> None:
    hook = CustomWebhook(
        name="h",
        url=f"http://127.0.0.1:{refused_port}/h",
        retry_policy={**FAST, "max_retries": 1},
    )
    async with WebhookDispatcher(webhooks=[hook], store=store_for()) as dispatcher:
        await dispatcher.emit("prediction", {"n": 1})
        delivery_id = await only_delivery(dispatcher)
        # settled() waits for the dead letter's id too, which comes with or after the letter.
        record = await settled(dispatcher, delivery_id, "failed")
        (letter,) = await dispatcher.dead_letters()
    assert record.dead_letter_id == letter.dead_letter_id
    assert letter.delivery_id == delivery_id
    assert [a.verdict for a in record.attempts] == ["retry", "retry"]
    for attempt in record.attempts:
        assert attempt.status is None and attempt.response_excerpt is None
        assert attempt.error is not None and "onnect" in attempt.error, attempt.error
    assert record.attempts[0].next_retry_at is not None
    assert record.attempts[1].next_retry_at is None


async def test_deliveries_are_listed_newest_first_a_page_at_a_time_with_filters(
    store_for: Callable[[], object], receiver: Receiver
) -> None:
    a = CustomWebhook(name="a", url=receiver.url("/a"))
    b = CustomWebhook(name="b", url=receiver.url("/b"), events=["prediction"])
    async with WebhookDispatcher(webhooks=[a, b], store=store_for()) as dispatcher:
        events = []
        for n in range(5):
            events.append(await dispatcher.emit("prediction" if n % 2 else "alert", {"n": n}))
        await dispatcher.drain()
        seen: list[DeliveryRecord] = []
        cursor = None
        pages = 0
        while True:
            page = await dispatcher.deliveries(limit=3, cursor=cursor)
            seen += page.items
            pages += 1
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        # 5 to `a`, 2 (the predictions) to `b`: 7 in pages of 3, 3, 1, none twice.
        assert pages == 3 and len(seen) == 7
        assert len({r.delivery_id for r in seen}) == 7
        order = [(r.created_at, r.delivery_id) for r in seen]
        assert order == sorted(order, reverse=True)
        assert seen[-1].event_id == events[0].event_id

        by_b = await dispatcher.deliveries(webhook="b")
        assert {r.event_id for r in by_b.items} == {events[1].event_id, events[3].event_id}
        alerts = await dispatcher.deliveries(event_type="alert")
        assert len(alerts.items) == 3
        one = await dispatcher.deliveries(event_id=events[3].event_id)
        assert {r.webhook for r in one.items} == {"a", "b"}
        middle = seen[3].created_at
        since = (await dispatcher.deliveries(since=middle)).items
        until = (await dispatcher.deliveries(until=middle)).items
        assert [r.delivery_id for r in since] == [
            r.delivery_id for r in seen if r.created_at >= middle
        ]
        assert [r.delivery_id for r in until] == [
            r.delivery_id for r in seen if r.created_at < middle
        ]
        assert len(since) >= 4 and len(since) + len(until) == 7
        async with asyncio.timeout(10):  # SQLite writes the statuses with its next commit
            while len((await dispatcher.deliveries(status="delivered")).items) < 7:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        assert await dispatcher.delivery("dlv_nope") is None
        with pytest.raises(ValueError, match="status must be one of"):
            await dispatcher.deliveries(status="lost")
        with pytest.raises(ValueError, match="limit must be"):
            await dispatcher.deliveries(limit=0)
        with pytest.raises(ValueError, match="not a cursor"):
            await dispatcher.deliveries(cursor="nonsense!")


async def test_the_memory_store_keeps_the_newest_deliveries_only(receiver: Receiver) -> None:
    hook = CustomWebhook(name="h", url=receiver.url("/h"))
    store = open_store("memory://?history=3", {})
    assert isinstance(store, MemoryStore) and store.history_limit == 3
    async with WebhookDispatcher(webhooks=[hook], store=store) as dispatcher:
        events = [await dispatcher.emit("prediction", {"n": n}) for n in range(5)]
        await dispatcher.drain()
        page = await dispatcher.deliveries()
    assert [r.event_id for r in page.items] == [e.event_id for e in reversed(events[2:])]
    assert all(r.status == "delivered" and len(r.attempts) == 1 for r in page.items)
    with pytest.raises(ValueError, match="unknown option 'size'"):
        open_store("memory://?size=3", {})


async def test_a_queued_delivery_is_on_record_before_its_first_attempt(
    receiver: Receiver,
) -> None:
    """The memory store keeps a queued delivery as its own record until an attempt is noted
    (no record object made per emit): listed, found by id, pending, and in its place."""
    gate, arrived = asyncio.Event(), asyncio.Event()

    async def handler(_: object) -> Reply:
        arrived.set()
        await gate.wait()
        return Reply(status=200)

    receiver.handler = handler
    hook = CustomWebhook(name="h", url=receiver.url("/h"), max_concurrency=1)
    async with WebhookDispatcher(webhooks=[hook]) as dispatcher:
        try:
            events = [await dispatcher.emit("prediction", {"n": n}) for n in range(3)]
            await asyncio.wait_for(arrived.wait(), 10)  # the first is on the wire
            page = await dispatcher.deliveries(status="pending")
            assert [r.event_id for r in page.items] == [e.event_id for e in reversed(events)]
            waiting = page.items[0]
            assert (waiting.attempts, waiting.webhook) == ((), "h")
            assert waiting.created_at == waiting.updated_at
            found = await dispatcher.delivery(waiting.delivery_id)
            assert found is not None and found.event_id == events[2].event_id
        finally:
            gate.set()
        await dispatcher.drain()
        page = await dispatcher.deliveries()
    assert [r.event_id for r in page.items] == [e.event_id for e in reversed(events)]
    assert all(r.status == "delivered" and len(r.attempts) == 1 for r in page.items)


async def test_sqlite_history_survives_a_restart_and_is_pruned_by_the_retention(
    tmp_path: Path, receiver: Receiver
) -> None:
    db = tmp_path / "outbox.db"
    receiver.queue(Reply(status=503), Reply(status=200))
    hook = CustomWebhook(name="h", url=receiver.url("/h"), retry_policy=FAST)
    async with WebhookDispatcher(webhooks=[hook], store=f"sqlite:///{db}") as first:
        done = await first.emit("prediction", {"n": 1})
        await first.drain()
    slow = CustomWebhook(
        name="h", url=receiver.url("/h"), retry_policy={"initial_delay_seconds": 3600}
    )
    receiver.respond(status=503)
    store = SQLiteStore(db, retention_seconds=60)
    async with WebhookDispatcher(webhooks=[slow], store=store) as second:
        (record,) = (await second.deliveries(event_id=done.event_id)).items
        assert record.status == "delivered"
        assert [a.status for a in record.attempts] == [503, 200]
        waiting = await second.emit("prediction", {"n": 2})
        (pending,) = (await second.deliveries(event_id=waiting.event_id)).items
        await settled(second, pending.delivery_id, "retrying")
        # Older than the retention: the finished delivery's history goes, with its event;
        # the one still retrying stays.
        await store.prune(now=time.time() + 61)
        assert await second.delivery(record.delivery_id) is None
        assert await second.event(done.event_id) is None
        kept = await second.delivery(pending.delivery_id)
        assert kept is not None and kept.status == "retrying" and len(kept.attempts) == 1
        assert await second.event(waiting.event_id) == waiting
        await second.close(drain=False)


def test_an_attempt_kept_in_memory_is_masked_in_time() -> None:
    """The memory store keeps most attempts unmasked and masks them when read; one whose
    request carried a credential known only for a while is masked at once, so an echo of it
    stays masked after the registry has forgotten it."""
    from empathy_webhooks_core.history import AttemptRecord, RawAttempt, record_of
    from empathy_webhooks_core.redaction import (
        isolated_registry,
        register_request_secrets,
        register_secrets,
    )
    from empathy_webhooks_core.wire import Response

    def raw(echo: str, *, transient: bool) -> RawAttempt:
        return RawAttempt(
            attempt=1,
            started_at=1.0,
            duration_s=0.1,
            verdict="success",
            reason=None,
            response=Response(status=200, body=f"you sent {echo}".encode()),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {echo}"},
            body_bytes=2,
            next_retry_at=None,
            transient=transient,
        )

    with isolated_registry():
        transient = "per-request-credential-5f1c9e7a"
        register_request_secrets([transient])
        kept = raw(transient, transient=True).kept("dlv_1")
        assert isinstance(kept, AttemptRecord)
        register_request_secrets(f"other-request-credential-{n:04d}" for n in range(600))
        record = record_of("dlv_1", kept)
        assert transient not in str(record.to_dict())
        assert record.response_excerpt == "you sent ***"

        lasting = "registered-for-good-8a2d4b6c"
        register_secrets([lasting])
        kept = raw(lasting, transient=False).kept("dlv_2")
        assert not isinstance(kept, AttemptRecord)  # masked when read
        record = record_of("dlv_2", kept)
        assert lasting not in str(record.to_dict())
        assert record.response_excerpt == "you sent ***"
        assert record.request_headers["Authorization"] == "***"


async def test_sqlite_record_made_by_the_first_attempt_keeps_the_event_and_queue_time(
    tmp_path: Path, receiver: Receiver
) -> None:
    """A delivery attempted before its record (queued with the marks) was written gets its
    record from the attempt's note: one row, with the event and the time it was queued, the
    same as a record written first and updated after."""
    import sqlite3

    db = tmp_path / "outbox.db"
    hook = CustomWebhook(name="h", url=receiver.url("/h"))
    async with WebhookDispatcher(webhooks=[hook], store=f"sqlite:///{db}") as dispatcher:
        event = await dispatcher.emit("prediction", {"n": 1})
        await dispatcher.drain()
        (record,) = (await dispatcher.deliveries(event_id=event.event_id)).items
        assert record.status == "delivered"
        assert [a.status for a in record.attempts] == [200]
        assert await dispatcher.event(event.event_id) == event
    with sqlite3.connect(db) as conn:
        ((queued_at,),) = conn.execute("SELECT created_at FROM deliveries").fetchall()
        rows = conn.execute("SELECT created_at, event_json, status FROM history").fetchall()
    assert rows == [(queued_at, event.to_json(), "delivered")]
    assert record.created_at == queued_at


@pytest.mark.parametrize(
    "answer, error, reason",
    [
        (b"accepted, token=sk_live_0123456789abcdef0123", None, None),
        (None, "connection refused by 127.0.0.1:9", "connection refused"),
        (b"", None, "server error 503, retrying"),
    ],
)
def test_an_attempts_columns_are_its_records_fields(
    answer: bytes | None, error: str | None, reason: str | None
) -> None:
    """`RawAttempt.columns` (what SQLite writes) is `record` (what the others keep), field
    for field, masked the same way."""
    import attrs

    from empathy_webhooks_core.history import AttemptRecord, RawAttempt
    from empathy_webhooks_core.wire import Response

    raw = RawAttempt(
        attempt=2,
        started_at=10.0,
        duration_s=0.25,
        verdict="success" if reason is None else "retry",
        reason=reason,
        response=None if answer is None else Response(status=503, body=answer),
        headers={"Content-Type": "application/json", "Authorization": "Bearer abc.def.ghi"},
        body_bytes=42,
        next_retry_at=None if reason is None else 12.0,
        error=error,
    )
    record = raw.record("dlv_7")
    assert raw.columns("dlv_7") == tuple(
        getattr(record, field.name) for field in attrs.fields(AttemptRecord)
    )
    assert "abc.def.ghi" not in str(raw.columns("dlv_7"))
