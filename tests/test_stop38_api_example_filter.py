"""The example configuration says what its PagerDuty filter does.

Before: its comment called `filter = { severity = "high" }` the reference's
`lambda event: event.severity == "high"`, but a severity condition compares ranks: it also
passes "error", "major", "HIGH" and a data-only severity, which that lambda does not.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from empathy_webhooks_core import Event
from empathy_webhooks_core.config import load_config
from empathy_webhooks_core.plugins import build_plugin_manager

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "webhooks.toml"
ENV = {
    "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/secretpath",
    "JIRA_URL": "https://acme.atlassian.net",
    "JIRA_EMAIL": "bot@acme.example",
    "JIRA_API_TOKEN": "jira-token",
    "DATADOG_API_KEY": "dd-key",
    "DATADOG_APP_KEY": "dd-app",
    "PAGERDUTY_API_KEY": "pdroutingkey00000000000000000000",
    "API_TOKEN": "api-token",
    "WEBHOOK_SECRET": "whsec-ish",
}


def _comment_above(text: str, line: str) -> str:
    before = text[: text.index(line)].rstrip("\n").splitlines()
    comment = []
    for row in reversed(before):
        if row.startswith("[[webhooks]]"):
            continue
        if not row.startswith("#"):
            break
        comment.insert(0, row.lstrip("# "))
    return " ".join(comment)


def test_the_pagerduty_filters_comment_says_it_compares_ranks() -> None:
    for name in ("slack", "jira", "datadog", "pagerduty"):
        pytest.importorskip(f"empathy_webhooks_{name}")
    comment = _comment_above(EXAMPLE.read_text(), 'type = "pagerduty"')
    assert "written declaratively" not in comment
    assert "compares ranks" in comment and "broader than the reference's" in comment

    [pagerduty] = [
        w
        for w in load_config(EXAMPLE, env=ENV, plugin_manager=build_plugin_manager()).webhooks
        if w.kind == "pagerduty"
    ]
    assert pagerduty.filter is not None
    # What the comment says passes, and what it says does not.
    for severity in ("high", "HIGH", "major", "error", "severe"):
        assert pagerduty.filter(Event(event_type="alert", severity=severity)), severity
    assert pagerduty.filter(Event(event_type="alert", data={"severity": "high"}))
    for severity in ("critical", "medium", "low"):
        assert not pagerduty.filter(Event(event_type="alert", severity=severity)), severity
