"""What the plugin keeps for one email webhook (`EmailState`, kept by the core through the
`webhook_state` hook): which recipients a message already reached while others have not got it
yet (a server deferred them with a 4xx at RCPT, or refused them with a 5xx).

A retry then goes to the others only, as an MTA retries a deferred recipient and not the whole
message: the recipients who got it get no second copy. A replay of the dead letter, within the
same time, also goes only to those who never got it (the same event renders the same
Message-ID, the key here).

The memory is the dispatcher's `StateContext.memory`: with the Redis store it lives in Redis
and every worker shares it, with SQLite it is in the store's file, with the memory store in the
process. A state never started (a `deliver` outside a dispatcher) keeps its own bounded one in
the process. When the memory is missing or lost (a process restarted on a store that keeps
none, an entry expired, a memory that failed), the next attempt goes to every recipient again:
a second copy for some rather than none for others (at least once).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from empathy_webhooks_core.plugin import get_logger, redact_text

if TYPE_CHECKING:
    from empathy_webhooks_core.plugin import KeyValue, StateContext

__all__ = ["MAX_REMEMBERED", "REMEMBERED_AT_LEAST", "EmailState", "remembered_for"]

#: How long a message's reached recipients are kept at least: far beyond the default retry
#: policy's waits, and long enough for a dead letter replayed the same day.
REMEMBERED_AT_LEAST = 86_400.0
#: Messages remembered in the process when the state has no memory of the dispatcher's.
MAX_REMEMBERED = 10_000

log = get_logger()


def remembered_for(policy: Any) -> float:
    """Seconds a message's reached recipients are kept: the longest a delivery can spend
    retrying under `policy` (a webhook's `retry_policy`: every wait at its cap, every attempt
    timing out), or a day."""
    longest = (
        policy.max_retries * policy.max_delay_seconds * (1 + policy.jitter)
        + policy.max_attempts * policy.timeout_seconds
    )
    return max(REMEMBERED_AT_LEAST, longest)


def _key(message_id: str) -> str:
    return f"reached:{message_id}"


class EmailState:
    """The recipients each message of one email webhook reached (see the module's text)."""

    def __init__(self, ttl: float, *, now: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._memory: KeyValue | None = None
        self._now = now
        # Used only until a dispatcher starts the state: message id -> (reached, expires).
        self._local: dict[str, tuple[frozenset[str], float]] = {}

    def start(self, context: StateContext) -> None:
        self._memory = context.memory

    async def reached(self, message_id: str, webhook: str) -> frozenset[str]:
        """The recipients `message_id` already reached, or none when nothing is known."""
        if self._memory is None:
            found = self._local.get(message_id)
            if found is None or found[1] <= self._now():
                self._local.pop(message_id, None)
                return frozenset()
            return found[0]
        try:
            stored = await self._memory.get(_key(message_id))
            addresses = json.loads(stored) if stored else []
        except Exception as exc:
            # Sending to everyone again is a duplicate for some; failing the delivery here
            # would be a loss for all.
            self._failed("read", message_id, webhook, exc)
            return frozenset()
        if not isinstance(addresses, list):
            return frozenset()
        return frozenset(str(address) for address in addresses)

    async def remember(self, message_id: str, reached: Collection[str], webhook: str) -> None:
        """Keep the recipients `message_id` reached, for its next attempt (or its replay)."""
        if self._memory is None:
            self._local.pop(message_id, None)  # re-inserted last: the oldest go first
            self._local[message_id] = (frozenset(reached), self._now() + self.ttl)
            while len(self._local) > MAX_REMEMBERED:
                del self._local[next(iter(self._local))]
            return
        try:
            await self._memory.set(_key(message_id), json.dumps(sorted(reached)), self.ttl)
        except Exception as exc:
            self._failed("write", message_id, webhook, exc)

    async def forget(self, message_id: str, webhook: str) -> None:
        """Every recipient has `message_id`: nothing left to remember."""
        if self._memory is None:
            self._local.pop(message_id, None)
            return
        try:
            await self._memory.delete(_key(message_id))
        except Exception as exc:
            # The entry expires on its own; a replay meanwhile sends nobody anything new.
            self._failed("delete", message_id, webhook, exc)

    @staticmethod
    def _failed(step: str, message_id: str, webhook: str, exc: BaseException) -> None:
        log.warning(
            "email_recipients_memory_failed",
            webhook=webhook,
            message_id=message_id,
            step=step,
            error=redact_text(f"{type(exc).__name__}: {exc}")[:500],
            then="the next attempt goes to every recipient not known to have it",
        )
