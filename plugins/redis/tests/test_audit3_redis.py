"""The Redis store against the servers and operators it meets in production: a password or an
ACL user (never in a repr, an error or a log line), a Cluster node, a Sentinel, a peer that
never answers, a wrong database, a server at `maxmemory` with `noeviction` (an emit raises; a
worker still opens, delivers, dead-letters and drains), an operator who trims the stream or
deletes the group, two deployments whose prefixes nest, a worker without the producer's
webhook, a rate limit per minute across three worker processes, histories that outlive
`history_ttl`, events of megabytes, and counts exact across workers. Private `redis-server`s
where the server itself is the subject; the shared one (a prefix of each test's own) else."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from empathy_webhooks_redis import RedisStore, open_redis_store
from empathy_webhooks_redis.store import GROUP
from empathy_webhooks_redis.testing import RedisServer, spare_port, workers_joined
from redis.exceptions import OutOfMemoryError

from empathy_webhooks_core import CustomWebhook, Event, WebhookDispatcher
from empathy_webhooks_core.plugin.store import Delivery, DeliveryQuery, StoreOpenError
from empathy_webhooks_core.testing import ReceivedRequest, Receiver, Reply
from empathy_webhooks_core.worker import run_worker

REQUIRE_ENV = "EMPATHY_WEBHOOKS_REQUIRE_REDIS"
PASSWORD = "pw-7f3a-never-shown"


def _need_redis_server() -> None:
    if not RedisServer.available():
        reason = "this test starts its own redis-server, and none is installed"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{reason}; {REQUIRE_ENV}=1, so this is a failure, not a skip")
        pytest.skip(reason)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    _need_redis_server()
    with RedisServer(tmp_path) as server:
        yield server


async def until(condition: Callable[[], bool], timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - state changes in other tasks
            await asyncio.sleep(0.02)


async def until_redis(check: Callable[[], Awaitable[bool]], timeout: float = 30) -> None:
    """Until `check()` (which asks Redis) is true."""
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110 - the state is in Redis
            await asyncio.sleep(0.05)


def _said(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if f"'{event}'" in r.getMessage()]


@asynccontextmanager
async def worker_running(
    hooks: list[CustomWebhook], url: str, **options: Any
) -> AsyncIterator[asyncio.Task[str | None]]:
    """`run_worker` in this process until the block ends."""
    stop = asyncio.Event()
    started = asyncio.Event()
    task = asyncio.create_task(
        run_worker(hooks, url, stop=stop, started=started.set, grace_seconds=2, **options)
    )
    try:
        async with asyncio.timeout(15):
            await asyncio.wait(
                {task, asyncio.ensure_future(started.wait())}, return_when="FIRST_COMPLETED"
            )
        if task.done():
            task.result()  # it failed to start: say why
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


# -- passwords and ACL users --------------------------------------------------------------


@pytest.fixture
def password_redis(tmp_path: Path) -> Iterator[RedisServer]:
    _need_redis_server()
    with RedisServer(tmp_path, "--requirepass", PASSWORD) as server:
        yield server


async def test_a_password_is_in_no_repr_error_or_log_line(
    password_redis: RedisServer, webhook_receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """Right and wrong passwords, in the user part and in the query, an ACL user, and a
    rediss:// URL against a server without TLS: the password is in no repr, no exception and
    no log line, and a refused one says what to check. Before, RedisServer could not even
    start a server with `requirepass` (its readiness check wanted +PONG, not NOAUTH)."""
    caplog.set_level(logging.DEBUG, logger="empathy_webhooks")
    port = password_redis.port
    admin = aioredis.Redis(port=port, password=PASSWORD, decode_responses=True)
    wrong = "wrong-9c1e-never-shown"
    await admin.execute_command(
        "ACL", "SETUSER", "app", "on", f">{PASSWORD}", "~acl:*", "+@all", "-info"
    )
    refused = [
        f"redis://:{wrong}@127.0.0.1:{port}/0",
        f"redis://app:{wrong}@127.0.0.1:{port}/0",
        f"redis://127.0.0.1:{port}/0?password={wrong}",
        f"redis://127.0.0.1:{port}/0",  # no password at all
        f"rediss://:{wrong}@127.0.0.1:{port}/0?socket_connect_timeout=0.5",
    ]
    texts: list[str] = []
    for url in refused:
        store = open_redis_store(url)
        texts.append(repr(store))
        started = time.monotonic()
        with pytest.raises(StoreOpenError) as caught:
            await store.open()
        assert time.monotonic() - started < 3, url  # refused, or timed out: not a hang
        message = str(caught.value)
        texts.append(message)
        if url.startswith("rediss"):
            assert "TLS" in message, message
        else:
            assert "password in the URL" in message, message
    # Accepted: the default user's password, and an ACL user limited to its prefix (and
    # refused INFO, which the store only reads to warn).
    accepted = [
        f"redis://:{PASSWORD}@127.0.0.1:{port}/0?prefix=pw:",
        f"redis://app:{PASSWORD}@127.0.0.1:{port}/0?prefix=acl:",
    ]
    hook = CustomWebhook(name="h", url=webhook_receiver.url("/h"))
    for url in accepted:
        async with WebhookDispatcher(webhooks=[hook], store=url) as producer:
            texts.append(repr(producer.store))
            event = await producer.emit("alert", {"n": 1})
        async with worker_running([hook], url):
            await until(lambda e=event: e.event_id in webhook_receiver.delivered_event_ids())
    await admin.aclose()
    texts += [record.getMessage() for record in caplog.records]
    for text in texts:
        assert PASSWORD not in text and wrong not in text, text
    assert any("***" in text for text in texts)


async def test_the_cli_never_prints_the_password(
    password_redis: RedisServer, tmp_path: Path
) -> None:
    """`empathy-webhooks stats --store redis://:wrong@...`: refused, and its output has no
    password in it."""
    url = f"redis://:wrong-{PASSWORD}@127.0.0.1:{password_redis.port}/0"
    config = tmp_path / "webhooks.toml"
    config.write_text('[[webhooks]]\ntype = "custom"\nname = "h"\nurl = "https://example.com/h"\n')
    cli = Path(sys.executable).with_name("empathy-webhooks")
    command = [str(cli)] if cli.exists() else [sys.executable, "-m", "empathy_webhooks_core"]
    proc = await asyncio.create_subprocess_exec(
        *command,
        "stats",
        "--config",
        str(config),
        "--store",
        url,
        "--plain",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    output = (out + err).decode()
    assert proc.returncode != 0, output
    assert PASSWORD not in output, output
    assert "password" in output.lower(), output


def test_a_redacted_url_keeps_an_ipv6_host_and_a_port_as_written() -> None:
    store = open_redis_store(f"redis://:{PASSWORD}@[::1]:6390/2?prefix=x:")
    assert repr(store) == "RedisStore('redis://:***@[::1]:6390/2', role='producer', prefix='x:')"
    store = open_redis_store(f"redis://u:{PASSWORD}@host/0")
    assert "u:***@host/0" in repr(store)


# -- servers the store cannot use, and addresses that never answer -----------------------


async def test_a_cluster_node_is_refused_at_open_not_at_every_emit(tmp_path: Path) -> None:
    """Before, the store opened on a Cluster node and every emit then failed with "Keys in
    request don't hash to the same slot"."""
    _need_redis_server()
    # The cluster bus on a free port of its own: by default it is the port + 10000, past
    # 65535 for a spare port above 55535 (the server would not start).
    options = ("--cluster-enabled", "yes", "--cluster-config-file", str(tmp_path / "n.conf"))
    with RedisServer(tmp_path, *options, "--cluster-port", str(spare_port())) as server:
        admin = aioredis.Redis(port=server.port, decode_responses=True)
        await admin.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)

        async def ready() -> bool:
            return "cluster_state:ok" in await admin.execute_command("CLUSTER", "INFO")

        await until_redis(ready, 20)
        await admin.aclose()
        store = open_redis_store(server.url + "?prefix=c:")
        with pytest.raises(StoreOpenError, match="Redis Cluster, which the store does not"):
            await store.open()


