"""What the plugin keeps for one Jira webhook (`JiraState`, kept by the core through the
`webhook_state` hook), all in this one place:

- the issues it created per finding, and one lock per finding. Jira Cloud's JQL search is only
  eventually consistent: an issue created a moment ago may not be found yet. The search
  therefore names the issues created for the finding (`reconcileIssues`), read from this memory.
  The memory is the dispatcher's `StateContext.memory`: with the Redis store it lives in Redis
  and every worker shares it (a finding ticketed by one worker is found by the next worker's
  search); with SQLite it is in the store's file; with the memory store, in the process;
- which comments and transitions an event already made (same memory), so a retry after a later
  step failed does not comment twice, whichever worker retries;
- in the process: assignees' account ids by email (one user search per owner, not per ticket),
  the fields the project's create screen has (createmeta, read once), the fields a create's 400
  said are not on the screen, and which warnings were already logged.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from empathy_webhooks_core.plugin import KeyValue, StateContext

__all__ = ["CREATED_TTL", "MAX_RECONCILED", "JiraState"]

#: How long a created issue (and a step an event made) is remembered: far beyond the search's
#: indexing lag and any retry policy.
CREATED_TTL = 86_400.0
#: Jira reconciles at most 50 issues per search.
MAX_RECONCILED = 50
#: Steps remembered in the process when the state has no memory (never started).
_DONE_MAX = 1024


class JiraState:
    """The memory, caches and locks of one Jira webhook (see the module's text)."""

    def __init__(self) -> None:
        self._memory: KeyValue | None = None
        # One delivery per finding at a time in this process, so two events of one finding
        # emitted together cannot both miss the search and both create. Lookups in flight
        # (an owner's account id, the create metadata) are shared the same way.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._done: dict[str, str] = {}
        #: An assignee's email (or name), case-folded -> (account id or None, why).
        self.accounts: dict[str, tuple[str | None, str]] = {}
        #: The create screen's field ids; None while unknown (or Jira would not say).
        self.create_fields: frozenset[str] | None = None
        self.create_fields_loaded = False
        #: Fields a create's 400 said are not on the screen: never sent again.
        self.refused_fields: set[str] = set()
        self._warned: set[str] = set()

    def start(self, context: StateContext) -> None:
        self._memory = context.memory

    def lock(self, name: str) -> asyncio.Lock:
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock

    async def created(self, fingerprint: str) -> list[str]:
        """The ids of the issues created for the finding (by any worker sharing the store)."""
        if self._memory is None:
            return []
        stored = await self._memory.get(f"created:{fingerprint}")
        try:
            ids = json.loads(stored) if stored else []
        except ValueError:
            return []
        return [str(i) for i in ids] if isinstance(ids, list) else []

    async def remember(self, fingerprint: str, issue_id: str) -> None:
        if self._memory is None:
            return
        ids = await self.created(fingerprint)
        if issue_id not in ids:
            ids.append(issue_id)
        await self._memory.set(
            f"created:{fingerprint}", json.dumps(ids[-MAX_RECONCILED:]), CREATED_TTL
        )

    async def mark_done(self, event_id: str, step: str, value: str) -> None:
        """Remember that `event_id` made `step` (on issue or finding `value`)."""
        key = f"done:{event_id}:{step}"
        if self._memory is not None:
            await self._memory.set(key, value, CREATED_TTL)
            return
        self._done[key] = value
        while len(self._done) > _DONE_MAX:
            self._done.pop(next(iter(self._done)))

    async def is_done(self, event_id: str, step: str, value: str) -> bool:
        key = f"done:{event_id}:{step}"
        if self._memory is not None:
            return await self._memory.get(key) == value
        return self._done.get(key) == value

    def first_warning(self, key: str) -> bool:
        """True the first time `key` is warned about for this webhook."""
        if key in self._warned:
            return False
        self._warned.add(key)
        return True
