"""`RedisStore`: deliveries in a Redis stream shared by producers and a group of workers.

Keys (all under the prefix, `empathy:` by default, so several deployments share a server):

- `<prefix>deliveries`: the stream. A producer's `emit` XADDs one entry per delivery; the
  consumer group `workers` hands each entry to one worker (XREADGROUP). The entry stays in the
  group's pending list until that worker XACKs it after a 2xx (then it is XDELeted). A worker
  that dies holding entries stops refreshing them; once idle past the visibility timeout they
  are taken over by another worker (XAUTOCLAIM): at least once, under the same event id.
  A worker that was only stopped (SIGSTOP, a paused VM, a long pause of its event loop) past
  the timeout finds on its return that it lost them: its heartbeat refreshes only the entries
  still pending for its own consumer, and before each attempt it sends only what it is sure
  it still holds, or what Redis confirms is still its own (`surely_held`, `confirm_held`).
- `<prefix>attempts`: delivery id -> attempts so far, so a claimed delivery keeps its count.
- `<prefix>dead`: dead letter id -> JSON, for inspection and replay from any process.
- `<prefix>replaying`: dead letter id -> server time (s) a replay took it. The letter stays in
  `<prefix>dead` until the replayed delivery is XADDed, in the same transaction, so a crash in
  between loses nothing: after `replay_lease` seconds the letter is listed (and replayable)
  again. `requeue_dead_letter` does the whole replay in one script.
- `<prefix>rate:<webhook>:<seconds>`: a sliding-window log (sorted set) per webhook and
  window, updated by a Lua script, so a rate limit holds across every worker.
- `<prefix>breaker:{<webhook>}:*`: the webhook's circuit breaker, shared by every worker
  (see `breaker.py`).
- `<prefix>history:<delivery id>`: the delivery's attempt history (a hash: its webhook,
  event, status, times, and one field per attempt, masked), `<prefix>history:event:<id>` the
  event and `<prefix>history:of:<event id>` its deliveries; each expires `history_ttl`
  seconds (a day by default) after its last write, and a worker's heartbeat keeps those of
  the deliveries it holds. `<prefix>history:index` (a sorted set by
  the time each delivery was queued) lists them newest first; entries older than the TTL
  are trimmed as new ones come.
- `<prefix>epoch`: the epoch marker, a random value written with the stream and its group
  (`_MAKE_GROUP`), and again whenever they are made after the stream went. A process that
  opened against one marker and reads another (in an emit's script, a worker's heartbeat, a
  producer's watch) knows the server lost what was queued before, even when another process
  made the stream again before it could meet NOGROUP: `redis_data_lost`, once.
- `<prefix>kv:<namespace><key>`: plugins' per-webhook memory (`key_value`, e.g. the issues
  Jira created per finding), plain strings with a TTL, shared by every worker.

Durability is the server's: with `appendonly yes` an acknowledged XADD survives a Redis
restart; without persistence it survives worker crashes, not a server crash. A server that
lost its data (a restart without persistence, `FLUSHALL`) loses what was queued at that
moment, and nothing after: producers add with `NOMKSTREAM`, so a stream is only ever made
together with its group (`XGROUP CREATE ... 0 MKSTREAM`, by whoever finds it missing), and a
worker that meets `NOGROUP` recreates the group, warns once, and goes on reading from the
start of the new stream. The rate-limit and breaker keys start over empty (limits hold again
from the next reservation; a breaker reads closed).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import math
import os
import secrets
import socket
import time
import urllib.parse
from collections.abc import Coroutine, Sequence
from typing import Any

import attrs
import redis.asyncio as aioredis
import redis.connection
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import OutOfMemoryError, RedisError, ResponseError

from empathy_webhooks_core.plugin import REDACTED, Event, check_number, get_logger
from empathy_webhooks_core.plugin.store import (
    AttemptRecord,
    ConfirmsHolding,
    DeadLetter,
    Delivery,
    DeliveryPage,
    DeliveryQuery,
    DeliveryRecord,
    RateLimit,
    RawAttempt,
    SharedStore,
    StoreOpenError,
    UndecodableEvent,
    decode_event,
    did_you_mean,
    page_of,
)

from ._aio import checked, end_tasks, reraise_dropped_cancel, wait_event
from ._eviction import eviction_risk, memory_full
from ._packed import PackedScript, call, call_once
from .breaker import BREAKER_SYNC, RedisCircuitBreaker

__all__ = [
    "RedisCircuitBreaker",
    "RedisKeyValue",
    "RedisRateLimiter",
    "RedisStore",
    "open_redis_store",
]

log = get_logger()

GROUP = "workers"
DEFAULT_PREFIX = "empathy:"
DEFAULT_VISIBILITY_TIMEOUT = 30.0
DEFAULT_WINDOW = 256

# Sliding-window log over every window of a rate limit, atomically. Server time (µs), so
# workers on machines whose clocks disagree still share one timeline. Returns 0 when a slot
# was taken (recorded in every window), else the µs until one frees up.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local wait = 0
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[2 * i])
  local span = tonumber(ARGV[2 * i + 1])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - span)
  local count = redis.call('ZCARD', key)
  if count >= limit then
    local edge = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
    local w = tonumber(edge[2]) + span - now
    if w > wait then wait = w end
  end
end
if wait > 0 then return wait end
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, ARGV[1])
  redis.call('PEXPIRE', key, math.ceil(tonumber(ARGV[2 * i + 1]) / 1000))
end
return 0
"""

# Take a dead letter for replay without deleting it: mark it (server time) unless another
# replay marked it less than ARGV[2] seconds ago. Returns the letter, or nil.
_TAKE = """
local value = redis.call('HGET', KEYS[1], ARGV[1])
if not value then return false end
local now = tonumber(redis.call('TIME')[1])
local mark = redis.call('HGET', KEYS[2], ARGV[1])
if mark and now - tonumber(mark) < tonumber(ARGV[2]) then return false end
redis.call('HSET', KEYS[2], ARGV[1], now)
return value
"""

# A whole replay at once: if the letter is still ARGV[2] and no other replay holds it, XADD
# the delivery (fields from ARGV[6]) and delete the letter. A stream that is missing is made
# with its group ARGV[4], as everywhere else (a stream without its group would be taken for
# one whose group was deleted), with a new epoch marker ARGV[5] (the stream went with the
# server's data: the other processes learn it from the marker). The entry id is kept in the
# fresh delivery's history record (KEYS[5], written just before), so a call sent again after
# its answer was lost (the client retries on a dropped connection) answers the same entry
# instead of "no such letter". KEYS: dead, replaying, stream, marker, history record.
# Returns the entry id, or nil.
_REQUEUE = """
local done = redis.call('HGET', KEYS[5], 'x')
if done and done ~= '' then return done end
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return false end
local mark = redis.call('HGET', KEYS[2], ARGV[1])
local now = tonumber(redis.call('TIME')[1])
if mark and now - tonumber(mark) < tonumber(ARGV[3]) then return false end
if redis.call('EXISTS', KEYS[3]) == 0 then
  redis.call('XGROUP', 'CREATE', KEYS[3], ARGV[4], '0', 'MKSTREAM')
  redis.call('SET', KEYS[4], ARGV[5])
end
local entry = redis.call('XADD', KEYS[3], '*', unpack(ARGV, 6))
if redis.call('EXISTS', KEYS[5]) == 1 then redis.call('HSET', KEYS[5], 'x', entry) end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return entry
"""

# The stream's consumer group ARGV[1] made (with the stream) unless it exists, and the
# store's epoch marker KEYS[2] with it, in one step, so that no process ever sees a stream
# without its marker. The marker is written when it is missing (the first use of the prefix,
# or the server lost everything), and replaced by ARGV[2] when the stream was missing but the
# marker was not (the stream alone went: evicted, deleted): a process that opened against
# the old marker and finds another knows that what was queued before is gone. A group made
# again on a stream that was kept (XGROUP DESTROY) keeps the marker: nothing was lost. A
# marker gone while the stream was kept (the key alone evicted or deleted) is written again
# ending in `:kept`, which the processes take without saying a loss (`_saw_epoch`).
# Returns {group made (1/0), stream was there (1/0), marker before or nil, marker now}.
_MAKE_GROUP = """
local had = redis.call('EXISTS', KEYS[1])
local made = redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
if type(made) == 'table' and made.err then
  if not string.find(made.err, 'BUSYGROUP', 1, true) then return made end
  made = 0
else
  made = 1
end
local before = redis.call('GET', KEYS[2])
local now = before
if made == 1 and had == 0 then
  redis.call('SET', KEYS[2], ARGV[2])
  now = ARGV[2]
elseif not before then
  now = ARGV[2] .. ':kept'
  redis.call('SET', KEYS[2], now)
end
return {made, had, before, now}
"""

# A delivery's end outside the write-behind (a dead letter; a delivery without an entry), in
# one call: its attempt count dropped, its dead letter written with its history record marked
# failed, its entry acknowledged and deleted. The count goes first: a write that adds no
# memory, after which a server at maxmemory (noeviction) lets the script's other writes
# through (it refuses only a script's first write that may add memory), so a delivery that
# failed still becomes a dead letter on a full server, and its entry is freed. A letter that
# cannot be written (an error) stops the script before the acknowledgement: the entry stays
# pending and is taken again, never acknowledged without its letter. KEYS: stream, attempts,
# dead, history record. ARGV: group, entry id or '', delivery id, letter id or '', letter,
# ttl, now.
_FINISH = """
redis.call('HDEL', KEYS[2], ARGV[3])
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[3], ARGV[4], ARGV[5])
  redis.pcall('HSET', KEYS[4], 's', 'failed', 'dl', ARGV[4], 'u', ARGV[7])
  redis.pcall('EXPIRE', KEYS[4], ARGV[6])
end
if ARGV[2] ~= '' then
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
  redis.call('XDEL', KEYS[1], ARGV[2])
end
return 1
"""

# Forget consumers (killed workers) idle more than ARGV[3] ms that hold no entry, all at
# once so none can take an entry between the check and its removal. A live worker reads
# every block (well under the limit), and one removed anyway is re-created by its next read.
_FORGET_CONSUMERS = """
local removed = {}
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #consumer, 2 do info[consumer[i]] = consumer[i + 1] end
  if info['name'] ~= ARGV[2] and tonumber(info['pending']) == 0
      and tonumber(info['idle']) > tonumber(ARGV[3]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    table.insert(removed, info['name'])
  end
end
return removed
"""

# This worker (ARGV[2]) out of the group ARGV[1], if it holds no entry (see `_leave_group`).
_LEAVE_GROUP = """
local ok, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if not ok then return 0 end
for _, consumer in ipairs(consumers) do
  local info = {}
  for i = 1, #consumer, 2 do info[consumer[i]] = consumer[i + 1] end
  if info['name'] == ARGV[2] and tonumber(info['pending']) == 0 then
    return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
  end
end
return 0
"""

# One emit's deliveries, in one call: each XADDed (NOMKSTREAM: nil when the stream is gone)
# with its history record, the event kept once for the history, and a replay's letter deleted
# with them, atomically. The event's JSON travels once however many webhooks it goes to.
# Idempotent for a delivery id: its entry id is kept in its history record (`x`), and a call
# that finds one there adds no second entry, so the client may send the call again after a
# dropped connection lost its answer (and `_add` does after making a lost stream again).
# KEYS: stream, history index, dead, replaying, then a history key per delivery, then per
# event its `history:event:` and `history:of:` keys, then the epoch marker (read: the
# answer's last element). ARGV: ttl, now, trim-before, n, e, m,
# the deliveries' fields (8 per delivery: delivery id, webhook, event number, attempts, queued
# at, context or '', event id, event type), then each event's JSON, then each event's mark
# (the entry's `b`, see `_stored`), then the m letters' ids.
# Plain arguments, packed in one pass (`_packed`; redis-py's per-argument encoding once made a
# single JSON argument the cheaper choice, at the cost of a cjson parse in the script).
# Returns the entry ids (nil where the stream was gone), then the epoch marker (or nil).
_ENQUEUE = """
local ttl, now = ARGV[1], ARGV[2]
local n, e, m = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local f = ARGV
local events = 6 + 8 * n
local ids = {}
local index = {}
for i = 1, n do
  local o = 6 + 8 * (i - 1)
  local ev = tonumber(f[o + 3])
  local json, mark = ARGV[events + ev], ARGV[events + e + ev]
  local h = KEYS[4 + i]
  local id = redis.call('HGET', h, 'x')
  if not id or id == '' then
    if f[o + 6] == '' then
      id = redis.call('XADD', KEYS[1], 'NOMKSTREAM', '*', 'd', f[o + 1], 'w', f[o + 2],
        'e', json, 'b', mark, 'a', f[o + 4], 't', f[o + 5])
    else
      id = redis.call('XADD', KEYS[1], 'NOMKSTREAM', '*', 'd', f[o + 1], 'w', f[o + 2],
        'e', json, 'b', mark, 'a', f[o + 4], 't', f[o + 5], 'c', f[o + 6])
    end
    -- Only with the entry: a record rewritten by a call sent again would put a delivery a
    -- worker finished meanwhile back to "pending" for good.
    redis.call('HSET', h, 'w', f[o + 2], 'e', f[o + 7], 't', f[o + 8], 's', 'pending',
      'c', f[o + 5], 'u', now, 'x', id or '')
  end
  ids[i] = id
  redis.call('EXPIRE', h, ttl)
  redis.call('SADD', KEYS[4 + n + e + ev], f[o + 1])
  index[#index + 1] = f[o + 5]
  index[#index + 1] = f[o + 1]
  -- The index in one ZADD per 500 deliveries (`unpack` takes a few thousand values at most).
  if #index >= 1000 or i == n then
    redis.call('ZADD', KEYS[2], unpack(index))
    index = {}
  end
end
for j = 1, e do
  redis.call('SET', KEYS[4 + n + j], ARGV[events + j], 'EX', ttl)
  redis.call('EXPIRE', KEYS[4 + n + e + j], ttl)
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])
for k = 1, m do
  redis.call('HDEL', KEYS[3], ARGV[events + 2 * e + k])
  redis.call('HDEL', KEYS[4], ARGV[events + 2 * e + k])
end
ids[n + 1] = redis.call('GET', KEYS[#KEYS])
return ids
"""

