"""The plugin's per-webhook state (`DatadogState`, kept by the core: the `webhook_state` hook):
`send_metric`'s buffer, sent in batches to `/api/v2/series`, the events whose metrics are still
owed, and the figures `webhook_stats` reports.

Points arrive synchronously from any thread; the state wakes the dispatcher's loop to send
them, either when a batch is full or after `metrics_flush_interval` seconds (on the dispatcher's
clock), and always on `drain()` and close (the core's `flush` hook). A failed batch is retried
under the webhook's retry policy, then counted as dropped and logged; never dropped silently.

Datadog drops, silently, metric points more than an hour old (or ten minutes ahead) and events
more than 18 hours old (it answers 202 all the same). A point or event that old when it is sent
(a batch held by an outage, a retried or replayed delivery) goes out stamped now, its original
time kept (a tag `original_timestamp:<ISO time>`; for an event also a line in its text), and is
counted as late (a point too far ahead: as early).

A point is never lost without a word outside a dispatcher's life either. Points given before any
dispatcher serves the webhook wait for the first one; a point given once the dispatcher serving
the webhook has closed is refused (`RuntimeError`, and an error log): its state is done, and
nothing would ever send a point buffered there. Points still waiting when the interpreter exits
(no dispatcher ever started with the webhook, or one was left unclosed) are logged as an error
with their count.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import math
import re
import threading
import time
from collections.abc import Generator, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn

from empathy_webhooks_core.plugin import (
    TRANSPORT_ERRORS,
    BlockedAddressError,
    Count,
    Outcome,
    OutgoingRequest,
    get_logger,
    json_bytes,
    redact_text,
)

if TYPE_CHECKING:
    from empathy_webhooks_core.plugin import StateContext

    from . import DatadogWebhook

__all__ = [
    "EVENT_MAX_AGE",
    "LATE_MARGIN",
    "MAX_PAYLOAD_BYTES",
    "METRIC_MAX_AGE",
    "METRIC_MAX_AHEAD",
    "METRIC_TYPES",
    "DatadogState",
    "Point",
    "batches",
    "original_tag",
]

#: Datadog's limit for one v2 series payload (uncompressed, we do not compress).
MAX_PAYLOAD_BYTES = 512_000
METRIC_TYPES = {"unspecified": 0, "count": 1, "rate": 2, "gauge": 3}
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.]{0,199}$")
#: Event ids whose Datadog event was accepted while their metrics were not yet: a retry then
#: sends only the metrics, so the event is not posted twice.
_POSTED_MEMORY = 10_000
#: Datadog's v2 series takes points "not more than 10 minutes in the future or more than 1
#: hour in the past"; older ones are accepted (202) and dropped.
METRIC_MAX_AGE = 3600
#: ... and dropped as well when more than 10 minutes ahead of Datadog's clock.
METRIC_MAX_AHEAD = 600
#: Datadog's v1 events: `date_happened` "limited to events no older than 18 hours".
EVENT_MAX_AGE = 18 * 3600
#: Re-stamped a little before the limit: the request still has to reach Datadog.
LATE_MARGIN = 300

log = get_logger()

#: States holding points no dispatcher has taken yet, held strongly so a point whose webhook is
#: gone can still be reported at exit; each leaves the set when its buffer is emptied.
_unsent: set[DatadogState] = set()
_exit_lock = threading.Lock()
_exit_registered = False


def _watch_exit() -> None:
    global _exit_registered
    with _exit_lock:
        if not _exit_registered:
            atexit.register(report_unsent)
            _exit_registered = True


def report_unsent() -> None:
    """Log, as an error with their count, the points no dispatcher sent (run at exit)."""
    for state in list(_unsent):
        state.report_unsent()


# (metric, type, tags, interval, host), timestamp, value
SeriesKey = tuple[str, int, tuple[str, ...], int | None, str | None]
Point = tuple[SeriesKey, int, float]


def original_tag(timestamp: float) -> str:
    """`original_timestamp:2023-11-14T22:13:20Z`: the time a late point or event really had;
    the number itself for one no date can show (milliseconds given as seconds: the year
    58000), which used to fail the whole flush and lose every point buffered with it."""
    try:
        moment = datetime.fromtimestamp(int(timestamp), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError, OSError):
        moment = str(int(timestamp))
    return f"original_timestamp:{moment}"


def is_late(timestamp: float, now: float, max_age: float) -> bool:
    return now - timestamp > max_age - LATE_MARGIN


def is_early(timestamp: float, now: float) -> bool:
    """A metric point too far in the future for Datadog (a clock ahead, a wrong unit)."""
    return timestamp - now > METRIC_MAX_AHEAD - LATE_MARGIN


def restamp(points: list[Point], now: float) -> tuple[list[Point], list[Point], list[Point]]:
    """The points Datadog takes as they are; those too old for it; those too far ahead. The
    last two stamped `now`, their time kept in a tag (the last of at most 100, Datadog's
    limit)."""
    on_time: list[Point] = []
    late: list[Point] = []
    early: list[Point] = []
    for key, timestamp, value in points:
        if is_late(timestamp, now, METRIC_MAX_AGE):
            group = late
        elif is_early(timestamp, now):
            group = early
        else:
            on_time.append((key, timestamp, value))
            continue
        metric, kind, tags, interval, host = key
        tagged = (*tags[:99], original_tag(timestamp))
        group.append(((metric, kind, tagged, interval, host), int(now), value))
    return on_time, late, early


class Queued:
    """What `send_metric` returns: nothing to wait for, but `await` on it is harmless, so code
    written either way works."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield

    def __repr__(self) -> str:
        return "<metric point queued>"


