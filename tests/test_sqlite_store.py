"""The SQLite outbox through a real dispatcher: durable enqueue, resume, dead letters, pruning."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

from empathy_webhooks_core import CustomWebhook, Event, WebhookDispatcher
from empathy_webhooks_core.history import RawAttempt
from empathy_webhooks_core.plugins import Hooks, get_plugin_manager
from empathy_webhooks_core.stores import Delivery, open_store
from empathy_webhooks_core.stores.sqlite import SQLiteStore, open_sqlite_store
from empathy_webhooks_core.testing import Receiver, Reply
from empathy_webhooks_core.wire import Response

from ._cli_kit import completed

FAST = {"initial_delay_seconds": 0.001, "max_delay_seconds": 0.01}


def url(path: Path, query: str = "") -> str:
    return f"sqlite:///{path}" + (f"?{query}" if query else "")


def _held_answers(receiver: Receiver) -> asyncio.Event:
    """The receiver answers 200 once the event returned is set, not before."""
    release = asyncio.Event()

    async def hold(_: object) -> Reply:
        await release.wait()
        return Reply(status=200)

    receiver.handler = hold
    return release


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    """Read the file from outside the store, as another process would."""
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


def test_the_url_names_a_file_and_its_options(tmp_path: Path) -> None:
    store = open_sqlite_store(f"sqlite:///{tmp_path}/a.db?retention=60&synchronous=full")
    assert store.path == tmp_path / "a.db"
    assert store.retention_seconds == 60
    assert store.synchronous == "FULL"
    assert open_sqlite_store("sqlite:///outbox.db").path == Path("outbox.db")
    with pytest.raises(ValueError, match="unknown option 'retain'"):
        open_sqlite_store("sqlite:///x.db?retain=5")
    with pytest.raises(ValueError, match="retention must be seconds"):
        open_sqlite_store("sqlite:///x.db?retention=soon")
    with pytest.raises(ValueError, match="has no host"):
        open_sqlite_store("sqlite://host/x.db")
    with pytest.raises(ValueError, match="name a file"):
        open_sqlite_store("sqlite:///:memory:")


def test_the_core_plugin_provides_the_sqlite_scheme(tmp_path: Path) -> None:
    backends = Hooks(get_plugin_manager()).store_backends()
    assert isinstance(open_store(url(tmp_path / "o.db"), backends), SQLiteStore)


async def test_emit_returns_after_the_rows_are_committed(
    tmp_path: Path, receiver: Receiver
) -> None:
    db = tmp_path / "outbox.db"
    release = _held_answers(receiver)
    hook = CustomWebhook(name="h", url=receiver.url("/h"))
    dispatcher = WebhookDispatcher(webhooks=[hook], store=url(db))
    event = await dispatcher.emit("prediction", {"n": 1})
    # Another connection (another process, in effect) sees the row as soon as emit returned.
    assert rows(db, "SELECT webhook_name, event_id, state, attempts FROM deliveries") == [
        ("h", event.event_id, "queued", 0)
    ]
    assert rows(db, "PRAGMA journal_mode") == [("wal",)]
    release.set()
    await dispatcher.close()
    assert [r.event_id for r in receiver.delivered] == [event.event_id]
    assert rows(db, "SELECT state FROM deliveries") == [("delivered",)]


async def test_concurrent_emits_share_commits_and_all_land(
    tmp_path: Path, receiver: Receiver
) -> None:
    db = tmp_path / "outbox.db"
    hooks = [
        CustomWebhook(name="a", url=receiver.url("/a"), max_concurrency=8),
        CustomWebhook(name="b", url=receiver.url("/b"), max_concurrency=8),
    ]
    async with WebhookDispatcher(webhooks=hooks, store=url(db)) as dispatcher:
        events = await asyncio.gather(
            *(dispatcher.emit("prediction", {"n": n}) for n in range(300))
        )
    assert len(receiver.delivered) == 600
    assert set(receiver.delivered_event_ids()) == {e.event_id for e in events}
    assert rows(db, "SELECT state, count(*) FROM deliveries GROUP BY state") == [("delivered", 600)]
    # One delivery id per (event, webhook).
    assert rows(db, "SELECT count(DISTINCT delivery_id) FROM deliveries") == [(600,)]


async def test_pending_deliveries_resume_with_the_same_event_and_attempts(
    tmp_path: Path, receiver: Receiver
) -> None:
    db = tmp_path / "outbox.db"
    receiver.respond(status=503)
    hook = CustomWebhook(
        name="h",
        url=receiver.url("/h"),
        retry_policy={"initial_delay_seconds": 60, "max_retries": 5},
    )
    first = WebhookDispatcher(webhooks=[hook], store=url(db))
    event = await first.emit("prediction", {"n": 1}, ordering_key="pr-1", severity="high")
    await receiver.wait_for(1)
    # The retry is an hour of test time away: stop now, with the delivery pending.
    # The attempt count is written behind the attempt (nobody waits for it): poll the file.
    while rows(db, "SELECT attempts FROM deliveries") != [(1,)]:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    await first.close(drain=False)

    receiver.respond(status=200)
    second = WebhookDispatcher(webhooks=[hook], store=url(db))
    await second.start()
    await second.drain()
    letters = await second.dead_letters()
    await second.close()
    assert letters == []
    resent = receiver.requests[-1]
    assert resent.event_id == event.event_id
    assert resent.json() == event.to_envelope()
    assert rows(db, "SELECT state, attempts FROM deliveries") == [("delivered", 2)]


async def test_dead_letters_persist_and_replay_after_a_restart(
    tmp_path: Path, receiver: Receiver
) -> None:
    db = tmp_path / "outbox.db"
    receiver.respond(status=400, body={"error": "bad"})
    hook = CustomWebhook(name="h", url=receiver.url("/h"), retry_policy=FAST)
    async with WebhookDispatcher(webhooks=[hook], store=url(db)) as first:
        event = await first.emit("prediction", {"n": 1})
    assert rows(db, "SELECT count(*) FROM deliveries") == [(0,)]

    receiver.respond(status=200)
    async with WebhookDispatcher(webhooks=[hook], store=url(db)) as second:
        (letter,) = await second.dead_letters("h")
        assert letter.event == event
        assert letter.attempts == 1
        assert letter.error["status"] == 400
        assert await second.dead_letters("other") == []
        await second.replay_dead_letter(letter.dead_letter_id)
        await second.drain()
        assert await second.dead_letters() == []
    assert receiver.requests[-1].event_id == event.event_id
    assert receiver.requests[-1].answered == 200


async def test_a_replay_cut_short_by_a_crash_keeps_its_dead_letter(
    tmp_path: Path, receiver: Receiver
) -> None:
    db = tmp_path / "outbox.db"
    store = SQLiteStore(db)
    await store.open()
    hook = CustomWebhook(name="h", url=receiver.url("/h"))
    delivery = Delivery(webhook_name="h", event=Event(event_type="prediction", data={}))
    await store.enqueue([delivery])
    letter = await store.add_dead_letter(delivery, {"reason": "bad"})
    assert await store.take_dead_letter(letter.dead_letter_id) is not None
    assert await store.take_dead_letter(letter.dead_letter_id) is None  # taken once
    await store.close()  # the process ends before the replay's delivery was written

    async with WebhookDispatcher(webhooks=[hook], store=url(db)) as dispatcher:
        (kept,) = await dispatcher.dead_letters()
        assert kept.dead_letter_id == letter.dead_letter_id


async def test_delivered_rows_are_pruned_after_the_retention(
    tmp_path: Path, receiver: Receiver
) -> None:
    db = tmp_path / "outbox.db"
    hook = CustomWebhook(name="h", url=receiver.url("/h"))
    store = open_sqlite_store(url(db, "retention=3600"))
    async with WebhookDispatcher(webhooks=[hook], store=store) as dispatcher:
        for n in range(5):
            await dispatcher.emit("prediction", {"n": n})
        await dispatcher.drain()
        assert await store.prune() == 0  # younger than an hour: kept
        # Marks ride the next commit; a call through the writer comes after them.
        assert (await store.counts())["delivered"] == 5
        assert await store.prune(now=time.time() + 3601) == 5
        assert await store.counts() == {"dead_letters": 0}


async def test_retention_zero_deletes_rows_on_delivery(tmp_path: Path, receiver: Receiver) -> None:
    db = tmp_path / "outbox.db"
    hook = CustomWebhook(name="h", url=receiver.url("/h"))
    async with WebhookDispatcher(webhooks=[hook], store=url(db, "retention=0")) as dispatcher:
        for n in range(5):
            await dispatcher.emit("prediction", {"n": n})
    assert len(receiver.delivered) == 5
    assert rows(db, "SELECT count(*) FROM deliveries") == [(0,)]


async def test_a_store_used_before_open_says_so(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "o.db")
    with pytest.raises(RuntimeError, match="not open"):
        await store.dead_letters()
    assert "o.db" in repr(store)


# -- paging a backlog in, and rows that cannot be decoded ----------------------------------


def _insert_pending(db: Path, texts: list[str], webhook: str = "h") -> None:
    """Rows as an earlier process (or an older version, or a damaged disk) left them."""
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO deliveries (delivery_id, webhook_name, event_id, event_json, attempts,"
            " created_at) VALUES (?, ?, ?, ?, 0, ?)",
            [(f"dlv_{n}", webhook, f"evt_{n}", text, time.time()) for n, text in enumerate(texts)],
        )


def _deep(depth: int) -> str:
    """An envelope whose data is nested `depth` levels deep (past any recursion limit)."""
    return (
        '{"event_type":"alert","event_id":"evt_deep","timestamp":"2025-01-01T00:00:00.000Z",'
        '"data":' + '{"a":' * depth + "1" + "}" * depth + "}"
    )


async def _prepared(db: Path) -> None:
    """Create the file's tables the way the store does."""
    store = SQLiteStore(db)
    await store.open()
    await store.close()