# What a worker writes behind its deliveries, in one call: attempts noted (history) and the
# deliveries that succeeded (XACK, XDEL, their attempt counts dropped). History is written
# with pcall: a history key in the way never holds back an acknowledgement. A record that is
# still there (the usual case: `_ENQUEUE` made it, with its index entry) gets the attempt,
# status and time only, so only those travel; the notes whose record is gone (the server lost
# its data while a worker held the delivery) are returned, and `_REWRITE_HISTORY` makes them
# again whole. KEYS: stream, attempts, then a history key per note. ARGV: group, ttl, n, m,
# then 4 per note (status, updated, attempt field, attempt JSON), then 2 per acknowledgement
# (entry id, delivery id). Plain arguments, packed in one pass (`_packed`): as one JSON text
# the attempt's own JSON was escaped in Python and parsed again by the script, the larger
# part of the script's time. Returns the numbers (from 1) of the notes whose record is gone.
_WRITE_BEHIND = """
local group, ttl = ARGV[1], ARGV[2]
local n, m = tonumber(ARGV[3]), tonumber(ARGV[4])
local o = 4
local gone = {}
for i = 1, n do
  local h = KEYS[2 + i]
  if redis.pcall('EXPIRE', h, ttl) == 1 then
    redis.pcall('HSET', h, 's', ARGV[o + 1], 'u', ARGV[o + 2], ARGV[o + 3], ARGV[o + 4])
  else
    gone[#gone + 1] = i
  end
  o = o + 4
end
if m > 0 then
  local ids, dids = {}, {}
  for j = 1, m do
    ids[j] = ARGV[o + 2 * j - 1]
    dids[j] = ARGV[o + 2 * j]
  end
  redis.call('XACK', KEYS[1], group, unpack(ids))
  redis.call('XDEL', KEYS[1], unpack(ids))
  redis.call('HDEL', KEYS[2], unpack(dids))
end
return gone
"""

# The records `_WRITE_BEHIND` found gone, made again whole (with pcall, as there), index entry,
# event and the event's list of deliveries included, so they are listed and read as before.
# KEYS: history index, then 3 per record (record, `history:event:`, `history:of:`). ARGV: ttl,
# then 10 per record (delivery id, webhook, event id, event type, queued at, status, updated,
# attempt field, attempt JSON, event JSON).
_REWRITE_HISTORY = """
local ttl = ARGV[1]
local o = 1
for i = 2, #KEYS, 3 do
  local h = KEYS[i]
  redis.pcall('HSET', h, 'w', ARGV[o + 2], 'e', ARGV[o + 3], 't', ARGV[o + 4],
    'c', ARGV[o + 5], 's', ARGV[o + 6], 'u', ARGV[o + 7], ARGV[o + 8], ARGV[o + 9])
  redis.pcall('EXPIRE', h, ttl)
  redis.pcall('SET', KEYS[i + 1], ARGV[o + 10], 'NX')
  redis.pcall('EXPIRE', KEYS[i + 1], ttl)
  redis.pcall('SADD', KEYS[i + 2], ARGV[o + 1])
  redis.pcall('EXPIRE', KEYS[i + 2], ttl)
  redis.pcall('ZADD', KEYS[1], ARGV[o + 5], ARGV[o + 1])
  o = o + 10
end
return 0
"""

# Of the entries ARGV[4..], refresh (XCLAIM to this consumer, resetting their idle time) those
# still pending for this consumer ARGV[2] of the group ARGV[1], and only those: checked and
# claimed in one step, so no other worker takes one in between. An entry pending for another
# consumer was taken over; one pending for nobody ended elsewhere when its delivery's history
# record says delivered or failed. Pending for nobody with no such record, the entry went with
# the server's data (a restart without persistence, FLUSHALL) and nobody else can send it:
# still this worker's, sent from memory. So is one still pending for this consumer that is gone
# from the stream (XCLAIM finds nothing): something other than the workers deleted it (an
# operator's XTRIM or XDEL, a producer's MAXLEN), and nobody else has it; its id is returned
# too, to be said. For each entry still this worker's, the history of its delivery (record,
# event, the event's deliveries) is kept ARGV[3] seconds more: a delivery held longer than
# `history_ttl` (a backlog behind a rate limit, an open breaker, a disabled webhook) keeps it.
# KEYS: stream, then 3 per entry (history record, `history:event:`, `history:of:`).
# Returns {ids still this worker's, ids deleted from the stream}.
_REFRESH_HELD = """
local held, deleted = {}, {}
local ttl = ARGV[3]
for i = 4, #ARGV do
  local id = ARGV[i]
  local k = 2 + 3 * (i - 4)
  local mine, unowned = false, false
  if #redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1, ARGV[2]) > 0 then
    mine = #redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id, 'JUSTID') > 0
    if not mine then
      deleted[#deleted + 1] = id
      unowned = true
    end
  elseif #redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1) == 0 then
    -- Nothing comes back for an entry deleted while pending (it leaves the pending list).
    unowned = true
  end
  if unowned then
    local status = redis.call('HGET', KEYS[k], 's')
    mine = status ~= 'delivered' and status ~= 'failed'
  end
  if mine then
    held[#held + 1] = id
    redis.call('EXPIRE', KEYS[k], ttl)
    redis.call('EXPIRE', KEYS[k + 1], ttl)
    redis.call('EXPIRE', KEYS[k + 2], ttl)
  end
end
return {held, deleted}
"""

#: The most emits one enqueue script call carries (each a few deliveries, usually one).
_ADD_MAX = 64
#: The most attempts and acknowledgements one write-behind call carries (a Lua `unpack`
#: takes a few thousand values at most); more go in further calls.
_WRITE_BEHIND_MAX = 1000
#: The most entries one `_REFRESH_HELD` call checks (a longer script holds the server up).
_REFRESH_MAX = 1000
#: The share of the visibility timeout after a refresh during which this worker is sure it
#: still holds an entry, without asking Redis (`surely_held`). The rest (3 s of the default
#: 30 s) covers what this process's own clock cannot see: the time between that check and
#: the request leaving (the event loop busy with other work), and a step forward of the
#: server's wall clock, by which Redis measures an entry's idle time. Clock rates differ by
#: parts per million, nothing against a tenth.
_SURE_SHARE = 0.9


def _sure_clock() -> float:
    """The clock the sure window is timed on. Linux's `CLOCK_BOOTTIME` goes on while the
    machine sleeps and `time.monotonic()` does not: a worker on a laptop that was suspended
    past the visibility timeout must know its entries may have been taken over (the server's
    idle clock went on), not send them again. Monotonic where there is no such clock."""
    return _clock_gettime(_BOOTTIME)


_BOOTTIME = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)
_clock_gettime = time.clock_gettime
#: The longest a claim check (`confirm_held`) waits for Redis, at most; less with a short
#: visibility timeout. An attempt waits for it: past it the check "cannot tell" and the
#: delivery is sent (a possible duplicate), rather than every attempt waiting redis-py's
#: socket timeout (5 s by default) while Redis does not answer.
_CONFIRM_SECONDS = 2.0
#: While deliveries this worker holds are still under way, a write-behind call waits up to
#: this long for them, or until `_GATHER_ENOUGH` acknowledgements are waiting, so that one
#: call carries many (each call costs a round trip, a script run and its encoding, whatever
#: it carries; without the wait a busy worker wrote every few deliveries). It delays only
#: the acknowledgement and the history record, never a send; a crash within it sends those
#: deliveries again, as any crash before the acknowledgement does (at least once).
_GATHER_SECONDS = 0.005
_GATHER_ENOUGH = 64
#: A worker whose read found fewer than a quarter of its window while it still has more than
#: a sixteenth of it under way waits up to this long (or until it is down to that sixteenth)
#: before reading again. Without the wait, a worker among several read again as soon as its
#: lanes took the last batch, each read finding the one or two emits added since: with 4
#: workers on 2 cores, ~8 entries a read, 5 times the reads of one worker, each a round
#: trip, a blocked read for the server to serve, and a loop turn here. Entries added
#: meanwhile wait in the stream, where an idle worker's blocked read takes them first; one
#: waits at most this long more, and only behind a worker that has plenty to send already.
_READ_LINGER = 0.01

#: A worker whose window has some room, but less than a quarter, waits this long for more
#: before it reads what fits (see `_consume`).
_ROOM_PATIENCE = 0.05

#: One stream holds every webhook's deliveries in emit order, so a webhook that stalls (a
#: rate limit's backlog, a breaker open, an endpoint that hangs until its timeout) filled a
#: worker's window and held every other webhook's deliveries behind its own: an alert for
#: the pager waited minutes behind a chat channel's rate limit. A window that stays full for
#: this long while fewer than a quarter of it finish, with deliveries for other webhooks of
#: this worker's among the entries no worker has read (`_PEEK_NAMES`: the newest `_PEEK`,
#: and `_PEEK_SCAN` more a look, from where the last look ended), is
#: stalled: it reads past, a stretch of a quarter window and then twice the last, up to
#: `_STRETCH_WINDOWS` windows held in all. A stretched place is not refilled once it frees,
#: so the stretch ends as what it took finishes. Not for a window that is merely busy, nor
#: for a backlog of only the webhooks filling it: reading further then only takes work
#: other workers (one that starts later, say) could do.
_STALL_SECONDS = 1.0
_STRETCH_WINDOWS = 16

#: At most one line per this many seconds for a webhook a worker does not have.
_UNKNOWN_SAY_EVERY = 600.0

#: How many of the newest entries no worker has read yet a stalled window looks at, and how
#: many more of the rest, from where its last look ended (see `_STALL_SECONDS`).
_PEEK = 256
_PEEK_SCAN = 2000

#: Seconds a replay may take between `take_dead_letter` and `enqueue` before the letter is
#: considered abandoned (its process died) and listed again.
DEFAULT_REPLAY_LEASE = 60.0
#: While Redis cannot be reached, a rate-limited lane asks again after this long.
UNREACHABLE_WAIT = 0.5
#: A producer whose deliveries waited this long (seconds) with no worker reading the stream
#: says so (`redis_no_worker`), by default.
DEFAULT_NO_WORKER_AFTER = 60.0


def _retry() -> Retry:
    """The client's retry of a command whose connection broke (a Redis restart, CLIENT KILL,
    a load balancer's idle cut): the first call after one otherwise fails at once, and an
    emit that raises for a fault already gone is a failed alert. Up to 4 more tries, 0.1 to
    0.4 s apart (about a second in all); connection errors only, never a timeout (a slow
    server may have run the command; waiting again would multiply the wait too).

    A command retried so may have run already (its answer was lost, not its request): every
    call that goes through this client must be safe to repeat. The enqueue and replay
    scripts are idempotent for a delivery id (`_ENQUEUE`, `_REQUEUE`) while its history
    record lasts (`history_ttl`: a retry after a record of a few seconds expired queues the
    delivery twice, at least once, never lost); acknowledgements,
    history, claims and refreshes write the same thing again. Those whose repetition would
    change their answer (`_TAKE`, `RedisKeyValue.add`'s SET NX) go through `call_once`
    instead. A rate-limit slot or a breaker's outcomes may be counted twice: a delivery
    waits a little longer, none is sent twice."""
    return Retry(ExponentialBackoff(cap=0.4, base=0.05), 4, (redis.exceptions.ConnectionError,))


def _new_epoch() -> str:
    """A value for the epoch marker: when (server-independent, for the operator reading the
    log) and a random part (two processes making it at once never agree by chance)."""
    return f"{int(time.time())}-{secrets.token_hex(6)}"


