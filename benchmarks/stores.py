"""Deliveries per second through each store, and through a Celery baseline, on one workload.

    python benchmarks/stores.py            # 2,000 events; best of 5 rounds for every row
    python benchmarks/stores.py --quick    # 600 events
    python benchmarks/stores.py --rounds 7 # best of 7 for every row
    python benchmarks/stores.py --embedded # the memory and SQLite rows only (no Redis, Celery)
    python benchmarks/stores.py --redis-only # the memory and Redis rows only (no SQLite, Celery)

The workload: N events emitted by 8 concurrent producers (as a web server would) to one
`CustomWebhook` with its defaults (breaker on, `max_concurrency` 10, unsigned) at a receiver
in its own process, timed from the first emit until the receiver has answered every delivery
(memory and SQLite: until `drain()` returns; Redis and Celery, whose deliveries are made in other
processes: until the receiver's own clock reading of its last answer).
Every row is the best of the same number of rounds, and a round runs memory, SQLite and the
Redis rows one after the other, so drift on a shared machine hits them alike. Beside each
row, the CPU time per delivery of the processes doing the work (the least of the rounds):
this process for memory and SQLite (`time.process_time()`), the worker processes (and,
apart, this producing process) for Redis, read from `/proc` around the timed part, so their
start-up is not counted. Rows:

* memory: the default store, emit and delivery in this process;
* SQLite with default settings (`sqlite:///file`: WAL, synchronous NORMAL), in this process;
* the same in a file already holding 300,000 delivered records (`KEPT_RECORDS`), shown as a
  share of the new file's rate;
* Redis with 1, 2 and 4 worker processes (`run_worker` in child processes; this process
  only produces, XADDing to the stream);
* Celery: the baseline a Python team would otherwise pick. A Celery worker (Redis broker,
  prefork, concurrency 2) whose task POSTs the same envelope with `requests` with retries
  (`benchmarks/_celery_app.py`); this process publishes one task per event.

Everything on Redis uses the shared server on 127.0.0.1:6379 under a key prefix of this run's
own, and deletes exactly its own keys afterwards (never a flush). Redis and Celery rows are
skipped, saying why, when no server answers or Celery is not installed (`pip install -e
'.[bench]'`). The suite never times anything; this is run by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import json
import multiprocessing
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from _receiver import ReceiverProcess
from _report import Figure, emit, heading

from empathy_webhooks_core import CustomWebhook, Event, WebhookDispatcher

SECTION = "stores"
HERE = Path(__file__).resolve().parent
REDIS = "redis://127.0.0.1:6379/0"
PRODUCERS = 8
#: Events delivered before each timed run, untimed, by the same dispatcher or workers: the
#: connections to the receiver are open and every code path has run once when the clock
#: starts, in every row alike.
WARM_UP = 200
#: Delivered records in the history of the SQLite row's second file: an hour's worth (the
#: default retention) at 83 events/s. A new file hides what a file in use costs: the history
#: is indexed by event id, and random ids made each record 3 times as costly to write there.
KEPT_RECORDS = 300_000
#: How long the producer's emits took in each Redis run (s): shown, so a slow producer is told
#: apart from slow workers.
EMITTED: list[float] = []
#: CPU seconds per delivery of each run, by row: [(the workers' or this process's, this
#: process's when it only produced)].
CPU: dict[str, list[tuple[float, float | None]]] = {}
#: CPU seconds per delivery the Redis server used in each Redis run, by row (its `INFO cpu`:
#: a shared server counts whatever else it served meanwhile too).
SERVER_CPU: dict[str, list[float]] = {}


def _hook(base: str) -> CustomWebhook:
    return CustomWebhook(name="bench", url=f"{base}/bench")


def _data(n: int) -> dict[str, object]:
    return {"prediction": "Auth deployment may conflict with user-service v2.1", "n": n}


async def answered(base: str, session: aiohttp.ClientSession | None = None) -> int:
    """How many POSTs the receiver has answered so far."""
    if session is None:
        async with aiohttp.ClientSession() as own:
            return await answered(base, own)
    async with session.get(f"{base}/_count") as answer:
        return int(await answer.text())


async def _until_answered(base: str, target: int, timeout: float = 300) -> float:
    """Until the receiver has answered `target` POSTs (deliveries made in other processes);
    returns the `time.monotonic()` at which it answered the last of them (its own reading, so
    the 20 ms between polls is not counted). Polls on one connection, so the polling costs
    this process little."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while (seen := await answered(base, session)) < target:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the receiver saw {seen} of {target} deliveries")
            await asyncio.sleep(0.02)
        # A POST answered twice (at-least-once) would only make the run look longer.
        async with session.get(f"{base}/_last") as answer:
            return float((await answer.text()).split()[1])


