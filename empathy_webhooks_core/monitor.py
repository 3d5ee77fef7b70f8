"""Delivery figures per webhook, and `WebhookMonitor`, which reads them."""

from __future__ import annotations

import collections
import itertools
import math
import statistics
import weakref
from bisect import bisect_left
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import attrs

from ._routing import filter_errors

if TYPE_CHECKING:
    from ._pipeline.lane import LaneSnapshot
    from .dispatcher import WebhookDispatcher

__all__ = [
    "DURATION_BUCKETS",
    "STAT_DEFINITIONS",
    "DurationHistogram",
    "StatsRecorder",
    "UnknownWebhookError",
    "WebhookMonitor",
]

#: What each figure counts (also the documentation of `get_webhook_stats`). Every figure is
#: this process's, since its dispatcher started; counts only grow (Prometheus reads them as
#: counters), so nothing once counted is taken back.
STAT_DEFINITIONS = {
    "total_sent": "deliveries that reached a final outcome: delivered_count + failed_count. "
    "A replayed dead letter is a new delivery: an event that failed, was replayed and was "
    "then delivered counts once in failed_count and once in delivered_count",
    "delivered_count": "deliveries the service accepted (2xx, or the plugin's success)",
    "failed_count": "deliveries that finally failed (retries exhausted, a final answer, or a "
    "plugin's error), each once; a 410 disables the webhook and keeps the delivery queued, "
    "so it is not a failure",
    "success_rate": "delivered_count / total_sent, from 0.0 to 1.0; 0.0 before any final "
    "outcome (never NaN: total_sent tells 'none yet' from 'all failed')",
    "attempts": "requests sent, first attempts and retries alike",
    "retries": "attempts after a delivery's first, over all deliveries",
    "avg_response_time_ms": "mean time in milliseconds from request to answer, over the "
    "attempts that got an answer with a known duration (a plugin's answer whose elapsed_ms "
    "is not a finite number from 0 is left out); 0.0 before any",
    "p50_response_time_ms": "median (milliseconds) of the last 2,048 answered attempts; None "
    "before any",
    "p95_response_time_ms": "95th percentile (milliseconds) of the last 2,048 answered "
    "attempts; None before any",
    "p99_response_time_ms": "99th percentile (milliseconds) of the last 2,048 answered "
    "attempts; None before any",
    "queued": "deliveries this process holds waiting now: in the queue, behind their "
    "ordering key, waiting for a retry, or held by a rate limit, an open breaker or a 410 "
    "(a durable store's backlog is read a window at a time: `empathy-webhooks stats` counts "
    "what the store holds); 0 once the dispatcher closed",
    "in_flight": "attempts under way now; 0 once the dispatcher closed",
    "left_at_close": "deliveries still queued or in flight when the dispatcher closed: lost "
    "with the memory store (logged with their event ids as closed_with_pending_deliveries), "
    "kept in a durable store for the next process; 0 while it runs",
    "dead_letters": "final failures this process dead-lettered since it started, less those "
    "it replayed (the store's own list, across processes and restarts: "
    "`dispatcher.dead_letters()`)",
    "last_error": "the reason of the last failed attempt (no secrets), or None",
    "last_error_at": "when that attempt failed (ISO-8601 UTC), or None",
    "last_success_at": "when the last delivery succeeded (ISO-8601 UTC), or None",
    "breaker_state": "closed, open or half_open",
    "details": "how many successes reported each detail key (a plugin's verdict details); "
    "present once one did",
    "last_details": "the details of the latest success that had any (the created Jira key, "
    "the comment id); present once one did",
    "disabled": "True after a 410 Gone, until the webhook is re-enabled",
    "max_pending": "the webhook's max_pending: deliveries it may hold before emit refuses "
    "more for it with QueueFull",
    "refused": "deliveries emit refused with QueueFull because max_pending were pending",
    "paused_seconds": "how much longer the webhook sends nothing because the service said "
    '"not now" (a 429, or a 503 with Retry-After); 0 when it is not paused',
    "callback_errors": "times the webhook's on_failure callback raised (each is logged as "
    "on_failure_callback_failed with the webhook and event id)",
    "filter_errors": "events the webhook's filter failed on (raised, or returned an "
    "awaitable): each skipped this webhook and is logged as filter_failed with the webhook, "
    "event id and exception type; counted on the webhook object since it was made",
    "plugin.<plugin>.<figure>": "a plugin's own figures (its webhook_stats hook), e.g. "
    "plugin.datadog.points_sent; present when a plugin reports them",
}

_SAMPLES = 2048
#: An answer's duration at or past this many milliseconds (11.6 days) is no duration: a
#: plugin's unit mistake, left out of the figures rather than skewing them for good.
_MAX_ELAPSED_MS = 1e9

