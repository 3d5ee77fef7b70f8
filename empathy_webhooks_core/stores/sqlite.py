"""The SQLite outbox: deliveries and dead letters in one local file that survives a crash.

`store="sqlite:///outbox.db"` (SQLAlchemy's spelling: three slashes then a relative path,
four for an absolute one; a relative path is from the current folder when the store opens,
`~` is not expanded and refused, a name holding `#` or `?` writes it `%23`, `%3F`). Options
go in the query, each once: `?retention=3600` keeps delivered rows that many seconds before
they are pruned (0 deletes them on delivery; at most a year), `?synchronous=full` trades
speed for surviving power loss, `?lease=30` and `?poll=0.5` tune how processes share the
file (below), `?role=producer` only queues (for a worker to deliver).

Why it is crash-safe: `enqueue` returns only after the rows are committed, and a row becomes
`delivered` only after the service answered 2xx. The journal is WAL with `synchronous=NORMAL`:
a commit is written to the WAL file (the OS holds it) without an fsync, so a process killed at
any moment (`kill -9`) loses nothing, because the OS still writes what the process handed
it; only a power cut or kernel crash can lose the last commits (`synchronous=full` closes
that gap, measured by `benchmarks/stores.py`). A crash before the `delivered` mark is written
means one more delivery of the same event id, which receivers de-duplicate: at least once.

Several processes on one file: an application that emits and delivers, a CLI `send
--no-wait` (a producer: it only queues), `empathy-webhooks worker` processes. Row ids are
given inside the write transaction (which holds the file's write lock), so two processes
never pick the same one. Every queued row has an owner: the process delivering it. A
process's own emits are owned by it from the start; rows nobody owns (queued by a producer,
released by a process that closed, left by one that died) are claimed a page at a time by
whichever process has room (`take_pending`), oldest first. An owner's claim is a lease: its
writer thread renews it every third of `lease` seconds, and a process whose lease ran out
(hung or killed on another machine: not renewed for its `lease` seconds, the lease it wrote
in the file, however short the reader's own, as measured on each process's monotonic clock,
so a step of the wall clock ends no live lease), or that no longer runs (same machine, by its
pid), has its rows released to the others at their next look (every quarter `lease`, at most
5 s). So no delivery is sent by two live processes at once,
and none is stranded by a process that died. A process checks for new rows every `poll`
seconds, cheaply: `PRAGMA data_version` tells whether anyone else committed since.

An emit's rows are written from the event loop, on a connection of its own, with those of
the other emits made while their group is open, in one statement that is its own
transaction, two turns of the loop after the first of them (`_flush_group`): a write to the
WAL, which the OS holds, without an fsync and without waiting for a lock (`_insert_now`);
each emit returns once it is committed. Every other statement runs on one dedicated writer
thread that owns its connection, and so do an emit's rows whenever they cannot be written at
once: the file's write lock is held (by the writer's marks, by another process),
`synchronous=full` (whose commit waits for the disk), more than 64 rows in the group, a
replay. The thread takes whatever operations queued up while it was busy and runs them in
one transaction (group commit), and checkpoints the WAL every few hundred commits made from
the loop. Why emits skip the thread: a commit there waits for the thread to win the GIL from
a busy event loop, twice, which cost an emit about 1.5 ms under load, against tens of µs
written at once.
Marks (`delivered`, attempt counts, history records) are not waited for: they are gathered on
the event loop and committed together 50 ms after the first, or sooner with any read or write
that must see them (every operation but an emit's rows, which need not). Many deliveries' marks
in one transaction touch each page of the tables and indexes they change once, not once per
emit's commit: a commit's cost is mostly the pages it writes. The event loop commits them
itself, on its own connection, when the writer thread has nothing to run and the write lock
is free (`_write_marks_now`): committed by the thread, they held the lock for milliseconds
while every emit meanwhile waited behind them. Otherwise, or if that transaction fails in any
way, the writer thread takes them, waiting for the lock as it does for anything. Marks the
file refuses for a cause that may pass (the disk full, the file read-only, locked, failing to
read) are kept and tried again every second until it takes them (`sqlite_marks_not_written`
once, an error, then `sqlite_marks_written`); those still unwritten when the store closes, or
past 50,000 rows, are said by delivery id (`sqlite_marks_lost`): their deliveries are sent
again by the next process (at least once). An emit, a dead letter or a replay the file
refuses raises.

Delivered rows and the history of ended deliveries are pruned every `prune_interval` (half
the retention, 1 to 60 s), 10,000 rows of each at a time, and again every second while a pass
leaves more (a process delivering faster than a pass a minute prunes would grow its file
without end). The schedule is on the monotonic clock; the age is by the wall clock.

Attempt history (`history.py`) lives in two more tables, written like the marks: `history` (a
row per delivery with the event's envelope, its status kept current) and `attempts` (one
masked record per attempt, a column per field). The record of a delivery this process queued
waits for its first attempt up to `_NEW_RECORD_DELAY` (2 s), which then writes it whole with
that attempt in its own columns; one still waiting then is written as pending with the marks.
A read of the history through this store takes the waiting ones first. A delivery's
first attempt is masked with the marks (by the thread that writes them), unless the request
carried a credential the redaction registry knows only for a while or the answer is long:
those are masked when noted (`RawAttempt.may_wait`). Nothing unmasked is written. A row queued
without its record committed (its process died before it was written, or an older version
queued it) gets one when a process takes it. Deliveries that ended (delivered or failed)
longer ago than the retention are pruned from them with the delivered rows. Files written by
earlier builds kept each event's envelope once in `history_events` and each attempt as JSON
in `history_attempts`: both are still read, and pruned, for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import queue
import socket
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from .._bounds import check_number
from .._log import get_logger
from ..converter import did_you_mean
from ..events import Event
from ..history import (
    AttemptRecord,
    DeliveryPage,
    DeliveryQuery,
    DeliveryRecord,
    RawAttempt,
    page_of,
)
from ..redaction import redact_text
from .base import (
    DeadLetter,
    Delivery,
    Page,
    StoreOpenError,
    UndecodableEvent,
    decode_event,
)

__all__ = ["SQLiteStore", "open_sqlite_store"]

log = get_logger()

#: Delivered rows are kept this long by default (seconds), for inspection, then pruned.
DEFAULT_RETENTION = 3600.0
#: The longest retention accepted (a year, as the Redis store's `history_ttl`): longer is
#: a file that is never pruned, most likely a value given in the wrong unit.
MAX_RETENTION = 365 * 86_400.0
#: How long a process's claim on its rows lasts without renewal (seconds).
DEFAULT_LEASE = 30.0
#: Seconds between two looks for rows other processes queued or left.
DEFAULT_POLL = 0.5
#: A webhook's page of pending rows stops at this many bytes of stored events (2 MiB), and a
#: lane holds at most two pages' worth: counted only in rows, a restart on a backlog of
#: 100 KB events held 256 of them per page, decoded (peak RSS 132 MB over the process's
#: own, where it is now 25 MB; events of a few MB would not have fitted in memory at all).
PAGE_BYTES = 2 * 1024 * 1024
#: Seconds a mark (delivered, an attempt count, an attempt's history) waits before it is
#: committed (with the others made meanwhile), unless a read or a write other than an emit's
#: takes it sooner. A crash in that time means at most one more delivery of what it marked
#: (at least once, as for any mark not yet committed).
_MARK_DELAY = 0.05
#: Seconds the record of a delivery this process queued waits for its first attempt, which
#: then writes it whole in one row (`note_attempt`), before it is written as pending with
#: the marks. Written with the marks instead, a backlog's records went in as pending and
#: each attempt then wrote the record again and an attempt row beside it: with 2,000 events
#: queued at once, that was nearly every delivery, about a fifth more of this store's CPU a
#: delivery. Any read of the history takes them first, as it takes the marks; a crash
#: before they are written loses nothing (`take_pending` gives a row without a record its
#: record). So only another process reading the file sees a queued delivery's record up to
#: this late.
_NEW_RECORD_DELAY = 2.0
#: The most such records held back at once (each holds its row, whose event text is shared
#: with the queued delivery's): beyond, the oldest are written as pending.
_NEW_RECORDS_HELD = 8192
#: How many rows ended while this process's claim was in doubt are remembered (`_ended`).
_ENDED_KEPT = 4096
#: The most operations one transaction takes; more wait for the next commit.
_MAX_BATCH = 4096

#: The most rows the event loop writes in one statement (`_flush_group`): an emit that
#: would take a group past it goes through the writer thread (a burst of thousands of emits
#: in one turn of the loop is committed there in batches, the loop left to other work).
_MAX_NOW = 64
#: Commits made from the event loop between two checkpoints the writer thread runs (the
#: loop's own connection never checkpoints: a checkpoint syncs the file to disk).
_CHECKPOINT_EVERY = 300

#: Rows one prune pass deletes, so a large backlog never holds the writer for long.
_PRUNE_CHUNK = 10_000
#: Seconds to the next prune pass while the last one found more than a chunk to delete: a
#: pass every `prune_interval` (60 s by default) deleted at most 10,000 rows a minute, so a
#: process delivering more than about 170 a second grew its file without end.
_PRUNE_BEHIND_SECONDS = 1.0
#: Seconds between two tries of marks whose commit failed for a cause that may pass (the
#: disk full, the file read-only, locked, or failing to read): they are kept and tried again
#: until the file takes them. Dropped, the file held delivered rows queued and their records
#: pending for good, and sent them all again after a restart.
_MARKS_RETRY_SECONDS = 1.0
#: The most rows of marks kept for another try (a few hundred bytes each, a record with its
#: answer's excerpt a few KB): past it the oldest are given up, and said.
_MARKS_KEPT = 50_000
#: The operations nobody waits for (`_post`, `_flush_marks`), kept and tried again when their
#: commit failed for a cause that may pass. Each is safe to run again, and runs before the
#: marks made after it.
_KEPT_KINDS = frozenset(
    {"attempt", "delivered", "history", "history_first", "history_new", "release_rows"}
)
#: How long a statement waits for another process's lock before "database is locked".
_BUSY_SECONDS = 5.0
#: Seconds between two looks at whether the path still names the file this process opened
#: (one `stat`, by the writer thread): a file deleted or replaced under a running process.
_FILE_CHECK_SECONDS = 1.0


def _file_identity(path: Path) -> tuple[int, int] | None:
    """The file `path` names now (device and inode), or None when there is none."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_dev, found.st_ino


def _switch_to_wal(conn: sqlite3.Connection) -> str:
    """`PRAGMA journal_mode=WAL`, waiting for other processes as every other statement does.

    SQLite does not call the busy handler for a journal-mode switch: a process opening a new
    file while another process opening it too is switching it fails at once with "database
    is locked" (1 open in 25 with four processes starting together). Tried again until the
    same deadline as any other lock."""
    deadline = time.monotonic() + _BUSY_SECONDS
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.005)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY,
    delivery_id TEXT NOT NULL,
    webhook_name TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_json TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'queued',
    created_at REAL NOT NULL,
    delivered_at REAL,
    owner TEXT,
    context_json TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_delivered_at
    ON deliveries (delivered_at) WHERE state = 'delivered';
CREATE TABLE IF NOT EXISTS dead_letters (
    dead_letter_id TEXT PRIMARY KEY,
    delivery_id TEXT NOT NULL,
    webhook_name TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_json TEXT NOT NULL,
    error_json TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    failed_at REAL NOT NULL,
    replaying INTEGER NOT NULL DEFAULT 0,
    replaying_by TEXT,
    context_json TEXT
);
CREATE TABLE IF NOT EXISTS history (
    delivery_id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL,
    webhook_name TEXT NOT NULL,
    event_type TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    dead_letter_id TEXT,
    event_json TEXT,
    first_attempt INTEGER,
    first_started_at REAL,
    first_duration_s REAL,
    first_status INTEGER,
    first_error TEXT,
    first_verdict TEXT,
    first_reason TEXT,
    first_response_excerpt TEXT,
    first_request_headers TEXT,
    first_body_bytes INTEGER,
    first_next_retry_at REAL
);
CREATE INDEX IF NOT EXISTS history_newest ON history (created_at, delivery_id);
CREATE INDEX IF NOT EXISTS history_event ON history (event_id);
CREATE INDEX IF NOT EXISTS history_final ON history (updated_at)
    WHERE status IN ('delivered', 'failed');
