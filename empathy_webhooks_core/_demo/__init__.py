"""The demo (`empathy-webhooks demo`): loopback stand-ins for Slack, Jira, GitHub, Datadog,
PagerDuty and a custom endpoint receive the reference's example events through the real
plugins and the SQLite outbox. See `run_demo`."""

from __future__ import annotations

from .samples import DEMO_EVENTS, SAMPLES, sample_event

__all__ = ["DEMO_EVENTS", "SAMPLES", "sample_event"]
