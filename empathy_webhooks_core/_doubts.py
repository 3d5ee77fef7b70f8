"""Settings that are legal but look like a mistake (`events=["predicton"]`, a rate limit that
limits nothing): said when a webhook is made in Python, never refused.

A configuration file says the same things as warnings of its own, with their path; while one is
being read these stay quiet, so a file's mistake is said once. `event_type_doubt` is the one
judgement of an event type both use (`config.filters` imports it from here).
"""

from __future__ import annotations

import difflib
import os
import sys
import warnings

import attr
import attrs

from .events import EventType

__all__ = ["event_type_doubt", "warn_doubt"]

_EVENT_TYPES = tuple(t.value for t in EventType)
_CORE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_SKIPPED = (
    _CORE_DIR,
    *(os.path.dirname(os.path.abspath(str(module.__file__))) + os.sep for module in (attr, attrs)),
    "<attrs generated",
)


def event_type_doubt(name: str) -> str | None:
    """A warning for an event type of one's own that is close to one the framework sends
    (`alrt`), or None: any name may be emitted, so it is never refused."""
    if name in _EVENT_TYPES or any(c in name for c in "*?["):
        return None
    if name.strip() != name or any(char.isspace() for char in name):
        return (
            f"{name!r} holds white space: an event type is one name, matched exactly (give "
            "several as separate strings)"
        )
    if name.lower() in _EVENT_TYPES:
        return (
            f"{name!r} is not an event type the framework sends: names are matched exactly, "
            f"case included (did you mean {name.lower()!r}?)"
        )
    # Letters off only (`alrt`), never a name that merely begins one (`test`, `security`):
    # those are names of one's own, and a warning about each would teach users to skip them.
    close = difflib.get_close_matches(name, _EVENT_TYPES, n=1, cutoff=0.8)
    if not close:
        return None
    return f"{name!r} is not an event type the framework sends (did you mean {close[0]!r}?)"


def _reading_config() -> bool:
    # Looked up, not imported: the reader sits above this module, and is not loaded at all
    # when no configuration is read.
    tables = sys.modules.get("empathy_webhooks_core.config.webhook_tables")
    reading = getattr(tables, "_reading", None)
    return reading is not None and reading.get(None) is not None


def _caller_stacklevel() -> int:
    """The stack level of the first frame outside the core, attrs and its generated `__init__`
    (the user's `CustomWebhook(...)` line), so the warning points there."""
    level = 1
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not filename.startswith(_SKIPPED):
            return level
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


def warn_doubt(message: str) -> None:
    """Say `message` as a `UserWarning` at the caller's line (shown once per line by default),
    unless a configuration file is being read (it says the same with its path)."""
    if _reading_config():
        return
    warnings.warn(message, UserWarning, stacklevel=_caller_stacklevel())
