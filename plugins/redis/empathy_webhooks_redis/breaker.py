"""`RedisCircuitBreaker`: one webhook's circuit breaker shared by every worker through Redis.

The lanes ask the breaker synchronously (`wait_time()`, `before_attempt()`, `record()`), so
each worker keeps a local mirror of the shared state. One small task per breaker and worker
keeps it in step: it pushes the outcomes recorded since its last call and reads the shared
state back in one Lua script, at once after a failure or a probe's result, and every
`SYNC_INTERVAL` while the webhook is busy (successes ride that one: they never open a
breaker, and a call per success would cost a round trip per delivery). A worker therefore
stops sending within about one round trip after it saw a failure itself, and within one
interval after another worker opened the breaker.

Keys (the `{<webhook>}` hash tag keeps one breaker's keys together on a Redis Cluster):

- `<prefix>breaker:{<webhook>}:counts`: outcomes per time bucket (`<bucket>:o` successes,
  `<bucket>:f` failures; a bucket is a tenth of `window_seconds`), while closed.
- `<prefix>breaker:{<webhook>}:state`: `open_until` (server time, µs; absent when closed) and
  `opened` (times it opened, all workers together).
- `<prefix>breaker:{<webhook>}:probe`: the half-open probe token, `SET NX PX`: one probe
  across all workers; it expires if its worker dies mid-probe.

Times are the Redis server's (`TIME`), so workers whose clocks disagree share one timeline;
each worker turns the remaining open time into a deadline on its own monotonic clock.
"""

from __future__ import annotations

import asyncio
import math
import secrets
from typing import TYPE_CHECKING, Any

from empathy_webhooks_core.plugin import get_logger
from empathy_webhooks_core.plugin.store import BreakerPolicy, BreakerState, Clock

from ._aio import checked, wait_event

if TYPE_CHECKING:
    from .store import RedisStore

__all__ = ["BREAKER_SYNC", "RedisCircuitBreaker"]

log = get_logger()

#: Seconds between two reads of the shared state while the webhook is busy.
SYNC_INTERVAL = 0.2
#: A webhook untouched for this long stops being polled (its first use polls again).
IDLE_AFTER = 5.0
#: The mirror is trusted this long after the last good read; older, a send waits for a read.
STALE_AFTER = 1.0
#: How long a gate waits before asking again while another worker's probe is out.
POLL = 0.05
BUCKETS = 10

# ARGV: ok, fail, window_us, bucket_us, min_attempts, failure_rate, open_us, action, token,
# probe_ttl_ms. action: "" | "acquire" (take the probe if half-open) | "success" | "failure"
# (the result of the probe `token` took). Returns {closed, remaining_us (negative: half-open),
# opened, probe_mine}.
BREAKER_SYNC = """
local counts, state, probe = KEYS[1], KEYS[2], KEYS[3]
local ok, fail = tonumber(ARGV[1]), tonumber(ARGV[2])
local window, bucket = tonumber(ARGV[3]), tonumber(ARGV[4])
local min_attempts, rate, open_us = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local action, token = ARGV[8], ARGV[9]
-- A write that changes nothing (the state never has a TTL), first: at maxmemory (noeviction)
-- Redis refuses a script's first write that may add memory (HINCRBY, the probe's SET) but
-- none after another write. The breaker's few bytes must still be kept, or a full server
-- would leave an open breaker without a probe, and its webhook's deliveries, whose
-- acknowledgements are what frees the memory, stuck.
redis.call('PERSIST', state)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local open_until = tonumber(redis.call('HGET', state, 'open_until') or '0')

local function open()
  open_until = now + open_us
  redis.call('HSET', state, 'open_until', open_until)
  redis.call('HINCRBY', state, 'opened', 1)
  redis.call('DEL', counts)
end

if (action == 'success' or action == 'failure') and redis.call('GET', probe) == token then
  redis.call('DEL', probe)
  if action == 'success' then
    open_until = 0
    redis.call('HDEL', state, 'open_until')
    redis.call('DEL', counts)
  else
    open()
  end
elseif open_until == 0 and ok + fail > 0 then
  local current = math.floor(now / bucket)
  local oldest = current - math.ceil(window / bucket) + 1
  redis.call('HINCRBY', counts, current .. ':o', ok)
  redis.call('HINCRBY', counts, current .. ':f', fail)
  redis.call('PEXPIRE', counts, math.ceil((window + bucket) / 1000))
  local total, failed = 0, 0
  local fields = redis.call('HGETALL', counts)
  for i = 1, #fields, 2 do
    local b, kind = string.match(fields[i], '^(%d+):(%a)$')
    if b == nil or tonumber(b) < oldest then
      redis.call('HDEL', counts, fields[i])
    else
      local n = tonumber(fields[i + 1])
      total = total + n
      if kind == 'f' then failed = failed + n end
    end
  end
  if total >= min_attempts and failed / total >= rate then
    open()
  end
end

local mine = 0
if open_until > 0 and now >= open_until then
  if action == 'acquire' then
    redis.call('SET', probe, token, 'NX', 'PX', ARGV[10])
  end
  if redis.call('GET', probe) == token then mine = 1 end
end
local opened = tonumber(redis.call('HGET', state, 'opened') or '0')
if open_until == 0 then
  return {1, 0, opened, 0}
end
return {0, open_until - now, opened, mine}
"""


