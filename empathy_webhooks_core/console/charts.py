"""The overview's chart of one webhook: its deliveries and failures over the last hour, in
twelve five-minute bars, as numbers a template draws as SVG (no script needed to read it)."""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from ..history import DeliveryRecord

__all__ = ["HOUR", "Bar", "HourChart", "hour_chart"]

HOUR = 3600.0
BUCKETS = 12
#: The SVG's drawing box; the CSS scales it to the column's width.
WIDTH = 240
HEIGHT = 48
#: A delivery that has not (yet) succeeded: failed, waiting for its next attempt, or held
#: because its webhook was disabled.
FAILING = frozenset({"failed", "retrying", "disabled"})


@attrs.frozen
class Bar:
    x: float
    width: float
    #: Heights in the drawing box: every delivery, and the failing ones drawn over it.
    total_height: float
    failed_height: float
    total: int
    failed: int
    #: When the bar's five minutes start (epoch seconds).
    start: float


@attrs.frozen
class HourChart:
    bars: tuple[Bar, ...]
    total: int
    failed: int
    width: int = WIDTH
    height: int = HEIGHT


def hour_chart(records: Iterable[DeliveryRecord], now: float) -> HourChart:
    """Bars for the deliveries created in the hour before `now`, oldest bar first."""
    start = now - HOUR
    step = HOUR / BUCKETS
    totals = [0] * BUCKETS
    failures = [0] * BUCKETS
    for record in records:
        if not start <= record.created_at < now:
            continue
        index = min(BUCKETS - 1, int((record.created_at - start) // step))
        totals[index] += 1
        if record.status in FAILING:
            failures[index] += 1
    peak = max(totals) or 1
    slot = WIDTH / BUCKETS
    bars = tuple(
        Bar(
            x=round(i * slot + 1, 2),
            width=round(slot - 2, 2),
            total_height=round(HEIGHT * totals[i] / peak, 2),
            failed_height=round(HEIGHT * failures[i] / peak, 2),
            total=totals[i],
            failed=failures[i],
            start=start + i * step,
        )
        for i in range(BUCKETS)
    )
    return HourChart(bars=bars, total=sum(totals), failed=sum(failures))