def make_point(
    metric: str,
    value: Any,
    tags: Iterable[str] | str | None,
    timestamp: float | None,
    metric_type: str | int,
    interval: int | None,
    host: str | None,
    now: float,
) -> Point:
    """Validate one `send_metric` call: errors are raised to the caller, not found later."""
    if not isinstance(metric, str) or not _NAME.match(metric):
        raise ValueError(
            f"metric must start with a letter and hold only ASCII letters, digits, '_' and '.' "
            f"(at most 200 characters), got {metric!r}"
        )
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"value must be a finite number, got {value!r}")
    if isinstance(metric_type, str):
        if metric_type.lower() not in METRIC_TYPES:
            raise ValueError(f"metric_type must be one of {', '.join(METRIC_TYPES)}")
        kind = METRIC_TYPES[metric_type.lower()]
    elif metric_type in METRIC_TYPES.values() and not isinstance(metric_type, bool):
        kind = metric_type
    else:
        raise ValueError(f"metric_type must be one of {', '.join(METRIC_TYPES)}")
    if isinstance(tags, str):
        tags = [tags]
    from .format import clean_tags

    clean = tuple(clean_tags(tags or ()))
    if timestamp is None:
        timestamp = now
    if isinstance(timestamp, bool) or not isinstance(timestamp, int | float):
        raise ValueError(f"timestamp must be POSIX seconds, got {timestamp!r}")
    if not math.isfinite(timestamp):
        # int() would raise OverflowError (infinity) or a message naming no argument (NaN).
        raise ValueError(f"timestamp must be POSIX seconds, got {timestamp!r}")
    if interval is not None and (isinstance(interval, bool) or not isinstance(interval, int)):
        raise ValueError(f"interval must be whole seconds, got {interval!r}")
    return (metric, kind, clean, interval, host), int(timestamp), float(value)


def _entry(key: SeriesKey, points: list[dict[str, Any]]) -> dict[str, Any]:
    metric, kind, tags, interval, host = key
    entry: dict[str, Any] = {"metric": metric, "type": kind, "points": points, "tags": list(tags)}
    if interval is not None:
        entry["interval"] = interval
    if host:
        entry["resources"] = [{"name": host, "type": "host"}]
    return entry