class RedisCircuitBreaker:
    """`CircuitBreaker`'s interface over state kept in Redis (see the module docstring).

    Made by `RedisStore.make_circuit_breaker`. In the producer role nothing is sent, so no
    task is started and the breaker reads as closed.
    """

    def __init__(
        self,
        store: RedisStore,
        webhook_name: str,
        policy: BreakerPolicy,
        clock: Clock,
        *,
        probe_ttl: float = 35.0,
    ) -> None:
        self.policy = policy
        self._store = store
        self._clock = clock
        base = f"{store.prefix}breaker:{{{webhook_name}}}:"
        self.keys = [base + "counts", base + "state", base + "probe"]
        self._window_us = int(policy.window_seconds * 1_000_000)
        self._bucket_us = max(1000, self._window_us // BUCKETS)
        self._open_us = int(policy.open_seconds * 1_000_000)
        self._probe_ttl_ms = max(1, int(probe_ttl * 1000))
        self._token = f"{store.consumer}:{webhook_name}:{secrets.token_hex(4)}"
        self.times_opened = 0
        # The mirror of the shared state, and what this worker has to tell.
        self._closed = True
        self._open_deadline = 0.0
        self._probe_mine = False
        self._probe_in_flight = False
        self._probe_result: bool | None = None
        self._want_probe = False
        self._ok = 0
        self._fail = 0
        self._synced_at = -math.inf
        self._sync_failing = False
        self._local_changes = 0
        self._used_at = -math.inf
        self._wake = asyncio.Event()
        self._sync_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    # -- CircuitBreaker's interface --------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        return self.current_state()

    def wait_time(self) -> float | None:
        """0 to send now; seconds to wait; None only while this worker's own probe is out
        (its `record` wakes the lane). Another worker's probe is waited out by polling."""
        if not self.policy.enabled:
            return 0.0
        self._touch()
        if self._probe_in_flight:
            return None
        now = self._clock.monotonic()
        if not self._sync_failing and now - self._synced_at > STALE_AFTER:
            # Idle for a while (or just started): read the shared state before sending.
            self._wake.set()
            return POLL
        if self._closed:
            return 0.0
        remaining = self._open_deadline - now
        if remaining > 0:
            return remaining
        if self._probe_mine:
            return 0.0
        self._want_probe = True
        self._wake.set()
        return POLL

    def before_attempt(self) -> None:
        if self._probe_mine and not self._closed:
            self._probe_mine = False
            self._probe_in_flight = True

    def record(self, success: bool) -> None:
        if not self.policy.enabled:
            return
        self._touch()
        if self._probe_in_flight:
            self._probe_in_flight = False
            self._probe_result = success
            self._local_changes += 1
            if success:
                self._closed = True
            else:
                self._closed = False
                self._open_deadline = self._clock.monotonic() + self.policy.open_seconds
                self.times_opened += 1
        elif success:
            # Told with the next sync (every SYNC_INTERVAL while busy): a success never
            # opens a breaker, and a sync per success would cost each worker a script call
            # per delivery, more with every worker added.
            self._ok += 1
            return
        else:
            self._fail += 1
        self._wake.set()

    def current_state(self) -> BreakerState:
        if self._probe_in_flight:
            return BreakerState.HALF_OPEN
        if self._closed:
            return BreakerState.CLOSED
        if self._clock.monotonic() >= self._open_deadline:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    # -- keeping the mirror in step --------------------------------------------------------

    def wake(self) -> None:
        """Sync now (the store calls this when it closes, so the loop sees it at once)."""
        self._wake.set()

    def _touch(self) -> None:
        self._used_at = self._clock.monotonic()
        store = self._store
        if self._task is None and store.role == "worker" and not store.closing.is_set():
            self._task = store.start_task(
                self._run(), name=f"redis-breaker:{self.keys[1]}:{store.consumer}"
            )

    async def _run(self) -> None:
        closing = self._store.closing
        while True:
            busy = self._clock.monotonic() - self._used_at < IDLE_AFTER
            await wait_event(self._wake, SYNC_INTERVAL if busy else IDLE_AFTER)
            self._wake.clear()
            if closing.is_set():
                break
            try:
                await self.sync()
            except Exception as exc:
                if not self._sync_failing:
                    log.error("redis_breaker_sync_failed", error=f"{type(exc).__name__}: {exc}")
                self._sync_failing = True
                await wait_event(closing, SYNC_INTERVAL)
        if self._ok or self._fail or self._probe_result is not None:
            # Tell what is left, so the other workers count it.
            try:
                await self.sync()
            except Exception as exc:
                log.error("redis_breaker_sync_failed", error=f"{type(exc).__name__}: {exc}")

    async def sync(self) -> None:
        """Push what was recorded here since the last call and read the shared state.

        One call at a time: two reads under way at once (the loop's and a caller's, on two
        pooled connections) could be answered in either order, and the older answer would
        then overwrite the newer mirror (a probe taken, then forgotten)."""
        async with self._sync_lock:
            await self._sync()

    async def _sync(self) -> None:
        ok, fail, self._ok, self._fail = self._ok, self._fail, 0, 0
        probe_result, self._probe_result = self._probe_result, None
        want_probe, self._want_probe = self._want_probe, False
        if probe_result is not None:
            action = "success" if probe_result else "failure"
        else:
            action = "acquire" if want_probe else ""
        changes = self._local_changes
        try:
            reply: Any = await checked(
                self._store.breaker_script(
                    keys=self.keys,
                    args=[
                        ok,
                        fail,
                        self._window_us,
                        self._bucket_us,
                        self.policy.min_attempts,
                        self.policy.failure_rate,
                        self._open_us,
                        action,
                        self._token,
                        self._probe_ttl_ms,
                    ],
                )
            )
        except BaseException:
            # Not sent: keep it for the next call.
            self._ok += ok
            self._fail += fail
            if probe_result is not None and self._probe_result is None:
                self._probe_result = probe_result
            raise
        closed, remaining_us, opened, mine = (int(value) for value in reply)
        self._sync_failing = False
        self._synced_at = self._clock.monotonic()
        self.times_opened = opened
        if changes != self._local_changes or self._probe_in_flight:
            # A probe went out or came back while this call was under way: its own result
            # is the fresher news; the next call reads the state after it.
            self._wake.set()
            return
        self._closed = bool(closed)
        if not closed:
            self._open_deadline = self._synced_at + remaining_us / 1_000_000
        self._probe_mine = bool(mine)
