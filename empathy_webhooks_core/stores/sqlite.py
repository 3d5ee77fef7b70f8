"""The SQLite outbox: deliveries and dead letters in one local file that survives a crash.

`store="sqlite:///outbox.db"` (SQLAlchemy's spelling: three slashes then a relative path,
four for an absolute one). Options go in the query: `?retention=3600` keeps delivered rows
that many seconds before they are pruned (0 deletes them on delivery), `?synchronous=full`
trades speed for surviving power loss.

Why it is crash-safe: `enqueue` returns only after the rows are committed, and a row becomes
`delivered` only after the service answered 2xx. The journal is WAL with `synchronous=NORMAL`:
a commit is written to the WAL file (the OS holds it) without an fsync, so a process killed at
any moment (`kill -9`) loses nothing, because the OS still writes what the process handed
it; only a power cut or kernel crash can lose the last commits (`synchronous=full` closes
that gap, measured by `benchmarks/stores.py`). A crash before the `delivered` mark is written
means one more delivery of the same event id, which receivers de-duplicate: at least once.

Every statement runs on one dedicated writer thread that owns the connection, so the event
loop never blocks on disk and no lock is needed around the connection. The thread takes
whatever operations queued up while it was busy and runs them in one transaction (group
commit): many concurrent `emit` calls share a commit, and each still waits for its own.
Marks (`delivered`, attempt counts) are not waited for: they ride the next commit.

One process owns a file at a time; a second dispatcher on the same file would resume the
same pending rows (duplicates, not losses). Several processes sharing work need Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import queue
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .._log import get_logger
from ..bounds import check_number
from ..events import Event
from .base import DeadLetter, Delivery

__all__ = ["SQLiteStore", "open_sqlite_store"]

log = get_logger()
_stdlib_log = logging.getLogger(__name__)

#: Delivered rows are kept this long by default (seconds), for inspection, then pruned.
DEFAULT_RETENTION = 3600.0
#: The most operations one transaction takes; more wait for the next commit.
_MAX_BATCH = 4096
#: Rows one prune pass deletes, so a large backlog never holds the writer for long.
_PRUNE_CHUNK = 10_000

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
    delivered_at REAL
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
    replaying INTEGER NOT NULL DEFAULT 0
);
"""

_INSERT = (
    "INSERT INTO deliveries (id, delivery_id, webhook_name, event_id, event_json, attempts,"
    " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
)

