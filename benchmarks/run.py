"""Every benchmark in one run: prints each figure with its goal and pass/MISS, then writes the
results table into benchmarks/README.md and the chart benchmarks/results.png.

    make bench                          # the full run (a few minutes)
    python benchmarks/run.py --quick    # small counts, for development: figures indicative only
    python benchmarks/run.py --only throughput,stores --no-write

Sections: `throughput.py` (deliveries/s and sender CPU per delivery, pipeline vs a plain
aiohttp loop), `queued.py` (emit latency under a backlog, memory per queued delivery, many
webhooks), `stores.py` (memory, SQLite, Redis workers, a Celery baseline), when the file
exists, `restart.py` (a SQLite store restarted with a large backlog), and `gateway.py` (events
accepted per second by `empathy-webhooks serve` against a bare aiohttp handler). A section
that fails is reported as such and the others still run. Machines shared with other work give
noisy figures: the load average before and after is printed and written with the table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import _report
from _report import Figure

HERE = Path(__file__).resolve().parent
RESTART = HERE / "restart.py"


def _restart_figures(text: str) -> list[Figure]:
    """Figures from restart.py's last line of output (see `restart_section`)."""
    lines = [line for line in text.splitlines() if line.strip()]
    parsed = json.loads(lines[-1])
    if isinstance(parsed, dict) and "figures" not in parsed:
        # A flat {"name": number} object: shown, without goals of its own.
        return [
            Figure("restart", str(key), float(value), "")
            for key, value in parsed.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        ]
    items = parsed["figures"] if isinstance(parsed, dict) else parsed
    return [
        Figure(
            "restart",
            str(item["name"]),
            item.get("value"),
            str(item.get("unit", "")),
            goal=str(item.get("goal", "")),
            passed=item.get("passed"),
            note=str(item.get("note", "")),
        )
        for item in items
    ]


def restart_section(quick: bool) -> list[Figure]:
    """Run benchmarks/restart.py if it exists (another piece of work writes it).

    The contract: `python benchmarks/restart.py --json` prints, as its last line of output, a
    JSON list of figures, or an object with a "figures" list; each figure has "name", "value",
    "unit" and, when it has a goal, "goal" (text) and "passed" (bool). A flat object of numbers
    is shown without goals. With `--quick` the environment variable EMPATHY_BENCH_QUICK=1 is
    set (the script may use smaller counts). A script without `--json` is run without it and
    its output shown as it is; so is output that does not parse.
    """
    _report.heading("Restart cost (benchmarks/restart.py)")
    if not RESTART.exists():
        figure = Figure(
            "restart",
            "SQLite restart with 200,000 pending rows",
            None,
            "",
            goal="first delivery < 1 s, < 50 MB extra",
            note="benchmarks/restart.py not present yet",
        )
        return [_report.emit(figure)]
    env = {**os.environ, **({"EMPATHY_BENCH_QUICK": "1"} if quick else {})}

    def call(*options: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(RESTART), *options],
            cwd=HERE,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )

    figures = _restart_run(call, "--json")
    # A backlog of large events (issue 20.5 says "page the rows in": pages are bounded in
    # bytes too, so a restart on 100 KB events holds megabytes, not 256 events per page).
    rows = "1000" if quick else "5000"
    return figures + _restart_run(call, "--json", "--rows", rows, "--data-bytes", "100000")


def _restart_run(
    call: Callable[..., subprocess.CompletedProcess[str]], *options: str
) -> list[Figure]:
    done = call(*options)
    if done.returncode == 2 and "--json" in done.stderr:  # argparse: no such option
        done = call()
    try:
        if done.returncode != 0:
            raise ValueError(f"exit {done.returncode}")
        return [_report.emit(figure) for figure in _restart_figures(done.stdout)]
    except (IndexError, KeyError, TypeError, ValueError):
        print(done.stdout[-3000:], done.stderr[-3000:], sep="\n")
        figure = Figure(
            "restart",
            "restart.py",
            None,
            "",
            note=f"exit {done.returncode}; its output (above) is not the JSON run.py reads",
            extra={"verdict": "unparsed" if done.returncode == 0 else "failed"},
        )
        return [_report.emit(figure)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small counts, for development")
    parser.add_argument("--only", help="comma-separated: throughput,queued,stores,restart,gateway")
    parser.add_argument(
        "--no-write",
        action="store_true",
        help="print only; leave README.md and results.png as they are",
    )
    args = parser.parse_args()

    import gateway
    import queued
    import stores
    import throughput

    sections = {
        "throughput": lambda: throughput.run(args.quick),
        "queued": lambda: queued.run(args.quick),
        "stores": lambda: stores.run(args.quick),
        "restart": lambda: restart_section(args.quick),
        "gateway": lambda: gateway.run(args.quick),
    }
    chosen = args.only.split(",") if args.only else list(sections)
    info = _report.machine()
    info["load_before"] = _report.load_average()
    print(
        f"empathy-webhooks benchmarks{' (--quick)' if args.quick else ''}: {info['date']}, "
        f"{info['cpu']}, {info['cpus']} CPUs, Python {info['python']}, "
        f"load average {info['load_before']}"
    )
    started = time.monotonic()
    figures: list[Figure] = []
    for name in chosen:
        began = time.monotonic()
        try:
            figures += sections[name]()
        except Exception as exc:
            traceback.print_exc()
            figures.append(
                _report.emit(
                    Figure(
                        name,
                        f"{name} section",
                        None,
                        "",
                        note=f"failed: {type(exc).__name__}: {exc}",
                    )
                )
            )
        print(f"  ({name}: {time.monotonic() - began:.0f} s)", flush=True)
    seconds = time.monotonic() - started
    info["seconds"] = f"{seconds:.0f}"
    info["load_after"] = _report.load_average()
    # The issue's own goal for the harness: the whole run in under 5 minutes. It applies to a
    # full run of every section only.
    full = not args.quick and set(chosen) == set(sections)
    heading = "whole run" if full else "this run (not a full run: no goal)"
    figures.append(
        _report.emit(
            Figure(
                "run",
                f"time for {heading}",
                seconds,
                "s",
                goal="< 300 s" if full else "",
                passed=seconds < 300 if full else None,
                note=f"load average {info['load_before']} before, {info['load_after']} after",
            )
        )
    )

    met = sum(1 for f in figures if f.passed)
    missed = [f for f in figures if f.passed is False]
    print(
        f"\n{met} goals met, {len(missed)} missed in {info['seconds']} s "
        f"(load average now {info['load_after']})"
    )
    for f in missed:
        print(f"  MISS: {f.name}: {f.shown()} (goal {f.goal})")
    if args.no_write:
        return
    (HERE / "results.json").write_text(
        json.dumps(
            {"machine": info, "quick": args.quick, "figures": _report.as_json(figures)}, indent=2
        )
        + "\n"
    )
    charted = _report.chart(figures, info)
    if charted:
        print(f"chart written: {_report.CHART.relative_to(HERE.parent)}")
    _report.write_readme(_report.table(figures, info, quick=args.quick, charted=charted))
    print(f"table written: {_report.README.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
