"""Testing tools for the core and for plugin authors.

- `Receiver`, `Reply`: a real HTTP server on 127.0.0.1 that records requests and fakes a
  service's answers (faults included).
- `assert_sent_json`, `assert_sent_count`, `assert_header`, `sent_json`: what a webhook sent.
- `LoopbackResolver`: a vendor's real host name (`hooks.slack.com`) resolved to a receiver.
- `FakeClock`: time that moves only when a test says so.
- `empathy_webhooks_core.testing.conformance.WebhookConformance`: the suite every plugin runs.
- The pytest plugin (loaded automatically): fixtures `webhook_receiver`, `webhook_dispatcher`,
  `fake_clock`.

Names are imported on first use: pytest loads this package's plugin in every run wherever
the core is installed, and that must stay cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..clock import FakeClock
    from .assertions import assert_header, assert_sent_count, assert_sent_json, sent_json
    from .receiver import ReceivedRequest, Receiver, Reply
    from .resolver import LoopbackResolver

__all__ = [
    "FakeClock",
    "LoopbackResolver",
    "ReceivedRequest",
    "Receiver",
    "Reply",
    "assert_header",
    "assert_sent_count",
    "assert_sent_json",
    "sent_json",
]

_WHERE = {
    "FakeClock": "..clock",
    "LoopbackResolver": ".resolver",
    "ReceivedRequest": ".receiver",
    "Receiver": ".receiver",
    "Reply": ".receiver",
    "assert_header": ".assertions",
    "assert_sent_count": ".assertions",
    "assert_sent_json": ".assertions",
    "sent_json": ".assertions",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name], __name__), name)


def __dir__() -> list[str]:
    return sorted(__all__)