async def test_a_sentinel_is_refused_at_open_with_what_to_give_instead(tmp_path: Path) -> None:
    """Before: "unknown command 'XGROUP'"."""
    _need_redis_server()
    port = spare_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(f"port {port}\nbind 127.0.0.1\nsentinel monitor main 127.0.0.1 1 1\n")
    proc = await asyncio.create_subprocess_exec(
        "redis-server",
        str(conf),
        "--sentinel",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with asyncio.timeout(15):
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    await asyncio.sleep(0.05)
                    continue
                writer.close()
                break
        store = open_redis_store(f"redis://127.0.0.1:{port}/0")
        with pytest.raises(StoreOpenError, match="Sentinel, not a Redis server") as caught:
            await store.open()
        assert "get-master-addr-by-name" in str(caught.value)
    finally:
        proc.kill()
        await proc.wait()


async def test_a_peer_that_never_answers_fails_open_instead_of_hanging() -> None:
    """A port that accepts and says nothing (not Redis, or TLS expected): open fails within
    the URL's timeout; without one, the store gives redis-py 5 s whatever its version (before
    8, redis-py waited forever)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        store = open_redis_store(f"redis://127.0.0.1:{port}/0?socket_timeout=0.3")
        started = time.monotonic()
        with pytest.raises(StoreOpenError, match="nothing answered in time"):
            await store.open()
        assert time.monotonic() - started < 3


async def test_the_store_gives_redis_py_timeouts_unless_the_url_does(redis_url: str) -> None:
    store = open_redis_store(redis_url)
    await store.open()
    try:
        kwargs = store.redis.connection_pool.connection_kwargs
        assert kwargs["socket_timeout"] == 5.0 and kwargs["socket_connect_timeout"] == 5.0
    finally:
        await store.close()
    store = open_redis_store(redis_url + "&socket_timeout=7")
    await store.open()
    try:
        assert store.redis.connection_pool.connection_kwargs["socket_timeout"] == 7.0
    finally:
        await store.close()


async def test_a_wrong_database_is_refused_not_taken_for_database_0(redis_url: str) -> None:
    """redis-py reads `/abc` (or `/1x`) as no database at all, which is database 0: maybe
    another deployment's. A number out of the server's range is refused by the server."""
    base, query = redis_url.split("?", 1)
    for path in ("/abc", "/1x", "/-1"):
        with pytest.raises(ValueError, match="the database must be a number"):
            open_redis_store(base.rsplit("/", 1)[0] + path + "?" + query)
    store = open_redis_store(base.rsplit("/", 1)[0] + "/99999?" + query)
    with pytest.raises(StoreOpenError, match="DB index is out of range"):
        await store.open()


# -- a server at maxmemory with noeviction --------------------------------------------------


async def _fill(client: aioredis.Redis) -> None:
    """Make the server full: its maxmemory below what it uses (noeviction)."""
    used = int((await client.info("memory"))["used_memory"])
    await client.config_set("maxmemory", used - 200_000)


async def test_at_maxmemory_an_emit_raises_and_a_worker_still_opens_delivers_and_drains(
    tmp_path: Path, webhook_receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """A full server refuses XADD: an emit raises (never returns as if queued). Before, a
    worker started then could not even open (XGROUP CREATE is refused at maxmemory, though
    the group exists) nor join, so nothing drained the stream that filled the memory; the
    shared breaker could not count (its first write was refused) and a dead letter could not
    be written (a MULTI holding HSET is refused whole), so a failed delivery went round again
    every visibility timeout. Now all of it runs: what a worker finishes frees memory."""
    _need_redis_server()
    caplog.set_level(logging.WARNING, logger="empathy_webhooks")
    failing = webhook_receiver.url("/fail")

    def handler(request: ReceivedRequest) -> Reply:
        return Reply(status=500 if request.path == "/fail" else 200)

    webhook_receiver.handler = handler
    hooks = [
        CustomWebhook(
            name="ok",
            url=webhook_receiver.url("/ok"),
            rate_limit={"max_requests_per_second": 1000},
            circuit_breaker={"min_attempts": 100},
        ),
        CustomWebhook(
            name="fails", url=failing, retry_policy={"max_retries": 0}, circuit_breaker=False
        ),
    ]
    with RedisServer(tmp_path, "--maxmemory-policy", "noeviction") as server:
        url = server.url + "?prefix=oom:&visibility_timeout=2"
        admin = aioredis.Redis(port=server.port, decode_responses=True)
        async with WebhookDispatcher(webhooks=hooks, store=url) as producer:
            events = [await producer.emit("alert", {"n": n}) for n in range(10)]
            await _fill(admin)
            with pytest.raises(OutOfMemoryError):
                await producer.emit("alert", {"n": 99})
        async with worker_running(hooks, url):
            wanted = {event.event_id for event in events}
            await until(lambda: set(webhook_receiver.delivered_event_ids()) >= wanted)

            async def drained() -> bool:
                return not await admin.xlen("oom:deliveries")

            await until_redis(drained, 15)
        letters = await admin.hlen("oom:dead")
        await admin.aclose()
    assert webhook_receiver.delivered_event_ids() == dict.fromkeys(wanted, 1)
    assert letters == 10  # each of "fails"'s deliveries, a dead letter on a full server
    assert _said(caplog, "redis_memory_full")
    assert not _said(caplog, "redis_breaker_sync_failed")
    assert not _said(caplog, "dead_letter_not_recorded")


# -- an operator who trims the stream or deletes the group ----------------------------------


class _Lanes:
    """Stands in for a dispatcher: keeps what the consumer hands it."""

    def __init__(self) -> None:
        self.taken: list[Delivery] = []

    def submit(self, delivery: Delivery) -> None:
        self.taken.append(delivery)


@asynccontextmanager
async def _workers(url: str) -> AsyncIterator[tuple[RedisStore, RedisStore, RedisStore]]:
    """A producer and two worker-role stores (consumers a and b), open, closed after."""
    producer = open_redis_store(url)
    a, b = (
        RedisStore(
            producer.url,
            role="worker",
            prefix=producer.prefix,
            consumer=name,
            visibility_timeout=producer.visibility_timeout,
            history_ttl=producer.history_ttl,
        )
        for name in "ab"
    )
    for store in (producer, a, b):
        await store.open()
    try:
        yield producer, a, b
    finally:
        for store in (a, b, producer):
            await store.close()


async def _held_by(worker: RedisStore, producer: RedisStore, count: int) -> list[Delivery]:
    lanes = _Lanes()
    worker.start_consuming(lanes)
    await producer.enqueue(
        [
            Delivery(webhook_name="h", event=Event(event_type="t", data={"n": n}))
            for n in range(count)
        ]
    )
    await until(lambda: len(lanes.taken) >= count, 10)
    await worker.stop_consuming()
    return lanes.taken


async def test_an_entry_trimmed_while_its_worker_holds_it_is_still_sent_and_said(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An operator's XTRIM deletes an entry a holds. Before, a's heartbeat found it gone
    (XCLAIM claims nothing), took it for one another worker had taken over, said so
    (`redis_claims_taken_over`) and sent it from nowhere: nobody had it, it was lost. Now it
    stays a's (sent from memory), and the deletion is said as what it is."""
    caplog.set_level(logging.WARNING, logger="empathy_webhooks")
    async with _workers(redis_url + "&visibility_timeout=0.6") as (producer, a, _):
        (delivery,) = await _held_by(a, producer, 1)
        await a.redis.xtrim(a.stream, maxlen=0, approximate=False)
        await until(lambda: bool(_said(caplog, "redis_held_entries_deleted")), 10)
        await asyncio.sleep(0.5)  # more heartbeats
        assert a.held == 1
        assert a.surely_held(delivery)
        assert await a.confirm_held(delivery) is True
    assert not _said(caplog, "redis_claims_taken_over")
    (said,) = _said(caplog, "redis_held_entries_deleted")
    assert said.levelno == logging.ERROR
    assert "XTRIM" in said.getMessage()


async def test_entries_trimmed_while_their_worker_was_gone_are_said_lost(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """a took two entries and stopped (never refreshed them); an operator trims the stream;
    b's claim pass finds them gone. Before: not a word (XAUTOCLAIM's list of deleted entries
    was dropped)."""
    caplog.set_level(logging.WARNING, logger="empathy_webhooks")
    async with _workers(redis_url + "&visibility_timeout=0.3") as (producer, a, b):
        lanes = _Lanes()
        a.start_consuming(lanes)
        await producer.enqueue(
            [Delivery(webhook_name="h", event=Event(event_type="t", data={})) for _ in "xy"]
        )
        await until(lambda: len(lanes.taken) == 2, 10)
        await a.stop_consuming()
        for task in a._tasks:  # a's heartbeat stops too: as if it died
            task.cancel()
        await a.redis.xtrim(a.stream, maxlen=0, approximate=False)
        await asyncio.sleep(0.4)
        b.start_consuming(_Lanes())
        await until(lambda: bool(_said(caplog, "redis_pending_entries_deleted")), 10)
    (said,) = _said(caplog, "redis_pending_entries_deleted")
    assert said.levelno == logging.ERROR and "count=2" in said.getMessage()


async def test_a_deleted_group_is_made_again_and_its_stream_delivered_said_as_a_warning(
    redis_url: str, webhook_receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """XGROUP DESTROY under a running worker: the group is made again from the stream's
    start, and everything in it is delivered. Before, it was said as an error claiming that
    what was queued was lost; nothing is (what workers held may go twice)."""
    caplog.set_level(logging.WARNING, logger="empathy_webhooks")
    hook = CustomWebhook(name="h", url=webhook_receiver.url("/h"))
    prefix = redis_url.split("prefix=", 1)[1]
    async with worker_running([hook], redis_url + "&visibility_timeout=1"):
        async with WebhookDispatcher(webhooks=[hook], store=redis_url) as producer:
            await producer.store.redis.xgroup_destroy(f"{prefix}deliveries", GROUP)
            wanted = {(await producer.emit("alert", {"n": n})).event_id for n in range(5)}
            await until(lambda: set(webhook_receiver.delivered_event_ids()) >= wanted)
    said = _said(caplog, "redis_group_recreated")
    assert said and all(r.levelno == logging.WARNING for r in said), said
    assert "XGROUP DESTROY" in said[0].getMessage()
    assert set(webhook_receiver.delivered_event_ids()) == wanted


# -- deployments sharing a server --------------------------------------------------------------


async def test_deployments_whose_prefixes_nest_share_no_key_and_no_delivery(
    redis_url: str, webhook_receiver: Receiver
) -> None:
    """`<p>` and `<p>x:` on one server (as `empathy:` and `empathy:x:`): each worker delivers
    its own deployment's events only, with its own dead letters and counts, and no key of one
    is a key of the other. (A SCAN for `<p>*` does match the other's keys too: the README
    says to pick prefixes neither of which starts with the other.)"""
    outer = redis_url.split("prefix=", 1)[1]
    inner = outer + "x:"
    urls = {outer: redis_url, inner: redis_url.replace(f"prefix={outer}", f"prefix={inner}")}

    def handler(request: ReceivedRequest) -> Reply:
        return Reply(status=500 if request.path.endswith("/fail") else 200)

    webhook_receiver.handler = handler
    sent: dict[str, set[str]] = {}
    for name, url in urls.items():
        tag = "outer" if name == outer else "inner"
        hooks = [
            CustomWebhook(name="h", url=webhook_receiver.url(f"/{tag}")),
            CustomWebhook(
                name="d", url=webhook_receiver.url(f"/{tag}/fail"), retry_policy={"max_retries": 0}
            ),
        ]
        async with WebhookDispatcher(webhooks=hooks, store=url) as producer:
            sent[tag] = {(await producer.emit("alert", {"n": n})).event_id for n in range(4)}
        async with worker_running(hooks, url):
            await until(
                lambda t=tag: (
                    sum(r.path.startswith(f"/{t}") for r in webhook_receiver.requests) >= 8
                )
            )
        async with WebhookDispatcher(webhooks=hooks, store=url) as producer:
            assert len(await producer.dead_letters()) == 4
            assert (
                sum(row["pending"] for row in (await producer.store.pending_counts()).values()) == 0
            )
    for request in webhook_receiver.requests:
        tag = request.path.split("/")[1]
        assert request.event_id in sent[tag], request.path
    client = aioredis.Redis.from_url(redis_url.split("?", 1)[0], decode_responses=True)
    try:
        every = {key async for key in client.scan_iter(match=f"{outer}*")}
    finally:
        await client.aclose()
    inner_keys = {key for key in every if key.startswith(inner)}
    outer_keys = every - inner_keys
    assert inner_keys and outer_keys
    # The outer deployment's keys are all its own kinds: none falls under the inner prefix.
    kinds = ("deliveries", "dead", "attempts", "epoch", "history:", "rate:", "breaker:", "kv:")
    assert all(key[len(outer) :].startswith(kinds) for key in outer_keys), outer_keys


# -- a worker without the producer's webhook ---------------------------------------------------


async def test_a_worker_without_the_webhook_leaves_its_deliveries_pending_and_says_so_once(
    redis_url: str, webhook_receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """The producer has a and b, the worker only a. b's deliveries stay pending (counted by
    stats, not dead-lettered, not sent) until a worker with b takes them. Before, every one
    of them was said at every claim pass (a line per entry every half visibility timeout,
    forever), each pass a `deliveries_reclaimed` warning too."""
    caplog.set_level(logging.WARNING, logger="empathy_webhooks")
    url = redis_url + "&visibility_timeout=0.5"
    a = CustomWebhook(name="a", url=webhook_receiver.url("/a"))
    b = CustomWebhook(name="b", url=webhook_receiver.url("/b"))
    async with WebhookDispatcher(webhooks=[a, b], store=url) as producer:
        events = [await producer.emit("alert", {"n": n}) for n in range(10)]
        async with worker_running([a], url):
            await until(lambda: len(webhook_receiver.requests) >= 10)
            await asyncio.sleep(2.5)  # five claim passes
            assert await producer.store.pending_counts() == {"b": {"pending": 10, "retrying": 0}}
        assert await producer.dead_letters() == []
        assert {r.path for r in webhook_receiver.requests} == {"/a"}
        said = _said(caplog, "delivery_for_unknown_webhook")
        assert len(said) == 1, [r.getMessage() for r in said]
        assert not _said(caplog, "deliveries_reclaimed")
        async with worker_running([a, b], url):
            wanted = {event.event_id for event in events}
            await until(
                lambda: {r.event_id for r in webhook_receiver.requests if r.path == "/b"} >= wanted
            )
        assert await producer.store.pending_counts() == {}


# -- a rate limit per minute across worker processes -------------------------------------------

WORKER = r"""
import asyncio, json, logging, sys
from empathy_webhooks_core import CustomWebhook
from empathy_webhooks_core.worker import run_worker

logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
url, name, options = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
hook = CustomWebhook(name="h", headers={"X-Worker": name}, **options)
asyncio.run(run_worker([hook], url, grace_seconds=0.5))  # SIGTERM stops it
"""


async def _spawn(tmp_path: Path, url: str, name: str, options: dict[str, Any]) -> Any:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        # -c, not a file rewritten per spawn: a child still starting read it truncated and ran
        # nothing (exit 0, a worker that never joined).
        "-P",
        "-c",
        WORKER,
        url,
        name,
        json.dumps(options),
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


async def test_a_rate_limit_per_minute_holds_across_three_worker_processes_and_queues_the_rest(
    tmp_path: Path, redis_url: str, webhook_receiver: Receiver
) -> None:
    """5 a minute, 12 events, three worker processes: 5 arrive and no more, whichever
    workers sent them; the 7 others wait (pending, not dropped, not dead-lettered), and are
    still pending once the workers stopped."""
    url = redis_url + "&window=4&visibility_timeout=2"
    hook_url = webhook_receiver.url("/h")
    options = {"url": hook_url, "rate_limit": {"max_requests_per_minute": 5}}
    procs = [await _spawn(tmp_path, url, name, options) for name in "abc"]
    try:
        await workers_joined(url, 3, procs)
        hook = CustomWebhook(name="h", url=hook_url)
        async with WebhookDispatcher(webhooks=[hook], store=url) as producer:
            for n in range(12):
                await producer.emit("alert", {"n": n})
            await until(lambda: len(webhook_receiver.requests) >= 5)
            await asyncio.sleep(6)  # three visibility timeouts: reclaims, heartbeats
            assert len(webhook_receiver.requests) == 5
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                await asyncio.wait_for(proc.communicate(), 20)
            assert await producer.store.pending_counts() == {"h": {"pending": 7, "retrying": 0}}
            assert await producer.dead_letters() == []
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert len(webhook_receiver.requests) == 5


# -- history that outlives history_ttl ------------------------------------------------------------


async def test_a_delivery_held_longer_than_the_history_ttl_keeps_its_whole_history(
    redis_url: str, webhook_receiver: Receiver
) -> None:
    """history_ttl 2 s; the delivery fails twice with 2.5 s between attempts and then
    succeeds, so it is held 5 s. Before, its record, event and index expired between the
    attempts and were made again from the last attempt alone. The worker's heartbeat keeps
    them while it holds the delivery."""
    answers = iter([503, 503, 200])
    webhook_receiver.handler = lambda _: Reply(status=next(answers))
    hook = CustomWebhook(
        name="h",
        url=webhook_receiver.url("/h"),
        retry_policy={"initial_delay_seconds": 2.5, "max_delay_seconds": 2.5, "jitter": 0},
        circuit_breaker=False,
    )
    url = redis_url + "&history_ttl=2&visibility_timeout=0.6"
    async with WebhookDispatcher(webhooks=[hook], store=url) as producer:
        event = await producer.emit("alert", {"n": 1})
        async with worker_running([hook], url):
            await until(lambda: bool(webhook_receiver.delivered), 20)
        store = producer.store
        page = await store.delivery_records(DeliveryQuery(event_id=event.event_id))
        (record,) = page.items
        assert record.status == "delivered"
        assert [a.status for a in record.attempts] == [503, 503, 200]
        assert await store.stored_event(event.event_id) is not None


async def test_a_record_that_expired_unheld_is_written_again_whole_and_said(
    redis_url: str, webhook_receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """Queued with no worker running for longer than history_ttl: its record and event
    expired. The first attempt writes them again (the event too, so it can be read and
    found by its id) and says once that earlier history is not on record."""
    caplog.set_level(logging.WARNING, logger="empathy_webhooks")
    hook = CustomWebhook(name="h", url=webhook_receiver.url("/h"))
    url = redis_url + "&history_ttl=1"
    async with WebhookDispatcher(webhooks=[hook], store=url) as producer:
        event = await producer.emit("alert", {"n": 1})
        await asyncio.sleep(2.2)
        assert await producer.store.stored_event(event.event_id) is None  # expired
        async with worker_running([hook], url):
            await until(lambda: bool(webhook_receiver.delivered))
            await asyncio.sleep(0.3)  # written behind
            stored = await producer.store.stored_event(event.event_id)
            assert stored is not None and stored.event_id == event.event_id
            page = await producer.store.delivery_records(DeliveryQuery(event_id=event.event_id))
            assert [r.status for r in page.items] == ["delivered"]
    (said,) = _said(caplog, "history_record_rewritten")
    assert "count=1" in said.getMessage()


# -- events of megabytes, and many deliveries in one script call --------------------------------


async def test_an_event_of_megabytes_arrives_byte_for_byte(
    redis_url: str, webhook_receiver: Receiver
) -> None:
    blob = "x" * (4 * 1024 * 1024)
    hook = CustomWebhook(
        name="h", url=webhook_receiver.url("/h"), max_payload_bytes=8 * 1024 * 1024
    )
    async with WebhookDispatcher(webhooks=[hook], store=redis_url) as producer:
        event = await producer.emit("alert", {"blob": blob, "n": 1})
        async with worker_running([hook], redis_url):
            await until(lambda: bool(webhook_receiver.delivered))
    (request,) = webhook_receiver.requests
    assert json.loads(request.body)["data"] == {"blob": blob, "n": 1}
    assert request.event_id == event.event_id


async def test_two_thousand_deliveries_in_one_enqueue_and_their_acknowledgements(
    redis_url: str, webhook_receiver: Receiver
) -> None:
    """One `emit_events` of 2000: one script call whose history index goes in chunks (Lua's
    `unpack` takes a few thousand values at most), then write-behind calls of up to 1000
    acknowledgements each. All are queued, delivered once, and leave nothing behind."""
    hook = CustomWebhook(name="h", url=webhook_receiver.url("/h"), max_concurrency=64)
    events = [Event(event_type="alert", data={"n": n}) for n in range(2000)]
    async with WebhookDispatcher(webhooks=[hook], store=redis_url) as producer:
        results = await producer.emit_events(events)
        assert all(result == ["h"] for result in results), results[:3]
        store = producer.store
        assert await store.redis.xlen(store.stream) == 2000
        assert await store.redis.zcard(store.history_index) == 2000
        async with worker_running([hook], redis_url):
            await until(lambda: len(webhook_receiver.delivered) >= 2000, 60)

            async def drained() -> bool:
                return not await store.redis.xlen(store.stream)

            await until_redis(drained, 10)
        assert await store.redis.hlen(store.attempts_key) == 0
    assert len(webhook_receiver.delivered_event_ids()) == 2000
    assert set(webhook_receiver.delivered_event_ids().values()) == {1}


# -- counts exact across workers ---------------------------------------------------------------


async def test_counts_and_records_are_exact_across_three_workers(
    redis_url: str, webhook_receiver: Receiver
) -> None:
    """60 events over three workers in this process, every fifth refused for good: 48
    delivered once each, 12 dead letters, 60 records (48 delivered, 12 failed), nothing
    pending, no attempt count left behind."""

    def handler(request: ReceivedRequest) -> Reply:
        n = json.loads(request.body)["data"]["n"]
        return Reply(status=400 if n % 5 == 0 else 200)

    webhook_receiver.handler = handler
    hook = CustomWebhook(
        name="h",
        url=webhook_receiver.url("/h"),
        retry_policy={"max_retries": 1, "initial_delay_seconds": 0.01},
        circuit_breaker=False,
    )
    url = redis_url + "&window=8"
    async with WebhookDispatcher(webhooks=[hook], store=url) as producer:
        async with (
            worker_running([hook], url),
            worker_running([hook], url),
            worker_running([hook], url),
        ):
            for n in range(60):
                await producer.emit("alert", {"n": n})
            await until(lambda: len(webhook_receiver.delivered) >= 48)

            async def settled() -> bool:
                return (
                    len(await producer.dead_letters()) == 12
                    and await producer.store.pending_counts() == {}
                )

            await until_redis(settled, 20)
        store = producer.store
        page = await store.delivery_records(DeliveryQuery(limit=100))
        statuses = sorted(record.status for record in page.items)
        assert statuses == ["delivered"] * 48 + ["failed"] * 12
        assert await store.redis.hlen(store.attempts_key) == 0
    assert len(webhook_receiver.delivered_event_ids()) == 48
    assert set(webhook_receiver.delivered_event_ids().values()) == {1}