#: Upper bounds (seconds) of the attempt-duration histogram Prometheus scrapes
#: (`empathy_webhooks_attempt_duration_seconds`); the last bucket, +Inf, is implied.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_BUCKET_BOUNDS_MS = tuple(bound * 1000 for bound in DURATION_BUCKETS)


def _iso(moment: float | None) -> str | None:
    return None if moment is None else datetime.fromtimestamp(moment, UTC).isoformat()


class StatsRecorder:
    """One webhook's figures in one dispatcher. Updated on the delivery path: O(1) per call."""

    def __init__(self) -> None:
        self.delivered = 0
        self.failed = 0
        self.attempts = 0
        self.retries = 0
        self.answered = 0
        self.total_response_ms = 0.0
        self.samples: collections.deque[float] = collections.deque(maxlen=_SAMPLES)
        #: Answered attempts per `DURATION_BUCKETS` bucket (not cumulative), +Inf last.
        self.buckets = [0] * (len(DURATION_BUCKETS) + 1)
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.last_success_at: float | None = None
        self.details: collections.Counter[str] = collections.Counter()
        self.last_details: tuple[float, dict[str, Any]] | None = None
        self.refused = 0
        self.callback_errors = 0

    def attempt(self, retry: bool) -> None:
        self.attempts += 1
        if retry:
            self.retries += 1

    def answer(self, elapsed_ms: float) -> None:
        """An attempt was answered in `elapsed_ms`. Never raises: the duration comes from the
        plugin that delivered (`Response.elapsed_ms`), and an answer of a wrong type failed
        the worker, so a delivery the service had accepted was dead-lettered as failed (and a
        replay sent it twice). A duration that is not a finite number from 0 is left out
        (NaN made every later average NaN, and the figures invalid JSON)."""
        if type(elapsed_ms) is not float or not 0.0 <= elapsed_ms < _MAX_ELAPSED_MS:
            usable = _usable_elapsed(elapsed_ms)
            if usable is None:
                return
            elapsed_ms = usable
        self.answered += 1
        self.total_response_ms += elapsed_ms
        self.samples.append(elapsed_ms)
        self.buckets[bisect_left(_BUCKET_BOUNDS_MS, elapsed_ms)] += 1

    def attempt_failed(self, reason: str, now: float) -> None:
        self.last_error = reason
        self.last_error_at = now

    def success(self, now: float) -> None:
        self.delivered += 1
        self.last_success_at = now

    def failure(self) -> None:
        self.failed += 1


def _usable_elapsed(value: Any) -> float | None:
    """`value` as a duration in milliseconds, or None when it is none (not a real number, a
    flag, NaN, infinite, negative or absurdly large)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except (OverflowError, ValueError):
        return None
    return number if 0.0 <= number < _MAX_ELAPSED_MS else None


def _finite(value: Any) -> Any:
    """A plugin's figure fit for JSON: a float that is NaN or infinite becomes None (the
    gateway's `/v1/webhooks` wrote `NaN`, which no JSON parser reads)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _percentile(ordered: list[float], fraction: float) -> float | None:
    if not ordered:
        return None
    if len(ordered) == 1:
        return round(ordered[0], 2)
    cuts = statistics.quantiles(ordered, n=100, method="inclusive")
    return round(cuts[min(98, max(0, int(fraction * 100) - 1))], 2)


def combine(recorders: list[StatsRecorder], live: dict[str, Any]) -> dict[str, Any]:
    delivered = sum(r.delivered for r in recorders)
    failed = sum(r.failed for r in recorders)
    answered = sum(r.answered for r in recorders)
    total_ms = sum(r.total_response_ms for r in recorders)
    # Copied in one C call each (atomic under the GIL): a scrape thread (prometheus_client's
    # start_http_server) reads while the loop records answers, and iterating the live deque
    # or Counter raised "mutated during iteration", failing the whole scrape.
    samples = sorted(s for r in recorders for s in tuple(r.samples))
    errors = [(r.last_error_at, r.last_error) for r in recorders if r.last_error_at is not None]
    successes = [r.last_success_at for r in recorders if r.last_success_at is not None]
    last_error_at, last_error = max(errors) if errors else (None, None)
    total = delivered + failed
    details: collections.Counter[str] = collections.Counter()
    for r in recorders:
        details.update(dict(r.details))
    latest = [r.last_details for r in recorders if r.last_details is not None]
    return {
        "total_sent": total,
        "delivered_count": delivered,
        "failed_count": failed,
        "success_rate": delivered / total if total else 0.0,
        "attempts": sum(r.attempts for r in recorders),
        "retries": sum(r.retries for r in recorders),
        "avg_response_time_ms": round(total_ms / answered, 2) if answered else 0.0,
        "p50_response_time_ms": _percentile(samples, 0.50),
        "p95_response_time_ms": _percentile(samples, 0.95),
        "p99_response_time_ms": _percentile(samples, 0.99),
        "last_error": last_error,
        "last_error_at": _iso(last_error_at),
        "last_success_at": _iso(max(successes) if successes else None),
        "refused": sum(r.refused for r in recorders),
        "callback_errors": sum(r.callback_errors for r in recorders),
        **({"details": dict(details)} if details else {}),
        **({"last_details": dict(max(latest, key=lambda item: item[0])[1])} if latest else {}),
        **live,
    }


