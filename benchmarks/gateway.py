"""The gateway's intake: events accepted per second and the latency of `POST /v1/events`.

    python benchmarks/gateway.py            # 3,000 requests per run, best of 2 rounds
    python benchmarks/gateway.py --quick    # small counts, for development
    python benchmarks/gateway.py --instructions   # instructions per request (callgrind)

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

`--instructions` counts instead of timing, for comparing two versions on a shared machine
where the clock is noise: each server runs under valgrind's callgrind with its counting off
until it listens and has answered a warm-up, then the user-space instructions it executes
(every thread) for the measured requests are divided by their number. The gateway is counted
twice: queueing only (`--no-workers`: the intake alone) and with its workers, counted until
every event is delivered (intake and delivery). The kernel's work (sockets, waking threads)
is not in these counts; the CPU figures above include it. Needs valgrind; not run by `run.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import re
import secrets
import signal
import socket
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


def _wait_line(proc: subprocess.Popen[str], pattern: str, timeout: float = 60) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        found = re.search(pattern, line)
        if found:
            return found.group(1) if found.groups() else line
    raise RuntimeError(f"the server did not start (no line matching {pattern!r})")


def _stop(proc: subprocess.Popen[str], timeout: float = 60) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
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


def _gateway_config(receiver: ReceiverProcess, folder: Path, token: str) -> Path:
    """A configuration for `serve`: a fresh SQLite file, `token`, one webhook to `receiver`."""
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
    return config


def _serve_argv(config: Path) -> list[str]:
    """`empathy-webhooks serve` on `config`, on a free port (it prints the one it got)."""
    return [
        sys.executable,
        "-c",
        "from empathy_webhooks_core.cli import main; main()",
        "serve",
        "--config",
        str(config),
        "--port",
        "0",
    ]


def gateway_run(total: int, receiver: ReceiverProcess, folder: Path) -> Run:
    token = secrets.token_urlsafe(24)
    config = _gateway_config(receiver, folder, token)
    proc = subprocess.Popen(
        _serve_argv(config),
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


def _callgrind(argv: list[str], folder: Path, name: str) -> tuple[list[str], Path]:
    """`argv` run under callgrind, counting nothing until `callgrind_control -i on`."""
    out = folder / f"callgrind.{name}"
    command = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
    return command + argv, out


def _counted(out: Path) -> int:
    """The instructions a callgrind run counted: its `totals:` line (its `summary:` line
    says 0 when counting started switched off)."""
    found = re.findall(r"^totals: (\d+)", out.read_text(), re.MULTILINE)
    if not found:
        raise RuntimeError(f"no totals in {out}")
    return sum(int(count) for count in found)


def _count_requests(
    argv: list[str],
    folder: Path,
    name: str,
    total: int,
    token: str | None = None,
    delivered_to: ReceiverProcess | None = None,
) -> float:
    """Instructions per request of the server `argv` starts (it prints `listening on URL `);
    with `delivered_to`, counted until that receiver has every event (the warm-up's are
    delivered before counting starts)."""
    command, out = _callgrind(argv, folder, name)
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        url = _wait_line(proc, r"listening on (http://\S+) ", timeout=600)
        _wait_listening(url)
        start = delivered_to.count() if delivered_to is not None else 0
        warm_up = CONCURRENCY * 2
        asyncio.run(_load(f"{url}/v1/events", token, warm_up))  # (and its own warm-up)
        if delivered_to is not None:
            _wait_count(delivered_to, start + warm_up + CONCURRENCY)
        _callgrind_control(proc, "on")
        asyncio.run(_load(f"{url}/v1/events", token, total))
        if delivered_to is not None:
            _wait_count(delivered_to, start + warm_up + total + 2 * CONCURRENCY)
        _callgrind_control(proc, "off")
    finally:
        _stop(proc, timeout=600)
    return _counted(out) / (total + CONCURRENCY)  # `_load` warms CONCURRENCY up first


def _wait_listening(url: str) -> None:
    """Until `url`'s port takes connections (run_app says nothing once it listens)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    deadline = time.monotonic() + 600
    while True:
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _callgrind_control(proc: subprocess.Popen[str], instrumentation: str) -> None:
    subprocess.run(
        ["callgrind_control", "-i", instrumentation, str(proc.pid)], check=True, capture_output=True
    )


def _wait_count(receiver: ReceiverProcess, expected: int) -> None:
    deadline = time.monotonic() + 600
    while receiver.count() < expected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the receiver did not get {expected} requests within 600 s")
        time.sleep(0.1)


def instructions(total: int | None = None) -> list[Figure]:
    total = total or 1000
    heading(
        f"Gateway intake, instructions per request (callgrind): POST /v1/events, {total:,} "
        f"requests, {CONCURRENCY} in flight, after a warm-up"
    )
    out: list[Figure] = []
    receiver = ReceiverProcess()
    with receiver, tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        port = free_port()
        bare_script = BARE.replace(
            'print("ready", flush=True)',
            'print(f"listening on http://127.0.0.1:{sys.argv[1]} ", flush=True)',
        )
        bare = _count_requests(
            [sys.executable, "-c", bare_script, str(port)], folder, "bare", total
        )
        intake = _count_gateway(receiver, folder, total, workers=False)
        both = _count_gateway(receiver, folder, total, workers=True)
    emit(Figure(SECTION, "bare aiohttp handler", bare / 1000, "k instructions/request"), out)
    emit(
        Figure(
            SECTION, "gateway, queueing only (--no-workers)", intake / 1000, "k instructions/event"
        ),
        out,
    )
    emit(
        Figure(
            SECTION, "gateway with workers, until delivered", both / 1000, "k instructions/event"
        ),
        out,
    )
    emit(Figure(SECTION, "gateway queueing only / bare handler", intake / bare, "x"), out)
    return out


def _count_gateway(receiver: ReceiverProcess, folder: Path, total: int, *, workers: bool) -> float:
    token = secrets.token_urlsafe(24)
    config = _gateway_config(receiver, folder, token)
    argv = _serve_argv(config)
    if not workers:
        return _count_requests([*argv, "--no-workers"], folder, "intake", total, token)
    return _count_requests(argv, folder, "workers", total, token, receiver)


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
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions (callgrind), not time"
    )
    args = parser.parse_args()
    if args.instructions:
        instructions(args.requests)
    else:
        run(args.quick, args.requests, args.rounds)


if __name__ == "__main__":
    main()
