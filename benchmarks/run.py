"""Every benchmark in one run: prints each figure with its goal and pass/MISS, then writes the
results table into benchmarks/README.md and the chart benchmarks/results.png.

    make bench                          # the full run (a few minutes)
    python benchmarks/run.py --quick    # small counts, for development: figures indicative only
    python benchmarks/run.py --only throughput,stores --no-write

Sections: `throughput.py` (deliveries/s and sender CPU per delivery, pipeline vs a plain
aiohttp loop), `queued.py` (emit latency under a backlog, memory per queued delivery, many
webhooks), `stores.py` (memory, SQLite, Redis workers, a Celery baseline) and, when the file
exists, `restart.py` (a SQLite store restarted with a large backlog). A section that fails is
reported as such and the others still run. Machines shared with other work give noisy figures:
the load average before and after is printed and written with the table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

import _report
from _report import Figure

HERE = Path(__file__).resolve().parent
RESTART = HERE / "restart.py"


def restart_section(quick: bool) -> list[Figure]:
    """Run benchmarks/restart.py if it exists (it is another piece of work's).

    The contract: `python benchmarks/restart.py --json` prints, as its last line of output, a
    JSON list of figures, or an object with a "figures" list; each figure has "name", "value",
    "unit" and, when it has a goal, "goal" (text) and "passed" (bool). With `--quick` the
    environment variable EMPATHY_BENCH_QUICK=1 is set (the script may use smaller counts).
    Output that does not parse is shown as it is, and the section is marked unparsed.
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
    done = subprocess.run(
        [sys.executable, str(RESTART), "--json"],
        cwd=HERE,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    try:
        parsed = json.loads(lines[-1])
        items = parsed["figures"] if isinstance(parsed, dict) else parsed
        figures = [
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
    except (IndexError, KeyError, TypeError, ValueError):
        print(done.stdout[-3000:], done.stderr[-3000:], sep="\n")
        figure = Figure(
            "restart",
            "restart.py",
            None,
            "",
            note=f"exit {done.returncode}; output not in the expected JSON shape",
        )
        return [_report.emit(figure)]
    return [_report.emit(figure) for figure in figures]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small counts, for development")
    parser.add_argument("--only", help="comma-separated: throughput,queued,stores,restart")
    parser.add_argument(
        "--no-write",
        action="store_true",
        help="print only; leave README.md and results.png as they are",
    )
    args = parser.parse_args()

    import queued
    import stores
    import throughput

    sections = {
        "throughput": lambda: throughput.run(args.quick),
        "queued": lambda: queued.run(args.quick),
        "stores": lambda: stores.run(args.quick),
        "restart": lambda: restart_section(args.quick),
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
    info["seconds"] = f"{time.monotonic() - started:.0f}"
    info["load_after"] = _report.load_average()

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