def _entry_key(entry_id: str) -> tuple[int, int]:
    """A stream entry id (`<ms>-<seq>`) as numbers, to compare two ids."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _no_group(exc: BaseException) -> bool:
    """Redis lost the stream or its consumer group (a restart without persistence, or a
    FLUSHALL, which ends a blocked read with UNBLOCKED)."""
    return isinstance(exc, ResponseError) and str(exc).startswith(("NOGROUP", "UNBLOCKED"))


#: A fault that comes back this soon after it cleared is the same outage (a pool's other
#: broken connections failing one by one): not told again.
_SAME_OUTAGE = 5.0


class _Fault:
    """One line when a Redis call starts failing and one when it works again, instead of a
    line per retry for as long as the outage lasts."""

    def __init__(self, event: str) -> None:
        self.event = event
        self.since: float | None = None
        self.cleared = -_SAME_OUTAGE
        self.quiet = False

    def failed(self, exc: BaseException, **context: Any) -> None:
        if self.since is None:
            self.since = time.monotonic()
            self.quiet = self.since - self.cleared < _SAME_OUTAGE
            if not self.quiet:
                log.error(self.event, error=f"{type(exc).__name__}: {exc}", **context)

    def ok(self, **context: Any) -> None:
        if self.since is not None:
            if not self.quiet:
                log.warning(
                    self.event.replace("_failed", "_recovered"),
                    after_seconds=round(time.monotonic() - self.since, 3),
                    **context,
                )
            self.since = None
            self.cleared = time.monotonic()


_OPTIONS = (
    "role",
    "prefix",
    "visibility_timeout",
    "window",
    "consumer",
    "consumer_expiry",
    "history_ttl",
    "no_worker_after",
)
#: Seconds a delivery's history is kept after its last change, by default.
DEFAULT_HISTORY_TTL = 86_400.0


class RedisRateLimiter:
    """A webhook's rate limit kept in Redis: `reserve()` takes a slot for whichever worker asks.

    Both strategies use the sliding log: it never lets more than the limit through in any
    window, so it also satisfies a service that counts per fixed window.
    """

    def __init__(self, store: RedisStore, webhook_name: str, limit: RateLimit) -> None:
        self._store = store
        self._keys = [
            f"{store.prefix}rate:{webhook_name}:{seconds:g}" for _, seconds in limit.windows()
        ]
        self._spans = [(count, int(seconds * 1_000_000)) for count, seconds in limit.windows()]
        self._ids = itertools.count()
        self._webhook = webhook_name
        self._fault = _Fault("redis_rate_limit_failed")

    async def reserve(self) -> float:
        member = f"{self._store.consumer}:{next(self._ids)}"
        args: list[Any] = [member]
        for count, span in self._spans:
            args += [count, span]
        try:
            wait_us = await self._store.reserve_script(keys=self._keys, args=args)
        except RedisError as exc:
            # Redis unreachable: wait and ask again (the delivery stays in its lane), rather
            # than let the error end the delivery.
            self._fault.failed(exc, webhook=self._webhook)
            return UNREACHABLE_WAIT
        self._fault.ok(webhook=self._webhook)
        return 0.0 if int(wait_us) <= 0 else max(int(wait_us) / 1_000_000, 0.001)


class RedisStore:
    """A store whose queue is a Redis stream; see the module docstring.

    `role="producer"` (the default): `emit` only XADDs, workers elsewhere deliver.
    `role="worker"`: the dispatcher takes deliveries from the stream (started by the plugin's
    `dispatcher_started` hook), at most `window` at a time (16 windows past a webhook that
    stalls, see `_STALL_SECONDS`), and acknowledges each after a 2xx.
    """

    #: Either role leaves delivery to the consumer group: a worker's own `emit` goes through
    #: the stream too, so exactly one worker takes each delivery.
    remote_workers = True

    def __init__(
        self,
        url: str,
        *,
        role: str = "producer",
        prefix: str = DEFAULT_PREFIX,
        visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT,
        window: int = DEFAULT_WINDOW,
        consumer: str | None = None,
        consumer_expiry: float | None = None,
        history_ttl: float = DEFAULT_HISTORY_TTL,
        no_worker_after: float = DEFAULT_NO_WORKER_AFTER,
    ) -> None:
        if role not in ("producer", "worker"):
            raise ValueError(f"role must be 'producer' or 'worker', got {role!r}")
        # NaN would pass `<= 0` and hold a dead worker's deliveries forever.
        check_number("visibility_timeout", visibility_timeout, above=0, at_most=86_400)
        if window < 1:
            raise ValueError(f"window must be 1 or more, got {window!r}")
        self.url = url
        self.role = role
        self.prefix = prefix
        self.visibility_timeout = float(visibility_timeout)
        self.window = int(window)
        #: The fewest free places in the window worth a read (see `_consume`).
        self._read_at_least = max(1, self.window // 4)
        #: Held deliveries at or below which a lingering worker reads again at once.
        self._low_water = self._read_at_least // 4
        #: A consumer idle this long holding no entry is a worker that died: forgotten.
        self.consumer_expiry = float(
            consumer_expiry
            if consumer_expiry is not None
            else max(600.0, 10 * self.visibility_timeout)
        )
        check_number("consumer_expiry", self.consumer_expiry, above=0, at_most=30 * 86_400)
        check_number("history_ttl", history_ttl, at_least=1, at_most=365 * 86_400)
        self.history_ttl = int(history_ttl)
        check_number("no_worker_after", no_worker_after, above=0, at_most=7 * 86_400)
        self.no_worker_after = float(no_worker_after)
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.stream = f"{prefix}deliveries"
        self.dead_key = f"{prefix}dead"
        self.attempts_key = f"{prefix}attempts"
        self.replaying_key = f"{prefix}replaying"
        self.history_index = f"{prefix}history:index"
        self.epoch_key = f"{prefix}epoch"
        # The epoch marker as this process last saw it (`_MAKE_GROUP`): another one means the
        # stream was made again after the server lost its data.
        self._epoch: str | None = None
        #: Times this process found the server had lost the store's data (`backlog()`).
        self.data_losses = 0
        # The first entry this producer added since its watch last saw the workers read
        # everything it had added, and whether it said that nobody reads (`_watch`).
        self._unread_since: str | None = None
        self._no_worker_said = False
        self._watcher: asyncio.Task[None] | None = None
        # Attempts noted and not written yet (`note_attempt` never waits), and the task
        # writing them.
        self._notes: list[tuple[Delivery, AttemptRecord, str]] = []
        # Deliveries that succeeded, not acknowledged yet (written behind, as the notes).
        self._acks: list[Delivery] = []
        # Emits waiting for the next `_add` call, and the task making those calls.
        self._emits: list[tuple[list[Delivery], asyncio.Future[None]]] = []
        self._adder: asyncio.Task[None] | None = None
        # The task writing both (`_write_behind`), and what tells it to write now rather
        # than wait for more (`_GATHER_SECONDS`).
        self._writer: asyncio.Task[None] | None = None
        self._gathered = asyncio.Event()
        self._history_fault = _Fault("redis_history_failed")
        # History records found gone and made again, not said yet; when it was last said.
        self._rewritten = 0
        self._rewritten_said = -math.inf
        self.replay_lease = DEFAULT_REPLAY_LEASE
        # Letters this process took for replay, by (webhook, event id): `enqueue` deletes
        # each in the transaction that adds its delivery.
        self._replays: dict[tuple[str, str], str] = {}
        self._redis: aioredis.Redis | None = None
        self._reserve: Any = None
        self._breaker_sync: Any = None
        self._take: Any = None
        self._requeue: Any = None
        self._forget: Any = None
        self._enqueue: Any = None
        self._write_behind_script: Any = None
        self._rewrite_history: Any = None
        self._refresh_held_script: Any = None
        self._finish_script: Any = None
        self._make_group_script: Any = None
        self._leave_group_script: Any = None
        self._count_page: Any = None
        self._count_dead: Any = None
        self._peek_names: Any = None
        self._held: dict[str, Delivery] = {}
        # Until then (`_sure_clock`) every entry in `_held` is surely this worker's: each was
        # refreshed (read, claimed, heartbeat) no earlier than `_sure_for` before it. A
        # producer delivers nothing from the stream: always sure.
        self._sure_for = self.visibility_timeout * _SURE_SHARE
        self._sure_until = math.inf if role == "producer" else -math.inf
        # When (`_sure_clock`) each call under way that may add entries to `_held` began (the
        # consumer's read or claim, a `confirm_held`): a heartbeat under way does not cover
        # what they add, which is fresh only since they began.
        self._adding: list[float] = []
        # Entries the heartbeat found no longer this worker's (another worker took them over
        # or finished them): their copies still in the lanes are not sent.
        self._lost: set[str] = set()
        # Entries for webhooks this worker does not have, by webhook, not said yet; and when
        # each webhook was last said (`_say_unknown`).
        self._unknown: dict[str, int] = {}
        self._unknown_said: dict[str, float] = {}
        # Entries whose dead letter is being written (their XACK on its way).
        self._finishing: set[str] = set()
        # How long a claim check waits for Redis (`confirm_held`), and until when (`_sure_clock`)
        # none asks, one having gone unanswered: the attempts meanwhile are sent unchecked.
        self._confirm_seconds = min(_CONFIRM_SECONDS, max(0.5, self.visibility_timeout / 3))
        self._unanswered_until = -math.inf
        # The acknowledgements the write-behind call under way carries.
        self._acking: list[Delivery] = []
        self._room = asyncio.Event()
        # Set when the held deliveries fall to `_low_water` (or the worker stops): ends a
        # linger (`_linger`) early.
        self._drained = asyncio.Event()
        # Places beyond `window` while the window is stalled (see `_STALL_SECONDS`), the
        # last stretch's size, deliveries finished (ended here or let go), since when the
        # window has had less than a quarter free and how many had finished then, and
        # whether the stall at the stretch's limit was said.
        self._stretch = 0
        self._step = 0
        self._finished = 0
        self._short_since: float | None = None
        self._finished_then = 0
        # Where the stalled window's scan of the unread entries goes on from.
        self._peek_cursor = ""
        self._stall_said = False
        self._dispatcher: Any = None
        # The consumer (stopped by `stop_consuming`) and the loops that run until `close`
        # (the heartbeat keeps refreshing what is held while a stopping worker finishes it).
        self._consumer_task: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._breakers: list[RedisCircuitBreaker] = []
        self._stop_taking = asyncio.Event()
        self._closing = asyncio.Event()
        self._consume_fault = _Fault("redis_consume_failed")
        self._heartbeat_fault = _Fault("redis_heartbeat_failed")
        self._mark_fault = _Fault("redis_mark_failed")
        # How long one XREADGROUP waits for new entries: also how long a stop may wait for
        # the read in progress (it is let finish, so nothing it takes is stranded).
        self._block_ms = max(10, min(250, int(self.visibility_timeout / 2 * 1000)))

    def __repr__(self) -> str:
        return f"RedisStore({_safe_url(self.url)!r}, role={self.role!r}, prefix={self.prefix!r})"

    def for_worker(self) -> RedisStore:
        """The same store in the worker role (what `run_worker` opens)."""
        return RedisStore(
            self.url,
            role="worker",
            prefix=self.prefix,
            visibility_timeout=self.visibility_timeout,
            window=self.window,
            consumer_expiry=self.consumer_expiry,
            history_ttl=self.history_ttl,
            no_worker_after=self.no_worker_after,
        )

    @property
    def redis(self) -> aioredis.Redis:
        if self._redis is None:
            raise RuntimeError("the Redis store is not open")
        return self._redis

    def _must_be_open(self) -> None:
        """Raise, as `redis` does, before a script registered at `open` is called."""
        self.redis  # noqa: B018 - the property raises "not open"

    @property
    def held(self) -> int:
        """Deliveries this worker has taken and not yet finished."""
        return len(self._held)

    # -- the DeliveryStore interface -------------------------------------------------------

    async def open(self) -> Sequence[Delivery]:
        # Timeouts unless the URL gives its own (its options win over these): without them
        # (redis-py before 8), a peer that accepts the connection and never answers (a
        # `rediss://` URL against a server without TLS, a port that is not Redis, a network
        # that drops packets) holds `open`, an emit or a worker's read forever.
        self._redis = aioredis.Redis.from_url(
            self.url,
            decode_responses=True,
            socket_timeout=_TIMEOUT,
            socket_connect_timeout=_TIMEOUT,
            retry=_retry(),
        )
        self._make_group_script = self._redis.register_script(_MAKE_GROUP)
        problem: str | None
        try:
            problem = await self._unsupported_server()
            if problem is None:
                made, had, before, now = await self._make_group()
                if made and not had and before is not None:
                    # The marker outlived the stream: someone used this prefix and its
                    # queue is gone. (Both gone, this process cannot tell a loss from a
                    # first use: the processes that saw the old marker say it.)
                    self._say_data_lost("open")
                self._epoch = now
        except RedisError as exc:
            problem = f"{type(exc).__name__}: {exc}{_hint(exc)}"
        if problem is not None:
            await self._redis.aclose()
            self._redis = None
            raise StoreOpenError(
                f"cannot open the Redis store {_safe_url(self.url)}: {problem}"
            ) from None
        self._reserve = self._redis.register_script(_RESERVE)
        self._breaker_sync = self._redis.register_script(BREAKER_SYNC)
        # Not sent again after a lost answer: it would find its own mark and answer "held by
        # another replay" for the letter it took.
        self._take = PackedScript(self._redis, _TAKE, once=True)
        self._requeue = self._redis.register_script(_REQUEUE)
        self._forget = self._redis.register_script(_FORGET_CONSUMERS)
        self._enqueue = PackedScript(self._redis, _ENQUEUE)
        self._write_behind_script = PackedScript(self._redis, _WRITE_BEHIND)
        self._rewrite_history = PackedScript(self._redis, _REWRITE_HISTORY)
        self._refresh_held_script = self._redis.register_script(_REFRESH_HELD)
        self._finish_script = self._redis.register_script(_FINISH)
        self._leave_group_script = self._redis.register_script(_LEAVE_GROUP)
        self._count_page = self._redis.register_script(_COUNT_PAGE)
        self._count_dead = self._redis.register_script(_COUNT_DEAD)
        self._peek_names = self._redis.register_script(_PEEK_NAMES)
        self._closing.clear()
        await self._say_eviction()
        # Nothing to resume here: what a dead process held is reclaimed by the workers.
        return ()

    async def _unsupported_server(self) -> str | None:
        """Why the server at the URL cannot hold this store, or None: a Sentinel (it knows
        where the primary is, and holds no data) or a node of a Redis Cluster (this store's
        scripts and transactions touch keys of many hash slots in one call: every emit would
        fail). Read from `INFO server`; a server that refuses INFO is judged by what fails."""
        try:
            info: Any = await checked(self.redis.info("server"))
        except ResponseError:
            return None
        mode = str(info.get("redis_mode", "standalone"))
        if mode == "sentinel":
            return (
                "this is a Redis Sentinel, not a Redis server: give the address of the primary "
                "it watches (redis-cli -p <port> SENTINEL get-master-addr-by-name <name>); "
                "the store does not follow a Sentinel's fail-overs"
            )
        if mode == "cluster":
            return (
                "this is a node of a Redis Cluster, which the store does not support: its "
                "scripts and transactions touch keys of many hash slots at once (the stream, "
                "its history, rate limits), which a cluster refuses (CROSSSLOT); use a "
                "standalone Redis (with replicas if you like)"
            )
        return None

    async def _look_at_epoch(self, where: str) -> None:
        try:
            seen: Any = await checked(self.redis.get(self.epoch_key))
            await self._check_epoch(seen, where)
        except RedisError:
            pass  # unreachable: the loops that need Redis say so themselves

    async def _say_eviction(self) -> None:
        """Once, when the store opens: whether the server may delete this store's keys to make
        room (`_eviction`), which it would do without an error to anyone."""
        try:
            info = await checked(self.redis.info("memory"))
        except RedisError:
            return  # INFO refused (an ACL, a managed service): nothing to judge by
        risk = eviction_risk(info)
        if risk is not None:
            level, reason = risk
            say = log.error if level == "error" else log.warning
            say("redis_may_evict", store=_safe_url(self.url), reason=reason)
        full = memory_full(info)
        if full is not None:
            log.error("redis_memory_full", store=_safe_url(self.url), reason=full)

    async def ensure_group(self) -> bool:
        """Create the stream's consumer group (and the stream) unless it exists. True when it
        was missing: the server lost its data, or this is the first use of the prefix.

        The group starts at `0`, so whatever producers added since the stream reappeared is
        delivered. The store's epoch marker is made with them (see `_MAKE_GROUP`)."""
        return (await self._make_group())[0]

    async def _make_group(self) -> tuple[bool, bool, str | None, str | None]:
        """`_MAKE_GROUP`: whether the group was made, whether the stream was there, the epoch
        marker before and now."""
        try:
            made, had, before, now = await checked(
                self._make_group_script(
                    keys=[self.stream, self.epoch_key], args=[GROUP, _new_epoch()]
                )
            )
        except OutOfMemoryError:
            # At maxmemory (noeviction) Redis refuses XGROUP CREATE before it looks whether
            # the group exists: a worker started then must still open, since draining the
            # stream is what frees the memory. Only a missing group is an error.
            if not await self._group_exists():
                raise
            marker: Any = await checked(self.redis.get(self.epoch_key))
            return False, True, marker, marker
        return bool(made), bool(had), before, now

    async def _group_exists(self) -> bool:
        """Whether the stream and its consumer group exist (read only)."""
        try:
            groups: Any = await checked(self.redis.xinfo_groups(self.stream))
        except ResponseError as exc:
            if "no such key" in str(exc):
                return False
            raise
        return any(group.get("name") == GROUP for group in groups)

    async def _recreate_group(self, where: str) -> None:
        """The group was lost (NOGROUP): make it again, and say so once. An error when the
        stream went too (Redis lost its data: whatever was queued then is gone for good); a
        warning when only the group went (XGROUP DESTROY): the stream's entries are read
        again from its start, so nothing is lost, and what workers held may go twice.
        Another process made it first: said by the epoch marker it wrote, if it changed."""
        made, stream_kept, _, now = await self._make_group()
        if not made or stream_kept:
            if now is not None:
                self._saw_epoch(now, where)
            if not made:
                return
        if stream_kept:
            log.warning(
                "redis_group_recreated",
                stream=self.stream,
                found_by=where,
                consumer=self.consumer,
                reason="the stream's consumer group was missing but the stream was not "
                "(someone ran XGROUP DESTROY): the group is made again from the start of the "
                "stream, so every delivery still in it is sent; those workers held at that "
                "moment may be sent twice (at least once), none is lost",
            )
            return
        self._epoch = now
        self.data_losses += 1
        log.error(
            "redis_group_recreated",
            stream=self.stream,
            found_by=where,
            consumer=self.consumer,
            reason="the stream's consumer group was missing: Redis lost its data "
            "(restarted without persistence, or FLUSHALL); deliveries queued before that "
            "are lost (never sent), and so are the dead letters and attempt counts; those a "
            "worker held in memory are still sent, and new ones are delivered",
        )

    async def _check_epoch(self, seen: str | None, where: str) -> None:
        """`seen`: the epoch marker as a call just read it. A marker that is gone (the server
        lost its data and nobody has made the stream again yet, or a process of an older
        release did, without one) is made again here, with the group, and said there."""
        if seen == self._epoch:
            return
        if seen is None:
            await self._recreate_group(where)
            return
        self._saw_epoch(seen, where)

    def _saw_epoch(self, seen: str, where: str) -> None:
        """Take `seen` as the epoch; said when it replaces another one (never on the first
        sight, as when the marker could not be read at open)."""
        known, self._epoch = self._epoch, seen
        if known is None or known == seen:
            return
        if seen.endswith(":kept"):
            # The marker alone went (evicted, deleted by a pattern) and was written again
            # over a stream that was kept: nothing queued was lost.
            log.warning(
                "redis_epoch_restored",
                stream=self.stream,
                found_by=where,
                consumer=self.consumer,
                reason="the store's epoch marker was missing while its stream was kept (the "
                "key alone was evicted or deleted); it was written again; no delivery was lost",
            )
            return
        self._say_data_lost(where)

    def _say_data_lost(self, where: str) -> None:
        self.data_losses += 1
        log.error(
            "redis_data_lost",
            stream=self.stream,
            found_by=where,
            consumer=self.consumer,
            reason="the store's epoch marker changed since this process opened: Redis lost "
            "its data (restarted without persistence, FLUSHALL, or the stream was evicted or "
            "deleted) and another process made the stream again; deliveries queued before "
            "that are lost (never sent), and so are the dead letters and attempt counts; new "
            "ones are delivered",
        )

    async def close(self) -> None:
        await self.stop_consuming()
        await self._history_written()
        await self._hand_back()
        tasks, self._tasks = self._tasks, []
        self._closing.set()
        for breaker in self._breakers:
            breaker.wake()
        await end_tasks(tasks, patience=1.0)
        self._watcher = None
        if self._redis is not None:
            await self._leave_group()
            await self._redis.aclose()
            self._redis = None

    async def _leave_group(self) -> None:
        """A worker closing with nothing pending leaves the consumer group: left in it, idle,
        it counted as a worker reading for `max(no_worker_after, visibility_timeout)`, so a
        producer said nobody reads (`redis_no_worker`) that much later than it could. One
        holding entries stays: removing it would drop them from the group's pending list,
        where the other workers find them (checked and done in one script)."""
        if self.role != "worker":
            return
        try:
            await checked(self._leave_group_script(keys=[self.stream], args=[GROUP, self.consumer]))
        except RedisError:
            pass  # the others remove an idle consumer that holds nothing (`_FORGET_CONSUMERS`)

    async def _hand_back(self) -> None:
        """What this worker still holds as it closes (its stop's grace ran out): marked idle
        for a whole visibility timeout, so the other workers take it at their next look
        instead of a visibility timeout later. Still pending for this consumer (nothing is
        lost if this fails); one whose request was on the wire may be sent again, as after
        a crash: at least once."""
        held: list[Any] = list(self._held)
        if not held or self._redis is None or self.role != "worker":
            return
        idle_ms = int(self.visibility_timeout * 1000) + 1
        try:
            for start in range(0, len(held), _REFRESH_MAX):
                await checked(
                    self.redis.xclaim(
                        self.stream,
                        GROUP,
                        self.consumer,
                        0,
                        held[start : start + _REFRESH_MAX],
                        idle=idle_ms,
                        justid=True,
                    )
                )
        except Exception as exc:
            log.warning(
                "redis_hand_back_failed",
                count=len(held),
                consumer=self.consumer,
                error=f"{type(exc).__name__}: {exc}",
                reason="the other workers take them after the visibility timeout instead",
            )
            return
        log.warning(
            "redis_deliveries_handed_back",
            count=len(held),
            consumer=self.consumer,
            reason="held but not finished when this worker closed: the other workers take "
            "them at their next look (each may be sent again if it was on the wire)",
        )
        self._held.clear()

    async def enqueue(self, deliveries: Sequence[Delivery]) -> None:
        """Add the deliveries; returns once they are in the stream. Emits made while another
        call is under way go together in the next one (a group commit: concurrent emits,
        as from a web server's handlers, share a round trip), each still waiting for its own."""
        if not deliveries:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._emits.append((list(deliveries), future))
        if self._adder is None or self._adder.done():
            self._adder = asyncio.create_task(self._add_emits(), name="redis-enqueue")
        # The future is this emit's own: awaited bare (no `shield`, a tenth of a producer's
        # CPU), a cancelled emit cancels only it, and `_add_emits` skips a future that is
        # done. Its deliveries go in with the call either way, as they did.
        await checked(future)

    async def _add_emits(self) -> None:
        while self._emits:
            emits, self._emits = self._emits[:_ADD_MAX], self._emits[_ADD_MAX:]
            try:
                await self._add([d for deliveries, _ in emits for d in deliveries])
            except BaseException as exc:
                for _, future in emits:
                    if not future.done():
                        _fail(future, exc)
                if not isinstance(exc, Exception):
                    raise
            else:
                for _, future in emits:
                    if not future.done():
                        future.set_result(None)

    async def _add(self, deliveries: Sequence[Delivery]) -> None:
        replayed = [
            self._replays[key]
            for key in {(d.webhook_name, d.event.event_id) for d in deliveries}
            if key in self._replays
        ]
        # One script call (one round trip, one command to encode and parse) for the whole
        # emit, history included; a replay's letter is deleted in it, atomically.
        ttl = self.history_ttl
        now = time.time()
        numbers: dict[int, int] = {}
        texts: list[str] = []
        marks: list[str] = []
        events: list[Event] = []
        keys = [self.stream, self.history_index, self.dead_key, self.replaying_key]
        args: list[Any] = [ttl, now, now - ttl, len(deliveries), 0, len(replayed)]
        fields: list[str] = []
        for delivery in deliveries:
            event = delivery.event
            number = numbers.get(id(event))
            if number is None:
                text, mark = _stored(event)
                texts.append(text)
                marks.append(mark)
                events.append(event)
                number = numbers[id(event)] = len(texts)
            keys.append(self._history_key(delivery.delivery_id))
            context = delivery.context
            # Strings, numbers as redis-py would send them (repr), so the script stores
            # exactly the same text (a JSON number would become a Lua double).
            fields += [
                delivery.delivery_id,
                delivery.webhook_name,
                str(number),
                repr(delivery.attempts),
                repr(delivery.enqueued_at),
                json.dumps(context, separators=(",", ":")) if context else "",
                event.event_id,
                event.event_type,
            ]
        args[4] = len(texts)
        args += fields
        keys += [f"{self.prefix}history:event:{event.event_id}" for event in events]
        keys += [f"{self.prefix}history:of:{event.event_id}" for event in events]
        args += texts
        args += marks
        args += replayed
        keys.append(self.epoch_key)
        n = len(deliveries)
        for _ in range(3):
            answers: Any = await self._enqueue(keys=keys, args=args)
            if None not in answers[:n]:
                break
            # The stream is gone (its letters with it, if this was a replay): make it and its
            # group, then the same call again, which adds only what did not go in.
            await self._recreate_group("enqueue")
        else:
            raise RuntimeError(f"{self.stream}: the stream kept vanishing while adding to it")
        for delivery, entry_id in zip(deliveries, answers, strict=False):
            delivery.store_ref = entry_id
        if answers[n] != self._epoch:
            await self._check_epoch(answers[n], "enqueue")
        if self.role == "producer":
            if self._unread_since is None:
                self._unread_since = answers[0]
            if self._watcher is None:
                self._watcher = asyncio.create_task(
                    self._watch(), name=f"redis-watch:{self.consumer}"
                )
                self._tasks.append(self._watcher)
        for delivery in deliveries:
            self._replays.pop((delivery.webhook_name, delivery.event.event_id), None)

    async def record_attempt(self, delivery: Delivery) -> None:
        # The count only spares a delivery taken over by another worker some attempts: not
        # worth failing the delivery for while Redis is away.
        try:
            await checked(
                self.redis.hset(self.attempts_key, delivery.delivery_id, delivery.attempts)
            )
        except RedisError as exc:
            self._mark_fault.failed(exc, stream=self.stream)
        else:
            self._mark_fault.ok(stream=self.stream)

    async def mark_delivered(self, delivery: Delivery) -> None:
        """Delivered whatever happens here. The acknowledgement is written behind, not waited
        for: the lane worker goes on to its next delivery, and the write-behind call carries
        every acknowledgement made while the one before was under way (one round trip for
        many deliveries). The entry stays held by this worker (refreshed, counted in its
        window, waited for when it stops) until the call returns; if it cannot be written,
        the entry stays pending and goes out again after the visibility timeout (at least
        once), as it would after a crash at that moment."""
        if delivery.store_ref is not None:
            self._acks.append(delivery)
            self._write_soon()
            return
        try:
            await self._finish(delivery, None)
        except RedisError as exc:
            self._mark_fault.failed(exc, stream=self.stream, event_id=delivery.event.event_id)
        else:
            self._mark_fault.ok(stream=self.stream)

    async def _finish(self, delivery: Delivery, dead: tuple[str, str] | None) -> None:
        ref = str(delivery.store_ref)
        self._finishing.add(ref)
        try:
            await self._finish_entry(
                "" if delivery.store_ref is None else ref, delivery.delivery_id, dead
            )
        finally:
            self._finishing.discard(ref)
            self._release(delivery)
        reraise_dropped_cancel()

    async def _finish_entry(
        self, entry_id: str, delivery_id: str, dead: tuple[str, str] | None
    ) -> None:
        """One `_FINISH` call: the letter `dead` (id, JSON) if any, the entry acknowledged."""
        letter_id, letter = dead if dead is not None else ("", "")
        await self._finish_script(
            keys=[self.stream, self.attempts_key, self.dead_key, self._history_key(delivery_id)],
            args=[GROUP, entry_id, delivery_id, letter_id, letter, self.history_ttl, time.time()],
        )

    async def add_dead_letter(self, delivery: Delivery, error: dict[str, Any]) -> DeadLetter:
        letter = DeadLetter.from_delivery(delivery, error)
        # The letter is written and the entry acknowledged in one transaction.
        await self._finish(delivery, (letter.dead_letter_id, _record(letter)))
        return letter

    async def dead_letters(self, webhook_name: str | None = None) -> list[DeadLetter]:
        """The dead letters, but those a replay is under way for (within `replay_lease`)."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hgetall(self.dead_key)
        pipe.hgetall(self.replaying_key)
        pipe.time()
        stored, marks, (now, _) = await pipe.execute()
        letters = [
            _letter(key, value)
            for key, value in stored.items()
            if key not in marks or now - float(marks[key]) >= self.replay_lease
        ]
        letters.sort(key=lambda letter: letter.failed_at)
        return [
            letter
            for letter in letters
            if webhook_name is None or letter.webhook_name == webhook_name
        ]

    async def dead_letter(self, dead_letter_id: str) -> DeadLetter | None:
        """One dead letter by its id, as `dead_letters()` would list it (None when there is
        none, or a replay holds it within `replay_lease`), without reading the others: a
        replay of one letter costs the same among a hundred thousand."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hget(self.dead_key, dead_letter_id)
        pipe.hget(self.replaying_key, dead_letter_id)
        pipe.time()
        value, mark, (now, _) = await pipe.execute()
        if value is None or (mark is not None and now - float(mark) < self.replay_lease):
            return None
        return _letter(dead_letter_id, value)

    async def take_dead_letter(self, dead_letter_id: str) -> DeadLetter | None:
        """Take a dead letter for replay: it is marked, not deleted, and `enqueue` of its
        delivery (same webhook and event) deletes it in the same transaction. A process that
        dies in between leaves it listed again after `replay_lease` seconds. None if there is
        no such letter or another replay holds it. Raises `ValueError` for a letter whose
        event could not be decoded (it cannot be sent as it is)."""
        current: Any = await self.redis.hget(self.dead_key, dead_letter_id)
        if current is not None:
            _refuse_unreplayable(_letter(dead_letter_id, current))
        value = await self._take(
            keys=[self.dead_key, self.replaying_key], args=[dead_letter_id, self.replay_lease]
        )
        if value is None:
            return None
        letter = _letter(dead_letter_id, value)
        self._replays[(letter.webhook_name, letter.event.event_id)] = dead_letter_id
        return letter

    async def requeue_dead_letter(self, dead_letter_id: str) -> Delivery | None:
        """Replay a dead letter in one step: its fresh delivery (attempts start over) is
        added to the stream and the letter deleted atomically, in one script. Returns the
        delivery, or None if there is no such letter or another replay holds it."""
        value: Any = await self.redis.hget(self.dead_key, dead_letter_id)
        if value is None:
            return None
        letter = _letter(dead_letter_id, value)
        _refuse_unreplayable(letter)
        delivery = letter.replay_delivery()
        fields = [item for pair in _entry(delivery).items() for item in pair]
        # The fresh delivery's record before it is queued: written after, it could land once
        # a worker had delivered it and marked it so, and put it back to "pending" for good
        # (seen on a loaded machine: a replay the CLI waited for never ended).
        try:
            pipe = self.redis.pipeline(transaction=False)
            self._queue_history(pipe, [delivery], {})
            await pipe.execute()
        except RedisError as exc:
            self._history_fault.failed(exc, stream=self.stream)
        try:
            entry_id = await self._requeue(
                keys=[
                    self.dead_key,
                    self.replaying_key,
                    self.stream,
                    self.epoch_key,
                    self._history_key(delivery.delivery_id),
                ],
                args=[dead_letter_id, value, self.replay_lease, GROUP, _new_epoch(), *fields],
            )
        except BaseException:
            await self._drop_record(delivery)  # not queued: no record says it was
            raise
        if entry_id is None:
            await self._drop_record(delivery)
            return None
        delivery.store_ref = entry_id
        return delivery

    async def _drop_record(self, delivery: Delivery) -> None:
        """Remove the record of a delivery that was not queued after all (best effort: it
        would expire with the history)."""
        with contextlib.suppress(RedisError):
            pipe = self.redis.pipeline(transaction=False)
            pipe.delete(self._history_key(delivery.delivery_id))
            pipe.srem(f"{self.prefix}history:of:{delivery.event.event_id}", delivery.delivery_id)
            pipe.zrem(self.history_index, delivery.delivery_id)
            await pipe.execute()

    # -- attempt history (`history.KeepsHistory`) ------------------------------------------

    def _history_key(self, delivery_id: str) -> str:
        return f"{self.prefix}history:{delivery_id}"

    def _queue_history(
        self, pipe: Any, deliveries: Sequence[Delivery], encoded: dict[int, str]
    ) -> None:
        """Add to `pipe` the new deliveries' records, their events, and the index."""
        ttl = self.history_ttl
        now = time.time()
        index: dict[str, float] = {}
        for delivery in deliveries:
            event = delivery.event
            key = self._history_key(delivery.delivery_id)
            pipe.hset(
                key,
                mapping={
                    "w": delivery.webhook_name,
                    "e": event.event_id,
                    "t": event.event_type,
                    "s": "pending",
                    "c": delivery.enqueued_at,
                    "u": now,
                },
            )
            pipe.expire(key, ttl)
            text = encoded.get(id(event)) or event.to_json()
            pipe.set(f"{self.prefix}history:event:{event.event_id}", text, ex=ttl)
            of = f"{self.prefix}history:of:{event.event_id}"
            pipe.sadd(of, delivery.delivery_id)
            pipe.expire(of, ttl)
            index[delivery.delivery_id] = delivery.enqueued_at
        pipe.zadd(self.history_index, index)
        # What expired leaves the index as new records come (no sweeper needed).
        pipe.zremrangebyscore(self.history_index, "-inf", now - ttl)

    def note_attempt(self, delivery: Delivery, attempt: RawAttempt, status: str) -> None:
        """Queued for the write-behind task, which writes what accumulated in one call: the
        attempt never waits for Redis, and a burst of attempts costs one round trip."""
        if self._redis is None:
            log.warning("history_not_recorded", stream=self.stream, reason="store not open")
            return
        # Masked now, while the registry knows the request's credentials.
        self._notes.append((delivery, attempt.record(delivery.delivery_id), status))
        self._write_soon()

    def _write_soon(self) -> None:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(
                self._write_behind(), name=f"redis-write-behind:{self.consumer}"
            )
        elif len(self._acks) >= _GATHER_ENOUGH or not self._more_to_come():
            self._gathered.set()

    def _more_to_come(self) -> bool:
        """Deliveries held here and not finished yet: their acknowledgements may share the
        next write-behind call."""
        return len(self._held) > len(self._acks)

    async def _write_behind(self) -> None:
        """Write the attempts noted and acknowledge the deliveries finished since the last
        call, in one script call, until nothing is left; each call takes what came in while
        the one before was under way, and what comes within `_GATHER_SECONDS` while other
        deliveries are still under way here (a group commit: one round trip for many)."""
        while self._notes or self._acks:
            if self._more_to_come() and len(self._acks) < _GATHER_ENOUGH:
                self._gathered.clear()
                await wait_event(self._gathered, _GATHER_SECONDS)
            notes, self._notes = self._notes, []
            acks, self._acks = self._acks, []
            self._acking = acks
            gone: list[tuple[Delivery, AttemptRecord, str]] = []
            try:
                for start in range(0, max(len(notes), len(acks)), _WRITE_BEHIND_MAX):
                    gone += await self._write_some(
                        notes[start : start + _WRITE_BEHIND_MAX],
                        acks[start : start + _WRITE_BEHIND_MAX],
                    )
            except BaseException as exc:
                if notes:
                    # History never costs a delivery: said once per outage, and the
                    # attempts of that moment are not on record.
                    self._history_fault.failed(exc, stream=self.stream, lost=len(notes))
                if acks:
                    self._mark_fault.failed(
                        exc,
                        stream=self.stream,
                        event_id=acks[0].event.event_id,
                        count=len(acks),
                        reason="delivered, but not acknowledged: they may be delivered again",
                    )
                if not isinstance(exc, Exception):
                    raise
            else:
                if acks:
                    self._mark_fault.ok(stream=self.stream)
                if notes and await self._written_again(gone):
                    self._history_fault.ok(stream=self.stream)
            finally:
                self._acking = []
                for delivery in acks:
                    self._release(delivery)

    async def _write_some(
        self, notes: list[tuple[Delivery, AttemptRecord, str]], acks: list[Delivery]
    ) -> list[tuple[Delivery, AttemptRecord, str]]:
        """One write-behind call; returns the notes whose record was gone (not written)."""
        keys = [self.stream, self.attempts_key]
        fields: list[str] = []
        for delivery, record, status in notes:
            keys.append(self._history_key(delivery.delivery_id))
            fields += _attempt_fields(record, status)
        acked: list[str] = []
        for delivery in acks:
            acked += [str(delivery.store_ref), delivery.delivery_id]
        args: list[Any] = [GROUP, self.history_ttl, len(notes), len(acks), *fields, *acked]
        gone: Any = await self._write_behind_script(keys=keys, args=args)
        return [notes[int(number) - 1] for number in gone or ()]

    async def _written_again(self, notes: list[tuple[Delivery, AttemptRecord, str]]) -> bool:
        """Make the records that were gone again whole, with their attempt; False when that
        failed (said once per outage). Their deliveries are acknowledged already: a failure
        here costs history only."""
        if not notes:
            return True
        keys = [self.history_index]
        args: list[Any] = [self.history_ttl]
        for delivery, record, status in notes:
            event = delivery.event
            keys += [
                self._history_key(delivery.delivery_id),
                f"{self.prefix}history:event:{event.event_id}",
                f"{self.prefix}history:of:{event.event_id}",
            ]
            args += [
                delivery.delivery_id,
                delivery.webhook_name,
                event.event_id,
                event.event_type,
                repr(delivery.enqueued_at),
                *_attempt_fields(record, status),
                event.to_json(),
            ]
        self._say_rewritten(len(notes))
        try:
            await self._rewrite_history(keys=keys, args=args)
        except RedisError as exc:
            self._history_fault.failed(exc, stream=self.stream, lost=len(notes))
            return False
        return True

    def _say_rewritten(self, count: int) -> None:
        """Records found gone are said, at most once a minute (a backlog that waited too long
        is thousands of them), with how many since the last line."""
        self._rewritten += count
        now = time.monotonic()
        if now - self._rewritten_said < 60.0:
            return
        log.warning(
            "history_record_rewritten",
            count=self._rewritten,
            stream=self.stream,
            history_ttl=self.history_ttl,
            reason="the attempt history of these deliveries was gone when an attempt was "
            "written: they waited unheld longer than history_ttl (no worker running, or "
            "one without their webhook), or Redis lost its data; each record is made again "
            "from this attempt on, its earlier attempts are not on record",
        )
        self._rewritten = 0
        self._rewritten_said = now

    async def _history_written(self) -> None:
        """Wait for the attempts noted so far to be written (reads see them)."""
        task = self._writer
        if task is not None and not task.done():
            self._gathered.set()  # a reader waits: write what there is now
            await asyncio.shield(task)

    async def delivery_record(self, delivery_id: str) -> DeliveryRecord | None:
        await self._history_written()
        value: Any = await self.redis.hgetall(self._history_key(delivery_id))
        return _history_record(delivery_id, value)

    async def delivery_records(self, query: DeliveryQuery) -> DeliveryPage:
        await self._history_written()
        after = query.after()
        wanted = query.limit + 1
        found: list[DeliveryRecord] = []
        if query.event_id is not None:
            ids: Any = await self.redis.smembers(f"{self.prefix}history:of:{query.event_id}")
            for record in await self._records(sorted(ids)):
                if query.matches(record):
                    found.append(record)
            return page_of(found, query)
        top = "+inf" if after is None else after[0]
        if query.until is not None:
            top = min(float(top), query.until) if top != "+inf" else query.until
        bottom: Any = "-inf" if query.since is None else query.since
        offset = 0
        chunk = max(wanted, 100)
        while len(found) < wanted:
            page: Any = await self.redis.zrevrangebyscore(
                self.history_index, top, bottom, start=offset, num=chunk, withscores=True
            )
            if not page:
                break
            offset += len(page)
            ids = [
                member for member, score in page if after is None or (float(score), member) < after
            ]
            for record in await self._records(ids):
                if query.matches(record) and (
                    after is None or (record.created_at, record.delivery_id) < after
                ):
                    found.append(record)
            if len(page) < chunk:
                break
        return page_of(found, query)

    async def _records(self, ids: Sequence[str]) -> list[DeliveryRecord]:
        if not ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for delivery_id in ids:
            pipe.hgetall(self._history_key(delivery_id))
        values = await pipe.execute()
        records = []
        for delivery_id, value in zip(ids, values, strict=True):
            record = _history_record(delivery_id, value)
            if record is not None:  # expired: its index entry is trimmed later
                records.append(record)
        return records

    async def stored_event(self, event_id: str) -> Event | None:
        await self._history_written()
        text: Any = await self.redis.get(f"{self.prefix}history:event:{event_id}")
        if text is None:
            return None
        try:
            return decode_event(text)
        except UndecodableEvent:
            return None

    async def backlog(self) -> dict[str, Any]:
        """What waits in the stream, and whether any worker reads it (for stats and
        monitoring; a producer's watch reads it too):

        - `entries`: deliveries not finished (queued, or held by a worker);
        - `unread`: of those, the ones no worker has read yet;
        - `oldest_seconds`, `oldest_unread_seconds`: the age of the oldest of each (None
          when there is none), by the server's clock;
        - `workers`: consumers in the group; `workers_reading`: those that read or refreshed
          within `max(no_worker_after, visibility_timeout)` seconds;
        - `data_losses`: times this process found the server had lost the store's data.
        """
        figures = await self._backlog()
        return {key: value for key, value in figures.items() if not key.startswith("_")}

    async def _backlog(self) -> dict[str, Any]:
        """`backlog()`, with `_last_read` (the group's last delivered entry id, None without
        a group), `_now_ms` (server time) and `_epoch` (the marker)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.time()
        pipe.get(self.epoch_key)
        pipe.xlen(self.stream)
        pipe.xrange(self.stream, min="-", max="+", count=1)
        pipe.xinfo_groups(self.stream)
        pipe.xinfo_consumers(self.stream, GROUP)
        # The XINFO calls fail without the stream or its group: read as "none".
        (seconds, micros), epoch, entries, first, groups, consumers = await pipe.execute(
            raise_on_error=False
        )
        now_ms = seconds * 1000 + micros // 1000
        groups = groups if isinstance(groups, list) else []
        consumers = consumers if isinstance(consumers, list) else []
        group = next((g for g in groups if g.get("name") == GROUP), None)
        recent_ms = max(self.no_worker_after, self.visibility_timeout) * 1000
        last_read = None if group is None else str(group.get("last-delivered-id"))
        oldest_unread: float | None = None
        unread = int(entries)
        if group is not None:
            # Finished entries are deleted: what is not pending in the group is unread.
            unread = max(0, unread - int(group.get("pending") or 0))
            if unread:
                after: Any = await self.redis.xrange(
                    self.stream, min=f"({last_read}", max="+", count=1
                )
                if after:
                    oldest_unread = max(0.0, (now_ms - _entry_key(after[0][0])[0]) / 1000)
        return {
            "entries": int(entries),
            "unread": unread,
            "oldest_seconds": max(0.0, (now_ms - _entry_key(first[0][0])[0]) / 1000)
            if first
            else None,
            "oldest_unread_seconds": oldest_unread,
            "workers": len(consumers),
            "workers_reading": sum(1 for c in consumers if int(c.get("idle", 0)) < recent_ms),
            "data_losses": self.data_losses,
            "_last_read": last_read,
            "_now_ms": now_ms,
            "_epoch": epoch,
        }

    async def _watch(self) -> None:
        """A producer's look, every quarter of `no_worker_after` (15 s at most), at whether
        what it added is read: with no worker reading the stream (none started, or this
        producer's prefix is not theirs), its emits would say "queued" for ever. Said once
        (`redis_no_worker`) when an entry it added waited `no_worker_after` seconds unread
        while no worker read or refreshed anything for that long; again after workers read
        its entries. A backlog that workers are reading is not this. Also reads the epoch
        marker, so an idle producer learns of a loss too. Nothing per emit: a task of its
        own, started by the first emit."""
        every = max(0.05, min(self.no_worker_after / 4, 15.0))
        while True:
            await wait_event(self._closing, every)
            if self._closing.is_set():
                return
            try:
                figures = await self._backlog()
                await self._check_epoch(figures["_epoch"], "producer")
            except RedisError:
                continue  # unreachable: the emits meanwhile say so themselves
            self._judge_workers(figures)

    def _judge_workers(self, figures: dict[str, Any]) -> None:
        waiting = self._unread_since
        if waiting is None:
            return
        last_read = figures["_last_read"]
        if last_read is not None and _entry_key(last_read) >= _entry_key(waiting):
            self._unread_since = None
            if self._no_worker_said:
                self._no_worker_said = False
                log.warning("redis_worker_reading", stream=self.stream, prefix=self.prefix)
            return
        waited = (figures["_now_ms"] - _entry_key(waiting)[0]) / 1000
        if waited < self.no_worker_after or figures["workers_reading"] or self._no_worker_said:
            return
        self._no_worker_said = True
        # An error: nothing this producer queues reaches anyone until a worker reads it.
        log.error(
            "redis_no_worker",
            store=_safe_url(self.url),
            prefix=self.prefix,
            stream=self.stream,
            waited_seconds=round(waited, 1),
            unread=figures["unread"],
            workers=figures["workers"],
            reason="deliveries this producer queued have waited longer than no_worker_after "
            "and no worker has read this stream for as long: none is running, or the workers "
            "use another prefix or database; nothing is delivered until one reads it",
        )

    async def pending_counts(self) -> dict[str, dict[str, int]]:
        """Per webhook: entries in the stream, that is every delivery not finished yet,
        whether it waits for a worker (the group's lag) or a worker holds it (the consumers'
        pending lists); and of those, the ones attempted at least once (`PendingCounts`).
        Finished entries are deleted, so the stream holds exactly what is pending."""
        # Counted inside Redis a page at a time (`_COUNT_PAGE`): only the counts cross the
        # wire, where reading the entries brought every queued event's text over, and the
        # gateway's health pages ask this on every view. A page is a short script (about a
        # millisecond of the server's), so producers and workers are not held up by a long one.
        self._must_be_open()
        counts: dict[str, dict[str, int]] = {}
        start = "-"
        while True:
            found: Any = await self._count_page(
                keys=[self.stream, self.attempts_key], args=[start, _COUNT_PAGE_SIZE]
            )
            seen, last = int(found[0]), str(found[1])
            for i in range(2, len(found), 3):
                row = counts.setdefault(str(found[i]), {"pending": 0, "retrying": 0})
                row["pending"] += int(found[i + 1])
                row["retrying"] += int(found[i + 2])
            if seen < _COUNT_PAGE_SIZE:
                return counts
            start = "(" + last

    def make_rate_limiter(self, webhook: Any, clock: Any) -> RedisRateLimiter:
        """The dispatcher's lanes call this: one limit for the webhook across all workers."""
        return RedisRateLimiter(self, webhook.name, webhook.rate_limit)

    async def reserve_script(self, *, keys: list[str], args: list[Any]) -> Any:
        return await checked(self._reserve(keys=keys, args=args))

    def make_circuit_breaker(self, webhook: Any, clock: Any) -> RedisCircuitBreaker:
        """The dispatcher's lanes call this: one breaker for the webhook across all workers."""
        breaker = RedisCircuitBreaker(
            self,
            webhook.name,
            webhook.circuit_breaker,
            clock,
            probe_ttl=webhook.retry_policy.timeout_seconds + 5.0,
        )
        self._breakers.append(breaker)
        return breaker

    async def breaker_script(self, *, keys: list[str], args: list[Any]) -> Any:
        return await self._breaker_sync(keys=keys, args=args)

    def key_value(self, namespace: str) -> RedisKeyValue:
        """Plugins' memory for one webhook, in Redis: every worker reads what another wrote."""
        return RedisKeyValue(self, f"{self.prefix}kv:{namespace}")

    @property
    def closing(self) -> asyncio.Event:
        """Set when the store closes: its background tasks end."""
        return self._closing

    def start_task(self, coro: Coroutine[Any, Any, None], *, name: str) -> asyncio.Task[None]:
        """Run a background task until the store closes (worker role only)."""
        if self.role != "worker":
            coro.close()
            raise RuntimeError("a producer-role store runs no background tasks")
        task = asyncio.create_task(coro, name=name)
        self._tasks.append(task)
        return task

    # -- the worker role -------------------------------------------------------------------

    def start_consuming(self, dispatcher: Any) -> None:
        """Take deliveries from the stream and hand them to `dispatcher` (worker role)."""
        if self.role != "worker" or self._consumer_task is not None:
            return
        self._dispatcher = dispatcher
        self._stop_taking.clear()
        self._closing.clear()
        if not self._held:
            # Whatever this worker will hold is read after now. (Entries still held from an
            # earlier run keep the window their last refresh gave.)
            self._sure_until = _sure_clock() + self._sure_for
        self._consumer_task = asyncio.create_task(
            self._consume(), name=f"redis-consume:{self.consumer}"
        )
        self._tasks.append(
            asyncio.create_task(self._heartbeat(), name=f"redis-heartbeat:{self.consumer}")
        )

    async def stop_consuming(self) -> None:
        """Take nothing more (what is held still finishes, is refreshed and acknowledged).

        The consumer is told to stop rather than cancelled, so a read in progress completes
        and what it took is handed to the lanes instead of being stranded until the
        visibility timeout; it returns within one block of XREADGROUP.
        """
        task, self._consumer_task = self._consumer_task, None
        if task is None:
            return
        self._stop_taking.set()
        self._room.set()
        self._drained.set()
        await end_tasks([task], patience=self._block_ms / 1000 + 2.0)

    def _release(self, delivery: Delivery) -> None:
        ref = str(delivery.store_ref)
        if self._lost:
            self._lost.discard(ref)
        self._let_go(ref)

    def _let_go(self, entry_id: str) -> None:
        """Count the entry out of this worker's window (it ended here, or is no longer ours)."""
        if self._held.pop(entry_id, None) is not None:
            self._finished += 1
            if self._stretch:
                self._stretch -= 1  # a stretched place is not refilled
            else:
                self._room.set()
            if len(self._held) <= self._low_water:
                self._drained.set()

    def surely_held(self, delivery: Delivery) -> bool:
        """True while, by this machine's clock (`_sure_clock`, which counts a suspend), less
        than nine tenths of the visibility timeout (`_SURE_SHARE`) have passed since the
        start of the call that last refreshed the least recently refreshed entry this worker
        holds (a read, a claim, a heartbeat): no other worker can have claimed any of them
        yet. False for an entry the heartbeat found lost, and whenever the heartbeat is late
        (this process was stopped, its loop held up, or Redis was out of reach). Always True
        in the producer role and for a delivery without an entry."""
        lost = self._lost
        if lost and delivery.store_ref in lost:
            return False
        return _sure_clock() < self._sure_until or delivery.store_ref is None

    async def confirm_held(self, delivery: Delivery) -> bool:
        """Ask Redis whether `delivery`'s entry is still pending for this worker's consumer;
        if so it is claimed again (its idle time reset) in the same script, and True. False
        when another consumer holds it, or it ended elsewhere (acknowledged, dead-lettered,
        deleted): this worker forgets it. An entry that went with the server's data is still
        this worker's (nobody else can send it). Raises `RedisError` (or `TimeoutError`, past
        `_confirm_seconds`) when Redis cannot tell, at once for a while after it could not."""
        if delivery.store_ref is None or self.role != "worker":
            return True
        entry_id = str(delivery.store_ref)
        began = _sure_clock()
        if began < self._unanswered_until:
            # Redis left a check unanswered moments ago: not asked again yet, so that each
            # attempt does not wait in turn for an outage to end.
            raise RedisError("Redis did not answer the last claim check; not asked again yet")
        self._adding.append(began)
        try:
            async with asyncio.timeout(self._confirm_seconds):
                held = await self._refresh_held({entry_id: delivery})
        except ResponseError as exc:
            if _no_group(exc):
                return True  # the entries went with the server's data: sent from memory
            raise
        except (RedisError, OSError, TimeoutError):
            # Unreachable, or too slow to wait for: the attempt is sent unchecked ("cannot
            # tell"), and so are the next ones for about a heartbeat's interval.
            self._unanswered_until = _sure_clock() + self.visibility_timeout / 3
            raise
        finally:
            self._adding.remove(began)
        if self._lost:
            self._lost.discard(entry_id)
        if held:
            # Back in the window when the heartbeat had let it go (it is ours again: this
            # worker reclaimed it after it had been taken over).
            self._held.setdefault(entry_id, delivery)
            return True
        self._let_go(entry_id)
        return False

    async def _refresh_held(self, held: dict[str, Delivery]) -> set[str]:
        """Of the entries in `held` (entry id -> delivery), those still this worker's, each
        refreshed with its delivery's history (see `_REFRESH_HELD`). Entries something else
        deleted from the stream are still this worker's, and said."""
        ids = list(held)
        kept: set[str] = set()
        deleted: list[str] = []
        for start in range(0, len(ids), _REFRESH_MAX):
            some = ids[start : start + _REFRESH_MAX]
            keys = [self.stream]
            for entry_id in some:
                delivery = held[entry_id]
                event_id = delivery.event.event_id
                keys += [
                    self._history_key(delivery.delivery_id),
                    f"{self.prefix}history:event:{event_id}",
                    f"{self.prefix}history:of:{event_id}",
                ]
            answer: Any = await checked(
                self._refresh_held_script(
                    keys=keys, args=[GROUP, self.consumer, self.history_ttl, *some]
                )
            )
            kept.update(answer[0])
            deleted += answer[1]
        if deleted:
            log.error(
                "redis_held_entries_deleted",
                count=len(deleted),
                entry_ids=deleted[:20],
                consumer=self.consumer,
                stream=self.stream,
                reason="entries this worker held were deleted from the stream by something "
                "other than the workers (XTRIM, XDEL, XADD MAXLEN): they are still sent from "
                "this worker's memory, but entries deleted so before a worker read them are "
                "lost; never trim the stream, it holds only deliveries not finished yet",
            )
        return kept

    async def _consume(self) -> None:
        claim_every = self.visibility_timeout / 2
        next_claim = 0.0
        next_forget = time.monotonic() + self.consumer_expiry / 2
        cursor = "0-0"
        joined = False
        # Until when a window with some room, but less than a quarter, waits for more.
        short_until: float | None = None
        while not self._stop_taking.is_set():
            try:
                if not joined:
                    # Joined explicitly, so operators (XINFO CONSUMERS) see an idle worker too.
                    # At maxmemory the server refuses that (XREADGROUP, which it does not
                    # refuse, makes the consumer itself): the worker reads on and drains.
                    with contextlib.suppress(OutOfMemoryError):
                        await checked(
                            self.redis.xgroup_createconsumer(self.stream, GROUP, self.consumer)
                        )
                    joined = True
                if self._step and len(self._held) + self._read_at_least <= self.window:
                    # The stall is over: a quarter of the window is free.
                    self._step = self._stretch = 0
                    self._stall_said = False
                free = self.window + self._stretch - len(self._held)
                if free >= self._read_at_least:
                    self._short_since = None
                else:
                    # Backpressure: read no further ahead than the lanes can send. And with a
                    # full window, wait for a quarter of it to be free rather than read the
                    # few entries each acknowledgement frees (a round trip per few
                    # deliveries): the lanes still hold three quarters of a window of work.
                    # Not for long while some of it is free: what holds the window may be
                    # waiting itself (a backoff, a rate limit), and the entries behind it
                    # would wait as long.
                    self._room.clear()
                    if free < 1:
                        if await self._stretched():
                            continue
                        await wait_event(self._room, min(claim_every, _STALL_SECONDS))
                        continue
                    now = time.monotonic()
                    if short_until is None:
                        short_until = now + _ROOM_PATIENCE
                    if now < short_until:
                        await wait_event(self._room, short_until - now)
                        continue
                short_until = None
                entries: list[tuple[str, dict[str, str]]] = []
                fresh = False
                began = _sure_clock()
                self._adding.append(began)
                try:
                    # A claim pass with a quarter free at least: XAUTOCLAIM looks at ten times
                    # COUNT pending entries a call, and a pass of a few a call took long.
                    if time.monotonic() >= next_claim and free >= self._read_at_least:
                        cursor, entries = await self._claim_idle(cursor, free)
                        if cursor == "0-0":
                            next_claim = time.monotonic() + claim_every
                        if time.monotonic() >= next_forget:
                            next_forget = time.monotonic() + self.consumer_expiry / 2
                            await self.forget_dead_consumers()
                    if not entries:
                        # At most a window a reply, stretched or not (see `socket_timeout`).
                        entries = await checked(self._read_new(min(free, self.window)))
                        fresh = True
                    if entries:
                        # Even when stopping: these are ours now, so the lanes deliver them.
                        await self._submit(entries, fresh)
                finally:
                    self._adding.remove(began)
                if entries and fresh:
                    await self._linger(len(entries))
                self._consume_fault.ok(consumer=self.consumer)
            except Exception as exc:
                if _no_group(exc):
                    # The server lost its data: recreate the group at once and read on.
                    try:
                        await self._recreate_group("worker")
                    except Exception as again:
                        self._consume_fault.failed(again, consumer=self.consumer)
                        await wait_event(self._stop_taking, min(1.0, claim_every))
                    joined = False
                    cursor = "0-0"
                    continue
                # Redis restarting or unreachable: keep trying, the entries wait in the stream.
                self._consume_fault.failed(exc, consumer=self.consumer)
                await wait_event(self._stop_taking, min(1.0, claim_every))

    async def _stretched(self) -> bool:
        """Whether the full window is stalled and got a stretch (see `_STALL_SECONDS`); at
        the stretch's limit, the stall is said once."""
        now = time.monotonic()
        if self._short_since is None or now - self._short_since >= 2 * _STALL_SECONDS:
            # Not timed yet, or the window had room a while ago and was refilled since.
            self._short_since, self._finished_then = now, self._finished
            return False
        took = now - self._short_since
        if took < _STALL_SECONDS:
            return False
        # Busy: a quarter of the window finished a `_STALL_SECONDS`, or more.
        busy = self._finished - self._finished_then >= self._read_at_least * took / _STALL_SECONDS
        self._short_since, self._finished_then = now, self._finished
        if busy:
            return False
        holding = collections.Counter(d.webhook_name for d in self._held.values())
        waiting = await self._waiting_behind(holding)
        if not waiting:
            return False
        most = self.window * (_STRETCH_WINDOWS - 1)
        if self._step < most and self._stretch < most:
            self._step = min(max(self._read_at_least, 2 * self._step), most - self._stretch)
            self._stretch += self._step
            if self._stretch == most:
                self._step = most  # at the limit for the rest of this stall
            log.info(
                "redis_window_stretched",
                held=len(self._held),
                window=self.window,
                stretch=self._stretch,
                holding=dict(holding.most_common(5)),
                waiting_behind=dict(waiting.most_common(5)),
                consumer=self.consumer,
            )
            return True
        # At the limit: what finished there is taken again, and the stall said once.
        topped, self._stretch = most - self._stretch, most
        if not self._stall_said:
            self._stall_said = True
            log.warning(
                "redis_window_stalled",
                held=len(self._held),
                holding=dict(holding.most_common(5)),
                waiting_behind=dict(waiting.most_common(5)),
                consumer=self.consumer,
                reason=f"this worker holds {len(self._held)} deliveries ({_STRETCH_WINDOWS} "
                "windows, the most it reads past a stalled window) and few of them finish (a "
                "rate limit's backlog, a breaker open, an endpoint that hangs): deliveries for "
                "other webhooks wait behind them in the stream. Add workers, or raise `window`",
            )
        return topped > 0

    async def _waiting_behind(self, holding: collections.Counter[str]) -> collections.Counter[str]:
        """Per webhook of this worker's other than those filling its window (`holding`: a
        quarter of the window or more), its deliveries seen among the entries no worker has
        read: the newest `_PEEK`, and `_PEEK_SCAN` more from where the last look ended (so an
        alert deep in a backlog is found within a few looks). Empty when Redis cannot tell:
        the consumer says a failing Redis."""
        try:
            answer = await self._peek_names(
                keys=[self.stream], args=[GROUP, _PEEK_SCAN, self._peek_cursor, _PEEK]
            )
        except Exception:  # only whether to read further is at stake
            return collections.Counter()
        self._peek_cursor = str(answer[0])
        filling = {name for name, count in holding.items() if count >= self._read_at_least}
        seen = zip(answer[1::2], answer[2::2], strict=True)
        return collections.Counter(
            {
                str(name): int(count)
                for name, count in seen
                if name
                and name not in filling
                and self._dispatcher is not None
                and self._dispatcher.lane_state(str(name)) is not None
            }
        )

    async def _linger(self, found: int) -> None:
        """After a read that found few entries, while plenty are still under way here: wait
        (`_READ_LINGER`) so that the next read carries more; see `_READ_LINGER`."""
        if found >= self._read_at_least or len(self._held) <= self._low_water:
            return
        self._drained.clear()
        if not self._stop_taking.is_set():
            await wait_event(self._drained, _READ_LINGER)

    async def _read_new(self, count: int) -> list[tuple[str, dict[str, str]]]:
        """Up to `count` entries never handed out, waiting up to one block for the first.

        One packed command, its reply read as the parser gives it: redis-py's call path and
        reply callback cost more than the read itself for the few entries a busy worker's
        read finds. The reply is nil, or the stream's entries: RESP3 (redis-py's default
        since 8) as a map, RESP2 as [[stream, entries]]; each entry [id, fields], the fields
        a flat list. An entry without fields (deleted while pending; never one read with
        `>`) is left, as `_claim_idle` leaves it."""
        reply: Any = await call(
            self.redis,
            [
                "XREADGROUP",
                "GROUP",
                GROUP,
                self.consumer,
                "COUNT",
                count,
                "BLOCK",
                self._block_ms,
                "STREAMS",
                self.stream,
                ">",
            ],
        )
        if not reply:
            return []
        found = next(iter(reply.values())) if isinstance(reply, dict) else reply[0][1]
        return [(entry_id, _fields(flat)) for entry_id, flat in found or () if flat]

    async def forget_dead_consumers(self) -> list[str]:
        """Remove from the group the consumers of workers that died: idle longer than
        `consumer_expiry` and holding no entry (what they held was reclaimed). Workers do
        this every half `consumer_expiry`. Returns the names removed."""
        removed: Any = await checked(
            self._forget(
                keys=[self.stream],
                args=[GROUP, self.consumer, int(self.consumer_expiry * 1000)],
            )
        )
        if removed:
            log.info("redis_consumers_forgotten", consumers=list(removed))
        return list(removed)

    async def _claim_idle(
        self, cursor: str, count: int
    ) -> tuple[str, list[tuple[str, dict[str, str]]]]:
        answer = await checked(
            self.redis.xautoclaim(
                self.stream,
                GROUP,
                self.consumer,
                min_idle_time=int(self.visibility_timeout * 1000),
                start_id=cursor,
                count=count,
            )
        )
        next_cursor, claimed = answer[0], answer[1]
        claimed = [(entry_id, fields) for entry_id, fields in claimed if fields]
        # Redis 7 names the entries pending for an idle consumer that are gone from the stream
        # (and drops them from the pending list): deleted by something other than the workers
        # while their worker was gone. Nobody holds them any more: lost, and said.
        deleted = list(answer[2]) if len(answer) > 2 and answer[2] else []
        if deleted:
            log.error(
                "redis_pending_entries_deleted",
                count=len(deleted),
                entry_ids=deleted[:20],
                consumer=self.consumer,
                stream=self.stream,
                reason="deliveries pending for a worker that stopped were deleted from the "
                "stream by something other than the workers (XTRIM, XDEL, XADD MAXLEN) before "
                "another worker took them over: they are lost, never sent; never trim the "
                "stream, it holds only deliveries not finished yet",
            )
        return next_cursor, claimed

    async def _submit(self, entries: list[tuple[str, dict[str, str]]], fresh: bool) -> None:
        """Hand entries to the lanes. `fresh`: read with `>`, never handed out before, so no
        worker has counted an attempt of theirs (a count is written only by the worker that
        holds the entry): their count is the entry's own, without a round trip to look."""
        if fresh:
            counted: list[Any] = [None] * len(entries)
        else:
            ids = [fields.get("d") or entry_id for entry_id, fields in entries]
            counted = await checked(self.redis.hmget(self.attempts_key, ids))
        taken = 0
        for (entry_id, fields), attempts in zip(entries, counted, strict=True):
            if entry_id in self._held or entry_id in self._lost:
                # Reclaimed from ourselves: its copy is still in the lanes here (one the
                # heartbeat had let go is confirmed as ours again before it is sent).
                continue
            try:
                delivery = _delivery(entry_id, fields, attempts)
            except UndecodableEvent as exc:
                # One bad entry goes to the dead letters; the rest of the batch goes on.
                await self._dead_letter_undecodable(entry_id, fields, exc)
                continue
            try:
                self._dispatcher.submit(delivery)
            except KeyError:
                # Another worker may know this webhook: leave the entry pending (it returns
                # after the visibility timeout) rather than drop or dead-letter it.
                self._say_unknown(delivery)
                continue
            self._held[entry_id] = delivery
            taken += 1
        if taken and not fresh:
            log.warning("deliveries_reclaimed", count=taken, consumer=self.consumer)

    def _say_unknown(self, delivery: Delivery) -> None:
        """An entry for a webhook this worker does not have is left pending, for a worker
        that has it; it comes back here at every claim pass. Said once per webhook, then at
        most every `_UNKNOWN_SAY_EVERY` seconds with how many came meanwhile (a line per entry
        and pass buried the log)."""
        name = delivery.webhook_name
        self._unknown[name] = self._unknown.get(name, 0) + 1
        now = time.monotonic()
        if now - self._unknown_said.get(name, -math.inf) < _UNKNOWN_SAY_EVERY:
            return
        log.warning(
            "delivery_for_unknown_webhook",
            webhook=name,
            event_id=delivery.event.event_id,
            count=self._unknown.pop(name),
            consumer=self.consumer,
            reason="this worker has no webhook of that name: its deliveries are left pending "
            "(not sent, not dead-lettered) for a worker that has it, which takes them after "
            "the visibility timeout; with none, they wait in the stream (stats count them)",
        )
        self._unknown_said[name] = now

    async def _dead_letter_undecodable(
        self, entry_id: str, fields: dict[str, str], exc: UndecodableEvent
    ) -> None:
        letter = DeadLetter.undecodable(
            webhook_name=fields.get("w") or "",
            delivery_id=fields.get("d") or entry_id,
            stored=fields.get("e", ""),
            reason=str(exc),
            attempts=_int(fields.get("a")),
        )
        log.error(
            "undecodable_delivery_dead_lettered",
            stream=self.stream,
            entry_id=entry_id,
            webhook=letter.webhook_name,
            event_id=letter.event.event_id,
            dead_letter_id=letter.dead_letter_id,
            reason=letter.error["reason"],
        )
        await checked(
            self._finish_entry(
                entry_id, letter.delivery_id, (letter.dead_letter_id, _record(letter))
            )
        )

    async def _heartbeat(self) -> None:
        """Keep what this worker holds from looking abandoned (a slow retry is not a crash),
        and with it how long `surely_held` answers True. Only entries still pending for this
        worker's consumer are refreshed: one another worker took over (this process was
        stopped past the visibility timeout) stays that worker's, and is not sent from here."""
        while True:
            await wait_event(self._closing, self.visibility_timeout / 3)
            if self._closing.is_set():
                return
            # A worker's reads go on without an error against a stream another process made
            # again after the server lost its data (NOGROUP only tells the first to come).
            await self._look_at_epoch("worker")
            began = _sure_clock()
            fresh_since = min(self._adding, default=began)
            held = dict(self._held)
            if held:
                try:
                    kept = await self._refresh_held(held)
                except Exception as exc:
                    if _no_group(exc):
                        # The entries went with the server's data, so no other worker can
                        # take them; the consumer loop recreates the group. What this
                        # worker holds is still delivered from memory.
                        self._sure_until = fresh_since + self._sure_for
                        continue
                    self._heartbeat_fault.failed(exc, consumer=self.consumer)
                    continue
                self._heartbeat_fault.ok(consumer=self.consumer)
                self._lose([entry_id for entry_id in held if entry_id not in kept])
            self._sure_until = fresh_since + self._sure_for

    def _lose(self, entry_ids: list[str]) -> None:
        """The heartbeat found these entries no longer this worker's: out of the window, and
        their copies in the lanes are not sent (`surely_held`). Said once per heartbeat."""
        if not entry_ids:
            return
        # An acknowledgement written while the heartbeat was under way ended the entry here,
        # not elsewhere.
        finishing = self._finishing | {str(d.store_ref) for d in self._acking}
        lost = [e for e in entry_ids if e in self._held and e not in finishing]
        for entry_id in lost:
            self._lost.add(entry_id)
            self._let_go(entry_id)
        if lost:
            log.warning(
                "redis_claims_taken_over",
                count=len(lost),
                consumer=self.consumer,
                stream=self.stream,
                reason="this worker did not refresh them within the visibility timeout (it "
                "was stopped, paused or cut off) and another worker took them over or "
                "finished them: their deliveries are left to it, not sent from here",
            )

    async def dead_letter_counts(self) -> dict[str, int]:
        """Per webhook: the dead letters `dead_letters` lists (those a replay holds within
        `replay_lease` left out), counted inside Redis by a read-only script, a page of
        `_COUNT_PAGE_SIZE` a call (letters added or removed between pages may count once
        more or not at all), so only the counts cross the wire, not every letter, and no one
        call holds Redis long (`CountsDeadLetters`). The name is read from
        the start of the letter's JSON (`_record` writes it first), decoded whole only when
        it holds an escape; a letter that does not decode counts under "" as it lists."""
        self._must_be_open()
        # A page of the letters a call (HSCAN's cursor between calls): one script over a
        # million letters held Redis, and every worker and producer with it, for seconds.
        counts: dict[str, int] = {}
        cursor = "0"
        while True:
            found: Any = await self._count_dead(
                keys=[self.dead_key, self.replaying_key],
                args=[self.replay_lease, cursor, _COUNT_PAGE_SIZE],
            )
            cursor = str(found[0])
            for i in range(1, len(found), 2):
                counts[str(found[i])] = counts.get(str(found[i]), 0) + int(found[i + 1])
            if cursor == "0":
                return counts


def _attempt_fields(record: AttemptRecord, status: str) -> list[str]:
    """What an attempt writes in its delivery's history hash: the status, the time, and the
    attempt, keyed by its start (a 410's attempt and the one after re-enabling share a
    number, and both are on record)."""
    return [
        status,
        repr(record.started_at + record.duration_s),
        f"a:{record.started_at!r}",
        record.to_json(),
    ]


def _fields(flat: Any) -> dict[str, str]:
    """A stream entry's fields from the reply's flat list (or a map, should a protocol give
    one)."""
    if isinstance(flat, dict):
        return flat
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _history_record(delivery_id: str, value: dict[str, str]) -> DeliveryRecord | None:
    """A delivery's record from its hash, or None when there is none (expired, never
    queued). An attempt field that does not decode is left out, never the whole record."""
    if not value or "e" not in value:
        return None
    attempts = []
    for key, text in value.items():
        if key.startswith("a:"):
            with contextlib.suppress(ValueError, KeyError, TypeError):
                attempts.append(AttemptRecord.from_dict(json.loads(text)))
    attempts.sort(key=lambda attempt: (attempt.started_at, attempt.attempt))
    created = _float(value.get("c"))
    return DeliveryRecord(
        delivery_id=delivery_id,
        event_id=value["e"],
        webhook=value.get("w", ""),
        event_type=value.get("t", ""),
        status=value.get("s", "pending"),
        created_at=created,
        updated_at=_float(value.get("u")) or created,
        attempts=tuple(attempts),
        dead_letter_id=value.get("dl") or None,
    )


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    """Fail an emit's future, marked as retrieved at once: a failure nobody is left to await
    is not reported as never retrieved, and an emit awaiting it still raises it. (Done on
    failure only: a done-callback on every emit's future cost ~0.7 µs of each emit.)"""
    future.set_exception(exc)
    future.exception()


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _refuse_unreplayable(letter: DeadLetter) -> None:
    if not letter.replayable:
        raise ValueError(
            f"dead letter {letter.dead_letter_id!r} holds an event that could not be decoded, "
            "so it cannot be replayed as it is; its stored text is in error['stored_event']"
        )


# The dead letters of the hash KEYS[1] per webhook, but those the replay marks KEYS[2] hold
# within ARGV[1] seconds (`dead_letter_counts`). Returns {name, count, ...}.
_COUNT_DEAD = r"""
local now = tonumber(redis.call('TIME')[1])
local lease = tonumber(ARGV[1])
local marks = {}
local flat = redis.call('HGETALL', KEYS[2])
for i = 1, #flat, 2 do marks[flat[i]] = tonumber(flat[i + 1]) end
local counts = {}
local cursor = ARGV[2]
do
    local page = redis.call('HSCAN', KEYS[1], cursor, 'COUNT', tonumber(ARGV[3]))
    cursor = page[1]
    local items = page[2]
    for i = 1, #items, 2 do
        local mark = marks[items[i]]
        if mark == nil or now - mark >= lease then
            local value = items[i + 1]
            local name = string.match(value, '^{"webhook_name": "([^"\\]*)"')
            if name == nil then
                local ok, record = pcall(cjson.decode, value)
                name = ''
                if ok and type(record) == 'table' then
                    if type(record.webhook_name) == 'string' then
                        name = record.webhook_name
                    end
                end
            end
            counts[name] = (counts[name] or 0) + 1
        end
    end
end
local out = {cursor}
for name, count in pairs(counts) do
    out[#out + 1] = name
    out[#out + 1] = count
end
return out
"""


#: Entries `pending_counts` counts per script call.
_COUNT_PAGE_SIZE = 1000
# A page of the stream from ARGV[1] (ARGV[2] entries) counted per webhook (field `w`), and of
# those the ones attempted at least once (the attempts hash KEYS[2] by delivery id, else the
# entry's own `a`). Returns {entries read, last entry id or '', then name, pending, retrying
# per webhook}.
_COUNT_PAGE = """
local page = redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', tonumber(ARGV[2]))
local counts, order = {}, {}
for _, entry in ipairs(page) do
  local f = entry[2]
  local w, d, a = '', '', nil
  for i = 1, #f, 2 do
    local k = f[i]
    if k == 'w' then w = f[i + 1] elseif k == 'd' then d = f[i + 1] elseif k == 'a' then
      a = f[i + 1]
    end
  end
  local c = counts[w]
  if not c then
    c = {0, 0}
    counts[w] = c
    order[#order + 1] = w
  end
  c[1] = c[1] + 1
  local tried = redis.call('HGET', KEYS[2], d)
  if not tried then tried = a end
  local n = tonumber(tried or '0') or 0
  if n > 0 then c[2] = c[2] + 1 end
end
local out = {#page, ''}
if #page > 0 then out[2] = page[#page][1] end
for _, w in ipairs(order) do
  out[#out + 1] = w
  out[#out + 1] = counts[w][1]
  out[#out + 1] = counts[w][2]
end
return out
"""


# Which webhooks' deliveries wait unread: the group's (ARGV[1]) unread entries after the
# cursor ARGV[3] ('' or one behind the group: from the oldest unread), ARGV[2] of them, and the
# newest ARGV[4]. Returns the next cursor ('' once the scan reached the end) and each
# webhook's name and count seen. Only names leave the server, not the events (a peek at 512
# entries of 512 KiB events was 256 MB on the wire); a scan a call, so an alert deep in
# another webhook's backlog is found within a few calls.
_PEEK_NAMES = """
local after = nil
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local name, last = nil, nil
  for i = 1, #g, 2 do
    if g[i] == 'name' then name = g[i + 1] elseif g[i] == 'last-delivered-id' then
      last = g[i + 1]
    end
  end
  if name == ARGV[1] then after = last end
end
if not after then return {''} end
local function before(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  if not am or not bm then return true end
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am < bm or (am == bm and as < bs)
end
local start = ARGV[3]
if start == '' or before(start, after) then start = after end
local counts, order, seen = {}, {}, {}
local function names(entries)
  for _, entry in ipairs(entries) do
    if not seen[entry[1]] then
      seen[entry[1]] = true
      local f, w = entry[2], ''
      for i = 1, #f, 2 do
        if f[i] == 'w' then w = f[i + 1] end
      end
      if not counts[w] then
        counts[w] = 0
        order[#order + 1] = w
      end
      counts[w] = counts[w] + 1
    end
  end
end
local n = tonumber(ARGV[2])
local page = redis.call('XRANGE', KEYS[1], '(' .. start, '+', 'COUNT', n)
names(page)
names(redis.call('XREVRANGE', KEYS[1], '+', '(' .. after, 'COUNT', tonumber(ARGV[4])))
local out = {''}
if #page == n then out[1] = page[#page][1] end
for _, w in ipairs(order) do
  out[#out + 1] = w
  out[#out + 1] = counts[w]
end
return out
"""


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _delivery(entry_id: str, fields: dict[str, str], attempts: Any) -> Delivery:
    """The delivery a stream entry holds, or `UndecodableEvent` saying what is wrong."""
    delivery_id, webhook, stored = fields.get("d"), fields.get("w"), fields.get("e")
    if not (delivery_id and webhook and stored):
        missing = [key for key in ("d", "w", "e") if not fields.get(key)]
        raise UndecodableEvent(f"the entry lacks the field(s) {', '.join(missing)}")
    queued = fields.get("t")
    try:
        enqueued_at = time.time() if queued is None else float(queued)
    except ValueError:
        enqueued_at = time.time()
    context = fields.get("c")
    # b=1: the producer stored the event's envelope bytes themselves (`_stored`).
    event = decode_event(stored, envelope_bytes=fields.get("b") == "1")
    return Delivery(
        webhook_name=webhook,
        event=event,
        delivery_id=delivery_id,
        attempts=_int(attempts if attempts is not None else fields.get("a", 0)),
        enqueued_at=enqueued_at,
        store_ref=entry_id,
        context=_context(context) if context else {},
    )


def _record(letter: DeadLetter) -> str:
    """A dead letter as the JSON kept in `<prefix>dead`."""
    return json.dumps(
        {
            "webhook_name": letter.webhook_name,
            "event": json.loads(letter.event.to_json()),
            "error": letter.error,
            "attempts": letter.attempts,
            "failed_at": letter.failed_at,
            "context": letter.context,
            "delivery_id": letter.delivery_id,
        },
        default=str,
    )


def _stored(event: Event) -> tuple[str, str]:
    """The event's text for the stream, and the entry's mark `b`: "1" when the text is
    exactly the envelope's bytes as this producer encoded them (an event without an ordering
    key, the usual case), so that a worker sends those bytes as they are instead of encoding
    the event it decoded again (a tenth of a worker's CPU per delivery); "0" when the text
    carries the ordering key too. An entry without the mark (an older producer's) is encoded
    again, as before."""
    # Without an ordering key, `to_json()` is the envelope's bytes, decoded.
    return event.to_json(), "1" if event.ordering_key is None else "0"


def _entry(delivery: Delivery) -> dict[Any, Any]:
    """A delivery's stream entry. `c`, the context, only when there is one."""
    text, mark = _stored(delivery.event)
    entry: dict[Any, Any] = {
        "d": delivery.delivery_id,
        "w": delivery.webhook_name,
        "e": text,
        "b": mark,
        "a": delivery.attempts,
        "t": delivery.enqueued_at,
    }
    if delivery.context:
        entry["c"] = json.dumps(delivery.context, separators=(",", ":"))
    return entry


def _context(stored: Any) -> dict[str, str]:
    """The context an entry or a letter kept (JSON text or an object). What does not decode
    to an object gives an empty context rather than stop the delivery: it is opaque."""
    value = stored
    if isinstance(stored, str):
        try:
            value = json.loads(stored)
        except ValueError:
            return {}
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def _letter(dead_letter_id: str, value: str) -> DeadLetter:
    """A dead letter from its JSON. A letter that does not decode is still listed (a stand-in
    holding the stored text), so one bad letter never hides the others."""
    try:
        record = json.loads(value)
        return DeadLetter(
            dead_letter_id=dead_letter_id,
            webhook_name=record["webhook_name"],
            event=Event.from_envelope(record["event"]),
            error=record["error"],
            attempts=record["attempts"],
            failed_at=record["failed_at"],
            context=_context(record.get("context")),
            delivery_id=str(record.get("delivery_id") or ""),
        )
    except Exception as exc:
        reason = str(UndecodableEvent(f"{type(exc).__name__}: {exc}"))[:500]
        webhook = ""
        with contextlib.suppress(Exception):
            webhook = str(json.loads(value)["webhook_name"])
        stand_in = DeadLetter.undecodable(
            webhook_name=webhook, delivery_id="", stored=value, reason=reason
        )
        return attrs.evolve(stand_in, dead_letter_id=dead_letter_id)


def _safe_url(url: str) -> str:
    """The URL without its password (a Redis URL may carry one) and without its query (which
    may carry one too: `?password=`)."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return urllib.parse.urlunsplit(parts._replace(query=""))
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address keeps its brackets
    netloc = f"{parts.username or ''}:{REDACTED}@{host}"
    # The port as written: a malformed one (`parts.port` would raise) is no secret.
    port = parts.netloc.rpartition("]")[2].rpartition("@")[2].partition(":")[2]
    if port:
        netloc += f":{port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=""))


#: Seconds to connect and to wait for a reply, unless the URL says (`socket_timeout`,
#: `socket_connect_timeout`): redis-py 8's defaults, given here for every version.
_TIMEOUT = 5.0


def _hint(exc: RedisError) -> str:
    """What to check, for the errors whose own text does not say it."""
    text = str(exc)
    if isinstance(exc, redis.exceptions.AuthenticationError) or text.startswith(
        ("NOAUTH", "WRONGPASS")
    ):
        return (
            " (check the user name and password in the URL: redis://USER:PASSWORD@host:port/db,"
            " or redis://:PASSWORD@host:port/db with requirepass)"
        )
    if isinstance(exc, redis.exceptions.TimeoutError):
        return (
            " (nothing answered in time: is this a Redis server, reachable, and does it speak"
            " TLS exactly when the URL is rediss://? `socket_connect_timeout` and"
            " `socket_timeout` in the URL set the waits)"
        )
    return ""


#: redis-py's connection options that a URL may carry as text, beside the ones it parses.
_REDIS_PY_TEXT_OPTIONS = (
    "client_name",
    "username",
    "password",
    "ssl_ca_certs",
    "ssl_ca_path",
    "ssl_cert_reqs",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_password",
    "ssl_ciphers",
    "lib_name",
    "lib_version",
)


def _redis_py_options() -> frozenset[str]:
    """The query options redis-py's `from_url` understands (read from redis-py itself, so a
    newer release's options are accepted as they come)."""
    parsed = getattr(redis.connection, "URL_QUERY_ARGUMENT_PARSERS", {})
    return frozenset(parsed) | frozenset(_REDIS_PY_TEXT_OPTIONS)


def open_redis_store(url: str) -> RedisStore:
    """A store for `redis://host:port/db` (or `rediss://`), with options in the query:
    `role` (producer or worker), `prefix`, `visibility_timeout` (seconds), `window`,
    `consumer`, `consumer_expiry` (seconds), `history_ttl` (seconds), `no_worker_after`
    (seconds). redis-py's own URL options (`socket_timeout`,
    `health_check_interval`, `ssl_ca_certs`, ...) go to redis-py; any other is an error."""
    parts = urllib.parse.urlsplit(url)
    ours: dict[str, Any] = {}
    rest = []
    for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        if key in _OPTIONS:
            ours[key] = value
        elif key in _redis_py_options():
            rest.append((key, value))
        else:
            # redis-py would pass it on to its connection, which fails only when it first
            # connects: say it now, when the configuration is read (`validate` included).
            known = (*_OPTIONS, *sorted(_redis_py_options()))
            raise ValueError(
                f"{_safe_url(url)}: unknown option {key!r}{did_you_mean(key, known)}"
                f" (ours: {', '.join(_OPTIONS)}; or one of redis-py's URL options)"
            )
    try:
        if "visibility_timeout" in ours:
            ours["visibility_timeout"] = float(ours["visibility_timeout"])
        if "window" in ours:
            ours["window"] = int(ours["window"])
        if "consumer_expiry" in ours:
            ours["consumer_expiry"] = float(ours["consumer_expiry"])
        if "history_ttl" in ours:
            ours["history_ttl"] = float(ours["history_ttl"])
        if "no_worker_after" in ours:
            ours["no_worker_after"] = float(ours["no_worker_after"])
    except ValueError as exc:
        raise ValueError(f"{_safe_url(url)}: {exc}") from None
    database = parts.path.strip("/")
    if database and not database.isdigit():
        # redis-py would ignore it and use database 0: maybe another deployment's data.
        raise ValueError(
            f"{_safe_url(url)}: the database must be a number (redis://host:port/0), "
            f"got {parts.path!r}"
        )
    plain = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(rest)))
    return RedisStore(plain, **ours)


