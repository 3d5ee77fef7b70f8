"""The README's first command: `empathy-webhooks demo` runs on a fresh machine and shows each
service receiving its request, a retry, and the figures."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

CLI = str(Path(sys.executable).parent / "empathy-webhooks")
SERVICES = {
    "slack": "Slack",
    "jira": "Jira",
    "github": "GitHub",
    "datadog": "Datadog",
    "pagerduty": "PagerDuty",
    "custom": "Custom endpoint",
}


def installed(service: str) -> bool:
    return (
        service == "custom" or importlib.util.find_spec(f"empathy_webhooks_{service}") is not None
    )


def demo(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMPATHY_WEBHOOKS")}
    return subprocess.run([CLI, "demo", *args], capture_output=True, text=True, env=env, timeout=60)


def test_the_demo_shows_every_service_and_a_retry() -> None:
    result = demo()
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for service, label in SERVICES.items():
        if installed(service):
            assert f"{label} stand-in received" in out
        else:
            assert f"skipped the {label} stand-in: its plugin is not installed" in out
    assert "store: sqlite:///" in out
    assert "-> 503" in out and "(will be retried)" in out
    assert "retried: custom_webhook" in out
    assert "Delivery figures" in out
    assert out.rstrip().splitlines()[-1].startswith("all ") and "deliveries succeeded" in out
    if installed("slack"):
        assert "🔮 Level 4 Prediction" in out
    if installed("jira"):
        assert "[AI Detected] SQL injection in auth.py:45" in out


def test_the_demo_as_json() -> None:
    result = demo("--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["store"].startswith("sqlite:///")
    assert [e["event_type"] for e in report["events"]] == [
        "prediction",
        "bug_detected",
        "performance_issue",
        "code_review_complete",
        "alert",
    ]
    expected = {s for s in SERVICES if installed(s)}
    assert set(report["services"]) == expected
    custom = report["services"]["custom"]["requests"]
    assert [r["status"] for r in custom] == [503, 200, 200, 200, 200, 200]
    figures = report["stats"]["custom_webhook"]
    assert figures["delivered_count"] == 5 and figures["retries"] == 1
    for name, stats in report["stats"].items():
        assert stats["failed_count"] == 0, name
    if "pagerduty" in expected:
        # Only the high-severity alert pages someone (the declarative filter).
        (page,) = report["services"]["pagerduty"]["requests"]
        assert page["status"] == 202 and page["summary"].startswith("trigger: ")
    if "github" in expected:
        paths = [r["path"] for r in report["services"]["github"]["requests"]]
        assert paths[-1] == "/repos/Smart-AI-Memory/empathy/issues/123/comments"