async def _emit_all(dispatcher: WebhookDispatcher, events: int) -> None:
    async def producer(start: int) -> None:
        for n in range(start, events, PRODUCERS):
            await dispatcher.emit("prediction", _data(n), empathy_level=4)

    await asyncio.gather(*(producer(p) for p in range(PRODUCERS)))


def _collected() -> None:
    """Collect the garbage the earlier runs left (their dispatchers, stores, connections)
    before the clock starts: else a full collection of it lands in whichever run comes next
    (a later round ran 10 to 20% slower, in any row), and that run pays for the others."""
    gc.collect()


async def embedded(base: str, events: int, store: str | None, row: str = "") -> float:
    """Emit and deliver in this process (memory, SQLite)."""
    dispatcher = WebhookDispatcher(webhooks=[_hook(base)], store=store)
    await dispatcher.start()
    await _emit_all(dispatcher, WARM_UP)  # untimed, as for the worker processes
    await dispatcher.drain()
    first = await answered(base)
    _collected()
    started, cpu = time.perf_counter(), time.process_time()
    await _emit_all(dispatcher, events)
    await dispatcher.drain()
    elapsed = time.perf_counter() - started
    CPU.setdefault(row, []).append(((time.process_time() - cpu) / events, None))
    await dispatcher.close()
    assert await answered(base) - first == events
    return events / elapsed


def _with_history(path: Path, records: int) -> str:
    """A SQLite store's file at `path` holding `records` delivered deliveries' history, made
    over the last hour (written straight into the file: delivering them would take a minute);
    its store URL. Their event ids are made now, by the library: each sorts before those of
    the timed run, as an hour-old record's would."""
    url = f"sqlite:///{path}"
    loop = asyncio.new_event_loop()
    try:
        dispatcher = WebhookDispatcher(webhooks=[], store=url)  # the file and its tables
        loop.run_until_complete(dispatcher.start())
        loop.run_until_complete(dispatcher.close())
    finally:
        loop.close()
    envelope = Event(event_type="prediction", data=_data(0)).to_json()
    start = time.time() - 3000
    rows = []
    for n in range(records):
        at = start + n * 3000 / records
        event_id = Event(event_type="prediction").event_id
        rows.append(
            (f"dlv_kept{n:x}", event_id, "bench", "prediction", at, at, envelope, 1, at, 0.01)
        )
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO history (delivery_id, event_id, webhook_name, event_type, status,"
            " created_at, updated_at, event_json, first_attempt, first_started_at,"
            " first_duration_s, first_status, first_verdict, first_response_excerpt,"
            " first_request_headers, first_body_bytes) VALUES (?, ?, ?, ?, 'delivered', ?, ?,"
            " ?, ?, ?, ?, 200, 'delivered', 'ok', 'Content-Type: application/json', 200)",
            rows,
        )
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return url


def _cpu_seconds(pids: list[int]) -> float | None:
    """User and system CPU the processes used so far (Linux `/proc`), None elsewhere."""
    total = 0
    try:
        for pid in pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    except (OSError, ValueError, IndexError):
        return None
    return total / os.sysconf("SC_CLK_TCK")


async def _delete_prefix(prefix: str) -> None:
    """This run's keys on the shared server at `REDIS` (never a flush)."""
    from empathy_webhooks_redis.testing import delete_prefix

    await delete_prefix(prefix)


def _worker_process(url: str, base: str) -> None:
    from empathy_webhooks_core.worker import run_worker

    asyncio.run(run_worker([_hook(base)], url))


