"""Throughput and sender CPU per delivery: the pipeline with its defaults against a plain loop.

    python benchmarks/throughput.py            # 3,000 events x 3 webhooks, best of 3 rounds
    python benchmarks/throughput.py --quick    # small counts, for development
    python benchmarks/throughput.py --profile  # one pipeline run under cProfile: the top costs
    python benchmarks/throughput.py --hooks    # only the hook dispatch cost per delivery

What a user gets: `CustomWebhook`s with their defaults (circuit breaker on, `max_concurrency`
10, the in-memory store), unsigned and signed (`signing_secret` set, so both schemes: the
`X-Signature` hex HMAC and Standard Webhooks' `webhook-id/timestamp/signature`). The plain
loop is what a hand-written aiohttp sender would do for the same requests: build the envelope,
`json.dumps` it once per event, compute the same HMACs, POST with the same headers and the same
concurrency (10 per webhook, 100 connections), no retries, limits or bookkeeping.

The pipeline sends through the core's own keep-alive HTTP/1.1 client (`_transport.py`, llhttp
via httptools), which the dispatcher uses for the session it opens; the plain loop stays a
plain aiohttp `ClientSession` loop, the issue's baseline.

Throughput on a 2-core machine is bounded by the receiver (another process) sharing the CPUs,
so it hides the pipeline's own cost; the sending process's CPU time per delivery
(`time.process_time()` around each run) does not. Runs alternate plain / pipeline, unsigned /
signed, for several rounds, so drift on the machine hits all alike; the best of each is kept
(highest throughput, lowest CPU). The suite never times anything; this is run by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import gc
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from _receiver import ReceiverProcess
from _report import Figure, emit, heading

from empathy_webhooks_core import USER_AGENT, CustomWebhook, WebhookDispatcher
from empathy_webhooks_core._version import __version__
from empathy_webhooks_core.events import format_timestamp

SECTION = "throughput"
#: The defaults: one lane's workers, and the dispatcher's connection pool.
CONCURRENCY = CustomWebhook(url="http://127.0.0.1/").max_concurrency
CONNECTIONS = 100


@dataclass
class Run:
    rate: float  # deliveries per second
    cpu_us: float  # sending process CPU time per delivery, µs


def _secrets(count: int) -> list[str]:
    # Made at run time: a benchmark's throwaway keys, one per webhook as users would have.
    return [secrets.token_urlsafe(24) for _ in range(count)]


def _webhooks(base: str, keys: list[str] | None, count: int) -> list[CustomWebhook]:
    # Unsigned means leaving signing_secret out, as a user would (None is refused: it is what
    # an unset environment variable gives).
    if not keys:
        return [CustomWebhook(name=f"hook{n}", url=f"{base}/hook{n}") for n in range(count)]
    return [
        CustomWebhook(name=f"hook{n}", url=f"{base}/hook{n}", signing_secret=(keys[n],))
        for n in range(count)
    ]


def _data(n: int) -> dict[str, object]:
    return {
        "prediction": "Auth deployment may conflict with user-service v2.1",
        "confidence": 0.87,
        "recommendation": "Deploy auth behind feature flag",
        "n": n,
    }


async def pipeline(
    base: str, events: int, webhooks: int, keys: list[str] | None, *, on_aiohttp: bool = False
) -> Run:
    """emit → lanes → HTTP until drained, with every default left as it is. `on_aiohttp`: the
    same, on an aiohttp session given to the dispatcher (as a user who passes `session=` gets),
    so the requests go through aiohttp's client as the plain loop's do."""
    session = None
    if on_aiohttp:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=CONNECTIONS),
            headers={"User-Agent": USER_AGENT},
            cookie_jar=aiohttp.DummyCookieJar(),
        )
    dispatcher = WebhookDispatcher(webhooks=_webhooks(base, keys, webhooks), session=session)
    await dispatcher.start()
    gc.collect()
    cpu, started = time.process_time(), time.perf_counter()
    for n in range(events):
        await dispatcher.emit("prediction", _data(n), user_id="bench", empathy_level=4)
    await dispatcher.drain()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    delivered = sum(
        dispatcher.get_webhook_stats(name)["delivered_count"] for name in dispatcher.webhook_names()
    )
    await dispatcher.close()
    if session is not None:
        await session.close()
    assert delivered == events * webhooks, delivered
    return Run(delivered / elapsed, cpu / delivered * 1e6)


async def plain_loop(base: str, events: int, webhooks: int, keys: list[str] | None) -> Run:
    """The same requests from a hand-written aiohttp loop with the same concurrency."""
    urls = [f"{base}/hook{n}" for n in range(webhooks)]
    x_keys = [k.encode() for k in keys] if keys else []
    done = 0
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with aiohttp.ClientSession(
        connector=connector, headers={"User-Agent": USER_AGENT}
    ) as session:
        queues: list[collections.deque[tuple[str, bytes]]] = [collections.deque() for _ in urls]

        async def worker(index: int) -> None:
            nonlocal done
            url, queue = urls[index], queues[index]
            while queue:
                event_id, body = queue.popleft()
                headers = {
                    "Content-Type": "application/json",
                    "X-Empathy-Event-Id": event_id,
                    "X-Empathy-Event-Type": "prediction",
                }
                if x_keys:
                    key = x_keys[index]
                    stamp = int(time.time())
                    headers["X-Signature"] = hmac.new(key, body, hashlib.sha256).hexdigest()
                    headers["webhook-id"] = event_id
                    headers["webhook-timestamp"] = str(stamp)
                    signed = f"{event_id}.{stamp}.".encode() + body
                    digest = hmac.new(key, signed, hashlib.sha256).digest()
                    headers["webhook-signature"] = "v1," + base64.b64encode(digest).decode()
                async with session.post(url, data=body, headers=headers) as answer:
                    await answer.read()
                    if answer.status == 200:
                        done += 1

        gc.collect()
        cpu, started = time.process_time(), time.perf_counter()
        for n in range(events):
            event_id = "evt_" + secrets.token_urlsafe(16)
            envelope = {
                "event_type": "prediction",
                "event_id": event_id,
                "timestamp": format_timestamp(datetime.now(UTC)),
                "user_id": "bench",
                "empathy_level": 4,
                "data": _data(n),
                "metadata": {"framework_version": __version__},
            }
            body = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()
            for queue in queues:
                queue.append((event_id, body))
        await asyncio.gather(*(worker(i) for i in range(webhooks) for _ in range(CONCURRENCY)))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    assert done == events * webhooks, done
    return Run(done / elapsed, cpu / done * 1e6)


def measure(base: str, events: int, webhooks: int, rounds: int) -> dict[str, list[Run]]:
    """Interleaved rounds of the four modes; every run kept."""
    keys = _secrets(webhooks)
    runs: dict[str, list[Run]] = collections.defaultdict(list)
    for _ in range(rounds):
        runs["plain"].append(asyncio.run(plain_loop(base, events, webhooks, None)))
        runs["pipeline"].append(asyncio.run(pipeline(base, events, webhooks, None)))
        runs["plain signed"].append(asyncio.run(plain_loop(base, events, webhooks, keys)))
        runs["pipeline signed"].append(asyncio.run(pipeline(base, events, webhooks, keys)))
        runs["pipeline on aiohttp"].append(
            asyncio.run(pipeline(base, events, webhooks, None, on_aiohttp=True))
        )
    return runs


class _Answer:
    """A canned HTTP answer that needs no event loop: `send` runs to its end in one step."""

    status = 200
    headers: dict[str, str] = {}

    def __init__(self) -> None:
        self.content = self

    async def read(self, limit: int) -> bytes:
        return b""

    async def __aenter__(self) -> _Answer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class _Session:
    def request(self, *args: object, **kwargs: object) -> _Answer:
        return _Answer()


def _run(awaitable: Any) -> Any:
    """Drive a coroutine that never suspends (the canned session) to its result."""
    try:
        awaitable.send(None)
    except StopIteration as done:
        return done.value
    raise AssertionError("the canned send suspended")


def hook_dispatch(count: int = 20_000, rounds: int = 5) -> tuple[float, float, float]:
    """CPU per delivery of the plugin hooks one delivery calls (format_payload, deliver,
    classify_response), through the core's facade with every installed plugin, and calling
    the custom plugin's and the core HTTP delivery's functions directly: the difference is
    the dispatch. Best of `rounds`; also the Python function calls a delivery makes through
    the facade (cProfile's count: the same on a busy machine)."""
    import cProfile
    import pstats

    from empathy_webhooks_core.default_plugins import custom, http
    from empathy_webhooks_core.events import Event
    from empathy_webhooks_core.plugins import get_plugin_manager, hooks_for
    from empathy_webhooks_core.wire import Response

    hooks = hooks_for(get_plugin_manager())
    webhook = CustomWebhook(name="hook", url="http://127.0.0.1/hook")
    event = Event(event_type="prediction", data=_data(0))
    session: Any = _Session()
    answer = Response(status=200)

    def through_hooks(n: int) -> None:
        for _ in range(n):
            request = hooks.format_payload(webhook, event)
            _run(hooks.deliver(webhook, request, session))
            hooks.classify_response(webhook, request, answer)

    def direct(n: int) -> None:
        for _ in range(n):
            request = custom.format_payload(webhook, event)
            _run(http.deliver(webhook, request, session))
            http.classify_response(webhook, request, answer)

    def best(body: Any) -> float:
        body(200)
        times = []
        for _ in range(rounds):
            cpu = time.process_time()
            body(count)
            times.append((time.process_time() - cpu) / count * 1e6)
        return min(times)

    facade, plain = best(through_hooks), best(direct)
    profiler = cProfile.Profile()
    profiler.enable()
    through_hooks(1000)
    profiler.disable()
    calls = sum(cc for cc, *_ in pstats.Stats(profiler).stats.values())  # type: ignore[attr-defined]
    profiler = cProfile.Profile()
    profiler.enable()
    direct(1000)
    profiler.disable()
    direct_calls = sum(cc for cc, *_ in pstats.Stats(profiler).stats.values())  # type: ignore[attr-defined]
    return facade - plain, facade, (calls - direct_calls) / 1000


def dispatch_figure(out: list[Figure]) -> None:
    cost, facade, calls = hook_dispatch()
    emit(
        Figure(
            SECTION,
            "hook dispatch per delivery (format_payload, deliver, classify_response)",
            cost,
            "µs",
            note=f"{facade:.1f} µs with the hooks' own work; {calls:.0f} extra Python calls",
        ),
        out,
    )


def figures(runs: dict[str, list[Run]], events: int, webhooks: int, rounds: int) -> list[Figure]:
    out: list[Figure] = []
    heading(
        f"Throughput and CPU per delivery: {events:,} events x {webhooks} webhooks, defaults "
        f"(breaker on, max_concurrency {CONCURRENCY}), best of {rounds} interleaved rounds"
    )
    for signed, cpu_goal in ((False, 1.3), (True, 1.5)):
        suffix = " signed" if signed else ""
        label = "signed (both schemes)" if signed else "unsigned"
        plain, pipe = runs["plain" + suffix], runs["pipeline" + suffix]
        best_plain = max(r.rate for r in plain)
        best_pipe = max(r.rate for r in pipe)
        cpu_plain = min(r.cpu_us for r in plain)
        cpu_pipe = min(r.cpu_us for r in pipe)
        spread = lambda xs: f"runs {min(xs):,.0f}–{max(xs):,.0f}"  # noqa: E731
        emit(
            Figure(
                SECTION,
                f"plain aiohttp loop, {label}",
                best_plain,
                "deliveries/s",
                note=spread([r.rate for r in plain]),
                extra={"chart": "throughput", "kind": "plain", "label": f"plain, {label}"},
            ),
            out,
        )
        emit(
            Figure(
                SECTION,
                f"pipeline, {label}",
                best_pipe,
                "deliveries/s",
                note=spread([r.rate for r in pipe]),
                extra={"chart": "throughput", "kind": "pipeline", "label": f"pipeline, {label}"},
            ),
            out,
        )
        ratio = best_pipe / best_plain
        emit(
            Figure(
                SECTION,
                f"throughput pipeline / plain, {label}",
                ratio,
                "x",
                goal=">= 0.9 x",
                passed=ratio >= 0.9,
            ),
            out,
        )
        emit(
            Figure(
                SECTION,
                f"CPU per delivery, plain, {label}",
                cpu_plain,
                "µs",
                extra={"chart": "cpu", "kind": "plain", "label": f"plain, {label}"},
            ),
            out,
        )
        emit(
            Figure(
                SECTION,
                f"CPU per delivery, pipeline, {label}",
                cpu_pipe,
                "µs",
                extra={"chart": "cpu", "kind": "pipeline", "label": f"pipeline, {label}"},
            ),
            out,
        )
        ratio = cpu_pipe / cpu_plain
        emit(
            Figure(
                SECTION,
                f"CPU per delivery pipeline / plain, {label}",
                ratio,
                "x",
                goal=f"<= {cpu_goal} x",
                passed=ratio <= cpu_goal,
            ),
            out,
        )
    # Not a goal: what the pipeline's own work costs over aiohttp's client, for anyone who
    # passes their own session (and to show how much of the figures above is the transport).
    cpu_plain = min(r.cpu_us for r in runs["plain"])
    on_aiohttp = runs["pipeline on aiohttp"]
    cpu_aiohttp = min(r.cpu_us for r in on_aiohttp)
    emit(
        Figure(
            SECTION,
            "CPU per delivery, pipeline on a given aiohttp session, unsigned",
            cpu_aiohttp,
            "µs",
            note=(
                f"{cpu_aiohttp / cpu_plain:.2f} x the plain loop; "
                f"{max(r.rate for r in on_aiohttp):,.0f} deliveries/s at best"
            ),
        ),
        out,
    )
    return out


def _package(path: str) -> str:
    """Which package a profiled function belongs to, for the own-time summary."""
    for name in (
        "empathy_webhooks",
        "aiohttp",
        "pluggy",
        "attrs",
        "structlog",
        "yarl",
        "multidict",
        "asyncio",
        "json",
        "hmac",
        "hashlib",
        "base64",
    ):
        if f"/{name}" in path:
            return "empathy_webhooks (core and plugins)" if name == "empathy_webhooks" else name
    if path.startswith("~") or path.startswith("<"):
        return "built-ins (C: sockets, hashing, ...)"
    return "other standard library"


def profile(base: str, events: int, webhooks: int, signed: bool, top: int = 25) -> None:
    """One pipeline run under cProfile: own time by package, then the costliest functions.

    cProfile counts every resumption of a coroutine as a call, so an `async def` that awaits
    once shows twice its real number of calls."""
    import cProfile
    import pstats

    keys = _secrets(webhooks) if signed else None
    profiler = cProfile.Profile()
    profiler.enable()
    asyncio.run(pipeline(base, events, webhooks, keys))
    profiler.disable()
    stats = pstats.Stats(profiler)
    deliveries = events * webhooks
    by_package: dict[str, float] = collections.defaultdict(float)
    ours = []
    for (path, line, name), (_, _, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        package = _package(path)
        by_package[package] += tottime
        if package.startswith("empathy_webhooks"):
            short = path.split("/empathy_webhooks", 1)[1]
            ours.append((tottime, cumtime, f"empathy_webhooks{short}:{line}({name})"))
    total = sum(by_package.values())
    print(
        f"\n-- pipeline, {events} events x {webhooks} webhooks, signed={signed}: "
        f"{total:.2f} s own time under the profiler, "
        f"{total / deliveries * 1e6:.0f} µs a delivery --"
    )
    for package, seconds in sorted(by_package.items(), key=lambda kv: -kv[1]):
        print(f"  {seconds / total:6.1%}  {seconds / deliveries * 1e6:7.1f} µs/delivery  {package}")
    print("\n-- the core's own functions by own time (µs per delivery; cumulative beside) --")
    for tottime, cumtime, where in sorted(ours, reverse=True)[:top]:
        print(
            f"  {tottime / deliveries * 1e6:7.1f}  (cum {cumtime / deliveries * 1e6:7.1f})  {where}"
        )
    print("\n-- every function by own time --")
    stats.strip_dirs().sort_stats("tottime").print_stats(top)


def run(
    quick: bool = False, events: int | None = None, rounds: int | None = None, webhooks: int = 3
) -> list[Figure]:
    events = events or (600 if quick else 3000)
    rounds = rounds or (2 if quick else 3)
    with ReceiverProcess() as base:
        runs = measure(base, events, webhooks, rounds)
    out = figures(runs, events, webhooks, rounds)
    dispatch_figure(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, help="default 3,000 (600 with --quick)")
    parser.add_argument("--webhooks", type=int, default=3)
    parser.add_argument("--rounds", type=int, help="default 3 (2 with --quick)")
    parser.add_argument("--quick", action="store_true", help="small counts, for development")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile one pipeline run (cProfile) instead of measuring",
    )
    parser.add_argument("--signed", action="store_true", help="with --profile: sign")
    parser.add_argument(
        "--hooks", action="store_true", help="only the hook dispatch cost per delivery"
    )
    args = parser.parse_args()
    if args.hooks:
        dispatch_figure([])
        return
    if args.profile:
        with ReceiverProcess() as base:
            profile(base, args.events or 3000, args.webhooks, args.signed)
        return
    run(args.quick, args.events, args.rounds, args.webhooks)


if __name__ == "__main__":
    main()