CREATE TABLE IF NOT EXISTS history_attempts (
    delivery_id TEXT NOT NULL,
    started_at REAL NOT NULL,
    record_json TEXT NOT NULL,
    PRIMARY KEY (delivery_id, started_at)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS attempts (
    delivery_id TEXT NOT NULL,
    started_at REAL NOT NULL,
    attempt INTEGER NOT NULL,
    duration_s REAL NOT NULL,
    status INTEGER,
    error TEXT,
    verdict TEXT NOT NULL,
    reason TEXT,
    response_excerpt TEXT,
    request_headers TEXT NOT NULL,
    body_bytes INTEGER NOT NULL,
    next_retry_at REAL,
    PRIMARY KEY (delivery_id, started_at)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS history_events (
    event_id TEXT PRIMARY KEY,
    event_json TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS owners (
    owner TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    alive_until REAL NOT NULL,
    lease_seconds REAL
);
CREATE TABLE IF NOT EXISTS plugin_memory (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    expires_at REAL NOT NULL
);
"""

# Files made before several processes could share one lack `owner` and `replaying_by`;
# files made before a record carried its first attempt lack the `first_` columns (NULL: every
# attempt is in `attempts`);
# files made before deliveries carried a context lack `context_json` (NULL: no context);
# files made before history rows carried their event lack `history.event_json` (NULL: the
# event is in `history_events`, where those versions kept it);
# files made before owners said their lease lack `owners.lease_seconds` (NULL: the reader's).
_MIGRATIONS = (
    ("owners", "lease_seconds", "ALTER TABLE owners ADD COLUMN lease_seconds REAL"),
    ("deliveries", "owner", "ALTER TABLE deliveries ADD COLUMN owner TEXT"),
    ("dead_letters", "replaying_by", "ALTER TABLE dead_letters ADD COLUMN replaying_by TEXT"),
    ("deliveries", "context_json", "ALTER TABLE deliveries ADD COLUMN context_json TEXT"),
    ("dead_letters", "context_json", "ALTER TABLE dead_letters ADD COLUMN context_json TEXT"),
    ("history", "event_json", "ALTER TABLE history ADD COLUMN event_json TEXT"),
    *(
        ("history", f"first_{name}", f"ALTER TABLE history ADD COLUMN first_{name} {kind}")
        for name, kind in (
            ("attempt", "INTEGER"),
            ("started_at", "REAL"),
            ("duration_s", "REAL"),
            ("status", "INTEGER"),
            ("error", "TEXT"),
            ("verdict", "TEXT"),
            ("reason", "TEXT"),
            ("response_excerpt", "TEXT"),
            ("request_headers", "TEXT"),
            ("body_bytes", "INTEGER"),
            ("next_retry_at", "REAL"),
        )
    ),
)

_INDEXES = """
CREATE INDEX IF NOT EXISTS deliveries_unclaimed
    ON deliveries (webhook_name, id) WHERE state = 'queued' AND owner IS NULL;
CREATE INDEX IF NOT EXISTS deliveries_claimed
    ON deliveries (owner) WHERE state = 'queued' AND owner IS NOT NULL;
"""

_INSERT = (
    "INSERT INTO deliveries (id, delivery_id, webhook_name, event_id, event_json, attempts,"
    " created_at, owner, context_json) VALUES "
)
_INSERT_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?)"

# The event's envelope rides in its history row. A table of events keyed by their (random)
# ids cost a write to a random page of its key's index per event, about a third of the pages
# a delivery wrote; the `history_event` index on the same ids serves the look-ups by event id.
_HISTORY_ROW = (
    "INSERT OR IGNORE INTO history (delivery_id, event_id, webhook_name, event_type, status,"
    " created_at, updated_at, event_json) VALUES "
)
_HISTORY_ROW_ROW = "(?, ?, ?, ?, 'pending', ?, ?, ?)"
# An attempt's note makes the delivery's record when the record queued with its row is not
# written yet (it went with the marks, and the attempt came first: most deliveries), so one
# row is written instead of a row and its update; else the event is NULL here and left alone.
_HISTORY_NOTE = (
    "INSERT INTO history (delivery_id, event_id, webhook_name, event_type, status,"
    " created_at, updated_at, event_json) VALUES "
)
_HISTORY_NOTE_ROW = "(?, ?, ?, ?, ?, ?, ?, ?)"
_HISTORY_NOTE_END = (
    " ON CONFLICT (delivery_id) DO UPDATE SET status = excluded.status,"
    " updated_at = excluded.updated_at"
)
# An attempt's fields in columns: encoding a record as one JSON object (its floats written
# out as text, its keys every time) cost more than the rest of noting the attempt.
# Named as `AttemptRecord`'s fields, in their order: the order `RawAttempt.columns` gives.
_ATTEMPT_COLUMNS = ", ".join(field.name for field in attrs.fields(AttemptRecord))
_HISTORY_ATTEMPT = f"INSERT OR REPLACE INTO attempts ({_ATTEMPT_COLUMNS}) VALUES "  # noqa: S608
_HISTORY_ATTEMPT_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_ATTEMPT_FIELDS = tuple(name.strip() for name in _ATTEMPT_COLUMNS.split(","))
# A new delivery's record made by its first attempt (`note_attempt`) carries that attempt in
# its own columns: a row in `attempts` too cost about a tenth of a delivery's instructions
# in this store. Later attempts go to `attempts`. The record cannot exist yet (the delivery
# id is new); should it, its status is brought up to date as any attempt's note does.
_FIRST_COLUMNS = ", ".join(f"first_{name}" for name in _ATTEMPT_FIELDS[1:])
_HISTORY_FIRST = (
    "INSERT INTO history (delivery_id, event_id, webhook_name, event_type, status,"  # noqa: S608
    f" created_at, updated_at, event_json, {_FIRST_COLUMNS}) VALUES "
)
_HISTORY_FIRST_ROW = "(" + ", ".join(["?"] * 19) + ")"
# The marks of a batch in one statement: the rows' new values joined by row id (a rowid
# lookup each); the delivery id guards against a row id given again after its row went.
_DELIVERED = (
    "UPDATE deliveries SET state = 'delivered', delivered_at = v.column1,"
    " attempts = v.column2 FROM (VALUES "
)
_DELIVERED_ROW = "(?, ?, ?, ?)"
_DELIVERED_END = ") AS v WHERE deliveries.id = v.column3 AND deliveries.delivery_id = v.column4"
# (Not `(id, delivery_id) IN (VALUES ...)`: SQLite scans the table for that.)
_DELIVERED_DELETE = "DELETE FROM deliveries WHERE id IN (SELECT v.column1 FROM (VALUES "
_DELIVERED_DELETE_ROW = "(?, ?)"
_DELIVERED_DELETE_END = (
    ") AS v JOIN deliveries AS d ON d.id = v.column1 AND d.delivery_id = v.column2)"
)
#: The most rows of marks the event loop writes itself (`_write_marks_now`), about 40 ms of
#: its time on a 2-core machine: a flush's worth at 20,000 deliveries/s (a first attempt
#: and a delivered mark each). A backlog larger than that goes through the writer thread.
_MARKS_NOW = 2048
#: Rows of marks counted as one emit's commit for the checkpoint (`_CHECKPOINT_EVERY`): a
#: group of eight emits writes 4 to 5 pages to the WAL, a flush of 800 rows of marks about
#: 105 (measured): 32 rows of marks write about what one group of emits does.
_ROWS_PER_COMMIT = 32
#: The most rows one multi-row statement carries; a batch is cut into powers of two up to
#: this, so a few statement texts (all in the connection's statement cache) serve any size.
_ROWS_PER_STATEMENT = 256
#: The most parameters one statement may carry: 32,766 since SQLite 3.32, 999 before (some
#: Linux distributions still ship such a library). A statement carries fewer rows than
#: `_ROWS_PER_STATEMENT` when its rows are wide enough to pass it.
_MAX_PARAMETERS = 32_766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999
#: Statements the writer's connection keeps prepared (sqlite3's default is 128): a
#: multi-row statement's text for each power of two up to `_ROWS_PER_STATEMENT`, for each
#: kind of row and each place its rows hold NULLs at (`_null_row`). Preparing a few hundred
#: rows' text again costs more than the rows.
_STATEMENT_CACHE = 512

#: Queued rows per webhook, and of those the ones attempted (`pending_counts`).
_PENDING_COUNTS = (
    "SELECT webhook_name, sum(n), sum(r) FROM ("
    "SELECT webhook_name, count(*) AS n, sum(attempts > 0) AS r FROM deliveries"
    " WHERE state = 'queued' AND owner IS NULL GROUP BY webhook_name"
    " UNION ALL SELECT webhook_name, count(*), sum(attempts > 0) FROM deliveries"
    " WHERE state = 'queued' AND owner IS NOT NULL GROUP BY webhook_name"
    ") GROUP BY webhook_name"
)

_HISTORY_SELECT = (
    "SELECT delivery_id, event_id, webhook_name, event_type, status, created_at, updated_at,"  # noqa: S608
    f" dead_letter_id, {_FIRST_COLUMNS} FROM history"
)

_Op = tuple[str, Any, "asyncio.Future[Any] | None"]
#: The operations a transaction runs first, each kind's payloads merged: new rows, then marks.
_GROUPED = ("enqueue", "history_new", "history_first", "attempt", "delivered", "history")
_STOP = "stop"
#: An operation carrying several (marks, and the operation they go with).
_BUNDLE = "bundle"


def _resolve_all(answers: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    """A transaction's answers, handed to the event loop in one call (one wake-up)."""
    for future, result, error in answers:
        _resolve(future, result, error)


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _insert_rows(
    conn: sqlite3.Connection,
    head: str,
    row: str,
    rows: Sequence[Sequence[Any]],
    tail: str = "",
    *,
    any_order: bool = False,
) -> None:
    """`rows` through `head` + `row` repeated + `tail`, many rows per statement.

    Why not `executemany`: each row's step gives the GIL up and must win it back from the
    event loop (up to the switch interval, 5 ms, when the loop is busy), so a batch of a few
    hundred rows in six statements could wait a long time for the GIL alone, and the emits
    waiting for the commit with it. One statement per chunk steps once. Chunk sizes are
    powers of two, so the statement texts stay few and cached.

    `any_order`: the rows may be written in any order (no two of them touch the same row), so
    rows holding None are written apart, grouped by where their Nones are, with `NULL` in the
    text instead of a bound None (`_null_row`)."""
    if not any_order:
        _insert_chunks(conn, head, row, rows, tail, None)
        return
    plain: list[Sequence[Any]] = []
    with_nulls: dict[tuple[int, ...], list[Sequence[Any]]] = {}
    for values in rows:
        if None in values:
            nulls = tuple(i for i, value in enumerate(values) if value is None)
            with_nulls.setdefault(nulls, []).append(values)
        else:
            plain.append(values)
    if plain:
        _insert_chunks(conn, head, row, plain, tail, None)
    for nulls, some in with_nulls.items():
        _insert_chunks(conn, head, _null_row(row, nulls), some, tail, nulls)


def _insert_chunks(
    conn: sqlite3.Connection,
    head: str,
    row: str,
    rows: Sequence[Sequence[Any]],
    tail: str,
    nulls: tuple[int, ...] | None,
) -> None:
    """`_insert_rows`' statements; `nulls`: the rows' None values are in the text as `NULL`
    (at these positions, where the rows all hold None), so they are left out of the values."""
    start, count = 0, len(rows)
    fits = min(_ROWS_PER_STATEMENT, _MAX_PARAMETERS // max(1, row.count("?")))
    most = 1 << (fits.bit_length() - 1)  # a power of two: few statement texts, all cached
    while start < count:
        size = min(most, 1 << ((count - start).bit_length() - 1))
        chunk = rows[start : start + size]
        if nulls is None:
            values = [value for values in chunk for value in values]
        else:
            values = [value for values in chunk for value in values if value is not None]
        conn.execute(head + ", ".join([row] * size) + tail, values)
        start += size


@functools.cache
def _null_row(row: str, nulls: tuple[int, ...]) -> str:
    """`row` (a `(?, ..., ?)` of placeholders, maybe with constants) with `NULL` for its
    placeholders at positions `nulls`.

    Why: sqlite3 binds a None only after its adapter look-up for it fails (attribute look-ups,
    one formatting an AttributeError it then drops): about 0.25 µs (3,000 instructions) per
    None, with the GIL held, and a delivery's first attempt holds three (no error, reason nor
    next attempt), its row one (no context). A NULL in the text costs nothing per row; the
    positions a batch's rows hold None at are a handful, so the texts stay few and cached
    (the writer's cache is sized for them: `_STATEMENT_CACHE`)."""
    parts = row.split("?")
    text = [parts[0]]
    for position, after in enumerate(parts[1:]):
        text.append("NULL" if position in nulls else "?")
        text.append(after)
    return "".join(text)


# An emit's rows written from the event loop (`_insert_now`): the ids are left to SQLite.
_INSERT_NOW = (
    "INSERT INTO deliveries (delivery_id, webhook_name, event_id, event_json, attempts,"
    " created_at, owner, context_json) VALUES "
)
_INSERT_NOW_ROW = "(?, ?, ?, ?, ?, ?, ?, ?)"


def _now_statement(rows: Sequence[Sequence[Any]]) -> tuple[str, Sequence[Any]]:
    """`_insert_now`'s statement and values for rows (`enqueue`'s lists, the id not given
    yet): no id (SQLite gives one past the largest, as for a NULL one), and `NULL` in the
    text for an owner (a producer's rows) or a context (most rows) that is None, when every
    row agrees, rather than a bound None (`_null_row` says why)."""
    first = rows[0]
    if len(rows) == 1 and first[8] is None and first[7] is not None:
        return _NOW_ONE, first[1:8]  # most emits: one row, owned, without a context
    if all(row[8] is None and row[7] is not None for row in rows):  # most groups of emits
        return _now_sql(len(rows), (7,)), [value for row in rows for value in row[1:8]]
    pattern = (first[7] is None, first[8] is None)
    if len(rows) > 1 and any((row[7] is None, row[8] is None) != pattern for row in rows):
        # Rows that disagree (contexts given to some deliveries only): Nones bound.
        return _now_sql(len(rows), ()), [value for row in rows for value in row[1:9]]
    nulls = tuple(position for position, null in zip((6, 7), pattern, strict=True) if null)
    # Only the owner and the context can be None: the other values are strings and numbers.
    values = [value for row in rows for value in row[1:9] if value is not None]
    return _now_sql(len(rows), nulls), values


@functools.cache
def _now_sql(count: int, nulls: tuple[int, ...]) -> str:
    return _INSERT_NOW + ", ".join([_null_row(_INSERT_NOW_ROW, nulls)] * count)


_NOW_ONE = _now_sql(1, (7,))


@functools.cache
def _host() -> str:
    """This machine, boot and pid namespace: where a pid names the same process."""
    parts = [socket.gethostname()]
    with contextlib.suppress(OSError):
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
    with contextlib.suppress(OSError):
        parts.append(os.readlink("/proc/self/ns/pid"))
    return "/".join(parts)


def _may_pass_alone(error: BaseException | None) -> bool:
    """Whether an operation the file refused with others may be taken alone: the file
    refused a write (full, read-only, an I/O error), not a lock another process holds."""
    if not isinstance(error, sqlite3.OperationalError):
        return False
    code = getattr(error, "sqlite_errorcode", None)
    return code is None or code & 0xFF not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _lease_of(stored: Any, default: float) -> float:
    """The lease an owner row says it keeps (`owners.lease_seconds`), or `default` when it
    says none (a file written by an earlier build) or one no store accepts."""
    if type(stored) not in (int, float) or not 0.1 <= stored <= 86_400:
        return default
    return float(stored)


def _pid_runs(pid: int) -> bool:
    """Whether process `pid` of this machine still runs (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists, owned by someone else
    with contextlib.suppress(OSError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


class _Member:
    """One emit's rows in a `_Group`, the future it waits on, and whether they were handed
    to be written (after which a cancelled emit must release them)."""

    __slots__ = ("future", "handed", "rows")

    def __init__(self, rows: list[list[Any]], future: asyncio.Future[Any]) -> None:
        self.rows = rows
        self.future = future
        self.handed = False


class _Group:
    """Emits written together from the event loop (`SQLiteStore._flush_group`)."""

    __slots__ = ("count", "members")

    def __init__(self) -> None:
        self.members: list[_Member] = []
        #: Rows, of all the members.
        self.count = 0


class SQLiteStore:
    """A durable outbox in one SQLite file (see the module docstring for the guarantees).

    `role="worker"` (the default) delivers: what this process emits, and what waits in the
    file (pages of it, claimed as the lanes have room). `role="producer"` only queues: its
    rows wait for a process in the worker role (`empathy-webhooks worker`, or any dispatcher
    on the file), as `empathy-webhooks send --no-wait` does.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        retention_seconds: float = DEFAULT_RETENTION,
        synchronous: str = "normal",
        prune_interval: float | None = None,
        lease_seconds: float = DEFAULT_LEASE,
        poll_interval: float = DEFAULT_POLL,
        role: str = "worker",
    ) -> None:
        # NaN would pass `< 0` and make every prune compare false (delivered rows kept forever).
        check_number("retention", retention_seconds, at_least=0)
        if retention_seconds > MAX_RETENTION:
            raise ValueError(
                f"retention must be at most {int(MAX_RETENTION)} seconds (365 days), got "
                f"{retention_seconds!r}: delivered rows and their history would never be "
                "pruned (is it given in milliseconds?)"
            )
        if prune_interval is not None:
            check_number("prune_interval", prune_interval, above=0, at_most=86_400)
        if synchronous.lower() not in ("normal", "full"):
            raise ValueError(f"synchronous must be 'normal' or 'full', got {synchronous!r}")
        check_number("lease", lease_seconds, at_least=0.1, at_most=86_400)
        check_number("poll", poll_interval, at_least=0.01, at_most=60)
        if role not in ("worker", "producer"):
            raise ValueError(f"role must be 'worker' or 'producer', got {role!r}")
        self.path = Path(path)
        self.retention_seconds = float(retention_seconds)
        self.synchronous = synchronous.upper()
        self.prune_interval = (
            prune_interval
            if prune_interval is not None
            else max(1.0, min(60.0, self.retention_seconds / 2 or 60.0))
        )
        self.lease_seconds = float(lease_seconds)
        self.poll_interval = float(poll_interval)
        #: A webhook's page stops at this many bytes of stored events (`PagedStore`).
        self.page_bytes = PAGE_BYTES
        self.role = role
        #: A producer leaves delivery to the processes in the worker role.
        self.remote_workers = role == "producer"
        #: This process's name on its claims (one per open store).
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"
        self._ops: queue.SimpleQueue[_Op] = queue.SimpleQueue()
        # Held by whichever thread writes the marks: the writer thread for each batch it
        # runs, the event loop when it writes them itself (`_write_marks_now`), never both.
        self._writing = threading.Lock()
        # Operations handed to the writer thread (counted on the event loop, `_hand`) and
        # those it has run (counted by it): equal, nothing handed over is still to run.
        self._handed = 0
        self._ops_done = 0
        # Marks made on the event loop, not handed to the writer yet (`_post`).
        self._marks: dict[str, list[Any]] = {}
        # Records of queued deliveries not handed to the writer yet, by delivery id: an
        # attempt noted before they go takes its delivery's record (`note_attempt`).
        self._unwritten: dict[str, tuple[Any, ...]] = {}
        # The same for the rows this process queued (`enqueue`'s lists, kept as they are):
        # most are taken by their first attempt's note before they are handed over.
        self._unwritten_new: dict[str, list[Any]] = {}
        self._marks_timer: asyncio.TimerHandle | None = None
        # Whether the file had its `-wal` beside it when opened (None: there was no file).
        self._wal_at_open: bool | None = None
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        # The event loop's own connection, for an emit's rows (`_insert_now`); None when
        # every write goes through the writer thread (synchronous=full).
        self._now_conn: sqlite3.Connection | None = None
        self._since_checkpoint = 0
        self._checkpoint_due = False
        # Checkpoints the event loop asked for, and those the writer thread ran (or tried):
        # each counter written by one thread only, so neither can lose the other's update.
        self._checkpoints_asked = 0
        self._checkpoints_done = 0
        # The emits waiting to be written together from the event loop (`_flush_group`).
        self._group: _Group | None = None
        # Whether emits come one at a time, and the task that emitted in this turn of the
        # loop (`_written_alone`).
        self._alone = True
        self._turn_task: asyncio.Task[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Dead letters taken for replay whose new delivery is not committed yet: the row that
        # enqueues the replay deletes the letter in the same transaction, so a crash between
        # `take_dead_letter` and `enqueue` keeps the letter instead of losing it.
        self._replaying: set[tuple[str, str]] = set()
        # When the last prune pass ran (writer thread, monotonic: a step of the wall clock
        # back stopped pruning for as long as the step), and whether it left rows to delete.
        self._last_prune = float("-inf")
        self._prune_behind = False
        # Marks whose commit failed for a cause that may pass (writer thread): tried again
        # with the next transaction, at the latest `_retry_at` (monotonic). While some are
        # kept, since when (monotonic) the file refuses them (said once, and when written).
        self._retry: list[_Op] = []
        self._retry_at = 0.0
        self._marks_failing: float | None = None
        # Claims (writer thread only): whether this owner is registered, when its lease is
        # renewed next, when the others' are checked next (both on the monotonic clock), and
        # per webhook the data version at which the file had no unclaimed row for it (nothing
        # to look for until it moves).
        self._registered = False
        self._renew_at = 0.0
        # The lease this process's last statements renewed (the monotonic time before them),
        # and whether they found it lost: made known to the event loop once committed.
        self._lease_from: float | None = None
        self._lease_lost = False
        # On the event loop: the rows this process holds (its emits', those it claimed), until
        # when by its monotonic clock no other process can have taken them (`surely_held`),
        # and those held when its lease was found lost, each asked about before it is sent.
        # Each by row id and delivery id: SQLite gives a deleted row's id again (the largest
        # one, and every one once the table empties), and a replaced file starts over at 1,
        # so a row id alone may name a new row this process must take and send.
        self._held: set[tuple[Any, str]] = set()
        self._sure_until = 0.0
        self._suspect: set[tuple[Any, str]] = set()
        # Rows this process ended (delivered, dead-lettered) while its claim was in doubt: a
        # take under way may have claimed them again (released, their mark not yet written)
        # and must not send them a second time. Oldest first, a bounded few.
        self._ended: dict[tuple[Any, str], None] = {}
        self._check_owners_at = 0.0
        # Per other owner: the lease end last read, and when (monotonic) it was first read
        # with that value (`_release_dead_owners`).
        self._leases_seen: dict[str, tuple[float, float]] = {}
        self._swept = False
        self._empty_at: dict[str, int] = {}
        self._version = -1
        self._unknown_checked = False
        # The file opened (`_file_identity`), and when the writer looks again whether the
        # path still names it (`_follow_file`).
        self._file: tuple[int, int] | None = None
        self._opened = self.path
        self._file_check_at = 0.0
        self._file_failed = False
        #: The write-ahead log first seen at the path (`_wal_gone`), and whether its loss
        #: was said.
        self._wal: tuple[int, int] | None = None
        self._wal_said = False

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r}, retention_seconds={self.retention_seconds:g})"

    def for_producer(self) -> SQLiteStore:
        """The same file in the producer role: `enqueue` only, delivered by a worker."""
        return SQLiteStore(
            self.path,
            retention_seconds=self.retention_seconds,
            synchronous=self.synchronous,
            prune_interval=self.prune_interval,
            lease_seconds=self.lease_seconds,
            poll_interval=self.poll_interval,
            role="producer",
        )

    # -- the writer thread -----------------------------------------------------------------

    async def _call(self, kind: str, payload: Any = None) -> Any:
        if self._thread is None or self._loop is None:
            raise RuntimeError("the SQLite store is not open")
        future: asyncio.Future[Any] = self._loop.create_future()
        if (self._marks or self._unwritten or self._unwritten_new) and kind != "enqueue":
            # The marks made so far go with it, in one hand-over, so they are in its
            # transaction: what it reads or writes comes after them. Not with an emit's
            # rows (nothing there reads them): they wait for their timer, so a burst of
            # emits commits only new rows and the marks go in few, larger transactions.
            self._hand((_BUNDLE, [*self._marked(), (kind, payload, future)], None))
        else:
            self._hand((kind, payload, future))
        return await future

    def _hand(self, op: _Op) -> None:
        """Hand an operation to the writer thread (on the event loop)."""
        self._handed += 1
        self._ops.put(op)

    def _post(self, kind: str, row: Any) -> None:
        """A row of an operation nobody waits for (marks): committed `_MARK_DELAY` seconds
        after the first mark that found none waiting, or sooner with the next operation but
        an enqueue. Gathered by kind as they come: one operation per kind, nothing to merge."""
        if self._thread is None:
            raise RuntimeError("the SQLite store is not open")
        if self._marks_timer is None:  # `_arm_marks_timer`'s test, without its call
            self._arm_marks_timer()
        rows = self._marks.get(kind)
        if rows is None:
            self._marks[kind] = [row]
        else:
            rows.append(row)

    def _post_records(self, records: Sequence[tuple[Any, ...]]) -> None:
        """The records of rows taken from the file (`_HISTORY_ROW`'s values; they may exist
        already), written with the marks (`_post`)."""
        if self._thread is None:
            raise RuntimeError("the SQLite store is not open")
        self._arm_marks_timer()
        unwritten = self._unwritten
        for record in records:
            unwritten[record[0]] = record

    def _post_new_records(self, rows: list[list[Any]]) -> None:
        """The records of rows this process just queued (`enqueue`'s lists): written with
        the marks, or made by their first attempt's note if it comes first."""
        if self._marks_timer is None:
            self._arm_marks_timer()
        unwritten = self._unwritten_new
        for row in rows:
            unwritten[row[1]] = row

    def _arm_marks_timer(self) -> None:
        """Have the marks written `_MARK_DELAY` seconds after the first that found none
        waiting (`_flush_marks`)."""
        if self._marks_timer is None and self._loop is not None:
            self._marks_timer = self._loop.call_later(_MARK_DELAY, self._flush_marks)

    def _flush_marks(self) -> None:
        """Hand the marks gathered on the event loop to the writer, in one hand-over: the
        writer wakes once for many deliveries' marks, not once per mark. The records of
        deliveries queued here wait for their first attempt a while longer
        (`_NEW_RECORD_DELAY`)."""
        self._marks_timer = None
        if self._marks or self._unwritten or self._new_records_due():
            ops = self._write_marks_now(self._marked(waiting_kept=True))
            if ops:
                self._hand((_BUNDLE, ops, None))
        if self._unwritten_new:
            self._arm_marks_timer()

    def _write_marks_now(self, ops: list[_Op]) -> list[_Op]:
        """Write the marks from the event loop, in one transaction of its own, when the
        writer thread is idle and the write lock free; what is left for the writer thread:
        nothing when written, else every operation (`_masked`'s: the writer takes them as
        they are), with nothing written.

        Why: the marks' transaction holds the file's write lock for milliseconds (a few
        hundred deliveries' records under load). Written by the writer thread, every emit
        meanwhile found the lock taken (`_insert_now`) and waited for the writer behind it;
        with the producers waiting, the lanes ran dry and the process idled for about a
        fifth of a busy run. Here, nothing else writes while they go in, and the emits come
        after them. Any failure (another process holding the lock, a full disk) leaves it
        all to the writer thread, which waits for the lock, keeps what the file refuses and
        says so (`_keep_failed_marks`)."""
        conn = self._now_conn
        if conn is None or not self._may_write_marks_now():
            return ops
        rows = 0
        for kind, payload, _ in ops:
            if kind not in _GROUPED and kind != "first_attempt":
                return ops
            rows += len(payload)
        if rows > _MARKS_NOW:
            return ops  # a backlog of marks: the loop is not held up that long
        if not self._writing.acquire(blocking=False):
            return ops
        try:
            # Again under the lock: the writer may have run meanwhile (a file replaced and
            # this connection on its way out, marks kept for a retry, operations handed over).
            if self._now_conn is not conn or not self._may_write_marks_now():
                return ops
            ops = self._masked(ops)
            grouped: dict[str, list[Any]] = {}
            for kind, payload, _ in ops:
                grouped.setdefault(kind, []).extend(payload)
            try:
                conn.execute("BEGIN IMMEDIATE")
                for kind in _GROUPED:
                    if kind in grouped:
                        getattr(self, f"_do_{kind}")(conn, grouped[kind])
                conn.execute("COMMIT")
            except BaseException as exc:
                # Also a refused BEGIN (another process holds the lock): nothing to undo.
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                if conn.in_transaction:
                    self._drop_now_conn(conn, exc)
                if isinstance(exc, Exception):
                    return ops
                self._hand((_BUNDLE, ops, None))  # interrupted: still written, then raised
                raise
            # Counted by what it wrote, as emits' commits are, so the WAL is checkpointed as
            # often as before: a few hundred records' pages are many emits' worth.
            self._committed_now(max(1, rows // _ROWS_PER_COMMIT))
            return []
        finally:
            self._writing.release()

    def _may_write_marks_now(self) -> bool:
        """Whether the event loop may write marks on its connection now (`_write_marks_now`): no
        operation handed to the writer thread is still to run (marks among them must go in
        first), no mark is kept for a retry, and the loop may write at all."""
        return (
            self._handed == self._ops_done
            and not self._retry
            and self._marks_failing is None
            and self._loop_may_write()
        )

    def _new_records_due(self) -> bool:
        """Whether some record of a delivery queued here has waited long enough for its first
        attempt, or too many wait: always, when this process does not deliver (its rows'
        attempts are made elsewhere)."""
        unwritten = self._unwritten_new
        if not unwritten:
            return False
        if self.remote_workers or len(unwritten) > _NEW_RECORDS_HELD:
            return True
        oldest = next(iter(unwritten.values()))
        return bool(oldest[6] <= time.time() - _NEW_RECORD_DELAY)

    def _marked(self, *, waiting_kept: bool = False) -> list[_Op]:
        """The marks gathered so far, one operation per kind, and none left; with
        `waiting_kept`, the records of deliveries queued here that may still wait for their
        first attempt (`_new_records_due`) are left for later."""
        if self._marks_timer is not None:
            self._marks_timer.cancel()
            self._marks_timer = None
        marks, self._marks = self._marks, {}
        ops: list[_Op] = [(kind, rows, None) for kind, rows in marks.items()]
        if self._unwritten or self._unwritten_new:
            # (delivery_id, event_id, webhook, event_type, created_at twice, event_json)
            records = [record[:7] for record in self._unwritten.values()]
            self._unwritten = {}
            new = self._unwritten_new
            if waiting_kept and not self.remote_workers:
                due = self._due_new_rows()
            else:
                due, self._unwritten_new = list(new.values()), {}
            records += [(*_row_record(r), r[6], r[6], r[4]) for r in due]
            if records:
                ops.append(("history_new", records, None))
        return ops

    def _due_new_rows(self) -> list[list[Any]]:
        """The rows whose records wait no longer (`_new_records_due`), taken out of
        `_unwritten_new`: the oldest, in the order they were queued."""
        new = self._unwritten_new
        before = time.time() - _NEW_RECORD_DELAY
        over = len(new) - _NEW_RECORDS_HELD
        due: list[list[Any]] = []
        for row in new.values():
            if row[6] > before and len(due) >= over:
                break
            due.append(row)
        for row in due:
            del new[row[1]]
        return due

    def _run(self) -> None:
        assert self._conn is not None and self._loop is not None
        conn, loop = self._conn, self._loop
        stopping = False
        while not stopping:
            wait = max(0.01, self._prune_at() - time.monotonic())
            if self._retry:
                wait = min(wait, max(0.01, self._retry_at - time.monotonic()))
            if self._registered:
                wait = min(wait, max(0.01, self._renew_at - time.monotonic()))
            # An idle process, too, notices within a second that its file was replaced.
            wait = min(wait, max(0.01, self._file_check_at - time.monotonic()))
            try:
                first = self._ops.get(timeout=wait)
            except queue.Empty:
                first = None
            batch: list[_Op] = []
            taken = 0
            op = first
            while op is not None:
                taken += 1
                if op[0] == _BUNDLE:
                    batch += op[1]
                else:
                    batch.append(op)
                if len(batch) >= _MAX_BATCH:
                    break
                try:
                    op = self._ops.get_nowait()
                except queue.Empty:
                    break
            # Not while the event loop writes marks itself (`_write_marks_now`): the
            # statements below read and change what that transaction does.
            with self._writing:
                if time.monotonic() >= self._file_check_at:
                    conn = self._follow_file(conn)
                stops = [op for op in batch if op[0] == _STOP]
                stopping = bool(stops)
                ops = []
                asked = 0
                for op in batch:
                    if op[0] == _STOP:
                        continue
                    if op[0] == "checkpoint":
                        self._checkpoint_due = True
                        asked += 1
                        continue
                    if op[0] == "take" and self._nothing_to_take(conn, op[1]):
                        if op[2] is not None:
                            loop.call_soon_threadsafe(_resolve, op[2], ([], []), None)
                        continue
                    ops.append(op)
                mono = time.monotonic()
                due = mono >= self._prune_at() or (self._registered and mono >= self._renew_at)
                if self._retry and (ops or due or stopping or mono >= self._retry_at):
                    # First: the marks made since may follow them (an attempt count, a status).
                    ops, self._retry = [*self._retry, *ops], []
                if ops or due:
                    ops = self._masked(ops)
                    self._keep_failed_marks(self._commit(conn, ops))
                if self._checkpoint_due:
                    self._checkpoint_due = False
                    self._checkpoint(conn)
                self._checkpoints_done += asked
                self._ops_done += taken
        if self._retry:
            self._marks_lost(self._retry, "the store closed before the file took them")
            self._retry = []
        with contextlib.suppress(sqlite3.Error):
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        for _, _, future in stops:
            if future is not None:
                loop.call_soon_threadsafe(_resolve, future, None, None)

    def _commit(
        self, conn: sqlite3.Connection, ops: list[_Op], housekeeping: bool = True
    ) -> list[tuple[_Op, BaseException]]:
        """Run `ops` in one transaction and answer those waited for; the marks that failed.

        When the file refused the transaction and may take a smaller one (the disk full, the
        file read-only: not a lock, which a second try would wait for again), the operations
        waited for are tried again alone, without the marks, the lease and the prune: a read
        needs no room on the disk, and was failed with the marks for as long as the disk
        stayed full."""
        results = self._transaction(conn, ops, housekeeping=housekeeping)
        answers = []
        failed: list[tuple[_Op, BaseException]] = []
        again: list[_Op] = []
        # Not again for a second try (`housekeeping=False`): once alone is enough.
        alone = housekeeping and (
            self._marks_failing is not None or any(op[2] is None for op in ops)
        )
        for op, (result, error) in zip(ops, results, strict=True):
            if op[2] is None:
                if error is not None:
                    failed.append((op, error))
            elif alone and _may_pass_alone(error):
                again.append(op)
            else:
                answers.append((op[2], result, error))
        if answers and self._loop is not None:
            self._loop.call_soon_threadsafe(_resolve_all, answers)
        if again:
            self._commit(conn, again, housekeeping=False)
        return failed

    def _prune_at(self) -> float:
        """When the next prune pass is due (monotonic): a `prune_interval` after the last,
        or `_PRUNE_BEHIND_SECONDS` while the last one left rows to delete."""
        interval = self.prune_interval
        if self._prune_behind:
            interval = min(interval, _PRUNE_BEHIND_SECONDS)
        return self._last_prune + interval

    def _keep_failed_marks(self, failed: list[tuple[_Op, BaseException]]) -> None:
        """Marks a transaction could not commit: kept for another try when the cause may pass
        (`sqlite3.OperationalError`: the disk full, the file read-only, locked or failing to
        read), said once per outage, and again when they are written; others are said and
        given up (what they marked is sent again after a restart: at least once)."""
        kept: list[_Op] = []
        cause: BaseException | None = None
        for op, error in failed:
            if op[0] in _KEPT_KINDS and isinstance(error, sqlite3.OperationalError):
                kept.append(op)
                cause = cause or error
            else:
                self._marks_lost([op], f"{type(error).__name__}: {error}")
        if not kept:
            if self._marks_failing is not None:
                since, self._marks_failing = self._marks_failing, None
                log.warning(
                    "sqlite_marks_written",
                    store=str(self.path),
                    after_seconds=round(time.monotonic() - since, 3),
                    reason="the file takes writes again: the marks kept meanwhile are written",
                )
            return
        self._retry = kept
        rows = sum(len(op[1]) for op in kept)
        while rows > _MARKS_KEPT and len(self._retry) > 1:
            oldest = self._retry.pop(0)
            rows -= len(oldest[1])
            self._marks_lost([oldest], f"more than {_MARKS_KEPT} rows of marks waiting")
        self._retry_at = time.monotonic() + _MARKS_RETRY_SECONDS
        if self._marks_failing is None:
            self._marks_failing = time.monotonic()
            log.error(
                "sqlite_marks_not_written",
                store=str(self.path),
                rows=rows,
                delivered=_delivered_ids(kept, None)[1],
                error=redact_text(f"{type(cause).__name__}: {cause}")[:500],
                reason="the file refused the marks (delivered, attempt counts, history): kept "
                f"and tried again every {_MARKS_RETRY_SECONDS:g} s until it takes them; "
                "until then other processes see those deliveries as queued, and a restart "
                "before they are written sends them again (at least once)",
            )

    def _marks_lost(self, ops: list[_Op], why: str) -> None:
        """Marks given up: said, with the deliveries that will be sent again."""
        ids, delivered = _delivered_ids(ops, 20)
        reason = "these marks are not in the file: the history of their deliveries is incomplete"
        if delivered:
            reason += (
                "; the deliveries the service accepted (delivery_ids, the first 20) are still "
                "queued in it and will be sent again by the next process that takes them (at "
                "least once, same event id)"
            )
        log.error(
            "sqlite_marks_lost",
            store=str(self.path),
            operations=sorted({op[0] for op in ops}),
            rows=sum(len(op[1]) if isinstance(op[1], list) else 1 for op in ops),
            delivered=delivered,
            delivery_ids=ids,
            error=redact_text(why)[:500],
            reason=reason,
        )

    def _follow_file(self, conn: sqlite3.Connection) -> sqlite3.Connection:
        """The writer's connection, on a new file if the path no longer names the one opened.

        A file deleted or replaced under a running process (`rm outbox.db*`, a backup
        restored) stays open here: without this, this process would go on writing to a file
        nobody else can see, so a producer's emits would return and never be delivered, and
        rows others queue in the new file would never be taken. Reopened (made again if
        missing), said once as an error; the rows nobody held and the dead letters of the
        old file are carried over. What processes held stays theirs, delivered from memory."""
        self._file_check_at = time.monotonic() + _FILE_CHECK_SECONDS
        if self._file is None or _file_identity(self._opened) == self._file:
            self._wal_gone()
            return conn
        if self.path.absolute() != self._opened:
            return conn  # the process changed directory: the path names another place now
        old_file = self._file
        try:
            new = self._connect()
        except (OSError, sqlite3.Error) as exc:
            self._file = old_file
            if not self._file_failed:
                self._file_failed = True
                log.error("sqlite_file_replaced", store=str(self.path), reason=str(exc))
            return conn
        self._file_failed = False
        # The event loop's emits go through this thread until its connection is on the new
        # file (`_reopen_now`), so none is written to the old one after the carry-over.
        old_now, self._now_conn = self._now_conn, None
        carried = letters = 0
        try:
            # Rows of a process that died before the file was replaced are nobody's: given up
            # first (by its pid on this machine, or its lease), they are carried over with the
            # rest. Left in the old file, nobody would ever see them again.
            with contextlib.suppress(sqlite3.Error):
                self._release_dead_owners(conn)
            carried, letters = self._carry_over(conn, new)
        except sqlite3.Error as exc:
            log.error(
                "sqlite_carry_over_failed",
                store=str(self.path),
                error=redact_text(f"{type(exc).__name__}: {exc}")[:500],
                reason="the queued rows nobody held and the dead letters of the old file were "
                "not copied to the new one",
            )
        self._registered, self._swept, self._version = False, False, -1
        self._wal, self._wal_said = None, False
        self._empty_at.clear()
        # Registered again in the new file with this process's next write or claim.
        self._check_owners_at = 0.0
        log.error(
            "sqlite_file_replaced",
            store=str(self.path),
            owner=self.owner,
            carried_rows=carried,
            carried_dead_letters=letters,
            reason="the file was deleted or replaced while this process had it open; now "
            "using the file at that path (made again if it was missing), with the queued "
            "rows nobody held and the dead letters of the old one; deliveries under way "
            "are still delivered",
        )
        with contextlib.suppress(sqlite3.Error):
            conn.close()
        self._conn = new
        if old_now is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._reopen_now, old_now)
        return new

    def _wal_gone(self) -> None:
        """Say, once, that the file's write-ahead log was deleted or replaced under it (`rm
        outbox.db-wal`, a cleanup script): every connection open on the file goes on
        committing into the unlinked log, which nobody can read once they close, so a crash
        or a restart loses every emit since, each of which had returned as written. Nothing
        here can undo that; it had gone without a word."""
        wal = Path(f"{self._opened}-wal")
        now = _file_identity(wal)
        if self._wal is None:
            self._wal = now  # made on the first write: recorded once it is there
            return
        if now == self._wal or self._wal_said:
            return
        self._wal_said = True
        log.error(
            "sqlite_wal_removed",
            store=str(self.path),
            wal=str(wal),
            reason="the file's write-ahead log was deleted or replaced while this process had "
            "it open: what was committed since is in a log nobody can read once the "
            "processes on this file close, and a crash loses it; stop every process using "
            "this file and start them again (let them close normally to keep what they hold)",
        )

    @staticmethod
    def _carry_over(old: sqlite3.Connection, new: sqlite3.Connection) -> tuple[int, int]:
        """Copy the old file's queued rows nobody holds (a producer's: no one else will ever
        see them) and its dead letters to the new file, but those it has already."""
        rows = old.execute(
            "SELECT delivery_id, webhook_name, event_id, event_json, attempts, created_at,"
            " context_json FROM deliveries WHERE state = 'queued' AND owner IS NULL ORDER BY id"
        ).fetchall()
        letters = old.execute(
            "SELECT dead_letter_id, delivery_id, webhook_name, event_id, event_json,"
            " error_json, attempts, failed_at, context_json FROM dead_letters"
        ).fetchall()
        new.execute("BEGIN IMMEDIATE")
        try:
            have = {row[0] for row in new.execute("SELECT delivery_id FROM deliveries")}
            rows = [row for row in rows if row[0] not in have]
            new.executemany(
                "INSERT INTO deliveries (delivery_id, webhook_name, event_id, event_json,"
                " attempts, created_at, context_json) VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            before = new.total_changes
            new.executemany(
                "INSERT OR IGNORE INTO dead_letters (dead_letter_id, delivery_id, webhook_name,"
                " event_id, event_json, error_json, attempts, failed_at, context_json)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                letters,
            )
            letters_added = new.total_changes - before
            new.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                new.execute("ROLLBACK")
            raise
        return len(rows), int(letters_added)

    def _reopen_now(self, old: sqlite3.Connection) -> None:
        """On the event loop: its connection, on the file the writer follows now."""
        old.close()
        if self._thread is not None and self._now_conn is None:
            self._now_conn = self._connect_now()

    @staticmethod
    def _checkpoint(conn: sqlite3.Connection) -> None:
        """Copy the WAL into the file and have the next write start the WAL over, for the
        emits the event loop's connection wrote (it never checkpoints). RESTART, not the
        PASSIVE checkpoint SQLite runs after a commit: under a steady stream of emits a
        passive one never catches up with the newest frame, and the WAL would grow without
        end. It keeps other writers out while it runs (an emit meanwhile goes through this
        thread, after it), and waits for them at most 100 ms: a busy file is checkpointed the
        next time."""
        try:
            conn.execute("PRAGMA busy_timeout=100")
            conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
        except sqlite3.Error as exc:
            log.warning("sqlite_checkpoint_failed", error=f"{type(exc).__name__}: {exc}")
        finally:
            with contextlib.suppress(sqlite3.Error):
                conn.execute(f"PRAGMA busy_timeout={int(_BUSY_SECONDS * 1000)}")

    def _transaction(
        self,
        conn: sqlite3.Connection,
        batch: list[_Op],
        careful: bool = False,
        *,
        housekeeping: bool = True,
    ) -> list[tuple[Any, BaseException | None]]:
        """Run a batch in one transaction. Rows go in first (all at once), then attempt counts
        and marks (each kind at once), then the rest in arrival order: a mark never precedes
        the insert of its row, because `enqueue` returned (committed) before it was made.

        A batch of rows and marks only (an emit burst) runs without savepoints: each
        statement call gives the GIL up and must win it back from the event loop, which is
        what an `emit` waits for. If anything in it fails, the whole transaction is rolled
        back and the batch run again `careful`ly, so that only the culprit fails."""
        results: list[tuple[Any, BaseException | None]] = [(None, None)] * len(batch)
        now = time.time()
        fast = not careful and all(op[0] in _GROUPED for op in batch)
        # What the statements note on this side, put back if they are rolled back.
        noted = (
            self._registered,
            set(self._replaying),
            self._renew_at,
            self._last_prune,
            self._prune_behind,
        )
        try:
            conn.execute("BEGIN IMMEDIATE")
            if housekeeping and self._registered and time.monotonic() >= self._renew_at:
                self._renew(conn, now)
            by_kind: dict[str, list[int]] = {}
            for index, (kind, _, _) in enumerate(batch):
                by_kind.setdefault(kind, []).append(index)
            grouped = [(kind, by_kind.pop(kind)) for kind in _GROUPED if kind in by_kind]
            if fast:
                self._all_grouped(conn, (batch, grouped))
            elif grouped and self._savepoint(conn, self._all_grouped, (batch, grouped))[1]:
                # Something failed: again kind by kind, then payload by payload, so only
                # the culprit fails; what the rolled back statements noted here is undone.
                self._registered, self._replaying = noted[0], set(noted[1])
                for kind, indexes in grouped:
                    self._grouped(conn, kind, [batch[i][1] for i in indexes], indexes, results)
            for kind, indexes in by_kind.items():
                for index in indexes:
                    results[index] = self._savepoint(
                        conn, getattr(self, f"_do_{kind}"), batch[index][1]
                    )
            mono = time.monotonic()
            if housekeeping and mono >= self._prune_at():
                self._last_prune = mono
                self._prune(conn, now)
            conn.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            renewed, pruned = self._renew_at != noted[2], self._last_prune != noted[3]
            (
                self._registered,
                self._replaying,
                self._renew_at,
                self._last_prune,
                self._prune_behind,
            ) = noted
            # A renewal or a prune pass rolled back is tried again soon, not at once: due at
            # once, the writer woke every 10 ms to fail again while the disk stayed full.
            if renewed:
                self._renew_at = time.monotonic() + min(1.0, self.lease_seconds / 3)
            if pruned:
                self._last_prune, self._prune_behind = time.monotonic(), True
            self._lease_from, self._lease_lost = None, False
            if fast and isinstance(exc, Exception):
                return self._transaction(conn, batch, careful=True, housekeeping=housekeeping)
            return [(None, exc)] * len(batch)
        self._lease_committed()
        return results

    def _lease_committed(self) -> None:
        """Tell the event loop how long its rows are surely its own: a lease renewed at `t` (by
        this process's monotonic clock, read before the statement) cannot be found expired by
        another process before `t + lease` by its own (it waits a whole lease from when it
        first reads the renewed value). A lost lease first marks every row held as suspect."""
        if self._lease_from is None:
            return
        until = self._lease_from + self.lease_seconds
        lost, self._lease_from, self._lease_lost = self._lease_lost, None, False
        if lost and self._loop is not None:
            self._loop.call_soon_threadsafe(self._claims_lost, until)
        else:
            self._sure_until = until

    def _claims_lost(self, until: float) -> None:
        """On the event loop: every row held when the lease was found lost is asked about
        before it is sent; the rest (claimed from now on) are sure until `until`."""
        self._suspect |= self._held
        self._sure_until = until

    def _savepoint(
        self, conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection, Any], Any], payload: Any
    ) -> tuple[Any, BaseException | None]:
        # One failing operation must not take the rest of the batch down with it.
        conn.execute("SAVEPOINT op")
        try:
            result = fn(conn, payload)
        except Exception as exc:
            conn.execute("ROLLBACK TO op")
            conn.execute("RELEASE op")
            return None, exc
        conn.execute("RELEASE op")
        return result, None

    def _all_grouped(self, conn: sqlite3.Connection, work: tuple[list[_Op], Any]) -> None:
        """Every grouped kind's payloads at once, under one savepoint (the usual case)."""
        batch, grouped = work
        for kind, indexes in grouped:
            merged = [item for i in indexes for item in batch[i][1]]
            getattr(self, f"_do_{kind}")(conn, merged)

    def _grouped(
        self,
        conn: sqlite3.Connection,
        kind: str,
        payloads: list[Any],
        indexes: list[int],
        results: list[tuple[Any, BaseException | None]],
    ) -> None:
        fn = getattr(self, f"_do_{kind}")
        merged = [item for payload in payloads for item in payload]
        result = self._savepoint(conn, fn, merged)
        if result[1] is None:
            return
        for payload, index in zip(payloads, indexes, strict=True):  # find the culprit
            results[index] = self._savepoint(conn, fn, payload)

    # -- claims (writer thread) ------------------------------------------------------------

    def _register(self, conn: sqlite3.Connection, now: float) -> None:
        """Put this process's lease in the file (on its first claim)."""
        self._lease_from = time.monotonic()
        conn.execute(
            "INSERT OR REPLACE INTO owners (owner, host, pid, alive_until, lease_seconds)"
            " VALUES (?, ?, ?, ?, ?)",
            (self.owner, _host(), os.getpid(), now + self.lease_seconds, self.lease_seconds),
        )
        self._registered = True
        self._renew_at = time.monotonic() + self.lease_seconds / 3

    def _renew(self, conn: sqlite3.Connection, now: float) -> None:
        self._lease_from = time.monotonic()
        cursor = conn.execute(
            "UPDATE owners SET alive_until = ? WHERE owner = ?",
            (now + self.lease_seconds, self.owner),
        )
        self._renew_at = time.monotonic() + self.lease_seconds / 3
        if cursor.rowcount == 0:
            # Another process found the lease expired (this one did not renew in time: the
            # machine slept, the process was stopped) and released its rows, which it may
            # have taken and sent. Each one this process still holds is asked about before
            # it is sent (`confirm_held`). Loud, then carry on.
            log.error(
                "sqlite_lease_lost",
                store=str(self.path),
                owner=self.owner,
                reason=f"not renewed within {self.lease_seconds:g} s; rows this process held "
                "were released to other processes: each is checked before it is sent, and "
                "the ones another process took are left to it",
            )
            self._lease_lost = True
            self._register(conn, now)

    def _nothing_to_take(self, conn: sqlite3.Connection, wanted: Mapping[str, int]) -> bool:
        """True when nothing can have changed for `wanted` since it was last found empty:
        no other process committed (`PRAGMA data_version`) and no lease is due a check."""
        try:
            self._version = conn.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error:
            return False
        if time.monotonic() >= self._check_owners_at:
            return False
        return all(self._empty_at.get(name) == self._version for name in wanted)

    def _say_wal_missing(self, conn: sqlite3.Connection) -> None:
        """The file lists processes that used it and never closed it (a close takes its
        process off `owners`), yet no `-wal` file was beside it: while a process has the file
        open, and after one dies with it open, its `-wal` is there, holding the commits made
        since the last checkpoint (up to `_CHECKPOINT_EVERY` emits' rows). The likeliest cause
        is the file moved or copied without it (`mv outbox.db`, a backup of one file), and
        what those commits held (the newest queued deliveries, marks) is lost with nothing
        else to tell. Said once, at open; the rows the file does hold are delivered."""
        gone = conn.execute(
            "SELECT owner, host, pid FROM owners WHERE owner != ?", (self.owner,)
        ).fetchall()
        if not gone:
            return
        log.error(
            "sqlite_wal_missing",
            store=str(self.path),
            owners=[f"{host}:{pid}" for _, host, pid in gone],
            reason="the file lists processes that never closed it, yet no -wal file was "
            "beside it: if the file was moved or copied without its -wal (and -shm) file, "
            "the deliveries queued last before those processes stopped (and their marks) "
            "are lost. Move or copy the whole folder, or stop every process using the file "
            "first (a clean close leaves no -wal). If another program opened the file since "
            "(the sqlite3 shell), it kept what the -wal held and nothing is lost",
        )

    def _release_dead_owners(self, conn: sqlite3.Connection) -> None:
        """Give the rows of processes that died (or whose lease ran out) to the living."""
        mono = time.monotonic()
        self._check_owners_at = mono + min(self.lease_seconds / 4, 5.0)
        here = _host()
        dead: list[tuple[str, int]] = []
        seen, listed = self._leases_seen, set[str]()
        for owner, host, pid, alive_until, lease in conn.execute(
            "SELECT owner, host, pid, alive_until, lease_seconds FROM owners WHERE owner != ?",
            (self.owner,),
        ):
            listed.add(owner)
            last = seen.get(owner)
            if last is not None and last[0] == alive_until:
                # Not renewed since it was first read so: over after a lease by this
                # process's monotonic clock. Compared with the wall clock, a step of it (NTP)
                # forward ended every live lease at once, and one back kept dead ones as long.
                # An owner seen for the first time (this process just started) gets a
                # lease too; a dead one on this machine is found at once by its pid.
                # The owner's lease, not this process's: it renews every third of its own
                # and counts its rows surely its own for a whole one, so a process with a
                # shorter `?lease=` took a live process's rows and both sent them.
                expired = mono - last[1] >= _lease_of(lease, self.lease_seconds)
            else:
                expired = False
                seen[owner] = (alive_until, mono)
            if expired or (host == here and not _pid_runs(pid)):
                dead.append((owner, pid))
        for owner in seen.keys() - listed:
            del seen[owner]
        released = 0
        for owner, pid in dead:
            count = conn.execute(
                "UPDATE deliveries SET owner = NULL WHERE owner = ? AND state = 'queued'",
                (owner,),
            ).rowcount
            conn.execute("DELETE FROM owners WHERE owner = ?", (owner,))
            if count:
                log.warning(
                    "sqlite_claims_taken_over",
                    store=str(self.path),
                    owner=owner,
                    pid=pid,
                    count=count,
                )
            released += count
        first = not self._swept
        if first:
            # Rows claimed by an owner the file no longer lists (a file copied mid-run).
            self._swept = True
            released += conn.execute(
                "UPDATE deliveries SET owner = NULL WHERE state = 'queued'"
                " AND owner IS NOT NULL AND owner != ? AND owner NOT IN (SELECT owner FROM owners)",
                (self.owner,),
            ).rowcount
        if dead or first:
            # A replay interrupted by its process's end leaves its letter where it was.
            conn.execute(
                "UPDATE dead_letters SET replaying = 0, replaying_by = NULL WHERE replaying = 1"
                " AND (replaying_by IS NULL OR replaying_by NOT IN (SELECT owner FROM owners))"
            )
        if released:
            self._empty_at.clear()

    # -- statements (writer thread) --------------------------------------------------------

    def _do_enqueue(self, conn: sqlite3.Connection, rows: list[list[Any]]) -> None:
        # Ids are given under the write lock (BEGIN IMMEDIATE), so no other process can
        # pick the same one.
        (top,) = conn.execute("SELECT max(id) FROM deliveries").fetchone()
        next_id = (top or 0) + 1
        for row in rows:
            row[0] = next_id
            next_id += 1
        if not self.remote_workers and not self._registered:
            self._register(conn, time.time())
        # row: id, delivery_id, webhook, event_id, event_json, attempts, created_at, owner,
        # context, event_type (for the history record, posted apart: `enqueue`)
        # Each row with its own id: any order. Most hold None (no context).
        _insert_rows(conn, _INSERT, _INSERT_ROW, [row[:9] for row in rows], any_order=True)
        if self._replaying:
            for row in rows:
                key = (row[2], row[3])
                if key in self._replaying:
                    conn.execute(
                        "DELETE FROM dead_letters WHERE replaying = 1"
                        " AND webhook_name = ? AND event_id = ?",
                        key,
                    )
                    self._replaying.discard(key)

    def _do_history_new(self, conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
        # Ignored where the record exists (a row taken again after a crash or a release).
        _insert_rows(conn, _HISTORY_ROW, _HISTORY_ROW_ROW, rows)

    def _do_attempt(self, conn: sqlite3.Connection, rows: list[tuple[int, int, str]]) -> None:
        conn.executemany(
            "UPDATE deliveries SET attempts = ? WHERE id = ? AND delivery_id = ?", rows
        )

    def _do_delivered(
        self, conn: sqlite3.Connection, rows: list[tuple[float, int, int, str]]
    ) -> None:
        # The delivery id guards against a row id given again after its row was deleted.
        if self.retention_seconds == 0:
            _insert_rows(
                conn,
                _DELIVERED_DELETE,
                _DELIVERED_DELETE_ROW,
                [(r[2], r[3]) for r in rows],
                _DELIVERED_DELETE_END,
            )
        else:
            _insert_rows(conn, _DELIVERED, _DELIVERED_ROW, rows, _DELIVERED_END)

    def _do_open(self, conn: sqlite3.Connection, _: Any) -> None:
        now = time.time()
        if self._wal_at_open is False:
            self._say_wal_missing(conn)
        self._release_dead_owners(conn)
        if not self.remote_workers and not self._registered:
            # Now, not with the first rows: an emit's rows may be written from the event loop
            # (`_insert_now`), and rows of an owner the file does not list are released.
            self._register(conn, now)

    def _do_take(
        self, conn: sqlite3.Connection, wanted: Mapping[str, int]
    ) -> tuple[list[Any], list[str]]:
        """The rows claimed, and the webhooks whose page stopped at `page_bytes`."""
        now = time.time()
        if time.monotonic() >= self._check_owners_at:
            self._release_dead_owners(conn)
        taken: list[Any] = []
        capped: list[str] = []
        for name, limit in wanted.items():
            if limit <= 0:
                continue
            rows = conn.execute(
                "SELECT id, delivery_id, webhook_name, event_json, attempts, created_at,"
                " context_json FROM deliveries WHERE state = 'queued' AND owner IS NULL"
                " AND webhook_name = ? ORDER BY id LIMIT ?",
                (name, limit),
            )
            page = []
            size = 0
            budget = self.page_bytes
            for row in rows:  # read a row at a time: a page of large events stops early
                page.append(row)
                size += len(row[3])
                if size >= budget:
                    capped.append(name)
                    break
            rows.close()
            if len(page) < limit and size < budget:
                self._empty_at[name] = self._version
            else:
                self._empty_at.pop(name, None)
            if page:
                if not self._registered:
                    self._register(conn, now)
                conn.executemany(
                    "UPDATE deliveries SET owner = ? WHERE id = ?",
                    [(self.owner, row[0]) for row in page],
                )
                taken += page
        if not self._unknown_checked:
            # Once: rows for webhooks this process does not have wait for one that has them.
            self._unknown_checked = True
            others = conn.execute(
                "SELECT webhook_name, count(*) FROM deliveries WHERE state = 'queued'"
                " AND owner IS NULL GROUP BY webhook_name"
            ).fetchall()
            unknown = {name: count for name, count in others if name not in wanted}
            if unknown:
                log.warning(
                    "pending_deliveries_for_unknown_webhooks",
                    store=str(self.path),
                    webhooks=unknown,
                    reason="left in the file for a process that has these webhooks",
                )
        return taken, capped

    def _do_confirm(self, conn: sqlite3.Connection, row: tuple[int, str]) -> bool:
        """Whether a row this process held is still its to send (`confirm_held`)."""
        found = conn.execute(
            "SELECT owner, state FROM deliveries WHERE id = ? AND delivery_id = ?", row
        ).fetchone()
        if found is None:
            # Gone: delivered with retention 0 or dead-lettered by another process (its
            # history says so, until pruned; a dead letter, until replayed), or not in this
            # file at all (the file was replaced; this process delivers what it held from
            # memory): sent unless it surely ended.
            ended = conn.execute(
                "SELECT status FROM history WHERE delivery_id = ?", (row[1],)
            ).fetchone()
            if ended is not None:
                return ended[0] not in ("delivered", "failed")
            return (
                conn.execute(
                    "SELECT 1 FROM dead_letters WHERE delivery_id = ? LIMIT 1", (row[1],)
                ).fetchone()
                is None
            )
        owner, state = found
        if state != "queued" or (owner is not None and owner != self.owner):
            return False
        if owner is None:
            # Released and taken by nobody yet: this process's again.
            if not self._registered:
                self._register(conn, time.time())
            conn.execute("UPDATE deliveries SET owner = ? WHERE id = ?", (self.owner, row[0]))
        return True

    def _do_release_rows(self, conn: sqlite3.Connection, delivery_ids: list[str]) -> None:
        for start in range(0, len(delivery_ids), 500):
            some = delivery_ids[start : start + 500]
            conn.execute(
                "UPDATE deliveries SET owner = NULL WHERE owner = ? AND state = 'queued'"  # noqa: S608
                f" AND delivery_id IN ({', '.join('?' * len(some))})",
                (self.owner, *some),
            )
        self._empty_at.clear()

    def _do_release(self, conn: sqlite3.Connection, _: Any) -> int:
        """Closing: what this process still holds goes back to the others at once."""
        count = conn.execute(
            "UPDATE deliveries SET owner = NULL WHERE owner = ? AND state = 'queued'",
            (self.owner,),
        ).rowcount
        conn.execute(
            "UPDATE dead_letters SET replaying = 0, replaying_by = NULL WHERE replaying_by = ?",
            (self.owner,),
        )
        conn.execute("DELETE FROM owners WHERE owner = ?", (self.owner,))
        self._registered = False
        return int(count)

    def _do_history(self, conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
        # row: delivery_id, event_id, webhook, event_type, status, created_at, updated_at,
        # event_json (None but for a record made here), then the attempt's
        # `_ATTEMPT_COLUMNS`. Attempts are keyed by their start, not
        # their number: a 410's attempt is not counted against the delivery, so the one
        # after re-enabling has the same number, and both are on record. The delivery's
        # record exists unless its row was queued by an older version: then it is made here
        # (without its event, which that version kept only in the row).
        _insert_rows(
            conn, _HISTORY_NOTE, _HISTORY_NOTE_ROW, [row[:8] for row in rows], _HISTORY_NOTE_END
        )
        _insert_rows(conn, _HISTORY_ATTEMPT, _HISTORY_ATTEMPT_ROW, [row[8:] for row in rows])

    def _do_history_first(self, conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
        # row: the record (`_do_history`'s first eight values), then the attempt's
        # `_ATTEMPT_COLUMNS` but its delivery id.
        # One row per delivery (its first attempt): any order. A success holds three Nones.
        _insert_rows(
            conn, _HISTORY_FIRST, _HISTORY_FIRST_ROW, rows, _HISTORY_NOTE_END, any_order=True
        )

    @staticmethod
    def _masked(ops: list[_Op]) -> list[_Op]:
        """`ops` with the first attempts noted for masking here (`first_attempt`) made into
        their records (`history_first`), before the transaction takes the write lock: the
        masking took about 1 ms of a marks transaction's 5 to 8 ms (every 50 ms under load),
        and the event loop's emits, and other processes', wait for the lock meanwhile."""
        if not any(op[0] == "first_attempt" for op in ops):
            return ops
        return [
            ("history_first", _first_records(op[1]), op[2]) if op[0] == "first_attempt" else op
            for op in ops
        ]

    def _do_history_get(self, conn: sqlite3.Connection, delivery_id: str) -> Any:
        row = conn.execute(_HISTORY_SELECT + " WHERE delivery_id = ?", (delivery_id,)).fetchone()
        if row is None:
            return None
        return row, self._attempt_rows(conn, [delivery_id])

    def _do_history_list(self, conn: sqlite3.Connection, query: DeliveryQuery) -> Any:
        # Records whose queue time is not a number (a row edited by hand or damaged) are left
        # out: SQL sorts text above every number, Python refuses to compare them, and one
        # such record made every listing raise. `delivery_record` still reads it.
        where: list[str] = ["typeof(created_at) IN ('real', 'integer')"]
        args: list[Any] = []
        for column, value in (
            ("webhook_name", query.webhook),
            ("status", query.status),
            ("event_type", query.event_type),
            ("event_id", query.event_id),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if query.since is not None:
            where.append("created_at >= ?")
            args.append(query.since)
        if query.until is not None:
            where.append("created_at < ?")
            args.append(query.until)
        after = query.after()
        if after is not None:
            where.append("(created_at < ? OR (created_at = ? AND delivery_id < ?))")
            args += [after[0], after[0], after[1]]
        sql = _HISTORY_SELECT + " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, delivery_id DESC LIMIT ?"
        rows = conn.execute(sql, (*args, query.limit + 1)).fetchall()
        return rows, self._attempt_rows(conn, [row[0] for row in rows])

    @staticmethod
    def _attempt_rows(conn: sqlite3.Connection, ids: list[str]) -> tuple[list[Any], list[Any]]:
        """The attempts of deliveries `ids`: rows of `attempts`, and the JSON records earlier
        builds kept in `history_attempts`."""
        if not ids:
            return [], []
        # Placeholders and constant column names only: the ids are parameters.
        where = f" WHERE delivery_id IN ({', '.join('?' * len(ids))})"
        columns = f"SELECT {_ATTEMPT_COLUMNS} FROM attempts{where}"  # noqa: S608
        kept_as_json = f"SELECT delivery_id, record_json FROM history_attempts{where}"  # noqa: S608
        return conn.execute(columns, ids).fetchall(), conn.execute(kept_as_json, ids).fetchall()

    def _do_history_event(self, conn: sqlite3.Connection, event_id: str) -> Any:
        row = conn.execute(
            "SELECT event_json FROM history WHERE event_id = ? AND event_json IS NOT NULL LIMIT 1",
            (event_id,),
        ).fetchone()
        if row is None:  # queued by a version that kept events apart
            row = conn.execute(
                "SELECT event_json FROM history_events WHERE event_id = ?", (event_id,)
            ).fetchone()
        return None if row is None else row[0]

    def _do_dead(self, conn: sqlite3.Connection, payload: tuple[Any, ...]) -> None:
        store_ref, delivery_id, row = payload
        conn.execute(
            "UPDATE history SET status = 'failed', dead_letter_id = ?, updated_at = ?"
            " WHERE delivery_id = ?",
            (row[0], row[7], delivery_id),
        )
        conn.execute(
            "INSERT INTO dead_letters (dead_letter_id, delivery_id, webhook_name, event_id,"
            " event_json, error_json, attempts, failed_at, context_json)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            row,
        )
        if store_ref is not None:
            conn.execute(
                "DELETE FROM deliveries WHERE id = ? AND delivery_id = ?", (store_ref, delivery_id)
            )

    def _do_list_dead(self, conn: sqlite3.Connection, webhook_name: str | None) -> list[Any]:
        sql = (
            "SELECT dead_letter_id, webhook_name, event_json, error_json, attempts, failed_at,"
            " context_json, delivery_id FROM dead_letters WHERE replaying = 0"
        )
        if webhook_name is None:
            return conn.execute(sql + " ORDER BY failed_at").fetchall()
        return conn.execute(
            sql + " AND webhook_name = ? ORDER BY failed_at", (webhook_name,)
        ).fetchall()

    def _do_take_dead(self, conn: sqlite3.Connection, dead_letter_id: str) -> Any:
        row = conn.execute(
            "SELECT dead_letter_id, webhook_name, event_json, error_json, attempts, failed_at,"
            " context_json, delivery_id, event_id FROM dead_letters"
            " WHERE dead_letter_id = ? AND replaying = 0",
            (dead_letter_id,),
        ).fetchone()
        if row is not None and not self._letter(row[:8]).replayable:
            return ("unreplayable", row)
        if row is not None:
            if not self._registered:
                self._register(conn, time.time())
            conn.execute(
                "UPDATE dead_letters SET replaying = 1, replaying_by = ? WHERE dead_letter_id = ?",
                (self.owner, dead_letter_id),
            )
            self._replaying.add((row[1], row[8]))
        return row

    def _do_return_dead(self, conn: sqlite3.Connection, letter: tuple[str, str, str]) -> None:
        dead_letter_id, webhook_name, event_id = letter
        conn.execute(
            "UPDATE dead_letters SET replaying = 0, replaying_by = NULL"
            " WHERE dead_letter_id = ? AND replaying_by = ?",
            (dead_letter_id, self.owner),
        )
        self._replaying.discard((webhook_name, event_id))

    def _do_prune(self, conn: sqlite3.Connection, now: float) -> int:
        return self._prune(conn, now)

    def _do_kv_get(self, conn: sqlite3.Connection, key: str) -> str | None:
        row = conn.execute(
            "SELECT value FROM plugin_memory WHERE key = ? AND expires_at > ?", (key, time.time())
        ).fetchone()
        return None if row is None else str(row[0])

    def _do_kv_set(self, conn: sqlite3.Connection, payload: tuple[str, str, float]) -> None:
        key, value, ttl = payload
        conn.execute(
            "INSERT OR REPLACE INTO plugin_memory (key, value, expires_at) VALUES (?, ?, ?)",
            (key, value, time.time() + ttl),
        )

    def _do_kv_add(self, conn: sqlite3.Connection, payload: tuple[str, str, float]) -> bool:
        key, value, ttl = payload
        now = time.time()
        conn.execute("DELETE FROM plugin_memory WHERE key = ? AND expires_at <= ?", (key, now))
        cursor = conn.execute(
            "INSERT OR IGNORE INTO plugin_memory (key, value, expires_at) VALUES (?, ?, ?)",
            (key, value, now + ttl),
        )
        return cursor.rowcount == 1

    def _do_kv_delete(self, conn: sqlite3.Connection, key: str) -> None:
        conn.execute("DELETE FROM plugin_memory WHERE key = ?", (key,))

    def _do_count(self, conn: sqlite3.Connection, _: Any) -> dict[str, int]:
        counts = dict(conn.execute("SELECT state, count(*) FROM deliveries GROUP BY state"))
        counts["dead_letters"] = conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
        return counts

    def _do_pending(self, conn: sqlite3.Connection, _: Any) -> list[Any]:
        # Through the two partial indexes of queued rows: `state = 'queued'` alone scanned
        # the whole table, an hour of delivered rows (300,000 at 83 events/s: 25 ms here, on
        # the writer thread) on every gateway health page and scrape, against 0.4 ms.
        return conn.execute(_PENDING_COUNTS).fetchall()

    def _prune(self, conn: sqlite3.Connection, now: float) -> int:
        """One pass: at most `_PRUNE_CHUNK` rows of each table; when one of them had more,
        the next pass comes after `_PRUNE_BEHIND_SECONDS` (`_prune_at`). The delivered rows
        deleted."""
        memory = conn.execute(
            "DELETE FROM plugin_memory WHERE key IN (SELECT key FROM plugin_memory"
            " WHERE expires_at <= ? LIMIT ?)",
            (now, _PRUNE_CHUNK),
        ).rowcount
        delivered = conn.execute(
            "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries"
            " WHERE state = 'delivered' AND delivered_at < ? LIMIT ?)",
            (now - self.retention_seconds, _PRUNE_CHUNK),
        ).rowcount
        history = self._prune_history(conn, now)
        self._prune_behind = max(memory, delivered, history) >= _PRUNE_CHUNK
        return int(delivered)

    def _prune_history(self, conn: sqlite3.Connection, now: float) -> int:
        """The history of deliveries that ended (delivered or failed) longer ago than the
        retention goes, with its attempts, and the events no record refers to any more."""
        gone = [
            row[0]
            for row in conn.execute(
                "SELECT delivery_id FROM history WHERE status IN ('delivered', 'failed')"
                " AND updated_at < ? LIMIT ?",
                (now - self.retention_seconds, _PRUNE_CHUNK),
            )
        ]
        if not gone:
            return 0
        conn.executemany("DELETE FROM history WHERE delivery_id = ?", [(i,) for i in gone])
        conn.executemany("DELETE FROM attempts WHERE delivery_id = ?", [(i,) for i in gone])
        conn.executemany("DELETE FROM history_attempts WHERE delivery_id = ?", [(i,) for i in gone])
        # Events kept apart by earlier versions (none in a file made by this one).
        conn.execute(
            "DELETE FROM history_events WHERE created_at < ? AND NOT EXISTS"
            " (SELECT 1 FROM history WHERE history.event_id = history_events.event_id)",
            (now - self.retention_seconds,),
        )
        return len(gone)

    # -- the DeliveryStore interface -------------------------------------------------------

    async def open(self) -> Sequence[Delivery]:
        """Open the file. Returns nothing: what is pending is handed out a page at a time by
        `take_pending` (this is a `PagedStore`), so a backlog of any size opens at once."""
        if self._thread is not None:
            raise RuntimeError("the SQLite store is already open")
        self._loop = asyncio.get_running_loop()
        # Read before the first connection makes one: a file a process left without closing
        # it has its `-wal` beside it (`_say_wal_missing`).
        self._wal_at_open = await asyncio.to_thread(self._wal_beside)
        self._conn = await asyncio.to_thread(self._connect)
        self._thread = threading.Thread(
            target=self._run, name=f"empathy-webhooks-sqlite:{self.path.name}", daemon=True
        )
        self._thread.start()
        await self._call("open")
        if self._registered:
            await asyncio.to_thread(self._owner_into_file)
        if self.synchronous == "NORMAL":
            self._now_conn = await asyncio.to_thread(self._connect_now)
        return ()

    def _wal_beside(self) -> bool | None:
        """Whether the file has its `-wal` beside it; None when there is no file yet."""
        return Path(f"{self.path}-wal").exists() if self.path.exists() else None

    def _owner_into_file(self) -> None:
        """Copy this process's row in `owners` from the WAL into the file itself, before
        anything is queued: a file later moved without its -wal then still names the
        process that never closed it, which is how that loss is found (`_say_wal_missing`).
        A connection of its own (the writer's belongs to its thread); PASSIVE: it waits for
        nobody, and another process's snapshot only leaves the copy for the next checkpoint."""
        try:
            with contextlib.closing(sqlite3.connect(self.path, timeout=0.1)) as conn:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:
            log.warning("sqlite_checkpoint_failed", error=f"{type(exc).__name__}: {exc}")

    def _connect_now(self) -> sqlite3.Connection | None:
        """The event loop's connection: it inserts an emit's rows and writes the marks when
        the writer thread is idle (`_write_marks_now`), never waits for a lock (another
        writer holds it: they go through the writer thread) and never checkpoints (the
        writer thread does). None if it cannot be opened: the writer takes
        every write, as before."""
        conn = None
        try:
            conn = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                # The marks' statements too (`_write_marks_now`), as the writer's.
                cached_statements=_STATEMENT_CACHE,
            )
            conn.execute("PRAGMA busy_timeout=0")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA wal_autocheckpoint=0")
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            log.warning(
                "sqlite_loop_connection_unavailable",
                store=str(self.path),
                reason=f"{type(exc).__name__}: {exc}; emits go through the writer thread",
            )
            return None
        return conn

    def _connect(self) -> sqlite3.Connection:
        try:
            if self.path.parent and not self.path.parent.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
            # Autocommit mode: transactions are begun and committed explicitly by the writer.
            conn = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                cached_statements=_STATEMENT_CACHE,
            )
        except (OSError, sqlite3.Error) as exc:
            raise self._open_error(exc) from None
        try:
            conn.execute(f"PRAGMA busy_timeout={int(_BUSY_SECONDS * 1000)}")
            mode = _switch_to_wal(conn)
            if str(mode).lower() != "wal":
                raise StoreOpenError(
                    f"cannot open the SQLite store {self.path}: it could not switch to WAL "
                    f"mode (got {mode!r}); is it on a network file system?"
                )
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
            conn.execute("BEGIN IMMEDIATE")
            for table, column, statement in _MIGRATIONS:
                columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
                if column not in columns:
                    conn.execute(statement)
            conn.execute("COMMIT")
            conn.executescript(_INDEXES)
        except StoreOpenError:
            conn.close()
            raise
        except (OSError, sqlite3.Error) as exc:
            conn.close()
            raise self._open_error(exc) from None
        # Absolute: a relative path names another file once the process changes directory.
        self._opened = self.path.absolute()
        self._file = _file_identity(self._opened)
        self._file_check_at = time.monotonic() + _FILE_CHECK_SECONDS
        return conn

    def _open_error(self, exc: BaseException) -> StoreOpenError:
        """What went wrong opening the file, naming it, in words an operator can act on."""
        folder = self.path.parent if str(self.path.parent) else Path(".")
        detail = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, OSError) and exc.strerror:
            detail = exc.strerror
        if self.path.is_dir():
            return StoreOpenError(
                f"cannot open the SQLite store {self.path}: it is a folder, not a file; name "
                f"a file in it (sqlite:///{self.path / 'outbox.db'})"
            )
        if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
            return StoreOpenError(
                f"cannot open the SQLite store {self.path}: the folder {folder} is read-only "
                f"for this user (SQLite writes {self.path.name}, {self.path.name}-wal and "
                f"{self.path.name}-shm there); choose a writable folder ({detail})"
            )
        if self.path.exists() and not os.access(self.path, os.R_OK | os.W_OK):
            return StoreOpenError(
                f"cannot open the SQLite store {self.path}: the file is not readable and "
                f"writable by this user ({detail})"
            )
        if isinstance(exc, sqlite3.DatabaseError) and "not a database" in str(exc):
            return StoreOpenError(
                f"cannot open the SQLite store {self.path}: the file is not an SQLite database"
            )
        return StoreOpenError(f"cannot open the SQLite store {self.path}: {detail}")

    async def close(self) -> None:
        if self._thread is None:
            return
        if self._group is not None:  # emits waiting for their commit: before the release
            self._flush_group(self._group)
        now_conn, self._now_conn = self._now_conn, None
        if now_conn is not None:
            now_conn.close()
        if not self.remote_workers:
            with contextlib.suppress(Exception):
                await self._call("release")
        self._held.clear()
        self._suspect.clear()
        self._ended.clear()
        await self._call(_STOP)
        thread, self._thread = self._thread, None
        await asyncio.to_thread(thread.join)
        self._conn = None
        now_conn, self._now_conn = self._now_conn, None
        if now_conn is not None:  # reopened meanwhile on a replaced file (`_reopen_now`)
            now_conn.close()

    async def enqueue(self, deliveries: Sequence[Delivery]) -> None:
        if not deliveries:
            return
        now = time.time()
        owner = None if self.remote_workers else self.owner
        rows = []
        encoded: dict[int, str] = {}
        for delivery in deliveries:
            event = delivery.event
            text = encoded.get(id(event))
            if text is None:
                text = encoded[id(event)] = event.to_json()
            rows.append(
                [
                    None,  # the id, given under the write lock (`_insert_now`, the writer)
                    delivery.delivery_id,
                    delivery.webhook_name,
                    event.event_id,
                    text,
                    delivery.attempts,
                    now,
                    owner,
                    # Most deliveries carry no context: no call made for them.
                    _context_json(delivery.context) if delivery.context else None,
                    event.event_type,
                ]
            )
        if not self._written_alone(rows):
            group = self._group_for(len(rows))
            if group is None:
                await self._enqueue_through_writer(rows)
            else:
                await self._enqueue_in_group(group, rows)
        for delivery, row in zip(deliveries, rows, strict=True):
            delivery.store_ref = row[0]
        if owner is not None:
            held = self._held
            for delivery in deliveries:  # a loop: a comprehension is a frame more per emit
                held.add((delivery.store_ref, delivery.delivery_id))
        # The records are written like the marks, not in the emit's commit: that commit then
        # writes the new rows' pages only, and a few hundred records share each page of the
        # history's table and indexes. Any read takes them first; a crash before they are
        # committed leaves rows that `take_pending` gives their record again.
        self._post_new_records(rows)

    async def _enqueue_through_writer(self, rows: list[list[Any]]) -> None:
        try:
            await self._call("enqueue", rows)
        except asyncio.CancelledError:
            # The emit was cancelled while its rows went in: they may be committed, owned by
            # this process, which would never hand them to a lane (the emit did not return).
            # Released after the write, this process's paging takes them like any row nobody
            # holds; if they were not written, nothing matches.
            self._release_cancelled(rows)
            raise

    async def _enqueue_in_group(self, group: _Group, rows: list[list[Any]]) -> None:
        assert self._loop is not None  # `_group_for` gives a group only to an open store
        member = _Member(rows, self._loop.create_future())
        group.members.append(member)
        group.count += len(rows)
        try:
            await member.future
        except asyncio.CancelledError:
            # Cancelled before the group was written, its rows are left out of it: nothing
            # to release. After, as through the writer thread.
            if member.handed:
                self._release_cancelled(rows)
            raise

    def _release_cancelled(self, rows: list[list[Any]]) -> None:
        if not self.remote_workers:
            self._hand(("release_rows", [row[1] for row in rows], None))

    def _loop_may_write(self) -> bool:
        """Whether the event loop may write an emit's rows: not without its connection
        (synchronous=full), nor a replay's row (it deletes its letter in the same
        transaction), nor before this process is registered as an owner, nor while the
        checkpoint it asked for is half an interval overdue: the writer thread, starved of
        the CPU by a busy loop, had not run it, and the WAL grew by every commit meanwhile
        (to over 2,500 pages in 1,500 emits on a loaded machine). Through the writer, emits
        queue behind that checkpoint, so the WAL stays within about one and a half
        intervals' commits."""
        return not (
            self._now_conn is None
            or self._loop is None
            or self._replaying
            or (not self.remote_workers and not self._registered)
            or (self._checkpoints_asked > self._checkpoints_done and self._checkpoint_overdue())
        )

    def _checkpoint_overdue(self) -> bool:
        """Whether the loop made half an interval (`_CHECKPOINT_EVERY`) of commits since it
        asked for the oldest checkpoint the writer thread has not run yet."""
        unchecked = self._checkpoints_asked - self._checkpoints_done
        if unchecked <= 0:
            return False
        since = (unchecked - 1) * _CHECKPOINT_EVERY + self._since_checkpoint
        return since >= _CHECKPOINT_EVERY // 2

    def _written_alone(self, rows: list[list[Any]]) -> bool:
        """Write an emit's rows at once from the event loop, when emits come one at a time
        (the last group held one, and no other task emitted in this turn of the loop): a
        group would cost a lone emitter a turn of the loop and a future (about 4 µs an emit)
        for nothing to share. False, nothing written, when they go with a group or through
        the writer thread; a second task emitting in the same turn turns groups back on."""
        if not self._alone or self._group is not None or len(rows) > _MAX_NOW:
            return False
        if not self._loop_may_write():
            return False
        assert self._loop is not None
        task = asyncio.current_task()
        if self._turn_task is None:
            self._turn_task = task
            self._loop.call_soon(self._next_turn)
        elif self._turn_task is not task:
            self._alone = False
            return False
        return self._insert_now(rows)

    def _next_turn(self) -> None:
        self._turn_task = None

    def _group_for(self, count: int) -> _Group | None:
        """The group of emits written together from the event loop that rows join, opened
        if none is (`_flush_group`); None when they go through the writer thread
        (`_loop_may_write`, or more rows than `_MAX_NOW` with the group's)."""
        if not self._loop_may_write():
            return None
        assert self._loop is not None
        group = self._group
        if group is None:
            if count > _MAX_NOW:
                return None
            group = self._group = _Group()
            # Written two turns of the loop on, not one: emitters resumed in one turn often
            # emit in the next (after admission's turn of the loop), so a group written one
            # turn on held about six of eight producers' emits and the rest made a commit of
            # their own. A commit costs about as much for one row as for eight.
            self._loop.call_soon(self._loop.call_soon, self._flush_group, group)
        elif group.count + count > _MAX_NOW:
            return None
        return group

    def _flush_group(self, group: _Group) -> None:
        """Write the rows of the emits made since the group opened (this turn of the event
        loop, and the next until this runs) in one statement: one commit for all of them,
        where a commit per emit cost three times as much for eight emits (a commit's cost is
        mostly the pages it writes: the table's and its index's last ones, the same for all
        of them). Each emit waits for the commit, as before; emits cancelled meanwhile are
        left out (nothing of theirs is written). When the loop cannot write them at once,
        the writer thread does, each emit's rows an operation of its own."""
        if self._group is group:
            self._group = None
        members = [member for member in group.members if not member.future.done()]
        self._alone = len(members) <= 1
        if not members:
            return
        for member in members:
            member.handed = True
        rows = members[0].rows if len(members) == 1 else [r for m in members for r in m.rows]
        if self._insert_now(rows):
            for member in members:
                member.future.set_result(None)
            return
        for member in members:
            self._hand(("enqueue", member.rows, member.future))

    def _insert_now(self, rows: list[list[Any]]) -> bool:
        """Write emits' rows from the event loop, in one statement that is a transaction of
        its own; False, with nothing written, when they must go through the writer thread.

        Why: an emit waits for its commit, and a commit by the writer thread waits for the
        thread to win the GIL from a busy event loop, twice (to start, and to hand back the
        answer): about 1.5 ms an emit under load, against tens of µs written here. The
        statement writes to the WAL without an fsync (synchronous=NORMAL, the only mode this
        runs in) and never waits for a lock: when another connection holds the write lock
        (the writer thread's marks, another process), SQLite refuses at once, the statement
        is rolled back whole, and the writer thread, which waits for the lock, writes the
        rows. Ids are given by SQLite under the write lock (one past the largest, row after
        row), so no other process can pick the same ones."""
        conn = self._now_conn
        if conn is None:
            return False
        try:
            cursor = conn.execute(*_now_statement(rows))
        except Exception:
            # Whatever it is (a lock, or anything else: this runs apart from the emits when
            # it writes a group, and none may be left waiting), the writer thread tries the
            # rows, and an emit that cannot be written gets the reason from there.
            return False
        last = cursor.lastrowid
        assert last is not None  # the last row's id: set by every INSERT that ran
        first = last - len(rows) + 1
        for offset, row in enumerate(rows):
            row[0] = first + offset
        self._committed_now()
        return True

    def _drop_now_conn(self, conn: sqlite3.Connection, exc: BaseException) -> None:
        """Stop writing from the event loop: its connection was left inside a transaction
        (the rollback failed too), where an emit's row would never be committed though its
        emit returned. Everything goes through the writer thread from now on."""
        if self._now_conn is conn:
            self._now_conn = None
        with contextlib.suppress(sqlite3.Error):
            conn.close()
        log.warning(
            "sqlite_loop_connection_unavailable",
            store=str(self.path),
            reason=redact_text(f"{type(exc).__name__}: {exc}")[:500]
            + "; the event loop's connection could not roll back: emits and marks go "
            "through the writer thread",
        )

    def _committed_now(self, weight: int = 1) -> None:
        """Count a commit the event loop made (`weight` emits' commits for a large one): the
        writer thread checkpoints the WAL every `_CHECKPOINT_EVERY` of them (the loop's
        connection never does)."""
        self._since_checkpoint += weight
        if self._since_checkpoint >= _CHECKPOINT_EVERY:
            self._since_checkpoint = 0
            self._checkpoints_asked += 1
            self._hand(("checkpoint", None, None))

    async def take_pending(self, wanted: Mapping[str, int]) -> Page:
        """Claim up to `wanted[name]` unclaimed queued rows per webhook, oldest first, a
        webhook's page stopping at `page_bytes` (see `PagedStore`). Rows whose event cannot be
        decoded go to the dead letters instead."""
        wanted = {name: limit for name, limit in wanted.items() if limit > 0}
        deliveries = Page()
        records: list[tuple[Any, ...]] = []
        while wanted:
            rows, capped = await self._call("take", wanted)
            deliveries.capped |= frozenset(capped)
            bad: list[tuple[Any, ...]] = []
            held = self._held
            for row_id, delivery_id, webhook_name, event_json, attempts, created_at, ctx in rows:
                key = (row_id, delivery_id)
                if key in held or key in self._ended:
                    # Released when this process's lease was lost, and claimed again here:
                    # its copy is still in a lane (asked about before it is sent).
                    continue
                held.add(key)
                if type(attempts) is not int or attempts < 0 or type(created_at) is not float:
                    # A row edited by hand or damaged: its event is still sent (a count of
                    # "abc" made the worker fail it as an internal error, a dead letter).
                    attempts, created_at = _row_numbers(attempts, created_at)
                try:
                    event = decode_event(event_json)
                except UndecodableEvent as exc:
                    bad.append((row_id, delivery_id, webhook_name, event_json, attempts, exc))
                    continue
                deliveries.append(
                    Delivery(
                        webhook_name=webhook_name,
                        event=event,
                        delivery_id=delivery_id,
                        attempts=attempts,
                        enqueued_at=created_at,
                        store_ref=row_id,
                        context=_context(ctx),
                    )
                )
                deliveries.sizes[delivery_id] = len(event_json)
                kind = event.event_type
                record = (delivery_id, event.event_id, webhook_name, kind, created_at, created_at)
                # Not new: its record may exist (a row taken again after a crash).
                records.append((*record, event_json))
            if not bad:
                break
            try:
                await self._dead_letter_undecodable(bad)
            except Exception as exc:
                # The decoded rows of this take are claimed: returned to the lanes whatever
                # happens here (raising lost them until this process ended). The bad ones
                # stay claimed, so no take here asks again (and fails again) every poll; this
                # process gives them back when it closes, and the next one tries again.
                left = [row for row in bad if (row[0], row[1]) in self._held]
                for row in left:
                    self._held.discard((row[0], row[1]))
                log.error(
                    "undecodable_delivery_not_dead_lettered",
                    store=str(self.path),
                    count=len(left),
                    delivery_ids=[row[1] for row in left][:20],
                    error=redact_text(f"{type(exc).__name__}: {exc}")[:500],
                    reason="kept in the file until this process closes; the other deliveries "
                    "of the page go on",
                )
                break
            # Ask again for what the bad rows took the place of, so one bad row never
            # makes a page look like the end of the backlog.
            short: dict[str, int] = {}
            for row in bad:
                short[row[2]] = short.get(row[2], 0) + 1
            wanted = short
        if records:
            # The record of a row whose own was never committed (its process died within
            # `_MARK_DELAY` of queuing it) or that an older version queued without one.
            self._post_records(records)
        return deliveries

    async def _dead_letter_undecodable(self, bad: list[tuple[Any, ...]]) -> None:
        for row_id, delivery_id, webhook_name, event_json, attempts, exc in bad:
            letter = DeadLetter.undecodable(
                webhook_name=webhook_name,
                delivery_id=delivery_id,
                stored=_stored_text(event_json),
                reason=str(exc),
                attempts=attempts,
            )
            log.error(
                "undecodable_delivery_dead_lettered",
                store=str(self.path),
                webhook=webhook_name,
                event_id=letter.event.event_id,
                delivery_id=delivery_id,
                dead_letter_id=letter.dead_letter_id,
                reason=letter.error["reason"],
            )
            await self._call("dead", (row_id, delivery_id, self._letter_row(letter, delivery_id)))
            self._held.discard((row_id, delivery_id))

    def surely_held(self, delivery: Delivery) -> bool:
        """See `ConfirmsHolding`: within the lease last renewed, and not held when it was lost."""
        if self._suspect and (delivery.store_ref, delivery.delivery_id) in self._suspect:
            return False
        return delivery.store_ref is None or time.monotonic() < self._sure_until

    async def confirm_held(self, delivery: Delivery) -> bool:
        """See `ConfirmsHolding`: this process's if the file says its owner is this process, or
        nobody (claimed again), or the row is not in the file and did not end there."""
        key = (delivery.store_ref, delivery.delivery_id)
        held = bool(await self._call("confirm", key))
        self._suspect.discard(key)
        if not held:
            self._held.discard(key)
        return held

    async def record_attempt(self, delivery: Delivery) -> None:
        if delivery.store_ref is not None:
            self._post("attempt", (delivery.attempts, delivery.store_ref, delivery.delivery_id))

    def _let_go(self, delivery: Delivery) -> None:
        """A held row ended here. While its claim was in doubt it may have been released and
        a take under way may claim it again: remembered, so that take skips it."""
        key = (delivery.store_ref, delivery.delivery_id)
        self._held.discard(key)
        if self._suspect or time.monotonic() >= self._sure_until:
            ended = self._ended
            ended[key] = None
            if len(ended) > _ENDED_KEPT:
                del ended[next(iter(ended))]

    async def mark_delivered(self, delivery: Delivery) -> None:
        if delivery.store_ref is not None:
            self._let_go(delivery)
            self._post(
                "delivered",
                (time.time(), delivery.attempts, delivery.store_ref, delivery.delivery_id),
            )

    async def add_dead_letter(self, delivery: Delivery, error: dict[str, Any]) -> DeadLetter:
        letter = DeadLetter.from_delivery(delivery, error)
        row = self._letter_row(letter, delivery.delivery_id)
        await self._call("dead", (delivery.store_ref, delivery.delivery_id, row))
        self._let_go(delivery)
        return letter

    @staticmethod
    def _letter_row(letter: DeadLetter, delivery_id: str) -> tuple[Any, ...]:
        return (
            letter.dead_letter_id,
            delivery_id,
            letter.webhook_name,
            letter.event.event_id,
            letter.event.to_json(),
            json.dumps(letter.error, default=str),
            letter.attempts,
            letter.failed_at,
            _context_json(letter.context),
        )

    async def dead_letters(self, webhook_name: str | None = None) -> list[DeadLetter]:
        rows = await self._call("list_dead", webhook_name)
        return [self._letter(row) for row in rows]

    async def take_dead_letter(self, dead_letter_id: str) -> DeadLetter | None:
        """Take a dead letter for replay (see `DeliveryStore`). Raises `ValueError` for a
        letter whose event could not be decoded: it cannot be sent as it is."""
        row = await self._call("take_dead", dead_letter_id)
        if row is not None and row[0] == "unreplayable":
            raise ValueError(
                f"dead letter {dead_letter_id!r} holds an event that could not be decoded, so "
                "it cannot be replayed as it is; its stored text is in error['stored_event']"
            )
        return None if row is None else self._letter(row[:8])

    async def return_dead_letter(self, letter: DeadLetter) -> None:
        """A letter taken for a replay that did not queue it: listed again, for every process."""
        await self._call(
            "return_dead", (letter.dead_letter_id, letter.webhook_name, letter.event.event_id)
        )

    @staticmethod
    def _letter(row: Sequence[Any]) -> DeadLetter:
        (
            dead_letter_id,
            webhook_name,
            event_json,
            error_json,
            attempts,
            failed_at,
            context_json,
            delivery_id,
        ) = row
        # A letter stays listable whatever it holds: one bad letter never hides the others.
        try:
            error = json.loads(error_json)
        except Exception:
            error = None
        if not isinstance(error, dict):
            error = {"reason": "the stored error cannot be decoded", "stored_error": error_json}
        try:
            event = decode_event(event_json)
        except UndecodableEvent as exc:
            stand_in = DeadLetter.undecodable(
                webhook_name=webhook_name,
                delivery_id="",
                stored=_stored_text(event_json),
                reason=str(exc),
                attempts=attempts,
            )
            return attrs.evolve(
                stand_in,
                dead_letter_id=dead_letter_id,
                failed_at=failed_at,
                error={**error, **stand_in.error},
            )
        return DeadLetter(
            dead_letter_id=dead_letter_id,
            webhook_name=webhook_name,
            event=event,
            error=error,
            attempts=attempts,
            failed_at=failed_at,
            context=_context(context_json),
            delivery_id=delivery_id or "",
        )

    # -- attempt history (`history.KeepsHistory`) ------------------------------------------

    def note_attempt(self, delivery: Delivery, attempt: RawAttempt, status: str) -> None:
        """Written with the next commit, nobody waiting (as the attempt counts are)."""
        if self._thread is None:
            log.warning("history_not_recorded", store=str(self.path), reason="store not open")
            return
        delivery_id = delivery.delivery_id
        row = self._unwritten_new.pop(delivery_id, None)
        if row is not None:
            # A new delivery whose record, queued with its row, is not written yet: made by
            # this note, with the attempt in its own columns (`_first_record`). Masked and
            # encoded with the marks, a batch at a time, when masking may wait (as the memory
            # store masks when read): by the writer thread, or by the event loop when it
            # writes the marks itself (`_write_marks_now`), not in the worker's attempt.
            if attempt.may_wait:
                self._post("first_attempt", (row, attempt, status))
            else:
                self._post("history_first", _first_record(row, attempt, status))
            return
        ended = attempt.started_at + attempt.duration_s
        columns = attempt.columns(delivery_id)
        headers = _headers_text(columns[9])
        new = self._unwritten.pop(delivery_id, None)
        if new is None:
            event = delivery.event
            record: tuple[Any, ...] = (
                delivery_id,
                event.event_id,
                delivery.webhook_name,
                event.event_type,
                status,
                delivery.enqueued_at,
                ended,
                None,
            )
        else:  # the record of a row taken, not written yet: made by this note
            record = (*new[:4], status, new[4], ended, new[6])
        self._post("history", (*record, *columns[:9], headers, *columns[10:]))

    async def delivery_record(self, delivery_id: str) -> DeliveryRecord | None:
        found = await self._call("history_get", delivery_id)
        if found is None:
            return None
        row, attempts = found
        return _history_records([row], attempts)[0]

    async def delivery_records(self, query: DeliveryQuery) -> DeliveryPage:
        rows, attempts = await self._call("history_list", query)
        return page_of(_history_records(rows, attempts), query)

    async def stored_event(self, event_id: str) -> Event | None:
        text = await self._call("history_event", event_id)
        if text is None:
            return None
        try:
            return decode_event(text)
        except UndecodableEvent:
            return None

    # -- operations ------------------------------------------------------------------------

    async def prune(self, now: float | None = None) -> int:
        """Delete delivered rows older than the retention now (the writer also does this every
        `prune_interval` seconds). Returns how many rows went."""
        return int(await self._call("prune", time.time() if now is None else now))

    async def counts(self) -> dict[str, int]:
        """Rows by state (`queued`, `delivered`) and the number of dead letters."""
        return dict(await self._call("count"))

    def key_value(self, namespace: str) -> SQLiteKeyValue:
        """Plugins' memory for one webhook, in this file: shared by every process using it."""
        return SQLiteKeyValue(self, namespace)

    async def pending_counts(self) -> dict[str, dict[str, int]]:
        """Per webhook: rows queued (waiting or under way, in any process) and, of those,
        rows attempted at least once (`PendingCounts`)."""
        rows = await self._call("pending")
        return {
            name: {"pending": int(count), "retrying": int(retrying or 0)}
            for name, count, retrying in rows
        }

    async def dead_letter_counts(self) -> dict[str, int]:
        """Per webhook: the dead letters `dead_letters` lists, every process's, counted in
        one statement without reading them (`CountsDeadLetters`)."""
        rows = await self._call("dead_letter_counts")
        return {name: int(count) for name, count in rows}

    def _do_dead_letter_counts(self, conn: sqlite3.Connection, _: Any) -> list[Any]:
        # `replaying = 0`: as `_do_list_dead` lists them, so the count and the list agree.
        return conn.execute(
            "SELECT webhook_name, count(*) FROM dead_letters WHERE replaying = 0"
            " GROUP BY webhook_name"
        ).fetchall()


def _history_records(
    rows: list[Any], attempts: tuple[list[Any], list[Any]]
) -> list[DeliveryRecord]:
    columns, kept_as_json = attempts
    by_delivery: dict[str, list[AttemptRecord]] = {}
    for values in columns:
        try:
            fields = dict(zip(_ATTEMPT_FIELDS, values, strict=True))
            fields["request_headers"] = _headers(fields["request_headers"])
            by_delivery.setdefault(values[0], []).append(AttemptRecord.from_dict(fields))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue  # one unreadable attempt never hides the delivery nor its others
    for delivery_id, record_json in kept_as_json:
        try:
            by_delivery.setdefault(delivery_id, []).append(
                AttemptRecord.from_dict(json.loads(record_json))
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
    for row in rows:
        if row[9] is not None:  # the first attempt, in the record's own columns
            try:
                fields = dict(zip(_ATTEMPT_FIELDS, (row[0], *row[8:]), strict=True))
                fields["request_headers"] = _headers(fields["request_headers"])
                by_delivery.setdefault(row[0], []).append(AttemptRecord.from_dict(fields))
            except (ValueError, KeyError, TypeError, AttributeError):
                pass  # one unreadable attempt never hides the delivery nor its others
    for kept in by_delivery.values():
        kept.sort(key=_started)
    return [
        DeliveryRecord(
            delivery_id=delivery_id,
            event_id=event_id,
            webhook=webhook,
            event_type=event_type,
            status=status,
            created_at=_seconds(created_at, 0.0),
            updated_at=_seconds(updated_at, _seconds(created_at, 0.0)),
            attempts=tuple(by_delivery.get(delivery_id, ())),
            dead_letter_id=dead_letter_id,
        )
        for (
            delivery_id,
            event_id,
            webhook,
            event_type,
            status,
            created_at,
            updated_at,
            dead_letter_id,
            *_,
        ) in rows
    ]


def _first_records(notes: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The records of first attempts noted for masking in the writer thread (`note_attempt`:
    a new row, its first attempt, the delivery's status after it)."""
    rows = []
    for note in notes:
        try:
            rows.append(_first_record(*note))
        except Exception as exc:
            # One attempt that cannot be made fit to keep (a header name that is not text)
            # loses its own record, said so, never the batch's others. The exception's type
            # only: its text may hold what masking did not get to mask.
            log.error(
                "attempt_not_recorded",
                delivery_id=note[0][1],
                error=type(exc).__name__,
                reason="the sqlite store could not record this attempt (its values cannot be "
                "made fit to keep); the delivery and the other records are unaffected",
            )
    return rows


def _seconds(value: Any, default: float) -> float:
    """A record's time as kept, or `default` when the file holds something else there."""
    if type(value) is float or type(value) is int:
        return float(value)
    return default


def _row_numbers(attempts: Any, created_at: Any) -> tuple[int, float]:
    """A row's attempt count and queue time as a delivery needs them, whatever the file held
    (text, a blob, a negative count): what cannot be read counts as no attempt, queued now."""
    if type(attempts) is not int or attempts < 0:
        attempts = 0
    if type(created_at) is int:
        created_at = float(created_at)
    elif type(created_at) is not float or created_at != created_at:
        created_at = time.time()
    return attempts, created_at


def _stored_text(stored: Any) -> str:
    """What a row kept for an event, as text for its dead letter (a blob decoded, anything
    else written out), so a letter can be made for it and listed."""
    if isinstance(stored, str):
        return stored
    if isinstance(stored, bytes):
        return stored.decode("utf-8", errors="replace")
    return repr(stored)


def _delivered_ids(ops: Sequence[_Op], limit: int | None) -> tuple[list[str], int]:
    """The delivery ids marked delivered in `ops` (the first `limit`), and how many."""
    ids = [row[3] for kind, rows, _ in ops if kind == "delivered" for row in rows]
    return (ids if limit is None else ids[:limit]), len(ids)


def _first_record(row: Sequence[Any], attempt: RawAttempt, status: str) -> tuple[Any, ...]:
    """A new delivery's history record made by its first attempt (`_HISTORY_FIRST`'s
    values), from its `enqueue` row: the attempt masked and bounded, in its own columns."""
    columns = attempt.columns(row[1])
    ended = attempt.started_at + attempt.duration_s
    return (
        *_row_record(row),
        status,
        row[6],
        ended,
        row[4],
        *columns[1:9],
        _headers_text(columns[9]),
        *columns[10:],
    )


def _row_record(row: Sequence[Any]) -> tuple[Any, ...]:
    """The head of a new delivery's history record from its `enqueue` row: delivery id,
    event id, webhook, event type (the row's created_at and event JSON follow it there)."""
    return row[1], row[3], row[2], row[9]


def _headers_text(headers: Mapping[str, str]) -> str:
    """An attempt's request headers as kept: `Name: value` lines, as on the wire (a third of
    the instructions of encoding them as JSON), or JSON, which starts with `{`, when a name
    holds `: ` or starts with `{`, or a name or value holds a line break: what the lines
    could not give back."""
    text = "\r\n".join([f"{name}: {value}" for name, value in headers.items()])
    if headers and (text.count("\r\n") != len(headers) - 1 or not _names_fit_lines(tuple(headers))):
        return json.dumps(headers, separators=(",", ":"))
    return text


@functools.lru_cache(maxsize=256)
def _names_fit_lines(names: tuple[str, ...]) -> bool:
    """Whether header names can start `Name: value` lines that read back as they were: none
    holds `: `, and the first does not start with `{` (JSON's). Cached: a process sends a
    handful of sets of names, and this was a third of making the lines."""
    return ": ".join(names).count(": ") == len(names) - 1 and not names[0].startswith("{")


def _headers(text: str) -> dict[str, str]:
    """The headers `_headers_text` kept."""
    if text.startswith("{"):
        value = json.loads(text)
        if not isinstance(value, dict):
            raise ValueError("stored request headers are not an object")
        return value
    if not text:
        return {}
    headers = {}
    for line in text.split("\r\n"):
        name, sep, value = line.partition(": ")
        if not sep:
            raise ValueError("a stored request header line without a name")
        headers[name] = value
    return headers


def _started(record: AttemptRecord) -> float:
    return record.started_at


def _context_json(context: Mapping[str, str]) -> str | None:
    """A delivery's context as stored: NULL when empty (most deliveries), JSON otherwise."""
    return json.dumps(context, separators=(",", ":")) if context else None


def _context(stored: str | None) -> dict[str, str]:
    """The context a row kept. Text that does not decode to an object gives an empty context
    rather than stop the delivery: it is opaque metadata, not the event."""
    if not stored:
        return {}
    try:
        value = json.loads(stored)
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items()}


@attrs.frozen
class SQLiteKeyValue:
    """`KeyValue` in the store's `plugin_memory` table (expired rows pruned with the rest)."""

    store: SQLiteStore = attrs.field(repr=False)
    namespace: str

    async def get(self, key: str) -> str | None:
        found = await self.store._call("kv_get", self.namespace + key)
        return None if found is None else str(found)

    async def set(self, key: str, value: str, ttl_seconds: float) -> None:
        await self.store._call("kv_set", (self.namespace + key, value, float(ttl_seconds)))

    async def add(self, key: str, value: str, ttl_seconds: float) -> bool:
        return bool(
            await self.store._call("kv_add", (self.namespace + key, value, float(ttl_seconds)))
        )

    async def delete(self, key: str) -> None:
        await self.store._call("kv_delete", self.namespace + key)


def open_sqlite_store(url: str) -> SQLiteStore:
    """A store for `sqlite:///relative/path.db` or `sqlite:////absolute/path.db`, with the
    options `retention` (seconds), `synchronous` (normal or full), `lease` and `poll`
    (seconds) and `role` (worker or producer) in the query."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() != "sqlite":
        raise ValueError(f"not a sqlite URL: {url!r}")
    if parts.netloc:
        raise ValueError(
            f"{url!r}: a sqlite URL has no host; write sqlite:///relative.db or "
            "sqlite:////absolute/path.db"
        )
    if "#" in url:
        # urlsplit reads the rest as a fragment: `out#1.db` opened the file `out`.
        raise ValueError(f"{url!r}: a '#' ends the path there; write it as %23 in a file name")
    path = urllib.parse.unquote(parts.path)
    if path.startswith("/"):
        path = path[1:]
    if not path or path == ":memory:":
        raise ValueError(f"{url!r}: name a file (an in-memory database would not survive)")
    if "\0" in path:
        raise ValueError(f"{url!r}: a file name cannot hold a NUL character (%00)")
    if path == "~" or path.startswith(("~/", "/~/")):
        # Not expanded: sqlite:///~/outbox.db made a folder named "~" in the current one,
        # and a service run as another user would expand it to another home, another file.
        raise ValueError(
            f"{url!r}: '~' is not expanded in a store URL (it would name a folder called "
            "'~'); write the absolute path, sqlite:////home/me/outbox.db"
        )
    if path.endswith("/"):
        raise ValueError(f"{url!r}: names a folder; name the file in it (.../outbox.db)")
    options: dict[str, Any] = {}
    seconds = {"retention": "retention_seconds", "lease": "lease_seconds", "poll": "poll_interval"}
    given: set[str] = set()
    for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        if key in given:
            raise ValueError(f"{url!r}: {key} is given twice")
        given.add(key)
        if key in seconds:
            try:
                options[seconds[key]] = float(value)
            except ValueError:
                raise ValueError(f"{url!r}: {key} must be seconds, got {value!r}") from None
        elif key in ("synchronous", "role"):
            options[key] = value
        else:
            known = ("retention", "synchronous", "lease", "poll", "role")
            raise ValueError(
                f"{url!r}: unknown option {key!r}{did_you_mean(key, known)}"
                f" (known: {', '.join(known)})"
            )
    return SQLiteStore(path, **options)
