"""What the plugin keeps for one Jira webhook (`JiraState`, kept by the core through the
`webhook_state` hook): the issues it created per finding, and one lock per finding.

Jira Cloud's JQL search is only eventually consistent: an issue created a moment ago may not be
found yet. The search therefore names the issues created for the finding (`reconcileIssues`),
read from this memory. The memory is the dispatcher's `StateContext.memory`: with the Redis
store it lives in Redis and every worker shares it (a finding ticketed by one worker is found by
the next worker's search); with SQLite it is in the store's file; with the memory store, in the
process.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from empathy_webhooks_core.plugin import KeyValue, StateContext

__all__ = ["CREATED_TTL", "MAX_RECONCILED", "JiraState"]

#: How long a created issue is remembered: far beyond the search's indexing lag.
CREATED_TTL = 86_400.0
#: Jira reconciles at most 50 issues per search.
MAX_RECONCILED = 50


class JiraState:
    """The created-issue memory and the per-finding locks of one Jira webhook."""

    def __init__(self) -> None:
        self._memory: KeyValue | None = None
        # One delivery per finding at a time in this process, so two events of one finding
        # emitted together cannot both miss the search and both create.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def start(self, context: StateContext) -> None:
        self._memory = context.memory

    def lock(self, fingerprint: str) -> asyncio.Lock:
        lock = self._locks.get(fingerprint)
        if lock is None:
            lock = self._locks[fingerprint] = asyncio.Lock()
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
