"""The demo: the reference's example events through the real plugins, to loopback stand-ins.

Every webhook is built the way a user builds it, from a configuration (`parse_config`), with
the installed plugins' types; a stand-in whose plugin is not installed is skipped with a line
saying so. The custom endpoint answers 503 (`Retry-After: 0`) once, so a retry shows.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import parse_config
from ..dispatcher import WebhookDispatcher
from ..plugins import get_plugin_manager, hooks_for
from ..testing.receiver import Receiver, Reply
from .samples import DEMO_EVENTS, sample_event
from .standins import STANDINS, summarize

if TYPE_CHECKING:
    from ..cli._common import Output

__all__ = ["main", "run_demo"]

#: Short waits: the demo shows a retry, not a realistic schedule.
RETRY_POLICY = {"max_retries": 3, "initial_delay_seconds": 0.05, "max_delay_seconds": 0.2}
FAILING_SERVICE = "custom"
DRAIN_TIMEOUT = 8.0

_DESCRIPTIONS = {
    "prediction": "level-4 prediction",
    "bug_detected": "SQL injection in auth.py:45",
    "performance_issue": "API performance issue",
    "code_review_complete": "PR #123 review",
    "alert": "high-severity alert",
}


async def run_demo(workdir: Path) -> dict[str, Any]:
    """Run the demo; return what each service received, the figures and what was skipped."""
    pm = get_plugin_manager()
    hooks = hooks_for(pm)
    types = hooks.webhook_types()
    notes: list[str] = []
    store: str | None = None
    if "sqlite" in hooks.store_backends():
        store = f"sqlite:///{workdir / 'outbox.db'}"
    else:
        notes.append("the SQLite store is not installed: using the memory store instead")
    receivers: dict[str, tuple[Any, Receiver]] = {}
    tables = []
    try:
        for standin in STANDINS:
            if standin.service not in types:
                notes.append(
                    f"skipped the {standin.label} stand-in: its plugin is "
                    f"{'left out' if standin.service in pm.left_out else 'not installed'} "
                    f"({pm.install_hint(standin.service)})"
                )
                continue
            receiver = await Receiver().start()
            receiver.handler = standin.handler()
            receivers[standin.service] = (standin, receiver)
            tables.append(
                {"type": standin.service, **standin.table(receiver), "retry_policy": RETRY_POLICY}
            )
        if FAILING_SERVICE in receivers:
            receivers[FAILING_SERVICE][1].queue(
                Reply(status=503, body="Service Unavailable", headers={"Retry-After": "0"})
            )
        config = parse_config({"webhooks": tables}, env={}, plugin_manager=pm, source="demo")
        events = [sample_event(event_type) for event_type in DEMO_EVENTS]
        async with WebhookDispatcher(
            webhooks=list(config.webhooks), store=store, plugin_manager=pm
        ) as dispatcher:
            for event in events:
                await dispatcher.emit_event(event)
            await dispatcher.drain(timeout=DRAIN_TIMEOUT)
            stats = {w.name: dispatcher.get_webhook_stats(w.name) for w in config.webhooks}
        received = {
            service: {
                "label": standin.label,
                "url": receiver.url(""),
                "requests": [
                    {
                        "method": request.method,
                        "path": request.path,
                        "status": request.answered,
                        "summary": summarize(service, request),
                    }
                    for request in receiver.requests
                ],
            }
            for service, (standin, receiver) in receivers.items()
        }
    finally:
        for _, receiver in receivers.values():
            await receiver.stop()
    return {
        "store": store or "memory",
        "events": [
            {
                "event_type": e.event_type,
                "event_id": e.event_id,
                "about": _DESCRIPTIONS.get(e.event_type),
            }
            for e in events
        ],
        "services": received,
        "stats": stats,
        "notes": notes,
    }


def _problems(result: dict[str, Any]) -> list[str]:
    problems = []
    for seen in result["services"].values():
        if not any(200 <= (r["status"] or 0) < 300 for r in seen["requests"]):
            problems.append(f"the {seen['label']} stand-in accepted nothing")
    for name, figures in result["stats"].items():
        if figures["failed_count"] or figures["queued"]:
            problems.append(f"{name}: {figures['failed_count']} failed, {figures['queued']} left")
    return problems


def main(out: Output) -> int:
    with tempfile.TemporaryDirectory(prefix="empathy-webhooks-demo-") as workdir:
        result = asyncio.run(run_demo(Path(workdir)))
    problems = _problems(result)
    result["ok"] = not problems
    out.data(result)
    out.heading("empathy-webhooks demo: loopback stand-ins, nothing leaves this machine")
    for note in result["notes"]:
        out.line(f"note: {note}", style="yellow")
    out.line(f"store: {result['store']}")
    out.line("events: " + "; ".join(f"{e['event_type']} ({e['about']})" for e in result["events"]))
    width = max(
        (len(r["path"]) for seen in result["services"].values() for r in seen["requests"]),
        default=0,
    )
    for seen in result["services"].values():
        count = len(seen["requests"])
        out.line()
        out.heading(f"{seen['label']} stand-in received {count} request(s)")
        for request in seen["requests"]:
            status = request["status"]
            mark = "" if status is not None and 200 <= status < 300 else "  (will be retried)"
            out.line(
                f"  {request['method']:<5} {request['path']:<{width}} -> {status}  "
                f"{request['summary']}{mark}"
            )
    out.line()
    out.table(
        "Delivery figures",
        ["webhook", "delivered", "failed", "attempts", "retries", "success", "avg ms"],
        [
            [
                name,
                s["delivered_count"],
                s["failed_count"],
                s["attempts"],
                s["retries"],
                f"{s['success_rate']:.0%}",
                f"{s['avg_response_time_ms']:.1f}",
            ]
            for name, s in result["stats"].items()
        ],
    )
    retried = [name for name, s in result["stats"].items() if s["retries"]]
    if retried:
        out.line(
            f"retried: {', '.join(retried)} (the stand-in answered 503 with Retry-After: 0 "
            "at first, then accepted)"
        )
    if problems:
        for problem in problems:
            out.error(f"demo problem: {problem}")
        return 1
    total = sum(s["delivered_count"] for s in result["stats"].values())
    out.line(f"all {total} deliveries succeeded")
    return 0