async def test_a_large_backlog_is_paged_in_not_loaded_at_once(
    tmp_path: Path, receiver: Receiver
) -> None:
    from empathy_webhooks_core.dispatcher import RESUME_WINDOW

    db = tmp_path / "outbox.db"
    await _prepared(db)
    backlog = 3 * RESUME_WINDOW
    good = Event(event_type="prediction", data={"n": 1}, ordering_key="k").to_json()
    events = [good.replace('"evt_', f'"evt_{n}x', 1) for n in range(backlog)]
    _insert_pending(db, events)
    release = _held_answers(receiver)
    hook = CustomWebhook(name="h", url=receiver.url("/h"), max_concurrency=4)
    dispatcher = WebhookDispatcher(webhooks=[hook], store=url(db))
    await dispatcher.start()
    await receiver.wait_for(1)  # one at a time: they share an ordering key
    # The lane holds one window of the backlog, not all of it.
    state = dispatcher.lane_state("h")
    assert state is not None
    assert state.queued + state.in_flight == RESUME_WINDOW
    assert rows(db, "SELECT count(*) FROM deliveries WHERE owner IS NULL") == [
        (backlog - RESUME_WINDOW,)
    ]
    release.set()
    await dispatcher.drain()
    await dispatcher.close()
    # Every row went out, oldest first (the ordering key held across pages).
    assert [r.event_id for r in receiver.delivered] == [
        f"evt_{n}x" + good.split('"evt_', 1)[1].split('"', 1)[0] for n in range(backlog)
    ]