@attrs.frozen
class DurationHistogram:
    """Answered attempts by duration: cumulative counts per upper bound in seconds (the
    last bound is infinity), their sum in seconds and their count."""

    buckets: tuple[tuple[float, int], ...]
    sum_seconds: float
    count: int


def histogram(recorders: list[StatsRecorder]) -> DurationHistogram:
    counts = [sum(column) for column in zip(*(r.buckets for r in recorders), strict=True)]
    cumulative = list(itertools.accumulate(counts)) if counts else [0] * (len(DURATION_BUCKETS) + 1)
    bounds = (*DURATION_BUCKETS, float("inf"))
    return DurationHistogram(
        buckets=tuple(zip(bounds, cumulative, strict=True)),
        sum_seconds=sum(r.total_response_ms for r in recorders) / 1000,
        count=sum(r.answered for r in recorders),
    )


class UnknownWebhookError(KeyError):
    """No webhook by that name; the message lists the known ones. A `KeyError`, so code that
    caught the old error still does, but its text reads as a sentence."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


_dispatchers: weakref.WeakSet[WebhookDispatcher] = weakref.WeakSet()
#: The final figures of webhooks whose dispatcher closed, by name, until a new dispatcher
#: takes the name: `WebhookMonitor()` keeps answering for them after the `async with` ends.
_retired: dict[str, LaneSnapshot] = {}
#: How many deliveries those dispatchers still held when they closed, by name.
_retired_left: dict[str, int] = {}
#: The plugins' final figures of those webhooks (see `WebhookDispatcher.plugin_figures`).
_retired_figures: dict[str, tuple[int, dict[str, Any]]] = {}
#: Their filter errors, with the identity of the webhook object that counted them.
_retired_filter_errors: dict[str, tuple[int, int]] = {}


def track(dispatcher: WebhookDispatcher) -> None:
    _dispatchers.add(dispatcher)


def claim(name: str) -> None:
    """A new dispatcher took `name`: its own figures replace the retired ones."""
    _retired.pop(name, None)
    _retired_left.pop(name, None)
    _retired_figures.pop(name, None)
    _retired_filter_errors.pop(name, None)


def retire(dispatcher: WebhookDispatcher) -> None:
    """Keep a closing dispatcher's final figures, and stop reading it live."""
    for name in dispatcher.webhook_names():
        state = dispatcher.lane_state(name)
        if state is not None:
            _retired[name], _retired_left[name] = _closed_state(state)
        figures = dispatcher.plugin_figures(name)
        if figures is not None:
            _retired_figures[name] = figures
        webhook = dispatcher.webhook(name)
        _retired_filter_errors[name] = (id(webhook), filter_errors(webhook))
    _dispatchers.discard(dispatcher)


def _closed_state(state: LaneSnapshot) -> tuple[LaneSnapshot, int]:
    """A closed dispatcher's figures: nothing waits in it nor is under way any more (what it
    still held was lost, or left in its store), and how many that was."""
    left = max(0, state.queued) + max(0, state.in_flight)
    return attrs.evolve(state, queued=0, in_flight=0), left


def _copied(read: Any, tries: int = 5) -> Any:
    """`read()`, again if a collection it iterates changed meanwhile: a scrape thread
    (prometheus_client's server, the gateway's `/metrics`) reads while the event loop adds
    dispatchers and webhooks ("changed size during iteration" failed the whole scrape)."""
    for _ in range(tries - 1):
        try:
            return read()
        except RuntimeError:
            continue
    return read()


_LIVE_DEFAULTS: dict[str, Any] = {
    "queued": 0,
    "in_flight": 0,
    "left_at_close": 0,
    "dead_letters": 0,
    "breaker_state": "closed",
    "disabled": False,
    "max_pending": 0,
    "paused_seconds": 0.0,
}