def batches(
    points: Iterable[Point], limit: int = MAX_PAYLOAD_BYTES, max_points: int | None = None
) -> list[dict[str, Any]]:
    """Series payloads of at most `limit` bytes (and `max_points` points) each, holding every
    point once; points of one series (same metric, type, tags) share an entry, in arrival
    order."""
    groups: dict[SeriesKey, list[dict[str, Any]]] = collections.defaultdict(list)
    for key, timestamp, value in points:
        groups[key].append({"timestamp": timestamp, "value": value})
    empty = len(json_bytes({"series": []}))
    payloads: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    size = empty
    count = 0
    for key, group in groups.items():
        head = len(json_bytes(_entry(key, []))) + 1  # the comma before it
        chunk: list[dict[str, Any]] = []
        chunk_size = head
        for point in group:
            point_size = len(json_bytes(point)) + 1
            full = max_points is not None and count >= max_points
            if (full or size + chunk_size + point_size > limit) and (chunk or current):
                if chunk:
                    current.append(_entry(key, chunk))
                payloads.append(current)
                current, size, chunk, chunk_size, count = [], empty, [], head, 0
            chunk.append(point)
            chunk_size += point_size
            count += 1
        current.append(_entry(key, chunk))
        size += chunk_size
    if current:
        payloads.append(current)
    return [{"series": series} for series in payloads]