async def test_a_backlog_of_large_events_is_paged_by_bytes_not_only_by_count(
    tmp_path: Path, receiver: Receiver
) -> None:
    """200 KB events: a page of 256 of them, decoded, was 50 MB and more (1 GB events would
    not fit): a page now stops at the store's `page_bytes`, and a lane holds at most twice
    that ahead of sending. Every row still goes out once, in order."""
    from empathy_webhooks_core.stores.sqlite import PAGE_BYTES

    db = tmp_path / "outbox.db"
    await _prepared(db)
    backlog = 60
    good = Event(event_type="prediction", data={"log": "x" * 200_000}, ordering_key="k").to_json()
    size = len(good)
    events = [good.replace('"evt_', f'"evt_{n}x', 1) for n in range(backlog)]
    _insert_pending(db, events)
    release = _held_answers(receiver)
    hook = CustomWebhook(name="h", url=receiver.url("/h"), max_concurrency=4)
    dispatcher = WebhookDispatcher(webhooks=[hook], store=url(db))
    await dispatcher.start()
    await receiver.wait_for(1)
    await asyncio.sleep(0.3)  # room for more pages, had the lane asked for them
    state = dispatcher.lane_state("h")
    assert state is not None
    held = state.queued + state.in_flight
    assert held == -(-PAGE_BYTES // size)  # one page: up to the first row past 4 MiB
    assert held * size <= 2 * PAGE_BYTES + size
    assert rows(db, "SELECT count(*) FROM deliveries WHERE owner IS NULL") == [(backlog - held,)]
    release.set()
    await dispatcher.drain()
    await dispatcher.close()
    assert [r.event_id for r in receiver.delivered] == [
        f"evt_{n}x" + good.split('"evt_', 1)[1].split('"', 1)[0] for n in range(backlog)
    ]


async def test_a_store_page_stops_at_page_bytes_and_says_which_webhooks_have_more(
    tmp_path: Path,
) -> None:
    db = tmp_path / "outbox.db"
    await _prepared(db)
    big = Event(event_type="alert", data={"log": "y" * 50_000}).to_json()
    small = Event(event_type="alert", data={"n": 1}).to_json()
    bigs = [big.replace('"evt_', f'"evt_{n}b', 1) for n in range(10)]
    smalls = [small.replace('"evt_', f'"evt_{n}s', 1) for n in range(3)]
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO deliveries (delivery_id, webhook_name, event_id, event_json, attempts,"
            " created_at) VALUES (?, ?, ?, ?, 0, ?)",
            [(f"dlv_{n}", "h", f"evt_{n}", text, time.time()) for n, text in enumerate(bigs)]
            + [(f"dlv_s{n}", "s", f"evt_s{n}", t, time.time()) for n, t in enumerate(smalls)],
        )
    store = SQLiteStore(db)
    store.page_bytes = 120_000
    await store.open()
    try:
        page = await store.take_pending({"h": 256, "s": 256})
        by_hook = [d.webhook_name for d in page]
        assert by_hook.count("h") == 3  # 150 KB: the row that passed 120 KB ends the page
        assert by_hook.count("s") == 3  # all there is
        assert page.capped == {"h"}
        assert sorted(page.sizes.values()) == sorted(map(len, smalls + bigs[:3]))
        rest = await store.take_pending({"h": 256})
        assert [d.webhook_name for d in rest] == ["h"] * 3
    finally:
        await store.close()


async def test_rows_that_cannot_be_decoded_go_to_dead_letters_and_the_rest_is_delivered(
    tmp_path: Path, receiver: Receiver
) -> None:
    db = tmp_path / "outbox.db"
    await _prepared(db)
    good = [Event(event_type="prediction", data={"n": n}) for n in range(5)]
    stored = [
        good[0].to_json(),
        _deep(100_000),  # RecursionError in json.loads
        good[1].to_json(),
        "{not json",
        good[2].to_json(),
        '{"event_id": "evt_no_type", "timestamp": "2025-01-01T00:00:00.000Z"}',
        good[3].to_json(),
        '["a list"]',
        good[4].to_json(),
    ]
    _insert_pending(db, stored)
    hook = CustomWebhook(name="h", url=receiver.url("/h"))
    for _ in range(2):  # a restart never trips on them either
        async with WebhookDispatcher(webhooks=[hook], store=url(db)) as dispatcher:
            await dispatcher.drain()
            letters = await dispatcher.dead_letters()
    assert sorted(r.event_id or "" for r in receiver.delivered) == sorted(e.event_id for e in good)
    assert len(letters) == 4
    reasons = sorted(letter.error["reason"] for letter in letters)
    assert all(r.startswith("the stored event cannot be decoded: ") for r in reasons)
    assert any("RecursionError" in r for r in reasons)
    assert any("JSONDecodeError" in r for r in reasons)
    assert any("'event_type' is missing" in r for r in reasons)
    assert any("not an object" in r for r in reasons)
    deep = next(d for d in letters if "RecursionError" in d.error["reason"])
    assert deep.event.event_id == "evt_deep"  # found in the text, for the operator
    assert deep.error["stored_event"] == stored[1]  # kept whole: nothing is lost
    assert not deep.replayable
    assert rows(db, "SELECT count(*) FROM deliveries WHERE state = 'queued'") == [(0,)]
    async with WebhookDispatcher(webhooks=[hook], store=url(db)) as dispatcher:
        with pytest.raises(ValueError, match="could not be decoded"):
            await dispatcher.replay_dead_letter(deep.dead_letter_id)
        assert await dispatcher.replay_dead_letters() == 0  # none of them can be sent
        assert len(await dispatcher.dead_letters()) == 4


async def test_a_file_whose_history_kept_events_and_attempts_apart_is_read_and_pruned(
    tmp_path: Path, receiver: Receiver
) -> None:
    """A file written by the build that kept each event in `history_events` (its history
    rows have no `event_json`, nor `first_` columns) and each attempt as JSON in
    `history_attempts`: its pending
    row is delivered, its event and its earlier attempt are still found after the file is
    brought up to date, beside the attempt made now, and the retention prunes them all."""
    db = tmp_path / "outbox.db"
    await _prepared(db)
    old = Event(event_type="prediction", data={"n": 1})
    now = time.time()
    with sqlite3.connect(db) as conn:
        conn.execute("ALTER TABLE history DROP COLUMN event_json")
        for (column,) in conn.execute(
            "SELECT name FROM pragma_table_info('history') WHERE name LIKE 'first%'"
        ).fetchall():  # nor its first attempt's columns
            conn.execute(f"ALTER TABLE history DROP COLUMN {column}")
        conn.execute("DROP TABLE attempts")
        conn.execute(
            "INSERT INTO deliveries (delivery_id, webhook_name, event_id, event_json, attempts,"
            " created_at) VALUES ('dlv_old', 'h', ?, ?, 1, ?)",
            (old.event_id, old.to_json(), now),
        )
        conn.execute(
            "INSERT INTO history (delivery_id, event_id, webhook_name, event_type, status,"
            " created_at, updated_at) VALUES ('dlv_old', ?, 'h', 'prediction', 'retrying', ?, ?)",
            (old.event_id, now, now),
        )
        earlier = {
            "delivery_id": "dlv_old",
            "attempt": 1,
            "started_at": now,
            "duration_s": 0.01,
            "status": 503,
            "error": None,
            "verdict": "retry",
            "reason": "HTTP 503",
            "response_excerpt": "busy",
            "request_headers": {"Content-Type": "application/json"},
            "body_bytes": 10,
            "next_retry_at": now + 1,
        }
        conn.execute(
            "INSERT INTO history_attempts (delivery_id, started_at, record_json) VALUES (?, ?, ?)",
            ("dlv_old", now, json.dumps(earlier)),
        )
        conn.execute(
            "INSERT INTO history_events (event_id, event_json, created_at) VALUES (?, ?, ?)",
            (old.event_id, old.to_json(), now),
        )
    hook = CustomWebhook(name="h", url=receiver.url("/h"))
    store = SQLiteStore(db, retention_seconds=60)
    async with WebhookDispatcher(webhooks=[hook], store=store) as dispatcher:
        await receiver.wait_for(1)
        new = await dispatcher.emit("prediction", {"n": 2})
        await dispatcher.drain()
        assert sorted(r.event_id or "" for r in receiver.delivered) == sorted(
            [old.event_id, new.event_id]
        )
        assert await dispatcher.event(old.event_id) == old
        assert await dispatcher.event(new.event_id) == new
        # A read takes the marks made so far with it: the answer is on record.
        record = await dispatcher.delivery("dlv_old")
        assert record is not None and record.status == "delivered"
        assert [(a.attempt, a.status, a.response_excerpt) for a in record.attempts] == [
            (1, 503, "busy"),
            (2, 200, ""),
        ]
        (fresh,) = (await dispatcher.deliveries(event_id=new.event_id)).items
        assert [(a.attempt, a.status) for a in fresh.attempts] == [(1, 200)]
        assert fresh.attempts[0].request_headers["Content-Type"] == "application/json"
        await store.prune(now=time.time() + 61)
        assert await dispatcher.event(old.event_id) is None
        assert await dispatcher.event(new.event_id) is None
        assert await dispatcher.delivery("dlv_old") is None
    assert rows(db, "SELECT count(*) FROM history_events") == [(0,)]
    assert rows(db, "SELECT count(*) FROM history") == [(0,)]
    assert rows(db, "SELECT count(*) FROM history_attempts") == [(0,)]
    assert rows(db, "SELECT count(*) FROM attempts") == [(0,)]


async def test_a_row_queued_without_its_record_gets_one_with_its_event_when_taken(
    tmp_path: Path, receiver: Receiver
) -> None:
    """A queued row whose history record was never committed (its process died within the
    marks' delay of queuing it, or an older version queued it) is on record, with its
    event, once a process takes it."""
    db = tmp_path / "outbox.db"
    await _prepared(db)
    event = Event(event_type="prediction", data={"n": 7})
    _insert_pending(db, [event.to_json()])
    hook = CustomWebhook(name="h", url=receiver.url("/h"))
    async with WebhookDispatcher(webhooks=[hook], store=url(db)) as dispatcher:
        await receiver.wait_for(1)
        await dispatcher.drain()
        assert await dispatcher.event(event.event_id) == event
        record = await dispatcher.delivery("dlv_0")
    assert record is not None
    assert (record.status, record.event_id, record.event_type) == (
        "delivered",
        event.event_id,
        "prediction",
    )
    assert [a.status for a in record.attempts] == [200]


def _success(
    headers: Mapping[str, object],
    *,
    body: bytes = b"ok",
    transient: bool = False,
    started_at: float | None = None,
) -> RawAttempt:
    """A first attempt answered 200 with `body`, as the worker notes it."""
    return RawAttempt(
        attempt=1,
        started_at=time.time() if started_at is None else started_at,
        duration_s=0.01,
        verdict="success",
        reason=None,
        response=Response(status=200, body=body),
        headers=headers,  # type: ignore[arg-type]
        body_bytes=2,
        next_retry_at=None,
        transient=transient,
    )


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "application/json", "X-Note": "a: b"},
        {},
        {"X-Odd: Name": "v", "X-Next": "w"},  # a name that would split its line
        {"X-Folded": "one\r\ntwo", "X-Cr": "three\r"},  # line breaks in values
        {"{X": "1"},  # a name that starts like JSON
    ],
)
async def test_an_attempt_reads_back_with_its_request_headers_as_they_were(
    tmp_path: Path, headers: dict[str, str]
) -> None:
    """However odd the (already masked) names and values, the record shows them unchanged,
    across a restart."""
    db = tmp_path / "outbox.db"
    delivery = Delivery(webhook_name="h", event=Event(event_type="prediction", data={}))
    store = SQLiteStore(db)
    await store.open()
    await store.enqueue([delivery])
    started = time.time()
    store.note_attempt(delivery, _success(headers, started_at=started), "delivered")
    await store.close()
    store = SQLiteStore(db)
    await store.open()
    try:
        record = await store.delivery_record(delivery.delivery_id)
    finally:
        await store.close()
    assert record is not None and record.status == "delivered"
    (kept,) = record.attempts
    assert kept.request_headers == headers  # nothing secret in them: masking keeps them
    assert (kept.status, kept.started_at, kept.response_excerpt) == (200, started, "ok")