class WebhookMonitor:
    """Delivery figures by webhook name.

    With no argument it sees every dispatcher of the process (the reference's
    `WebhookMonitor()`), and the final figures of those that closed, until a new dispatcher
    takes the name; with one, only that dispatcher. See `STAT_DEFINITIONS`.
    """

    def __init__(self, dispatcher: WebhookDispatcher | None = None) -> None:
        self._dispatcher = dispatcher

    def _sources(self) -> list[WebhookDispatcher]:
        if self._dispatcher is not None:
            return [self._dispatcher]
        return _copied(lambda: list(_dispatchers))

    def _states(self, name: str) -> list[tuple[LaneSnapshot, int]]:
        """Each dispatcher's figures for `name`, with how many deliveries it left at close."""
        states = []
        for dispatcher in self._sources():
            state = _copied(lambda d=dispatcher: d.lane_state(name))
            if state is None:
                continue
            if getattr(dispatcher, "closed", False):
                states.append(_closed_state(state))
            else:
                states.append((state, 0))
        if self._dispatcher is None:
            retired = _retired.get(name)
            if retired is not None:
                states.append((retired, _retired_left.get(name, 0)))
        return states

    def webhook_names(self) -> list[str]:
        names: set[str] = set()
        for dispatcher in self._sources():
            names.update(_copied(dispatcher.webhook_names))
        if self._dispatcher is None:
            names.update(_copied(lambda: list(_retired)))
        return sorted(names)

    def get_webhook_stats(self, name: str) -> dict[str, Any]:
        """The figures for webhook `name`, summed over the dispatchers that have it.

        Raises `UnknownWebhookError` (a `KeyError`) listing the known names."""
        states = self._states(name)
        if not states:
            known = ", ".join(self.webhook_names()) or "none"
            raise UnknownWebhookError(f"no webhook named {name!r} (known: {known})")
        live = dict(_LIVE_DEFAULTS)
        for state, left in states:
            # Read from another thread, a lane's pending and in-flight counts may be a step
            # apart: never a negative queue.
            live["queued"] += max(0, state.queued)
            live["in_flight"] += max(0, state.in_flight)
            live["left_at_close"] += left
            live["dead_letters"] += state.dead_letters
            if state.breaker_state != "closed":
                live["breaker_state"] = state.breaker_state
            live["disabled"] = live["disabled"] or state.disabled
            live["max_pending"] = max(live["max_pending"], state.max_pending)
            live["paused_seconds"] = max(live["paused_seconds"], state.paused_seconds)
        return {
            **combine([state.recorder for state, _ in states], live),
            "filter_errors": self._filter_errors(name),
            **self._figures(name),
        }

    def _filter_errors(self, name: str) -> int:
        """Filter errors of the webhook objects named `name`, each counted once (one object
        served by two dispatchers counts every filter call of both, once)."""
        counted: dict[int, int] = {}
        for dispatcher in self._sources():
            try:
                webhook = dispatcher.webhook(name)
            except KeyError:
                continue
            counted[id(webhook)] = filter_errors(webhook)
        if self._dispatcher is None and name in _retired_filter_errors:
            key, count = _retired_filter_errors[name]
            counted.setdefault(key, count)
        return sum(counted.values())

    def _figures(self, name: str) -> dict[str, Any]:
        """The plugins' figures over the dispatchers that have the webhook: numbers summed
        (a state two dispatchers share counted once), a text the latest one."""
        found = {
            state_id: figures
            for dispatcher in self._sources()
            if (pair := dispatcher.plugin_figures(name)) is not None
            for state_id, figures in [pair]
        }
        if self._dispatcher is None and name in _retired_figures:
            state_id, figures = _retired_figures[name]
            found.setdefault(state_id, figures)
        total: dict[str, Any] = {}
        for figures in found.values():
            for key, value in figures.items():
                before = total.get(key)
                numbers = (int, float)
                if isinstance(value, numbers) and isinstance(before, numbers):
                    total[key] = before + value
                elif value is not None or key not in total:
                    total[key] = value
        return {key: _finite(value) for key, value in total.items()}

    def duration_histogram(self, name: str) -> DurationHistogram:
        """Webhook `name`'s answered attempts by duration (what Prometheus scrapes as
        `empathy_webhooks_attempt_duration_seconds`), summed over its dispatchers."""
        return histogram([state.recorder for state, _ in self._states(name)])

    def all_stats(self) -> dict[str, dict[str, Any]]:
        """Every webhook's figures. A webhook that goes between the listing and its reading
        (a new dispatcher taking the name of a closed one, read from a scrape thread) is left
        out of this reading rather than failing it."""
        found = {}
        for name in self.webhook_names():
            try:
                found[name] = self.get_webhook_stats(name)
            except UnknownWebhookError:
                continue
        return found