_Op = tuple[str, Any, "asyncio.Future[Any] | None"]
_STOP = "stop"


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class SQLiteStore:
    """A durable outbox in one SQLite file (see the module docstring for the guarantees)."""

    remote_workers = False

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        retention_seconds: float = DEFAULT_RETENTION,
        synchronous: str = "normal",
        prune_interval: float | None = None,
    ) -> None:
        # NaN would pass `< 0` and make every prune compare false (delivered rows kept forever).
        check_number("retention", retention_seconds, at_least=0)
        if prune_interval is not None:
            check_number("prune_interval", prune_interval, above=0, at_most=86_400)
        if synchronous.lower() not in ("normal", "full"):
            raise ValueError(f"synchronous must be 'normal' or 'full', got {synchronous!r}")
        self.path = Path(path)
        self.retention_seconds = float(retention_seconds)
        self.synchronous = synchronous.upper()
        self.prune_interval = (
            prune_interval
            if prune_interval is not None
            else max(1.0, min(60.0, self.retention_seconds / 2 or 60.0))
        )
        self._ops: queue.SimpleQueue[_Op] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next_id = 0
        # Dead letters taken for replay whose new delivery is not committed yet: the row that
        # enqueues the replay deletes the letter in the same transaction, so a crash between
        # `take_dead_letter` and `enqueue` keeps the letter instead of losing it.
        self._replaying: set[tuple[str, str]] = set()
        self._last_prune = 0.0

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r}, retention_seconds={self.retention_seconds:g})"

    # -- the writer thread -----------------------------------------------------------------

    async def _call(self, kind: str, payload: Any = None) -> Any:
        if self._thread is None or self._loop is None:
            raise RuntimeError("the SQLite store is not open")
        future: asyncio.Future[Any] = self._loop.create_future()
        self._ops.put((kind, payload, future))
        return await future

    def _post(self, kind: str, payload: Any) -> None:
        """An operation nobody waits for (marks): it rides the next commit."""
        if self._thread is None:
            raise RuntimeError("the SQLite store is not open")
        self._ops.put((kind, payload, None))

    def _run(self) -> None:
        assert self._conn is not None and self._loop is not None
        conn, loop = self._conn, self._loop
        stopping = False
        while not stopping:
            try:
                first = self._ops.get(timeout=self.prune_interval)
            except queue.Empty:
                first = None
            batch: list[_Op] = [] if first is None else [first]
            while len(batch) < _MAX_BATCH:
                try:
                    batch.append(self._ops.get_nowait())
                except queue.Empty:
                    break
            ops = [op for op in batch if op[0] != _STOP]
            stops = [op for op in batch if op[0] == _STOP]
            stopping = bool(stops)
            if ops or time.time() - self._last_prune >= self.prune_interval:
                results = self._transaction(conn, ops)
                for (_, _, future), (result, error) in zip(ops, results, strict=True):
                    if future is not None:
                        loop.call_soon_threadsafe(_resolve, future, result, error)
                    elif error is not None:
                        _stdlib_log.error("sqlite store write failed: %s", error)
        with contextlib.suppress(sqlite3.Error):
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        for _, _, future in stops:
            if future is not None:
                loop.call_soon_threadsafe(_resolve, future, None, None)

    def _transaction(
        self, conn: sqlite3.Connection, batch: list[_Op]
    ) -> list[tuple[Any, BaseException | None]]:
        """Run a batch in one transaction. Rows go in first (all at once), then attempt counts
        and marks (each kind at once), then the rest in arrival order: a mark never precedes
        the insert of its row, because `enqueue` returned (committed) before it was made."""
        results: list[tuple[Any, BaseException | None]] = [(None, None)] * len(batch)
        now = time.time()
        try:
            conn.execute("BEGIN IMMEDIATE")
            by_kind: dict[str, list[int]] = {}
            for index, (kind, _, _) in enumerate(batch):
                by_kind.setdefault(kind, []).append(index)
            for kind in ("enqueue", "attempt", "delivered"):
                indexes = by_kind.pop(kind, [])
                if indexes:
                    self._grouped(conn, kind, [batch[i][1] for i in indexes], indexes, results)
            for kind, indexes in by_kind.items():
                for index in indexes:
                    results[index] = self._savepoint(
                        conn, getattr(self, f"_do_{kind}"), batch[index][1]
                    )
            if now - self._last_prune >= self.prune_interval:
                self._last_prune = now
                self._prune(conn, now)
            conn.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            return [(None, exc)] * len(batch)
        return results

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

    # -- statements (writer thread) --------------------------------------------------------

    def _do_enqueue(self, conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
        conn.executemany(_INSERT, rows)
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

    def _do_attempt(self, conn: sqlite3.Connection, rows: list[tuple[int, int]]) -> None:
        conn.executemany("UPDATE deliveries SET attempts = ? WHERE id = ?", rows)

    def _do_delivered(self, conn: sqlite3.Connection, rows: list[tuple[float, int, int]]) -> None:
        if self.retention_seconds == 0:
            conn.executemany("DELETE FROM deliveries WHERE id = ?", [(r[2],) for r in rows])
        else:
            conn.executemany(
                "UPDATE deliveries SET state = 'delivered', delivered_at = ?, attempts = ?"
                " WHERE id = ?",
                rows,
            )

    def _do_open(self, conn: sqlite3.Connection, _: Any) -> list[tuple[Any, ...]]:
        # A replay interrupted by a crash leaves its letter where it was.
        conn.execute("UPDATE dead_letters SET replaying = 0 WHERE replaying = 1")
        row = conn.execute("SELECT max(id) FROM deliveries").fetchone()
        self._next_id = (row[0] or 0) + 1
        return conn.execute(
            "SELECT id, delivery_id, webhook_name, event_json, attempts, created_at"
            " FROM deliveries WHERE state = 'queued' ORDER BY id"
        ).fetchall()

    def _do_dead(self, conn: sqlite3.Connection, payload: tuple[Any, ...]) -> None:
        store_ref, row = payload
        conn.execute(
            "INSERT INTO dead_letters (dead_letter_id, delivery_id, webhook_name, event_id,"
            " event_json, error_json, attempts, failed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            row,
        )
        if store_ref is not None:
            conn.execute("DELETE FROM deliveries WHERE id = ?", (store_ref,))

    def _do_list_dead(self, conn: sqlite3.Connection, webhook_name: str | None) -> list[Any]:
        sql = (
            "SELECT dead_letter_id, webhook_name, event_json, error_json, attempts, failed_at"
            " FROM dead_letters WHERE replaying = 0"
        )
        if webhook_name is None:
            return conn.execute(sql + " ORDER BY failed_at").fetchall()
        return conn.execute(
            sql + " AND webhook_name = ? ORDER BY failed_at", (webhook_name,)
        ).fetchall()

    def _do_take_dead(self, conn: sqlite3.Connection, dead_letter_id: str) -> Any:
        row = conn.execute(
            "SELECT dead_letter_id, webhook_name, event_json, error_json, attempts, failed_at,"
            " event_id FROM dead_letters WHERE dead_letter_id = ? AND replaying = 0",
            (dead_letter_id,),
        ).fetchone()
        if row is not None:
            conn.execute(
                "UPDATE dead_letters SET replaying = 1 WHERE dead_letter_id = ?", (dead_letter_id,)
            )
            self._replaying.add((row[1], row[6]))
        return row

    def _do_prune(self, conn: sqlite3.Connection, now: float) -> int:
        return self._prune(conn, now)

    def _do_count(self, conn: sqlite3.Connection, _: Any) -> dict[str, int]:
        counts = dict(conn.execute("SELECT state, count(*) FROM deliveries GROUP BY state"))
        counts["dead_letters"] = conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
        return counts

    def _prune(self, conn: sqlite3.Connection, now: float) -> int:
        cursor = conn.execute(
            "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries"
            " WHERE state = 'delivered' AND delivered_at < ? LIMIT ?)",
            (now - self.retention_seconds, _PRUNE_CHUNK),
        )
        return cursor.rowcount

    # -- the DeliveryStore interface -------------------------------------------------------

    async def open(self) -> Sequence[Delivery]:
        if self._thread is not None:
            raise RuntimeError("the SQLite store is already open")
        self._loop = asyncio.get_running_loop()
        self._conn = await asyncio.to_thread(self._connect)
        self._thread = threading.Thread(
            target=self._run, name=f"empathy-webhooks-sqlite:{self.path.name}", daemon=True
        )
        self._thread.start()
        rows = await self._call("open")
        deliveries = []
        for row_id, delivery_id, webhook_name, event_json, attempts, created_at in rows:
            deliveries.append(
                Delivery(
                    webhook_name=webhook_name,
                    event=Event.from_envelope(json.loads(event_json)),
                    delivery_id=delivery_id,
                    attempts=attempts,
                    enqueued_at=created_at,
                    store_ref=row_id,
                )
            )
        return deliveries

    def _connect(self) -> sqlite3.Connection:
        if self.path.parent and not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: transactions are begun and committed explicitly by the writer.
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            conn.close()
            raise RuntimeError(f"{self.path}: could not switch to WAL mode (got {mode!r})")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.executescript(_SCHEMA)
        return conn

    async def close(self) -> None:
        if self._thread is None:
            return
        await self._call(_STOP)
        thread, self._thread = self._thread, None
        await asyncio.to_thread(thread.join)
        self._conn = None

    async def enqueue(self, deliveries: Sequence[Delivery]) -> None:
        if not deliveries:
            return
        now = time.time()
        rows = []
        encoded: dict[int, str] = {}
        for delivery in deliveries:
            event = delivery.event
            text = encoded.get(id(event))
            if text is None:
                text = encoded[id(event)] = event.to_json()
            delivery.store_ref = self._next_id
            self._next_id += 1
            rows.append(
                (
                    delivery.store_ref,
                    delivery.delivery_id,
                    delivery.webhook_name,
                    event.event_id,
                    text,
                    delivery.attempts,
                    now,
                )
            )
        await self._call("enqueue", rows)

    async def record_attempt(self, delivery: Delivery) -> None:
        if delivery.store_ref is not None:
            self._post("attempt", [(delivery.attempts, delivery.store_ref)])

    async def mark_delivered(self, delivery: Delivery) -> None:
        if delivery.store_ref is not None:
            self._post("delivered", [(time.time(), delivery.attempts, delivery.store_ref)])

    async def add_dead_letter(self, delivery: Delivery, error: dict[str, Any]) -> DeadLetter:
        letter = DeadLetter.from_delivery(delivery, error)
        row = (
            letter.dead_letter_id,
            delivery.delivery_id,
            letter.webhook_name,
            letter.event.event_id,
            letter.event.to_json(),
            json.dumps(error, default=str),
            letter.attempts,
            letter.failed_at,
        )
        await self._call("dead", (delivery.store_ref, row))
        return letter

    async def dead_letters(self, webhook_name: str | None = None) -> list[DeadLetter]:
        rows = await self._call("list_dead", webhook_name)
        return [self._letter(row) for row in rows]

    async def take_dead_letter(self, dead_letter_id: str) -> DeadLetter | None:
        row = await self._call("take_dead", dead_letter_id)
        return None if row is None else self._letter(row[:6])

    @staticmethod
    def _letter(row: Sequence[Any]) -> DeadLetter:
        dead_letter_id, webhook_name, event_json, error_json, attempts, failed_at = row
        return DeadLetter(
            dead_letter_id=dead_letter_id,
            webhook_name=webhook_name,
            event=Event.from_envelope(json.loads(event_json)),
            error=json.loads(error_json),
            attempts=attempts,
            failed_at=failed_at,
        )

    # -- operations ------------------------------------------------------------------------

    async def prune(self, now: float | None = None) -> int:
        """Delete delivered rows older than the retention now (the writer also does this every
        `prune_interval` seconds). Returns how many rows went."""
        return int(await self._call("prune", time.time() if now is None else now))

    async def counts(self) -> dict[str, int]:
        """Rows by state (`queued`, `delivered`) and the number of dead letters."""
        return dict(await self._call("count"))


def open_sqlite_store(url: str) -> SQLiteStore:
    """A store for `sqlite:///relative/path.db` or `sqlite:////absolute/path.db`, with the
    options `retention` (seconds) and `synchronous` (normal or full) in the query."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() != "sqlite":
        raise ValueError(f"not a sqlite URL: {url!r}")
    if parts.netloc:
        raise ValueError(
            f"{url!r}: a sqlite URL has no host; write sqlite:///relative.db or "
            "sqlite:////absolute/path.db"
        )
    path = urllib.parse.unquote(parts.path)
    if path.startswith("/"):
        path = path[1:]
    if not path or path == ":memory:":
        raise ValueError(f"{url!r}: name a file (an in-memory database would not survive)")
    options: dict[str, Any] = {}
    for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        if key == "retention":
            try:
                options["retention_seconds"] = float(value)
            except ValueError:
                raise ValueError(f"{url!r}: retention must be seconds, got {value!r}") from None
        elif key == "synchronous":
            options["synchronous"] = value
        else:
            from ..converter import did_you_mean

            raise ValueError(
                f"{url!r}: unknown option {key!r}"
                f"{did_you_mean(key, ('retention', 'synchronous'))} (known: retention, synchronous)"
            )
    return SQLiteStore(path, **options)
