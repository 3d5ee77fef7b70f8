"""What the Jira plugin remembers per webhook, in this process: ONE place on purpose.

Issue 17 gives plugins a per-webhook state owned by the dispatcher (see the shared
INTERFACES.md, "Per-webhook plugin state"); until then these caches hang off the webhook
object here, and `state_of` is the only way in, so moving them is a one-function change.

- `accounts`: an assignee's email (or name) -> its Jira account id, or why none was found;
  a lookup is made once per webhook, not once per ticket.
- `create_fields`: the fields the project's create screen has for the issue type (createmeta),
  read once; None while unknown (then Jira's 400 names a field it refuses, and the create is
  retried once without it).
- `refused_fields`: fields a create's 400 said are not on the screen: never sent again.
- `done`: comments and transitions already made for an event, so a retry after a later step
  failed does not comment twice.
- `warned`: warnings already logged once for this webhook.
"""

from __future__ import annotations

import collections
import weakref
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from . import JiraWebhook

__all__ = ["JiraState", "state_of"]

_DONE_MAX = 1024


@attrs.define
class JiraState:
    """The per-webhook caches (see the module's text)."""

    accounts: dict[str, tuple[str | None, str]] = attrs.field(factory=dict)
    create_fields: frozenset[str] | None = None
    create_fields_loaded: bool = False
    refused_fields: set[str] = attrs.field(factory=set)
    done: collections.OrderedDict[tuple[str, str], str] = attrs.field(
        factory=collections.OrderedDict
    )
    warned: set[str] = attrs.field(factory=set)

    def mark_done(self, event_id: str, step: str, issue_key: str) -> None:
        self.done[(event_id, step)] = issue_key
        while len(self.done) > _DONE_MAX:
            self.done.popitem(last=False)

    def is_done(self, event_id: str, step: str, issue_key: str) -> bool:
        return self.done.get((event_id, step)) == issue_key

    def first_warning(self, key: str) -> bool:
        """True the first time `key` is warned about for this webhook."""
        if key in self.warned:
            return False
        self.warned.add(key)
        return True


_STATES: weakref.WeakKeyDictionary[JiraWebhook, JiraState] = weakref.WeakKeyDictionary()


def state_of(webhook: JiraWebhook) -> JiraState:
    """The webhook's state, made on first use and gone with the webhook object."""
    state = _STATES.get(webhook)
    if state is None:
        state = _STATES[webhook] = JiraState()
    return state