@pytest.mark.parametrize("long_answer", [False, True])
async def test_a_first_attempt_is_masked_in_time_whether_now_or_by_the_writer(
    tmp_path: Path, long_answer: bool
) -> None:
    """Most first attempts are masked by the writer thread with the next commit; one whose
    request carried a credential known only for a while, or whose answer is long, is masked
    when noted. Either way the record is masked after the registry has forgotten the
    credential, and no secret reaches the file."""
    from empathy_webhooks_core.redaction import (
        isolated_registry,
        register_request_secrets,
        register_secrets,
    )

    db = tmp_path / "outbox.db"
    padding = " " * 600 if long_answer else ""

    def attempt(echo: str, *, transient: bool) -> RawAttempt:
        headers = {"Content-Type": "application/json", "X-Token-Echo": echo}
        return _success(headers, body=f"you sent {echo}{padding}".encode(), transient=transient)

    transient = "per-request-credential-77c2e1d0"
    lasting = "registered-for-good-3b9f0a6e"
    brief, kept = (
        Delivery(webhook_name="h", event=Event(event_type="prediction", data={"n": n}))
        for n in range(2)
    )
    with isolated_registry():
        register_secrets([lasting])
        store = SQLiteStore(db)
        await store.open()
        try:
            await store.enqueue([brief, kept])
            register_request_secrets([transient])
            store.note_attempt(brief, attempt(transient, transient=True), "delivered")
            store.note_attempt(kept, attempt(lasting, transient=False), "delivered")
            # The registry forgets the request's credential before anything is written.
            register_request_secrets(f"other-request-credential-{n:04d}" for n in range(600))
            records = [await store.delivery_record(d.delivery_id) for d in (brief, kept)]
        finally:
            await store.close()
    for record, secret in zip(records, (transient, lasting), strict=True):
        assert record is not None and record.status == "delivered"
        (noted,) = record.attempts
        assert (noted.response_excerpt or "").startswith("you sent ***")
        assert noted.request_headers["X-Token-Echo"] == "***"
        assert secret not in str(record.to_dict())
    stored = await asyncio.to_thread(
        lambda: b"".join(path.read_bytes() for path in tmp_path.iterdir() if path.is_file())
    )
    assert transient.encode() not in stored and lasting.encode() not in stored


