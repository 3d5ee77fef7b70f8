"""Testing tools for the core and for plugin authors.

- `Receiver`, `Reply`: a real HTTP server on 127.0.0.1 that records requests and fakes a
  service's answers (faults included).
- `assert_sent_json`, `assert_sent_count`, `assert_header`, `sent_json`: what a webhook sent.
- `FakeClock`: time that moves only when a test says so.
- `empathy_webhooks_core.testing.conformance.WebhookConformance`: the suite every plugin runs.
- The pytest plugin (loaded automatically): fixtures `webhook_receiver`, `webhook_dispatcher`,
  `fake_clock`.
"""

from ..clock import FakeClock
from .assertions import assert_header, assert_sent_count, assert_sent_json, sent_json
from .receiver import ReceivedRequest, Receiver, Reply

__all__ = [
    "FakeClock",
    "ReceivedRequest",
    "Receiver",
    "Reply",
    "assert_header",
    "assert_sent_count",
    "assert_sent_json",
    "sent_json",
]
