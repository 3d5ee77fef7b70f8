"""What queueing costs: emit latency under a backlog, memory per queued delivery, many webhooks.

    python benchmarks/queued.py           # the issue's counts
    python benchmarks/queued.py --quick   # smaller backlogs, for development

* `emit()` p99 with 100,000 deliveries already queued (goal < 50 µs). The webhook's endpoint
  never answers (the receiver's `/stall/` paths), so with the default settings its workers
  stay busy and everything emitted stays queued: emit alone is measured.
* Memory per queued delivery beyond the event itself, one event fanned out to 10 webhooks
  (goal <= 600 bytes): tracemalloc's traced memory around the emits, minus the same events
  built on their own, divided by the deliveries.
* 1,000 configured webhooks with no traffic: memory (tracemalloc, the webhook objects
  included, goal < 30 MB; the RSS growth is shown beside it) and the dispatcher's start time
  (construction, `start()` and the first turn of the loop, goal < 1 s).
* One event fanned out to 200 webhooks: how long `emit` takes to queue it (the median of
  several emits, each on idle lanes; goal < 5 ms).

The suite never times anything; this is run by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
import tracemalloc
from pathlib import Path

from _receiver import ReceiverProcess
from _report import Figure, emit, heading

from empathy_webhooks_core import CustomWebhook, Event, WebhookDispatcher

SECTION = "queueing"


def _data(n: int) -> dict[str, object]:
    return {
        "prediction": "Auth deployment may conflict with user-service v2.1",
        "confidence": 0.87,
        "recommendation": "Deploy auth behind feature flag",
        "n": n,
    }


def _rss() -> int:
    """This process's resident memory now, in bytes (Linux; 0 elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    import resource

    return pages * resource.getpagesize()


async def _stalled(base: str, count: int, holds: int | None = None) -> WebhookDispatcher:
    """A started dispatcher whose `count` webhooks never get an answer, its workers all busy.

    `holds`: the deliveries each webhook must hold at once (its `max_pending`, when more than
    the default): `max_pending` counts every delivery a webhook holds, the ones its stalled
    workers have in flight included, so a user who means to keep N queued configures it so."""
    options = {} if holds is None else {"max_pending": holds}
    hooks = [
        CustomWebhook(name=f"stall{n}", url=f"{base}/stall/{n}", **options) for n in range(count)
    ]
    dispatcher = WebhookDispatcher(webhooks=hooks)
    await dispatcher.start()
    workers = hooks[0].max_concurrency
    for n in range(workers):  # one per worker: every worker is now waiting on an answer
        await dispatcher.emit("prediction", _data(-n))
    await asyncio.sleep(0.5)
    return dispatcher


async def emit_latency(
    base: str, queued: int, samples: int
) -> tuple[float, float, float, float, float]:
    """Median, p99 and max of one `emit` (µs), with `queued` deliveries already waiting; the
    p99 again with the backlog moved out of the garbage collector's sight (`gc.freeze()`),
    which tells how much of the tail is the collector walking the backlog; and the p99 of the
    CPU time an emit took (`time.thread_time_ns`), which a machine busy with other work does
    not inflate: a wall-clock tail far above it is the scheduler, not the code."""
    # Held at once: the stalled workers' deliveries, the backlog, and both sample runs (the
    # default max_pending, 100,000, is exactly the backlog: the samples would be refused).
    workers = CustomWebhook(url=base).max_concurrency
    dispatcher = await _stalled(base, 1, holds=workers + queued + 2 * samples)
    for n in range(queued):
        await dispatcher.emit("prediction", _data(n), user_id="bench", empathy_level=4)

    cpu: list[float] = []

    async def sample() -> list[float]:
        times = []
        for n in range(samples):
            started, on_cpu = time.perf_counter_ns(), time.thread_time_ns()
            await dispatcher.emit("prediction", _data(n), user_id="bench", empathy_level=4)
            times.append((time.perf_counter_ns() - started) / 1000)
            cpu.append((time.thread_time_ns() - on_cpu) / 1000)
        return sorted(times)

    def p99(times: list[float]) -> float:
        return times[min(len(times) - 1, int(len(times) * 0.99))]

    times = await sample()
    cpu_p99 = p99(sorted(cpu))
    gc.collect()
    gc.freeze()
    try:
        frozen = await sample()
    finally:
        gc.unfreeze()
    await dispatcher.close(drain=False)
    return statistics.median(times), p99(times), times[-1], p99(frozen), cpu_p99