async def test_an_attempt_that_cannot_be_masked_loses_only_its_own_record(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Masked in the writer thread with the others of its batch, an attempt whose values
    cannot be made fit to keep (a header name that is not text, which no shipped plugin
    makes) is logged by its delivery id, without its values, and the other records of the
    batch are written."""
    odd, fine = (
        Delivery(webhook_name="h", event=Event(event_type="prediction", data={"n": n}))
        for n in range(2)
    )
    store = SQLiteStore(tmp_path / "outbox.db")
    await store.open()
    try:
        await store.enqueue([odd, fine])
        store.note_attempt(odd, _success({731_906_522: "sk_live_4f0b2d9c71e3a8"}), "delivered")
        store.note_attempt(fine, _success({"Content-Type": "application/json"}), "delivered")
        kept = await store.delivery_record(fine.delivery_id)
        lost = await store.delivery_record(odd.delivery_id)
    finally:
        await store.close()
    assert kept is not None and [a.status for a in kept.attempts] == [200]
    # The odd one's record is the one its row made, without the attempt.
    assert lost is None or lost.attempts == []
    (line,) = [r.getMessage() for r in caplog.records if "could not record" in r.getMessage()]
    assert odd.delivery_id in line and "Error" in line and "sk_live" not in line


async def test_open_errors_name_the_file(tmp_path: Path) -> None:
    from empathy_webhooks_core.stores import StoreOpenError

    (tmp_path / "plain").write_text("a file, not a folder")
    with pytest.raises(StoreOpenError, match=r"cannot open the SQLite store .*plain/outbox\.db"):
        await SQLiteStore(tmp_path / "plain" / "outbox.db").open()
    (tmp_path / "junk.db").write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(StoreOpenError, match=r"junk\.db: the file is not an SQLite database"):
        await SQLiteStore(tmp_path / "junk.db").open()


def test_a_read_only_folder_is_one_clear_cli_error_with_exit_2(tmp_path: Path) -> None:
    """`stats`, `send` and `worker` on a store in a folder this user cannot write."""
    import os
    import shutil
    import subprocess

    folder = tmp_path / "ro"
    folder.mkdir()
    config = tmp_path / "webhooks.toml"
    config.write_text(
        f'store = "sqlite:///{folder / "outbox.db"}"\n'
        '[[webhooks]]\ntype = "custom"\nname = "h"\nurl = "http://127.0.0.1:9/"\n'
    )
    # Root writes through permissions: an immutable folder is read-only even for root.
    root = os.geteuid() == 0
    if root:
        if shutil.which("chattr") is None:
            pytest.skip("running as root without chattr: no way to make a read-only folder")
        subprocess.run(["chattr", "+i", str(folder)], check=True)
    else:
        folder.chmod(0o555)
    try:
        for command in (["send", "alert", "--no-wait"], ["worker"]):
            # In this process (tests/_cli_kit.py): the message, not the start-up, is tested.
            done = completed(*command, "-c", str(config))
            assert done.returncode == 2, (command, done.stdout, done.stderr)
            assert "Traceback" not in done.stderr
            assert f"cannot open the SQLite store {folder / 'outbox.db'}" in done.stderr
            assert f"the folder {folder} is read-only" in done.stderr
        # A command that only reads has nothing to read: no file was ever made there.
        done = completed("stats", "-c", str(config))
        assert done.returncode == 2, (done.stdout, done.stderr)
        assert f"there is no store file at {folder / 'outbox.db'}" in done.stderr
    finally:
        if root:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        else:
            folder.chmod(0o755)


async def test_resumed_deliveries_are_never_refused_by_max_pending(
    tmp_path: Path, receiver: Receiver
) -> None:
    """They were accepted by an earlier emit: paged in within the bound, all delivered."""
    db = tmp_path / "outbox.db"
    await _prepared(db)
    events = [Event(event_type="prediction", data={"n": n}) for n in range(40)]
    _insert_pending(db, [event.to_json() for event in events])
    hook = CustomWebhook(name="h", url=receiver.url("/h"), max_pending=5)
    async with WebhookDispatcher(webhooks=[hook], store=url(db)) as dispatcher:
        await dispatcher.drain()
        assert dispatcher.get_webhook_stats("h")["refused"] == 0
    assert sorted(r.event_id or "" for r in receiver.delivered) == sorted(
        e.event_id for e in events
    )


async def test_text_utf8_cannot_encode_in_an_attempt_keeps_the_attempt_on_record(
    tmp_path: Path, receiver: Receiver
) -> None:
    """A header value holding a lone surrogate (bytes decoded with `surrogateescape`, as an
    answer's headers are): it goes out as its bytes, and its attempt stays on record, with the
    character shown as `?`, instead of failing the whole history write."""
    hook = CustomWebhook(name="h", url=receiver.url("/h"), headers={"X-Team": "ops\udcff"})
    store = SQLiteStore(tmp_path / "o.db")
    async with WebhookDispatcher(webhooks=[hook], store=store) as dispatcher:
        await dispatcher.emit("prediction", {"n": 1})
        await dispatcher.drain(timeout=10)
        (record,) = (await dispatcher.deliveries()).items
        async with asyncio.timeout(10):
            while record.status != "delivered":
                await asyncio.sleep(0.01)
                found = await dispatcher.delivery(record.delivery_id)
                assert found is not None
                record = found
    assert [(a.attempt, a.status) for a in record.attempts] == [(1, 200)]
    assert record.attempts[0].request_headers["X-Team"] == "ops?"
    (request,) = receiver.requests
    # The receiver (aiohttp) decodes the byte back the same way.
    assert request.header("X-Team") == "ops\udcff"


async def test_rows_written_from_the_event_loop_carry_the_ids_sqlite_gave_them(
    tmp_path: Path,
) -> None:
    """An emit's rows are written by the event loop's own connection, SQLite choosing the ids;
    each delivery's handle is its row's id, as the marks and the dead letters need."""
    db = tmp_path / "outbox.db"
    store = SQLiteStore(db)
    await store.open()
    try:
        for n in range(3):  # one event to three webhooks, three times
            event = Event(event_type="prediction", data={"n": n})
            batch = [Delivery(webhook_name=name, event=event) for name in ("a", "b", "c")]
            await store.enqueue(batch)
        stored = dict(rows(db, "SELECT delivery_id, id FROM deliveries"))
    finally:
        await store.close()
    assert len(stored) == 9
    assert sorted(stored.values()) == list(range(1, 10))


async def test_an_emit_waits_for_another_writer_instead_of_failing(
    tmp_path: Path, receiver: Receiver
) -> None:
    """While another connection (another process) holds the file's write lock, an emit is
    written by the writer thread once the lock is free: never lost, never an error."""
    db = tmp_path / "outbox.db"
    hook = CustomWebhook(name="h", url=receiver.url("/h"))
    async with WebhookDispatcher(webhooks=[hook], store=url(db)) as dispatcher:
        other = sqlite3.connect(db, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # the write lock, held
        emitting = asyncio.create_task(dispatcher.emit("prediction", {"n": 1}))
        await asyncio.sleep(0.2)
        assert not emitting.done()  # waiting for the lock, not refused
        other.execute("COMMIT")
        other.close()
        event = await emitting
        await dispatcher.drain()
    assert receiver.delivered_event_ids() == {event.event_id: 1}
    ((state, owner),) = rows(db, "SELECT state, owner FROM deliveries")
    assert state == "delivered" and owner is not None


async def test_emits_from_the_event_loop_do_not_grow_the_wal_without_bound(
    tmp_path: Path,
) -> None:
    """The event loop's connection never checkpoints (a checkpoint syncs the disk); the writer
    thread does, every few hundred of its commits, so a process that only queues (a
    producer) keeps the WAL file bounded; and while a checkpoint asked for is half an
    interval overdue (the thread starved of the CPU), emits go through the thread, behind
    it, instead of growing the WAL further (this failed about once in 25 runs before)."""
    db = tmp_path / "outbox.db"
    store = SQLiteStore(db, role="producer")
    await store.open()
    try:
        for n in range(1500):
            await store.enqueue(
                [Delivery(webhook_name="h", event=Event(event_type="prediction", data={"n": n}))]
            )
        await store.counts()  # through the writer: after the checkpoints asked for so far
    finally:
        wal = (db.parent / (db.name + "-wal")).stat().st_size
        await store.close()
    frames = (wal - 32) // (4096 + 24)
    assert frames < 1500  # one commit per emit, each at least a page: 1500 without
    assert rows(db, "SELECT count(*) FROM deliveries") == [(1500,)]


async def test_emits_queue_behind_a_checkpoint_the_writer_has_not_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer thread that cannot run the checkpoint the loop asked for (here: held inside
    it; in life: starved of the CPU) does not leave the loop growing the WAL: half an
    interval later, emits go through the writer, behind the checkpoint, and return once it
    has run. Every emit's row is there."""
    import threading

    from empathy_webhooks_core.stores import sqlite as sqlite_module

    inside, release = threading.Event(), threading.Event()
    checkpoint = SQLiteStore._checkpoint

    def held(conn: sqlite3.Connection) -> None:
        inside.set()
        release.wait(30)
        checkpoint(conn)

    monkeypatch.setattr(SQLiteStore, "_checkpoint", staticmethod(held))
    every = sqlite_module._CHECKPOINT_EVERY
    db = tmp_path / "outbox.db"
    store = SQLiteStore(db, role="producer")
    await store.open()

    def delivery(n: int) -> Delivery:
        return Delivery(webhook_name="h", event=Event(event_type="prediction", data={"n": n}))

    try:
        for n in range(every):  # one emit at a time: a commit each, the last asks
            await store.enqueue([delivery(n)])
        assert await asyncio.to_thread(inside.wait, 30)
        for n in range(every, every + every // 2):  # still written from the loop
            await store.enqueue([delivery(n)])
        behind = asyncio.ensure_future(store.enqueue([delivery(-1)]))
        await asyncio.sleep(0.2)
        assert not behind.done()  # waiting for the writer, behind the checkpoint
        release.set()
        await asyncio.wait_for(behind, 30)
        await store.enqueue([delivery(-2)])
    finally:
        release.set()
        await store.close()
    assert rows(db, "SELECT count(*) FROM deliveries") == [(every + every // 2 + 2,)]


async def test_many_emits_at_once_each_get_their_own_row_and_id(tmp_path: Path) -> None:
    """A burst (hundreds of tasks emitting in one turn of the loop): the first tasks' rows are
    written by the loop, the others' committed together by the writer thread; every delivery
    has its row, and its handle is that row's id."""
    db = tmp_path / "outbox.db"
    store = SQLiteStore(db)
    await store.open()
    try:
        deliveries = [
            Delivery(webhook_name="h", event=Event(event_type="prediction", data={"n": n}))
            for n in range(300)
        ]
        await asyncio.gather(*(store.enqueue([delivery]) for delivery in deliveries))
        stored = dict(rows(db, "SELECT delivery_id, id FROM deliveries"))
    finally:
        await store.close()
    assert {d.delivery_id: d.store_ref for d in deliveries} == stored
    assert len(set(stored.values())) == 300


async def test_rows_with_and_without_nulls_keep_every_value_through_either_writer(
    tmp_path: Path,
) -> None:
    """Values that are None are written as NULL in the statement's text rather than bound
    (cheaper), rows grouped by where their Nones are: whatever the mix in one emit, one
    burst or one batch of first attempts, each row keeps its own values, NULLs included."""
    db = tmp_path / "outbox.db"
    store = SQLiteStore(db)
    await store.open()
    try:
        event = Event(event_type="prediction", data={"n": 0})
        mixed = [  # one emit, from the event loop: contexts on some deliveries only
            Delivery(webhook_name="a", event=event),
            Delivery(webhook_name="b", event=event, context={"trace": "t-b"}),
            Delivery(webhook_name="c", event=event),
        ]
        await store.enqueue(mixed)
        burst = [  # hundreds at once: most go through the writer thread together
            Delivery(
                webhook_name="h",
                event=Event(event_type="prediction", data={"n": n}),
                context={"trace": f"t-{n}"} if n % 3 == 0 else {},
            )
            for n in range(300)
        ]
        await asyncio.gather(*(store.enqueue([delivery]) for delivery in burst))
        started = time.time()
        for n, delivery in enumerate(mixed + burst):  # first attempts, marks of one batch
            failed = n % 2 == 1
            store.note_attempt(
                delivery,
                RawAttempt(
                    attempt=1,
                    started_at=started + n,
                    duration_s=0.5,
                    verdict="retry" if failed else "success",
                    reason=f"HTTP 503 #{n}" if failed else None,
                    response=Response(status=503 if failed else 200, body=b"no" if failed else b""),
                    headers={"Content-Type": "application/json"},
                    body_bytes=n,
                    next_retry_at=started + n + 9 if failed else None,
                    transient=False,
                ),
                "retrying" if failed else "delivered",
            )
        records = {d.delivery_id: await store.delivery_record(d.delivery_id) for d in mixed + burst}
        stored = {
            delivery_id: (owner, context)
            for delivery_id, owner, context in rows(
                db, "SELECT delivery_id, owner, context_json FROM deliveries"
            )
        }
    finally:
        await store.close()
    for n, delivery in enumerate(mixed + burst):
        owner, context = stored[delivery.delivery_id]
        assert owner == store.owner
        assert context == (
            json.dumps(delivery.context, separators=(",", ":")) if delivery.context else None
        )
        record = records[delivery.delivery_id]
        assert record is not None
        (attempt,) = record.attempts
        failed = n % 2 == 1
        assert record.status == ("retrying" if failed else "delivered")
        assert (attempt.status, attempt.reason, attempt.next_retry_at, attempt.body_bytes) == (
            (503, f"HTTP 503 #{n}", started + n + 9, n) if failed else (200, None, None, n)
        )
        assert attempt.error is None and attempt.started_at == started + n


async def test_a_producers_rows_have_no_owner_whichever_writer_wrote_them(tmp_path: Path) -> None:
    """A producer's rows are nobody's (NULL, written in the text), for a worker to claim."""
    db = tmp_path / "outbox.db"
    store = SQLiteStore(db, role="producer")
    await store.open()
    try:
        one = Delivery(webhook_name="h", event=Event(event_type="prediction", data={}))
        await store.enqueue([one])
        burst = [
            Delivery(webhook_name="h", event=Event(event_type="prediction", data={"n": n}))
            for n in range(100)
        ]
        await asyncio.gather(*(store.enqueue([delivery]) for delivery in burst))
    finally:
        await store.close()
    assert rows(db, "SELECT count(*), count(owner), count(context_json) FROM deliveries") == [
        (101, 0, 0)
    ]


async def test_emits_of_one_turn_share_one_commit_and_each_returns_after_it(
    tmp_path: Path,
) -> None:
    """Emits made in the same turn of the event loop (concurrent producers) are written in
    one statement: one commit, not one each (the first of them alone, as emits came one at
    a time until then). Each returns only once its row is committed, in emit order, with
    the id SQLite gave it."""
    db = tmp_path / "outbox.db"
    store = SQLiteStore(db)
    await store.open()
    try:
        wal = db.parent / (db.name + "-wal")
        await store.enqueue(
            [Delivery(webhook_name="h", event=Event(event_type="prediction", data={}))]
        )
        before = wal.stat().st_size
        deliveries = [
            Delivery(webhook_name="h", event=Event(event_type="prediction", data={"n": n}))
            for n in range(8)
        ]
        seen: list[list[tuple[object, ...]]] = []

        async def emit(delivery: Delivery) -> None:
            await store.enqueue([delivery])
            seen.append(
                rows(db, f"SELECT id FROM deliveries WHERE delivery_id = '{delivery.delivery_id}'")
            )

        await asyncio.gather(*(emit(delivery) for delivery in deliveries))
        frames = (wal.stat().st_size - before) // (4096 + 24)
    finally:
        await store.close()
    assert seen == [[(delivery.store_ref,)] for delivery in deliveries]
    assert [d.store_ref for d in deliveries] == list(range(2, 10))
    # Two commits, each the table's last page and its index's (a commit each: 16 frames).
    assert frames <= 4


async def test_an_emit_cancelled_while_its_turn_waits_to_be_written_leaves_nothing(
    tmp_path: Path,
) -> None:
    """An emit cancelled before its turn's rows are written is left out of them (nothing of
    it is kept); the others of the turn are written."""
    db = tmp_path / "outbox.db"
    store = SQLiteStore(db)
    await store.open()
    try:
        kept, dropped = (
            Delivery(webhook_name="h", event=Event(event_type="prediction", data={"n": n}))
            for n in range(2)
        )
        emits = [asyncio.create_task(store.enqueue([d])) for d in (kept, dropped)]
        await asyncio.sleep(0)  # both joined the turn's rows, not written yet
        emits[1].cancel()
        await emits[0]
        with pytest.raises(asyncio.CancelledError):
            await emits[1]
        await store.counts()  # anything the writer thread was handed is written by now
    finally:
        await store.close()
    assert rows(db, "SELECT delivery_id FROM deliveries") == [(kept.delivery_id,)]


async def test_emits_whose_turn_the_loop_cannot_write_are_written_by_the_writer_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever goes wrong writing a turn's emits from the event loop (it runs apart from
    them, in the loop's next turn), none is left waiting: the writer thread writes them."""
    from empathy_webhooks_core.stores import sqlite as sqlite_store

    def broken(rows: object) -> object:
        raise RuntimeError("not from the loop")

    db = tmp_path / "outbox.db"
    store = SQLiteStore(db)
    await store.open()
    try:
        monkeypatch.setattr(sqlite_store, "_now_statement", broken)
        deliveries = [
            Delivery(webhook_name="h", event=Event(event_type="prediction", data={"n": n}))
            for n in range(8)
        ]
        await asyncio.wait_for(
            asyncio.gather(*(store.enqueue([delivery]) for delivery in deliveries)), 10
        )
        stored = dict(rows(db, "SELECT delivery_id, id FROM deliveries"))
    finally:
        await store.close()
    assert {d.delivery_id: d.store_ref for d in deliveries} == stored


def test_wide_rows_are_cut_to_what_an_older_sqlite_takes(monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite before 3.32 (still shipped by some distributions) takes at most 999 parameters
    a statement: the store's multi-row statements carry fewer rows when they are wide."""
    from empathy_webhooks_core.stores import sqlite as sqlite_store

    conn = sqlite3.connect(":memory:")
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
    conn.execute(f"CREATE TABLE t ({', '.join(f'c{n}' for n in range(19))})")
    head, row = "INSERT INTO t VALUES ", "(" + ", ".join(["?"] * 19) + ")"
    wide = [tuple(range(19))] * 300
    monkeypatch.setattr(sqlite_store, "_MAX_PARAMETERS", 32_766)
    with pytest.raises(sqlite3.OperationalError, match="too many SQL variables"):
        sqlite_store._insert_rows(conn, head, row, wide)
    monkeypatch.setattr(sqlite_store, "_MAX_PARAMETERS", 999)
    sqlite_store._insert_rows(conn, head, row, wide)
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (300,)


async def test_an_emit_cancelled_while_its_row_goes_in_is_still_delivered(
    tmp_path: Path, receiver: Receiver
) -> None:
    """An emit cancelled (a request's timeout) while its row waited for the write lock: the
    row, once written, is this process's, which no lane had been given; it is released and
    taken again, so the event is delivered instead of waiting for the process to end."""
    db = tmp_path / "outbox.db"
    hook = CustomWebhook(name="h", url=receiver.url("/h"))
    async with WebhookDispatcher(webhooks=[hook], store=url(db, "poll=0.05")) as dispatcher:
        other = sqlite3.connect(db, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        emitting = asyncio.create_task(dispatcher.emit("prediction", {"n": 1}))
        await asyncio.sleep(0.2)
        emitting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await emitting
        other.execute("COMMIT")
        other.close()
        await receiver.wait_for(1)
    assert rows(db, "SELECT state FROM deliveries") == [("delivered",)]
    assert len(receiver.delivered) == 1


@pytest.mark.parametrize("store", ["memory", "sqlite"])
async def test_a_producer_emitting_event_after_event_lets_the_deliveries_run(
    tmp_path: Path, receiver: Receiver, store: str
) -> None:
    """A task emitting many events one after another (a backfill), to a store that writes at
    once, yields to the loop once its lane has work for all its workers: they deliver
    meanwhile, and an emit past `max_pending` events in all is not refused."""
    hook = CustomWebhook(name="h", url=receiver.url("/h"), max_pending=50)
    where = None if store == "memory" else url(tmp_path / "outbox.db")
    async with WebhookDispatcher(webhooks=[hook], store=where) as dispatcher:
        for n in range(300):
            await dispatcher.emit("prediction", {"n": n})
        await dispatcher.drain()
    assert len(receiver.delivered) == 300


async def test_emits_gathered_at_once_never_hold_more_than_max_pending(
    receiver: Receiver,
) -> None:
    """Emits that yield a turn before queueing (their lane has work for all its workers) are
    checked against `max_pending` after it: a burst gathered at once is held to the bound, the
    rest refused loudly. (The memory store: a store whose write waits lets the emits waiting
    for it all pass the check, a bound overshot by at most the emits in flight.)"""
    from empathy_webhooks_core import QueueFull

    receiver.respond(status=200, delay=0.5)  # every delivery stays under way meanwhile
    hook = CustomWebhook(name="h", url=receiver.url("/h"), max_pending=30)
    async with WebhookDispatcher(webhooks=[hook]) as dispatcher:
        answers = await asyncio.gather(
            *(dispatcher.emit("prediction", {"n": n}) for n in range(100)),
            return_exceptions=True,
        )
        refused = [a for a in answers if isinstance(a, QueueFull)]
        assert len(answers) - len(refused) == 30
        assert len(refused) == 70
        await dispatcher.close(drain=False)


async def test_a_backlog_is_recorded_one_row_a_delivery_by_its_first_attempts(
    tmp_path: Path, receiver: Receiver
) -> None:
    """Deliveries that wait in a backlog for their first attempt keep their record until it
    comes (`_NEW_RECORD_DELAY`), and that attempt writes it whole, in its own columns: when
    the records went in as pending with the marks (50 ms on), each attempt wrote the record
    again and a row in `attempts` beside it, about a fifth more of this store's CPU a
    delivery under a backlog."""
    db = tmp_path / "outbox.db"
    release = _held_answers(receiver)
    hook = CustomWebhook(name="h", url=receiver.url("/h"), max_concurrency=2)
    async with WebhookDispatcher(webhooks=[hook], store=url(db)) as dispatcher:
        await asyncio.gather(*(dispatcher.emit("prediction", {"n": n}) for n in range(40)))
        await asyncio.sleep(0.3)  # several marks' delays: the backlog waits meanwhile
        release.set()
        await dispatcher.drain()
    assert len(receiver.delivered) == 40
    assert rows(db, "SELECT status, first_status, count(*) FROM history GROUP BY 1, 2") == [
        ("delivered", 200, 40)
    ]
    assert rows(db, "SELECT count(*) FROM attempts") == [(0,)]


async def test_a_queued_delivery_s_record_is_read_at_once_and_written_within_seconds(
    tmp_path: Path, receiver: Receiver
) -> None:
    """Held back for its first attempt, a queued delivery's record is still what a read of
    the history finds at once (a read takes what is held back first), and another process
    reading the file finds it pending within `_NEW_RECORD_DELAY` and the marks' delay."""
    db = tmp_path / "outbox.db"
    release = _held_answers(receiver)
    hook = CustomWebhook(name="h", url=receiver.url("/h"), max_concurrency=1)
    async with WebhookDispatcher(webhooks=[hook], store=url(db)) as dispatcher:
        first = await dispatcher.emit("prediction", {"n": 0})
        queued = await dispatcher.emit("prediction", {"n": 1})
        deadline = time.monotonic() + 4.0
        found: list[tuple[object, ...]] = []
        while not found and time.monotonic() < deadline:
            found = rows(db, f"SELECT status FROM history WHERE event_id = '{queued.event_id}'")
            await asyncio.sleep(0.05)
        assert found == [("pending",)]
        page = await dispatcher.deliveries(event_id=first.event_id)
        assert [r.status for r in page.items] == ["pending"]
        release.set()
        await dispatcher.drain()
    assert len(receiver.delivered) == 2


def test_pending_counts_read_only_the_queued_rows() -> None:
    """The counts the gateway's health pages ask on every view go through the partial indexes
    of queued rows: a plain `state = 'queued'` read every delivered row kept (an hour's, by
    default) on the writer thread."""
    from empathy_webhooks_core.stores import sqlite as sqlite_module

    conn = sqlite3.connect(":memory:")
    conn.executescript(sqlite_module._SCHEMA + sqlite_module._INDEXES)
    plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sqlite_module._PENDING_COUNTS)]
    reads = [step for step in plan if step.startswith(("SCAN deliveries", "SEARCH deliveries"))]
    assert len(reads) == 2 and all("INDEX deliveries_" in step for step in reads), plan


async def test_marks_wait_for_another_writer_and_go_in_once_the_lock_is_free(
    tmp_path: Path,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The event loop writes the marks itself when nothing else holds the write lock; when
    another connection (another process) holds it, the marks are not dropped nor said as
    refused: the writer thread waits for the lock and writes them, and the next process
    sends nothing again."""
    import logging

    import empathy_webhooks_core.stores.sqlite as sqlite_store

    caplog.set_level(logging.WARNING, logger="empathy_webhooks")
    # Time enough to take the lock between the answers and the marks' commit.
    monkeypatch.setattr(sqlite_store, "_MARK_DELAY", 0.5)
    db = tmp_path / "outbox.db"
    hook = CustomWebhook(name="h", url=receiver.url("/h"))
    async with WebhookDispatcher(webhooks=[hook], store=url(db)) as dispatcher:
        events = [await dispatcher.emit("prediction", {"n": n}) for n in range(3)]
        await receiver.wait_for(3)
        other = sqlite3.connect(db, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # the write lock, held past the marks' commit
        await asyncio.sleep(1.0)
        assert other.execute("SELECT DISTINCT state FROM deliveries").fetchall() == [("queued",)]
        other.execute("COMMIT")
        other.close()
        for _ in range(100):
            if rows(db, "SELECT DISTINCT state FROM deliveries") == [("delivered",)]:
                break
            await asyncio.sleep(0.05)
        assert rows(db, "SELECT DISTINCT state FROM deliveries") == [("delivered",)]
        records = await dispatcher.deliveries(limit=10)
        assert {record.status for record in records.items} == {"delivered"}
        assert all(record.attempts[0].status == 200 for record in records.items)
    assert not [r for r in caplog.records if "sqlite_marks" in r.getMessage()]
    async with WebhookDispatcher(webhooks=[hook], store=url(db)) as again:
        await again.drain()
    assert receiver.delivered_event_ids() == {event.event_id: 1 for event in events}


async def test_marks_written_from_the_event_loop_keep_the_wal_checkpointed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Marks the event loop commits itself count by the pages they write towards the WAL's
    next checkpoint, as the writer's commits did: counted as one commit each, a flush of a
    few hundred records added as many pages as hundreds of emits, and the WAL of a process
    that mostly marks grew to three times its size before (43 MB against 14 in an audit)."""
    import empathy_webhooks_core.stores.sqlite as sqlite_store

    monkeypatch.setattr(sqlite_store, "_CHECKPOINT_EVERY", 20)
    db = tmp_path / "outbox.db"
    wal = tmp_path / "outbox.db-wal"
    store = SQLiteStore(db)
    await store.open()
    flushes, per_flush = 40, 100
    try:
        deliveries = [
            Delivery(webhook_name="h", event=Event(event_type="prediction", data={"n": n}))
            for n in range(flushes * per_flush)
        ]
        await store.enqueue(deliveries)
        await store.counts()  # through the writer: the rows are in
        queued = wal.stat().st_size
        largest = queued
        for flush in range(flushes):
            for delivery in deliveries[flush * per_flush : (flush + 1) * per_flush]:
                delivery.attempts = 1
                attempt = RawAttempt(
                    attempt=1,
                    started_at=time.time(),
                    duration_s=0.01,
                    verdict="success",
                    reason=None,
                    response=Response(status=200, body=b"ok"),
                    headers={"Content-Type": "application/json"},
                    body_bytes=2,
                    next_retry_at=None,
                    transient=False,
                )
                store.note_attempt(delivery, attempt, "delivered")
                await store.mark_delivered(delivery)
            store._flush_marks()  # the marks' timer, now
            await asyncio.sleep(0.02)  # the writer runs the checkpoint asked for
            largest = max(largest, wal.stat().st_size)
        assert await store.counts() == {"delivered": flushes * per_flush, "dead_letters": 0}
    finally:
        await store.close()
    # The WAL file keeps the size it once reached: the 4,000 rows' commit made it that large;
    # the marks, checkpointed as often as emits would be, never made it larger by much.
    assert largest <= queued * 1.3, (largest, queued)


async def test_a_backlog_of_marks_goes_through_the_writer_and_every_mark_is_written(
    tmp_path: Path,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """More marks than the event loop writes itself at once (`_MARKS_NOW`, here 3) are left
    to the writer thread, masked there, as before: every delivery ends `delivered`, with its
    record, and nothing is said as refused or lost."""
    import logging

    import empathy_webhooks_core.stores.sqlite as sqlite_store

    caplog.set_level(logging.WARNING, logger="empathy_webhooks")
    monkeypatch.setattr(sqlite_store, "_MARKS_NOW", 3)
    db = tmp_path / "outbox.db"
    hook = CustomWebhook(name="h", url=receiver.url("/h"))
    async with WebhookDispatcher(webhooks=[hook], store=url(db)) as dispatcher:
        events = await asyncio.gather(*(dispatcher.emit("prediction", {"n": n}) for n in range(30)))
        await dispatcher.drain()
        records = await dispatcher.deliveries(limit=50)
    assert rows(db, "SELECT state, count(*) FROM deliveries GROUP BY state") == [("delivered", 30)]
    assert len(records.items) == 30
    assert {record.status for record in records.items} == {"delivered"}
    assert rows(db, "SELECT count(*) FROM history WHERE first_status = 200") == [(30,)]
    assert not [r for r in caplog.records if "sqlite_marks" in r.getMessage()]
    assert receiver.delivered_event_ids() == {event.event_id: 1 for event in events}