@attrs.frozen
class RedisKeyValue:
    """`KeyValue` in Redis: `SET ... PX` (with `NX` for `add`), keys under a prefix."""

    store: RedisStore = attrs.field(repr=False)
    prefix: str

    async def get(self, key: str) -> str | None:
        value = await self.store.redis.get(self.prefix + key)
        return None if value is None else str(value)

    async def set(self, key: str, value: str, ttl_seconds: float) -> None:
        await self.store.redis.set(self.prefix + key, value, px=max(1, int(ttl_seconds * 1000)))

    async def add(self, key: str, value: str, ttl_seconds: float) -> bool:
        # Never sent again after a lost answer: the second SET NX would find the key the
        # first one set and answer "someone else has it", and the caller would skip its work.
        done = await call_once(
            self.store.redis,
            ["SET", self.prefix + key, value, "PX", max(1, int(ttl_seconds * 1000)), "NX"],
        )
        return done is not None

    async def delete(self, key: str) -> None:
        await self.store.redis.delete(self.prefix + key)


def _offers_every_shared_capability(store: RedisStore) -> SharedStore:
    """Never called: mypy checks here that `RedisStore` is a `SharedStore` (its limiter a
    `Limiter`, its breaker a `Breaker`), so the dispatcher's one check when the store opens
    finds every capability it relies on."""
    return store


def _confirms_holding(store: RedisStore) -> ConfirmsHolding:
    """Never called: mypy checks here that `RedisStore` is a `ConfirmsHolding`, so the
    dispatcher checks a worker's claim before each attempt."""
    return store