async def memory_per_delivery(base: str, events: int, fanout: int) -> tuple[float, float]:
    """(bytes per queued delivery beyond the event, bytes per event) for `events` events
    each fanned out to `fanout` webhooks."""
    # The event on its own: built exactly as emit builds it, kept alive in a list.
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = [
        Event(event_type="prediction", data=_data(n), user_id="bench", empathy_level=4)
        for n in range(events)
    ]
    gc.collect()
    per_event = (tracemalloc.get_traced_memory()[0] - before) / events
    tracemalloc.stop()
    del kept

    dispatcher = await _stalled(base, fanout)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for n in range(events):
        await dispatcher.emit("prediction", _data(n), user_id="bench", empathy_level=4)
    await asyncio.sleep(0)
    gc.collect()
    total = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    await dispatcher.close(drain=False)
    deliveries = events * fanout
    return (total - per_event * events) / deliveries, per_event


async def many_webhooks(base: str, count: int) -> tuple[float, float, float]:
    """(start seconds, traced MB, RSS growth MB) of a dispatcher with `count` idle webhooks."""
    hooks = [CustomWebhook(name=f"idle{n}", url=f"{base}/idle/{n}") for n in range(count)]
    gc.collect()
    started = time.perf_counter()
    dispatcher = WebhookDispatcher(webhooks=hooks)
    await dispatcher.start()
    await asyncio.sleep(0)  # the workers it created run up to their first wait
    seconds = time.perf_counter() - started
    await dispatcher.close()

    del hooks, dispatcher
    gc.collect()
    rss = _rss()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    # The webhooks' own objects count: what 1,000 configured webhooks cost in all.
    hooks = [CustomWebhook(name=f"idle{n}", url=f"{base}/idle/{n}") for n in range(count)]
    dispatcher = WebhookDispatcher(webhooks=hooks)
    await dispatcher.start()
    await asyncio.sleep(0.2)
    gc.collect()
    traced = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    grown = _rss() - rss
    await dispatcher.close()
    return seconds, traced / 1e6, grown / 1e6


async def fanout_emit(base: str, count: int, samples: int) -> tuple[float, float]:
    """Median and max time (ms) for `emit` to queue one event for `count` webhooks."""
    hooks = [CustomWebhook(name=f"fan{n}", url=f"{base}/fan/{n}") for n in range(count)]
    async with WebhookDispatcher(webhooks=hooks) as dispatcher:
        await dispatcher.emit("prediction", _data(-1))  # warm: connections, lazily built parts
        await dispatcher.drain()
        times = []
        for n in range(samples):
            gc.collect()
            started = time.perf_counter()
            await dispatcher.emit("prediction", _data(n), user_id="bench", empathy_level=4)
            times.append((time.perf_counter() - started) * 1000)
            await dispatcher.drain()
    return statistics.median(times), max(times)


def run(quick: bool = False) -> list[Figure]:
    out: list[Figure] = []
    queued = 20_000 if quick else 100_000
    with ReceiverProcess() as base:
        heading("Queueing: emit latency, memory per queued delivery, many webhooks (defaults)")
        median, p99, worst, frozen, cpu_p99 = asyncio.run(emit_latency(base, queued, 2_000))
        emit(
            Figure(
                SECTION,
                f"emit() p99 with {queued:,} queued",
                p99,
                "µs",
                goal="< 50 µs",
                passed=p99 < 50,
                note=f"median {median:.1f} µs, max {worst:,.0f} µs; "
                f"p99 {frozen:.1f} µs with the backlog gc.freeze()d, "
                f"p99 of CPU time {cpu_p99:.1f} µs",
            ),
            out,
        )
        events = 500 if quick else 2_000
        per, event_size = asyncio.run(memory_per_delivery(base, events, 10))
        emit(
            Figure(
                SECTION,
                "memory per queued delivery, 1 event x 10 webhooks",
                per,
                "bytes",
                goal="<= 600 bytes",
                passed=per <= 600,
                note=f"beyond the event's own {event_size:,.0f} bytes",
            ),
            out,
        )
        count = 1_000
        seconds, traced, grown = asyncio.run(many_webhooks(base, count))
        emit(
            Figure(
                SECTION,
                f"{count:,} idle webhooks: memory",
                traced,
                "MB",
                goal="< 30 MB",
                passed=traced < 30,
                note=f"tracemalloc; RSS grew {grown:.1f} MB",
            ),
            out,
        )
        emit(
            Figure(
                SECTION,
                f"{count:,} idle webhooks: dispatcher start",
                seconds,
                "s",
                goal="< 1 s",
                passed=seconds < 1,
            ),
            out,
        )
        median, worst = asyncio.run(fanout_emit(base, 200, 10 if quick else 30))
        emit(
            Figure(
                SECTION,
                "emit() of 1 event to 200 webhooks (median)",
                median,
                "ms",
                goal="< 5 ms",
                passed=median < 5,
                note=f"max {worst:.1f} ms",
            ),
            out,
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller backlogs")
    run(parser.parse_args().quick)


if __name__ == "__main__":
    main()
