"""The gateway's intake: events accepted per second and the latency of `POST /v1/events`.

    python benchmarks/gateway.py            # 3,000 requests per run, best of 2 rounds
    python benchmarks/gateway.py --quick    # small counts, for development

Two servers, each in its own process, answered by the same client in this process (aiohttp,
`CONCURRENCY` requests in flight, the same JSON event per request):

- **bare**: an aiohttp.web handler that answers 202 with a small JSON body and does nothing
  else (no token, no parsing, no store): the ceiling of HTTP on this machine;
- **gateway**: `empathy-webhooks serve` on a fresh SQLite file, a bearer token checked on each
  request, the body read and checked, the event made durable (committed) before the 202, and
  in-process workers delivering every event meanwhile to a receiver in a third process.

The gateway's note also says how much of the delivery kept up: the share of events
delivered by the time the last one was accepted, and the server's CPU per event once every
event was delivered, and how long after the last 202 that was (the gateway holds deliveries
while a burst of requests lasts, up to a second at a time, so workers that wait move CPU out
of the timed run; these put it back in view).

Rounds alternate bare / gateway so drift on the machine hits both alike; the best of each is
kept. Latency is each request's time from send to answer, p50 and p99 of the best round. On
2 cores the client, the server, the workers and the receiver share the CPUs: the ratio is
what matters. The suite never times anything; this is run by hand or by `run.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from _receiver import ReceiverProcess, free_port
from _report import Figure, emit, heading

SECTION = "gateway"
CONCURRENCY = 32
EVENT = {"event_type": "prediction", "severity": "high", "data": {"prediction": "build fails"}}

BARE = r"""
import sys
from aiohttp import web

async def accept(request):
    return web.json_response({"event_id": "evt_bare", "webhooks": [], "refused": []}, status=202)

app = web.Application()
app.router.add_post("/v1/events", accept)
print("ready", flush=True)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


@dataclass
class Run:
    rate: float  # accepted requests per second
    p50_ms: float
    p99_ms: float
    cpu_us: float = 0.0  # the server process's CPU time per request (its workers' included)
    # Gateway only: the share of the events delivered by the time the last one was accepted,
    # and the server's CPU per event once every one of them was delivered. Workers that fell
    # behind during the timed run leave part of their work (and its CPU) after it: these two
    # say how much, so a faster intake bought by slower delivery shows.
    delivered_share: float = 1.0
    cpu_all_us: float = 0.0
    # Gateway only: seconds from the last 202 until every event was delivered (the gateway
    # holds deliveries while a burst of requests lasts: this is what that costs them).
    catch_up_s: float = 0.0


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (Linux: /proc/PID/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measured(proc: subprocess.Popen[str], url: str, token: str | None, total: int) -> Run:
    before = _cpu_seconds(proc.pid)
    run = asyncio.run(_load(url, token, total))
    run.cpu_us = (_cpu_seconds(proc.pid) - before) / total * 1e6
    run.cpu_all_us = run.cpu_us
    return run


def _delivered(
    receiver: ReceiverProcess,
    proc: subprocess.Popen[str],
    run: Run,
    start: int,
    total: int,
    before: float,
) -> None:
    """Fill in `run`'s delivery figures: the receiver had `start` requests before this server
    started, and gets `total` plus the warm-up's `CONCURRENCY` from it."""
    expected = total + CONCURRENCY
    began = time.monotonic()
    run.delivered_share = min(1.0, max(0, receiver.count() - start - CONCURRENCY) / total)
    deadline = time.monotonic() + 120
    while receiver.count() - start < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    if receiver.count() - start < expected:
        raise RuntimeError(f"the gateway did not deliver its {expected} events within 120 s")
    run.catch_up_s = time.monotonic() - began
    run.cpu_all_us = (_cpu_seconds(proc.pid) - before) / total * 1e6


def _quantile(ordered: list[float], q: float) -> float:
    return statistics.quantiles(ordered, n=100, method="inclusive")[int(q * 100) - 1]


async def _load(url: str, token: str | None, total: int) -> Run:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    latencies: list[float] = []
    left = iter(range(total))
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for _ in left:
                began = time.perf_counter()
                async with session.post(url, json=EVENT, headers=headers) as response:
                    await response.read()
                    assert response.status == 202, response.status
                latencies.append(time.perf_counter() - began)

        # Warm the connections up, outside the timed region.
        warm = [session.post(url, json=EVENT, headers=headers) for _ in range(CONCURRENCY)]
        for answer in await asyncio.gather(*warm):
            answer.release()
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return Run(total / elapsed, _quantile(latencies, 0.5) * 1000, _quantile(latencies, 0.99) * 1000)


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _wait_line(proc: subprocess.Popen[str], pattern: str) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        found = re.search(pattern, line)
        if found:
            return found.group(1) if found.groups() else line
    raise RuntimeError(f"the server did not start (no line matching {pattern!r})")


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()


def bare_run(total: int) -> Run:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", BARE, str(port)], stdout=subprocess.PIPE, text=True
    )
    try:
        _wait_line(proc, r"ready")
        time.sleep(0.3)  # run_app prints nothing once listening; give it the moment it needs
        return _measured(proc, f"http://127.0.0.1:{port}/v1/events", None, total)
    finally:
        _stop(proc)