async def _server_cpu() -> float | None:
    """CPU seconds the Redis server has used so far (`INFO cpu`), None when not told."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS)
    try:
        info = await client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    except Exception:
        return None
    finally:
        await client.aclose()


async def _consumers(url: str) -> int:
    import redis.asyncio as aioredis

    prefix = url.split("prefix=")[1]
    client = aioredis.Redis.from_url(REDIS)
    try:
        return len(await client.xinfo_consumers(f"{prefix}deliveries", "workers"))
    except Exception:
        return 0
    finally:
        await client.aclose()


async def redis_workers(base: str, events: int, workers: int) -> float:
    prefix = f"bench:{secrets.token_hex(4)}:"
    url = f"{REDIS}?prefix={prefix}"
    spawn = multiprocessing.get_context("spawn")
    procs = [spawn.Process(target=_worker_process, args=(url, base)) for _ in range(workers)]
    producer = WebhookDispatcher(webhooks=[_hook(base)], store=url)
    try:
        await producer.start()  # creates the stream's group
        for proc in procs:
            proc.start()
        deadline = time.monotonic() + 60
        while await _consumers(url) < workers:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{workers} Redis workers did not all start within 60 s")
            await asyncio.sleep(0.05)
        # Untimed, as for the embedded rows: the worker processes are fresh, and their first
        # deliveries pay for connections and first uses once, which a worker that runs for
        # days pays once too; the timed part is the steady state.
        first = await answered(base)
        await _emit_all(producer, WARM_UP)
        await _until_answered(base, first + WARM_UP)
        first = await answered(base)
        pids = [proc.pid for proc in procs if proc.pid is not None]
        _collected()
        server_cpu = await _server_cpu()
        # time.monotonic(): the receiver's reading of its last answer ends the run.
        started, cpu, workers_cpu = time.monotonic(), time.process_time(), _cpu_seconds(pids)
        await _emit_all(producer, events)
        EMITTED.append(time.monotonic() - started)
        elapsed = await _until_answered(base, first + events) - started
        produced = (time.process_time() - cpu) / events
        after = _cpu_seconds(pids)
        if workers_cpu is not None and after is not None:
            CPU.setdefault(f"redis {workers}", []).append(
                ((after - workers_cpu) / events, produced)
            )
        server_after = await _server_cpu()
        if server_cpu is not None and server_after is not None:
            SERVER_CPU.setdefault(f"redis {workers}", []).append(
                (server_after - server_cpu) / events
            )
    finally:
        for proc in procs:
            proc.terminate()  # SIGTERM: the worker's graceful stop
        for proc in procs:
            proc.join(15)
            if proc.is_alive():
                proc.kill()
                proc.join()
        await producer.close()
        await _delete_prefix(prefix)
    return events / elapsed


def _celery_missing() -> str | None:
    try:
        import celery  # noqa: F401
        import requests  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} is not installed (pip install -e '.[bench]')"
    if shutil.which("celery", path=os.path.dirname(sys.executable)) is None:
        return "the celery command is not installed beside this Python"
    return None


class CeleryWorker:
    """A Celery worker (prefork, concurrency 2) in a child process, on a key prefix of its own."""

    def __init__(self, concurrency: int = 2) -> None:
        self.prefix = f"bench:celery:{secrets.token_hex(4)}:"
        self.queue = f"webhooks-{secrets.token_hex(3)}"
        self.env = {
            **os.environ,
            "BENCH_CELERY_BROKER": REDIS,
            "BENCH_CELERY_PREFIX": self.prefix,
            "BENCH_CELERY_QUEUE": self.queue,
        }
        self.concurrency = concurrency
        self.process: subprocess.Popen[bytes] | None = None
        self.log = tempfile.TemporaryFile()

    def __enter__(self) -> CeleryWorker:
        celery = os.path.join(os.path.dirname(sys.executable), "celery")
        self.process = subprocess.Popen(
            [
                celery,
                "-A",
                "_celery_app",
                "worker",
                "--pool",
                "prefork",
                "--concurrency",
                str(self.concurrency),
                "--queues",
                self.queue,
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel",
                "WARNING",
            ],
            cwd=HERE,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        os.environ.update({k: self.env[k] for k in self.env if k.startswith("BENCH_CELERY_")})
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)  # warm shutdown
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        asyncio.run(_delete_prefix(self.prefix))
        self.log.close()

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-2000:]


def _celery_app() -> object:
    sys.path.insert(0, str(HERE))
    import _celery_app

    # Configured from the environment the worker was started with (set in __enter__).
    _celery_app.app.conf.broker_transport_options = {
        "global_keyprefix": os.environ["BENCH_CELERY_PREFIX"]
    }
    _celery_app.app.conf.task_default_queue = os.environ["BENCH_CELERY_QUEUE"]
    return _celery_app


async def celery_run(base: str, events: int, worker: CeleryWorker, warm: bool) -> float:
    """Publish one task per event (the envelope as a hand-written producer would build it),
    until the receiver has answered them all."""
    module = _celery_app()
    task = module.deliver  # type: ignore[attr-defined]
    url = f"{base}/celery"

    def publish(count: int, offset: int) -> None:
        for n in range(offset, offset + count):
            event = Event(event_type="prediction", data=_data(n), empathy_level=4)
            body = json.dumps(event.to_envelope(), separators=(",", ":"))
            headers = {
                "Content-Type": "application/json",
                "X-Empathy-Event-Id": event.event_id,
                "X-Empathy-Event-Type": event.event_type,
            }
            task.apply_async((url, body, headers), queue=worker.queue)

    if warm:  # the worker's processes are up and connected before the clock starts
        first = await answered(base)
        publish(4, -4)
        try:
            await _until_answered(base, first + 4, timeout=90)
        except TimeoutError:
            raise RuntimeError(f"the Celery worker delivered nothing:\n{worker.output()}") from None
    first = await answered(base)
    _collected()
    started = time.monotonic()
    # Publishing blocks (kombu is synchronous), as it would in a web handler.
    await asyncio.to_thread(publish, events, 0)
    return events / (await _until_answered(base, first + events) - started)


def _runs(rates: list[float]) -> str:
    return "runs " + ", ".join(f"{rate:,.0f}" for rate in rates)


def _cpu_note(row: str, whose: str = "CPU") -> str:
    """The least CPU per delivery of a row's rounds, in µs (empty when not measured)."""
    runs = CPU.get(row)
    if not runs:
        return ""
    note = f"{whose} {min(own for own, _ in runs) * 1e6:,.0f} µs/delivery"
    produced = [p for _, p in runs if p is not None]
    if produced:
        note += f", producer {min(produced) * 1e6:,.0f} µs"
    server = SERVER_CPU.get(row)
    if server:
        note += f", Redis server {min(server) * 1e6:,.0f} µs"
    return note


