"""Figures with their goals, printed as they come, and the README table and chart of a run."""

from __future__ import annotations

import datetime
import os
import platform
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
CHART = HERE / "results.png"
BEGIN = "<!-- results: written by `make bench` (benchmarks/run.py); edits here are overwritten -->"
END = "<!-- end of results -->"


@dataclass
class Figure:
    """One measured figure and its goal. `passed` is None for a figure shown for context only
    (no goal of its own, such as the plain loop's throughput a ratio is taken against)."""

    section: str
    name: str
    value: float | None
    unit: str
    goal: str = ""
    passed: bool | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        if "verdict" in self.extra:
            return str(self.extra["verdict"])
        if self.value is None:
            return "skipped"
        if self.passed is None:
            return ""
        return "pass" if self.passed else "MISS"

    def shown(self) -> str:
        if self.value is None:
            return "—"
        value = self.value
        if abs(value) >= 100:
            text = f"{value:,.0f}"
        elif abs(value) >= 10:
            text = f"{value:.1f}"
        else:
            text = f"{value:.2f}"
        return f"{text} {self.unit}".strip()


def emit(figure: Figure, out: list[Figure] | None = None) -> Figure:
    """Print one figure line (name, value, goal, pass/MISS) and keep it in `out`."""
    goal = f"goal {figure.goal}" if figure.goal else ""
    note = f"  ({figure.note})" if figure.note else ""
    print(
        f"  {figure.name:<48} {figure.shown():>19}  {goal:<24} {figure.verdict}{note}", flush=True
    )
    if out is not None:
        out.append(figure)
    return figure


def heading(text: str) -> None:
    print(f"\n{text}", flush=True)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def machine() -> dict[str, str]:
    return {
        "machine": f"{platform.system()} {platform.release()} {platform.machine()}",
        "cpu": cpu_model(),
        "cpus": str(os.cpu_count()),
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def as_json(figures: Iterable[Figure]) -> list[dict[str, Any]]:
    return [{**asdict(f), "verdict": f.verdict} for f in figures]


def table(figures: Sequence[Figure], info: dict[str, str], *, quick: bool, charted: bool) -> str:
    lines = [
        BEGIN,
        "",
        f"Latest run{' (--quick: small counts, figures indicative only)' if quick else ''}: "
        f"{info['date']}, {info['machine']}, {info['cpu']} ({info['cpus']} CPUs), "
        f"Python {info['python']}, load average before the run {info['load_before']}, "
        f"after {info['load_after']}, {info['seconds']} s in all.",
        "",
        "| section | figure | value | goal | result |",
        "| --- | --- | ---: | --- | --- |",
    ]
    for f in figures:
        note = f" ({f.note})" if f.note else ""
        lines.append(
            f"| {f.section} | {f.name}{note} | {f.shown()} | {f.goal or '—'} | {f.verdict or '—'} |"
        )
    misses = [f for f in figures if f.passed is False]
    lines += [
        "",
        f"{sum(1 for f in figures if f.passed)} goals met, {len(misses)} missed"
        + (": " + "; ".join(f.name for f in misses) if misses else "."),
        "",
        "![throughput and CPU per delivery for each mode](results.png)"
        if charted
        else "(no chart: matplotlib was not installed when this run was made)",
        "",
        END,
    ]
    return "\n".join(lines)


def write_readme(text: str) -> None:
    """Replace the results block of benchmarks/README.md (or append one)."""
    current = README.read_text() if README.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    if pattern.search(current):
        updated = pattern.sub(lambda _: text, current)
    else:
        updated = current.rstrip("\n") + "\n\n" + text + "\n"
    README.write_text(updated)


def chart(figures: Sequence[Figure], info: dict[str, str]) -> bool:
    """results.png: throughput and CPU per delivery for each mode. False (with a message)
    when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(
            "\nchart skipped: matplotlib is not installed "
            "(pip install -e '.[bench]' or `make bench` installs it)",
            file=sys.stderr,
        )
        return False
    rates = [f for f in figures if f.extra.get("chart") == "throughput" and f.value]
    cpus = [f for f in figures if f.extra.get("chart") == "cpu" and f.value]
    stores = [f for f in figures if f.extra.get("chart") == "stores" and f.value]
    panels = [p for p in (rates, cpus, stores) if p]
    if not panels:
        return False
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 3.2 * len(panels)), squeeze=False)
    titles = {
        id(rates): "deliveries/s (higher is better)",
        id(cpus): "sender CPU per delivery, µs (lower is better)",
        id(stores): "durable stores: deliveries/s (higher is better)",
    }
    for ax, panel in zip(axes[:, 0], panels, strict=True):
        labels = [f.extra.get("label", f.name) for f in panel]
        values = [f.value or 0.0 for f in panel]
        colours = [
            "#4c72b0"
            if f.extra.get("kind") == "plain"
            else "#8c8c8c"
            if f.extra.get("kind") == "baseline"
            else "#dd8452"
            for f in panel
        ]
        bars = ax.barh(labels, values, color=colours)
        ax.bar_label(
            bars,
            labels=[f"{v:,.0f}" if v >= 100 else f"{v:.1f}" for v in values],
            padding=3,
            fontsize=8,
        )
        ax.invert_yaxis()
        ax.set_title(titles[id(panel)], fontsize=10, loc="left")
        ax.tick_params(labelsize=8)
        ax.margins(x=0.15)
    fig.suptitle(
        f"empathy-webhooks benchmarks, {info['date']}: {info['cpu']}, {info['cpus']} CPUs, "
        f"Python {info['python']}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(CHART, dpi=110)
    plt.close(fig)
    return True
