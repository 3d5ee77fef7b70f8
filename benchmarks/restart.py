"""Restarting on a SQLite file with a large backlog: time to the first delivery, extra memory.

    python benchmarks/restart.py --rows 200000

A file is filled with `--rows` pending deliveries (as a process that died with a backlog
leaves it), then a fresh process opens it with a dispatcher and a receiver in its own process.
Measured in that fresh process: seconds from `start()` until the first delivery was answered,
and the resident memory it gained over its own baseline (after imports), at the first
delivery and at its peak over `--watch` seconds of delivering. Goals (issue 20.5): the first
delivery within 1 s, under 50 MB extra. The suite never times anything; this is run by hand,
or by `run.py` (`--json`: the figures as a JSON list on the last line; EMPATHY_BENCH_QUICK=1:
20,000 rows).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import resource
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _receiver import free_port, serve

GOAL_SECONDS = 1.0
GOAL_MB = 50.0


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def _peak_mb() -> float:
    """This process's peak resident memory. `/proc`'s VmHWM, not `ru_maxrss`: that one is
    carried over an exec, so a child started by a parent that had filled a large file
    reported the parent's peak (980 MB for a child that never passed 165)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1e3  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3  # kB on Linux


def fill(db: Path, rows: int, data_bytes: int = 0) -> None:
    """`rows` pending deliveries of a typical event (with a `log` of `data_bytes` characters
    in its data, for a backlog of large events), committed by a process long gone."""
    from empathy_webhooks_core import Event
    from empathy_webhooks_core.stores.sqlite import SQLiteStore

    async def create() -> None:
        store = SQLiteStore(db)
        await store.open()
        await store.close()

    asyncio.run(create())
    now = time.time()
    template = Event(
        event_type="prediction",
        data={
            "prediction": "Auth deployment may conflict with user-service",
            "n": 0,
            **({"log": "x" * data_bytes} if data_bytes else {}),
        },
        event_id="evt_TEMPLATE",
        empathy_level=4,
    ).to_json()
    with sqlite3.connect(db) as conn:
        batch = []
        for n in range(rows):
            event_id = f"evt_bench{n:08x}"
            text = template.replace("evt_TEMPLATE", event_id).replace('"n":0', f'"n":{n}')
            batch.append((f"dlv_bench{n:x}", "bench", event_id, text, 0, now))
            if len(batch) == 10_000:
                conn.executemany(
                    "INSERT INTO deliveries (delivery_id, webhook_name, event_id, event_json,"
                    " attempts, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                    batch,
                )
                batch.clear()
        if batch:
            conn.executemany(
                "INSERT INTO deliveries (delivery_id, webhook_name, event_id, event_json,"
                " attempts, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                batch,
            )


def restart(db: str, base: str, watch: float, results: Any) -> None:
    """The fresh process: open the file and deliver; report what it cost."""
    from empathy_webhooks_core import CustomWebhook, WebhookDispatcher

    async def main() -> None:
        hook = CustomWebhook(name="bench", url=f"{base}/bench", max_concurrency=16)
        dispatcher = WebhookDispatcher(webhooks=[hook], store=f"sqlite:///{db}")
        baseline = _rss_mb()
        started = time.perf_counter()
        await dispatcher.start()
        opened = time.perf_counter() - started
        while dispatcher.get_webhook_stats("bench")["delivered_count"] == 0:
            if time.perf_counter() - started > 60:
                # Never a silent hang: a first delivery that does not come (an event over
                # the webhook's payload cap is dead-lettered, say) ends the run, saying so.
                stats = dispatcher.get_webhook_stats("bench")
                await dispatcher.close(drain=False)
                raise RuntimeError(f"no delivery within 60 s: {stats}")
            await asyncio.sleep(0.0005)
        first = time.perf_counter() - started
        at_first = _rss_mb() - baseline
        peak = 0.0
        deadline = time.perf_counter() + watch
        while time.perf_counter() < deadline:
            peak = max(peak, _rss_mb() - baseline)
            await asyncio.sleep(0.05)
        delivered = dispatcher.get_webhook_stats("bench")["delivered_count"]
        await dispatcher.close(drain=False)
        results.update(
            opened=opened,
            first=first,
            at_first=at_first,
            peak=max(peak, _peak_mb() - baseline),
            delivered=delivered,
            watch=watch,
        )

    asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    quick = os.environ.get("EMPATHY_BENCH_QUICK") == "1"
    parser.add_argument("--rows", type=int, default=20_000 if quick else 200_000)
    parser.add_argument("--watch", type=float, default=2.0 if quick else 5.0)
    parser.add_argument(
        "--data-bytes",
        type=int,
        default=0,
        help="a string of this many characters in each event's data (default: none)",
    )
    parser.add_argument("--json", action="store_true", help="figures as JSON on the last line")
    args = parser.parse_args()

    ctx = multiprocessing.get_context("spawn")
    port = free_port()
    ready = ctx.Event()
    server = ctx.Process(target=serve, args=(port, ready))
    server.start()
    ready.wait(10)
    folder = tempfile.mkdtemp(prefix="empathy-restart-")
    db = Path(folder) / "outbox.db"
    try:
        started = time.perf_counter()
        fill(db, args.rows, args.data_bytes)
        print(
            f"{args.rows} pending rows written in {time.perf_counter() - started:.1f} s "
            f"({db.stat().st_size / 1e6:.0f} MB file); {os.cpu_count()} CPUs, Python "
            f"{sys.version_info.major}.{sys.version_info.minor}",
            flush=True,
        )
        with ctx.Manager() as manager:
            results = manager.dict()
            proc = ctx.Process(
                target=restart, args=(str(db), f"http://127.0.0.1:{port}", args.watch, results)
            )
            proc.start()
            proc.join()
            figures = dict(results)
        if not figures:
            sys.exit("the restarted process failed")
        first, peak = figures["first"], figures["peak"]
        print(f"  start() returned after       {figures['opened']:8.3f} s")
        print(
            f"  first delivery after         {first:8.3f} s   goal < {GOAL_SECONDS:g} s: "
            f"{'pass' if first < GOAL_SECONDS else 'miss'}"
        )
        print(f"  extra RSS at first delivery  {figures['at_first']:8.1f} MB")
        print(
            f"  extra RSS at peak            {peak:8.1f} MB   goal < {GOAL_MB:g} MB: "
            f"{'pass' if peak < GOAL_MB else 'miss'}"
        )
        print(f"  delivered in {figures['watch']:g} s           {figures['delivered']:8d}")
        if args.json:
            rows = f"{args.rows:,} pending rows" + (
                f" of {args.data_bytes / 1000:g} KB events" if args.data_bytes else ""
            )
            print(
                json.dumps(
                    [
                        {
                            "name": f"SQLite restart, {rows}: first delivery",
                            "value": round(first, 3),
                            "unit": "s",
                            "goal": f"< {GOAL_SECONDS:g} s",
                            "passed": first < GOAL_SECONDS,
                        },
                        {
                            "name": f"SQLite restart, {rows}: extra RSS (peak)",
                            "value": round(peak, 1),
                            "unit": "MB",
                            "goal": f"< {GOAL_MB:g} MB",
                            "passed": peak < GOAL_MB,
                        },
                        {
                            "name": f"SQLite restart, {rows}: delivered in {figures['watch']:g} s",
                            "value": figures["delivered"],
                            "unit": "deliveries",
                        },
                    ]
                )
            )
    finally:
        server.terminate()
        server.join(5)
        for name in os.listdir(folder):
            os.unlink(os.path.join(folder, name))
        os.rmdir(folder)


if __name__ == "__main__":
    main()