def gateway_run(total: int, receiver: ReceiverProcess, folder: Path) -> Run:
    token = secrets.token_urlsafe(24)
    db = folder / f"gateway-{secrets.token_hex(4)}.db"
    config = folder / "webhooks.toml"
    config.write_text(
        f'store = "sqlite:///{db}"\n'
        "[serve]\nshutdown_grace_seconds = 30\n"
        f'[[serve.tokens]]\nname = "bench"\nsha256 = "{_sha256(token)}"\n'
        'scopes = ["events:write"]\n'
        f'[[webhooks]]\ntype = "custom"\nname = "hook"\nurl = "{receiver.base}/hook"\n'
        "max_pending = 1000000\n"
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from empathy_webhooks_core.cli import main; main()",
            "serve",
            "--config",
            str(config),
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    start = receiver.count()
    try:
        url = _wait_line(proc, r"listening on (http://\S+) ")
        before = _cpu_seconds(proc.pid)
        run = _measured(proc, f"{url}/v1/events", token, total)
        _delivered(receiver, proc, run, start, total, before)
        return run
    finally:
        _stop(proc)


def run(quick: bool = False, total: int | None = None, rounds: int | None = None) -> list[Figure]:
    total = total or (800 if quick else 3000)
    rounds = rounds or (1 if quick else 2)
    heading(
        f"Gateway intake: POST /v1/events, {total:,} requests, {CONCURRENCY} in flight, "
        f"SQLite store, workers delivering; best of {rounds} rounds against a bare handler"
    )
    bare: list[Run] = []
    gateway: list[Run] = []
    receiver = ReceiverProcess()
    with receiver, tempfile.TemporaryDirectory() as folder:
        for _ in range(rounds):
            bare.append(bare_run(total))
            gateway.append(gateway_run(total, receiver, Path(folder)))
    best_bare = max(bare, key=lambda r: r.rate)
    best = max(gateway, key=lambda r: r.rate)
    ratio = best.rate / best_bare.rate
    out: list[Figure] = []
    emit(
        Figure(
            SECTION,
            "bare aiohttp handler (202, no work)",
            best_bare.rate,
            "requests/s",
            note=f"p50 {best_bare.p50_ms:.1f} ms, p99 {best_bare.p99_ms:.1f} ms, "
            f"server CPU {best_bare.cpu_us:.0f} µs/request",
        ),
        out,
    )
    emit(
        Figure(
            SECTION,
            "gateway: events accepted (SQLite, workers on)",
            best.rate,
            "events/s",
            note=f"p50 {best.p50_ms:.1f} ms, p99 {best.p99_ms:.1f} ms, "
            f"server CPU {best.cpu_us:.0f} µs/event, delivery included; "
            f"{best.delivered_share:.0%} delivered by the last 202, "
            f"{best.cpu_all_us:.0f} µs/event once all were ({best.catch_up_s:.1f} s after it)",
        ),
        out,
    )
    emit(
        Figure(SECTION, "gateway / bare handler", ratio, "x", goal=">= 0.5 x", passed=ratio >= 0.5),
        out,
    )
    emit(Figure(SECTION, "gateway POST /v1/events p50", best.p50_ms, "ms"), out)
    emit(Figure(SECTION, "gateway POST /v1/events p99", best.p99_ms, "ms"), out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--requests", type=int)
    parser.add_argument("--rounds", type=int)
    args = parser.parse_args()
    run(args.quick, args.requests, args.rounds)


if __name__ == "__main__":
    main()