def _redis_label(workers: int) -> str:
    return f"Redis store, {workers} worker process{'es' if workers > 1 else ''}"


def _redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def run(
    quick: bool = False,
    events: int | None = None,
    rounds: int | None = None,
    embedded_only: bool = False,
    redis_only: bool = False,
) -> list[Figure]:
    events = events or (600 if quick else 2000)
    # Every row gets the same number of rounds: a row measured fewer times than the one it is
    # compared with would be judged by a worse draw on a noisy machine.
    # Five: rows on a shared 2-core machine vary by 10 to 20% from round to round (a Redis
    # row with 4 worker processes from 6.5k to 8.5k/s in one run); with three, a row's best
    # still moved by about 5% between runs, which is the size of the margins compared.
    rounds = rounds or 5
    out: list[Figure] = []
    results: dict[str, float] = {}
    tmp = tempfile.mkdtemp(prefix="empathy-bench-")
    counter = iter(range(10_000))
    CPU.clear()
    SERVER_CPU.clear()
    heading(
        f"Durable stores: {events:,} events, one webhook with its defaults, {PRODUCERS} "
        f"concurrent producers, best of {rounds} interleaved rounds for every row"
    )

    def row(label: str, value: float | None, kind: str = "store", note: str = "") -> None:
        if value is not None:
            results[label] = value
        emit(
            Figure(
                SECTION,
                label,
                value,
                "deliveries/s",
                note=note,
                extra={"chart": "stores", "kind": kind, "label": label},
            ),
            out,
        )

    def notes(*parts: str) -> str:
        return "; ".join(part for part in parts if part)

    try:
        with ReceiverProcess() as base:
            # An untimed warm-up: the receiver's and this process's first requests are slower.
            asyncio.run(embedded(base, min(events, 300), None, "warm-up"))
            # The embedded rows alone leave the shared Redis (and the machine) to others.
            redis = not embedded_only and _redis_up()
            # Alternated, so drift on the machine hits every row alike; the best of each is kept.
            memory: list[float] = []
            sqlite: list[float] = []
            kept: list[float] = []
            kept_url = (
                None
                if redis_only
                else _with_history(Path(tmp) / "kept.db", KEPT_RECORDS // (10 if quick else 1))
            )
            spread: dict[int, list[float]] = {1: [], 2: [], 4: []}
            emitted: dict[int, list[float]] = {1: [], 2: [], 4: []}
            for _ in range(rounds):
                memory.append(asyncio.run(embedded(base, events, None, "memory")))
                if not redis_only:
                    db = f"sqlite:///{tmp}/o{next(counter)}.db"
                    sqlite.append(asyncio.run(embedded(base, events, db, "sqlite")))
                if kept_url is not None:
                    kept.append(asyncio.run(embedded(base, events, kept_url, "sqlite kept")))
                if not redis:
                    continue
                for workers in spread:
                    EMITTED.clear()
                    spread[workers].append(asyncio.run(redis_workers(base, events, workers)))
                    emitted[workers] += EMITTED
            row(
                "memory store",
                max(memory),
                kind="plain",
                note=notes(_runs(memory), _cpu_note("memory")),
            )
            if sqlite:
                row(
                    "SQLite store (default settings)",
                    max(sqlite),
                    note=notes(_runs(sqlite), _cpu_note("sqlite")),
                )
                records = KEPT_RECORDS // (10 if quick else 1)
                row(
                    f"SQLite store, {records:,} records kept",
                    max(kept),
                    note=notes(
                        _runs(kept),
                        _cpu_note("sqlite kept"),
                        f"{max(kept) / max(sqlite):.2f} x a new file",
                    ),
                )
                ratio = results["SQLite store (default settings)"] / results["memory store"]
                emit(
                    Figure(
                        SECTION,
                        "SQLite / memory",
                        ratio,
                        "x",
                        goal=">= 0.6 x",
                        passed=ratio >= 0.6,
                    ),
                    out,
                )
            if embedded_only:
                return out
            if not redis:
                why = "no Redis server answers on 127.0.0.1:6379"
                row("Redis store, worker processes", None, note=why)
                return out
            for workers, rates in spread.items():
                row(
                    _redis_label(workers),
                    max(rates),
                    note=notes(
                        _runs(rates),
                        f"emitting took {min(emitted[workers]):.2f} s",
                        _cpu_note(f"redis {workers}", "workers' CPU"),
                    ),
                )
            one = results[_redis_label(1)]
            ratio = one / results["memory store"]
            emit(
                Figure(
                    SECTION,
                    "Redis (1 worker process) / memory",
                    ratio,
                    "x",
                    goal=">= 0.5 x",
                    passed=ratio >= 0.5,
                ),
                out,
            )
            series = [results[_redis_label(w)] for w in spread]
            worst = min(b / a for a, b in itertools.pairwise(series))
            emit(
                Figure(
                    SECTION,
                    "Redis: worst step 1 -> 2 -> 4 workers",
                    worst,
                    "x",
                    goal=">= 0.95 x (no fall)",
                    passed=worst >= 0.95,
                    note="throughput with more workers / with fewer",
                ),
                out,
            )
            missing = "not asked for (--redis-only)" if redis_only else _celery_missing()
            if missing:
                row("Celery baseline (prefork, concurrency 2)", None, note=missing)
                return out
            with CeleryWorker() as worker:
                rates = [
                    asyncio.run(celery_run(base, events, worker, warm=n == 0))
                    for n in range(rounds)
                ]
            row(
                "Celery baseline (prefork, concurrency 2)",
                max(rates),
                kind="baseline",
                note=notes(_runs(rates), "requests, retries, acks late"),
            )
            redis_best = max(series)
            ratio = redis_best / max(rates)
            emit(
                Figure(
                    SECTION,
                    "Redis store with workers / Celery",
                    ratio,
                    "x",
                    goal=">= 3 x",
                    passed=ratio >= 3,
                    note="best of the worker-process rows",
                ),
                out,
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, help="default 2,000 (600 with --quick)")
    parser.add_argument(
        "--rounds",
        type=int,
        help="best of this many interleaved rounds for every row (default 5)",
    )
    parser.add_argument("--quick", action="store_true", help="small counts, for development")
    parser.add_argument(
        "--embedded",
        action="store_true",
        help="only the rows that emit and deliver in this process (memory, SQLite)",
    )
    parser.add_argument(
        "--redis-only",
        action="store_true",
        help="only the memory row (for the ratios) and the Redis rows: no SQLite, no Celery",
    )
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        run(args.quick, args.events, args.rounds, args.embedded, args.redis_only)


if __name__ == "__main__":
    main()
