"""Commands packed here and sent on one of the client's pooled connections.

For the calls made once per batch of deliveries (a producer's enqueue script, a worker's
write-behind script and its XREADGROUP), whose arguments run to dozens: redis-py checks and
encodes each argument on its own and goes through its general call path (observability,
response callbacks), which cost more of the producer's CPU than the rest of the enqueue.
Here the arguments, all text or numbers, are packed in one pass, and the call still goes
through the pool's connection, its retry policy and its parser: authentication, TLS, the
database, timeouts and what a reply means (an error reply raises, `NOSCRIPT` included) are
redis-py's, as for any command. Replies come as the parser gives them (no redis-py reply
callback), so a caller reads their shape itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions
from redis.exceptions import NoScriptError

__all__ = ["PackedScript", "call", "call_once", "pack"]


def pack(args: Sequence[str | int | float]) -> bytes:
    """One command in the wire format (RESP): an array of bulk strings. Text is UTF-8,
    strictly, and a number its `repr`, as redis-py's default encoder makes them."""
    data = [arg.encode() if isinstance(arg, str) else repr(arg).encode() for arg in args]
    return b"*%d\r\n" % len(data) + b"".join([b"$%d\r\n%b\r\n" % (len(d), d) for d in data])


class PackedScript:
    """A Lua script run with EVALSHA, loaded again when the server has lost it (a restart,
    `SCRIPT FLUSH`), as redis-py's `Script` does. `once`: sent at most once, never again
    after a broken connection (see `call_once`)."""

    def __init__(self, client: aioredis.Redis, text: str, *, once: bool = False) -> None:
        self._client = client
        self._script = client.register_script(text)  # its SHA1, and the loading
        self.sha = str(self._script.sha)
        self._once = once

    async def __call__(self, keys: Sequence[str], args: Sequence[str | int | float]) -> Any:
        packed = pack(["EVALSHA", self.sha, len(keys), *keys, *args])
        try:
            return await _run(self._client, packed, once=self._once)
        except NoScriptError:
            await self._client.script_load(self._script.script)
            return await _run(self._client, packed, once=self._once)


async def call(client: aioredis.Redis, args: Sequence[str | int | float]) -> Any:
    """Any command, packed here; its reply as the parser gives it (no redis-py response
    callback: a caller reads the raw shape, which depends on the protocol)."""
    return await _run(client, pack(args))


async def call_once(client: aioredis.Redis, args: Sequence[str | int | float]) -> Any:
    """`call`, but never sent again after a broken connection, whatever the client's retry
    policy: for a command whose second run would answer differently (a SET NX that took the
    key the first time answers "taken" the second), where a lost answer must be an error."""
    return await _run(client, pack(args), once=True)


async def _run(client: aioredis.Redis, packed: bytes, *, once: bool = False) -> Any:
    """Send a packed command and read its reply on a pooled connection, with the
    connection's retry policy (a broken connection is dropped and the command sent again on
    a new one, as redis-py's `execute_command` does), or without it (`once`)."""
    pool = client.connection_pool
    conn = await pool.get_connection()

    async def send() -> Any:
        await conn.send_packed_command(packed)
        return await conn.read_response()

    async def dropped(error: Exception) -> None:
        await conn.disconnect()

    try:
        if not once:
            return await conn.retry.call_with_retry(send, dropped)
        try:
            return await send()
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
            await dropped(exc)
            raise
    finally:
        await pool.release(conn)