class DatadogState:
    """One webhook's pending points, the events whose metrics are still owed, and its
    figures. Made by the `webhook_state` hook; the core starts it with a `StateContext` when a
    dispatcher serves the webhook (the sender and clock it sends with) and closes it after."""

    def __init__(self, webhook: DatadogWebhook) -> None:
        self._webhook = webhook
        self._lock = threading.Lock()
        self._points: list[Point] = []
        self._urgent_requested = False
        self._context: StateContext | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.Task[None] | None = None
        self._flushes: set[asyncio.Task[None]] = set()
        self._posted: collections.OrderedDict[str, None] = collections.OrderedDict()
        #: Set once no dispatcher serves the webhook any more: a later point is refused, as the
        #: next dispatcher makes a state of its own and nothing would send this one's.
        self._closed = False
        self.points_sent = 0
        self.points_dropped = 0
        self.points_late = 0
        self.points_early = 0
        self.events_late = 0
        self.batches_sent = 0
        self.batches_failed = 0
        #: 2xx answers (events, their gauges, batches) that listed errors: accepted, not all
        #: of it kept by Datadog.
        self.accepted_with_errors = 0
        self.last_error: str | None = None

    # -- from any thread -------------------------------------------------------------------

    def now(self) -> float:
        context = self._context
        return context.clock.time() if context is not None else time.time()

    def add(self, point: Point) -> None:
        """Buffer `point`. Raises `RuntimeError` (and logs it) once the state is closed."""
        webhook = self._webhook
        with self._lock:
            closed = self._closed
            if not closed:
                self._points.append(point)
                _unsent.add(self)
                overflow = len(self._points) - webhook.metrics_max_buffer
                if overflow > 0:
                    # No dispatcher is sending (none started, or Datadog down for long): keep
                    # the newest points and count the rest, rather than grow without bound.
                    del self._points[:overflow]
                    self.points_dropped += overflow
                    self.last_error = "buffer full: oldest points dropped"
                count = len(self._points)
                urgent = count >= webhook.metrics_batch_size and not self._urgent_requested
                wake = count == 1 or urgent
                if urgent:
                    self._urgent_requested = True
        if closed:
            self._refuse(point)
        if not _exit_registered:  # a lock per point only until the hook is registered
            _watch_exit()
        if wake:
            self._wake(urgent)

    def _refuse(self, point: Point) -> NoReturn:
        reason = (
            "the dispatcher serving this webhook has closed; start a dispatcher with the "
            "webhook before sending metrics"
        )
        log.error(
            "datadog_metric_refused",
            webhook=self._webhook.name,
            metric=point[0][0],
            reason=reason,
        )
        raise RuntimeError(f"metric point not queued for webhook {self._webhook.name!r}: {reason}")

    def _wake(self, urgent: bool) -> None:
        loop = self._loop
        if loop is None:
            return  # sent when a dispatcher starts, or on its drain
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._schedule(urgent)
            return
        try:
            loop.call_soon_threadsafe(self._schedule, urgent)
        except RuntimeError:
            pass  # that loop is closed; the points wait for the next dispatcher

    def pending(self) -> int:
        with self._lock:
            return len(self._points)

    def report_unsent(self) -> None:
        """Count and log, as an error, the points still waiting (the interpreter is exiting)."""
        with self._lock:
            left, self._points = len(self._points), []
            _unsent.discard(self)
            if left:
                self.points_dropped += left
                self.last_error = "the interpreter exited before a dispatcher sent these points"
        if left:
            why = (
                "no dispatcher was started with this webhook"
                if self._loop is None
                else "the dispatcher serving this webhook was never closed or drained"
            )
            log.error(
                "datadog_metrics_unsent",
                webhook=self._webhook.name,
                points=left,
                reason=f"the interpreter exited before they were sent: {why}",
            )

    def stats(self) -> dict[str, Any]:
        """What `webhook_stats` reports (as `plugin.datadog.<key>`): counts, and the points
        waiting now (a gauge)."""
        return {
            "points_buffered": self.pending(),
            "points_sent": Count(self.points_sent),
            "points_dropped": Count(self.points_dropped),
            "points_late": Count(self.points_late),
            "points_early": Count(self.points_early),
            "events_late": Count(self.events_late),
            "batches_sent": Count(self.batches_sent),
            "batches_failed": Count(self.batches_failed),
            "accepted_with_errors": Count(self.accepted_with_errors),
            "last_error": self.last_error,
        }

    # -- in the dispatcher's loop ----------------------------------------------------------

    def start(self, context: StateContext) -> None:
        """The core's call when a dispatcher starts serving the webhook."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._timer = None
            self._flushes = set()
        self._context, self._loop = context, loop
        if self.pending():
            self._schedule(urgent=self.pending() >= self._webhook.metrics_batch_size)

    async def close(self) -> None:
        """The core's call when no dispatcher serves the webhook any more (after its final
        flush): stop the timer, let sends under way end. Points still waiting (a close
        without drain) are counted as dropped and logged, never lost silently."""
        with self._lock:
            self._closed = True
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        running = [task for task in self._flushes if task is not timer]
        if running:
            await asyncio.gather(*running, return_exceptions=True)
        with self._lock:
            left, self._points = len(self._points), []
            _unsent.discard(self)
            if left:
                self.points_dropped += left
                self.last_error = "dispatcher closed without a drain: points not sent"
        if left:
            log.warning(
                "datadog_metrics_dropped",
                webhook=self._webhook.name,
                points=left,
                attempts=0,
                reason="the dispatcher closed without a drain",
            )
        self._context = self._loop = None

    def _is_open(self) -> bool:
        context = self._context
        return context is not None and not context.sender.session.closed

    def _schedule(self, urgent: bool) -> None:
        if not self._is_open():
            return
        if urgent:
            self._spawn(self._flush())
        elif self._timer is None and self.pending():
            self._timer = self._spawn(self._flush_later())

    def _spawn(self, coroutine: Any) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)
        return task

    async def _flush_later(self) -> None:
        assert self._context is not None
        try:
            await self._context.clock.sleep(self._webhook.metrics_flush_interval)
        finally:
            # Cleared before sending, so a drain cancels only a sleeping timer, never a send.
            self._timer = None
        await self._flush()

    async def flush(self) -> None:
        """The core's `flush` hook (drain and close): wait for sends under way, send the rest."""
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        running = [task for task in self._flushes if task is not timer]
        if running:
            await asyncio.gather(*running, return_exceptions=True)
        await self._flush()

    async def _flush(self) -> None:
        with self._lock:
            points, self._points = self._points, []
            self._urgent_requested = False
            _unsent.discard(self)
        if not points:
            return
        size = self._webhook.metrics_batch_size
        try:
            on_time, late, early = restamp(points, self.now())
            # Re-stamped points go in batches of their own, so what was accepted can be counted.
            groups = [
                (batches(group, max_points=size), counter)
                for group, counter in (
                    (on_time, None),
                    (late, "points_late"),
                    (early, "points_early"),
                )
            ]
        except Exception as exc:
            # Taken from the buffer, so counted and said: never lost without a word.
            reason = redact_text(f"{type(exc).__name__}: {exc}")[:500]
            self.points_dropped += len(points)
            self.batches_failed += 1
            self.last_error = f"points could not be batched: {reason}"
            log.error(
                "datadog_metrics_dropped",
                webhook=self._webhook.name,
                points=len(points),
                attempts=0,
                reason=self.last_error,
            )
            return
        for payloads, counter in groups:
            for payload in payloads:
                count = sum(len(entry["points"]) for entry in payload["series"])
                if await self._send_batch(payload, count) and counter is not None:
                    setattr(self, counter, getattr(self, counter) + count)

    async def _send_batch(self, payload: dict[str, Any], count: int) -> bool:
        from . import classify

        webhook = self._webhook
        context = self._context
        request = OutgoingRequest.json(webhook.series_url, payload, headers=webhook.auth_headers())
        policy = webhook.retry_policy
        reason = "not sent: no dispatcher serves the webhook"
        attempt = 0
        for attempt in range(1, policy.max_attempts + 1):
            if context is None:
                break
            retry_after = None
            try:
                # The dispatcher's sender for this webhook: guarded when it blocks private
                # addresses, like every other request the webhook makes.
                response = await context.sender.send(request)
            except TRANSPORT_ERRORS as exc:
                reason = redact_text(f"{type(exc).__name__}: {exc}")
            except BlockedAddressError as exc:  # refused again on any retry: final
                reason = redact_text(f"{type(exc).__name__}: {exc}")
                break
            except RuntimeError as exc:  # the dispatcher closed under us
                reason = redact_text(f"{type(exc).__name__}: {exc}")
                break
            else:
                verdict = classify(webhook, response, what="metrics")
                if verdict.outcome is Outcome.SUCCESS:
                    self.points_sent += count
                    self.batches_sent += 1
                    errors = verdict.details.get("datadog_errors")
                    self.note_accepted_errors(errors, "metrics", points=count)
                    return True
                reason = verdict.reason or f"HTTP {response.status}"
                if verdict.outcome is not Outcome.RETRY:
                    break
                retry_after = verdict.retry_after
            if attempt < policy.max_attempts:
                await context.clock.sleep(policy.wait_before_retry(attempt, retry_after))
        self.batches_failed += 1
        self.points_dropped += count
        self.last_error = reason
        log.warning(
            "datadog_metrics_dropped",
            webhook=webhook.name,
            points=count,
            attempts=attempt,
            reason=reason,
        )
        return False

    def note_accepted_errors(self, errors: str | None, what: str, **context: Any) -> None:
        """Datadog accepted `what` (202) but listed errors in its answer: counted, kept as
        the last error and logged, so points or an event it did not keep are never a silent
        success."""
        if not errors:
            return
        self.accepted_with_errors += 1
        self.last_error = f"{what} accepted with errors: {errors}"
        log.warning(
            "datadog_accepted_with_errors",
            webhook=self._webhook.name,
            what=what,
            errors=errors,
            **context,
        )

    # -- events whose metrics are still owed -----------------------------------------------

    def event_posted(self, event_id: str) -> bool:
        with self._lock:
            return event_id in self._posted

    def mark_posted(self, event_id: str) -> None:
        with self._lock:
            self._posted[event_id] = None
            while len(self._posted) > _POSTED_MEMORY:
                self._posted.popitem(last=False)

    def forget_posted(self, event_id: str) -> None:
        with self._lock:
            self._posted.pop(event_id, None)
