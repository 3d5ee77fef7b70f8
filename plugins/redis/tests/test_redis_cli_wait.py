"""`send` and `dead-letters replay` on a Redis store wait for the deliveries other processes'
workers make, following their records in the store, and exit 1 when one failed or no worker
finished it; a replay for a webhook this process does not have is refused and the letter
kept. Before, both commands printed "queued" and exited 0 at once, whatever then happened,
and the dispatcher's replay (the gateway's too) took the letter out of the dead letters for a
delivery no one would ever send.

Real processes: the console script for each command, `empathy-webhooks worker` as a child,
a real Redis (a key prefix of each test's own), a real receiver on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from empathy_webhooks_redis import open_redis_store
from empathy_webhooks_redis.testing import workers_joined

from empathy_webhooks_core import CustomWebhook, UnknownWebhookError, WebhookDispatcher
from empathy_webhooks_core.testing import Receiver

CLI = str(Path(sys.executable).parent / "empathy-webhooks")
#: The CLI's own `main` for a child (`worker`, `serve`), given as -c: never a script file
#: written per child.
CLI_MAIN = "import sys; from empathy_webhooks_core.cli import main; main(sys.argv[1:])"
ADMIN = "tk-admin-test-redis-cli-wait-0123456789"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMPATHY_WEBHOOKS")}
    return {**env, "EMPATHY_WEBHOOKS_LOAD_PLUGINS": "redis", "PYTHONUNBUFFERED": "1"}


def _config(tmp_path: Path, store: str, receiver: Receiver, names: tuple[str, ...]) -> Path:
    digest = hashlib.sha256(ADMIN.encode()).hexdigest()
    text = (
        f'store = "{store}"\n[serve]\nshutdown_grace_seconds = 2\n'
        f'[[serve.tokens]]\nname = "admin"\nsha256 = "{digest}"\nscopes = ["admin"]\n'
    )
    for name in names:
        text += (
            f'[[webhooks]]\ntype = "custom"\nname = "{name}"\nurl = "{receiver.url("/" + name)}"\n'
            f'events = ["{name}_*"]\nretry_policy = {{ max_retries = 0 }}\n'
        )
    path = tmp_path / f"{'-'.join(names)}.toml"
    path.write_text(text, encoding="utf-8")
    return path


async def _cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        CLI,
        *args,
        env=_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@asynccontextmanager
async def _worker(config: Path, store: str) -> AsyncIterator[None]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-P",
        "-c",
        CLI_MAIN,
        "worker",
        "-c",
        str(config),
        env=_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await workers_joined(store, 1, [proc])
        yield
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.communicate(), 30)
        except TimeoutError:
            proc.kill()
            await proc.communicate()


@asynccontextmanager
async def _serve(config: Path) -> AsyncIterator[str]:
    """`empathy-webhooks serve` as a child process; its URL."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-P",
        "-c",
        CLI_MAIN,
        "serve",
        "-c",
        str(config),
        "--port",
        "0",
        env=_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        found = re.search(r"listening on (http://\S+) ", line)
        assert found is not None, f"the gateway did not start: {line!r}"
        yield found.group(1)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), 60)


async def _letters(config: Path) -> list[dict[str, object]]:
    code, out, err = await _cli("dead-letters", "list", "--json", "-c", str(config))
    assert code == 0, err
    letters: list[dict[str, object]] = json.loads(out)["dead_letters"]
    return letters


async def test_send_waits_for_the_worker_and_exits_1_when_its_delivery_failed(
    tmp_path: Path, redis_url: str, webhook_receiver: Receiver
) -> None:
    receiver = webhook_receiver
    config = _config(tmp_path, redis_url, receiver, ("ok", "bad"))
    async with _worker(config, redis_url):
        receiver.respond(200)
        code, out, err = await _cli("send", "ok_alert", "--json", "-c", str(config))
        assert code == 0, out + err
        results = {r["webhook"]: r for r in json.loads(out)["results"]}
        assert (results["ok"]["outcome"], results["ok"]["status"]) == ("delivered", 200)
        assert results["bad"]["outcome"] == "skipped"

        receiver.respond(400)
        code, out, err = await _cli("send", "bad_alert", "-c", str(config))
        assert code == 1, out + err
        (row,) = [line for line in out.splitlines() if line.startswith("bad ")]
        assert row.split()[:4] == ["bad", "failed", "400", "1"]
        assert "rejected with HTTP 400" in row
    assert [r.path for r in receiver.requests] == ["/ok", "/bad"]


async def test_send_with_no_worker_says_what_is_pending_and_exits_1(
    tmp_path: Path, redis_url: str, webhook_receiver: Receiver
) -> None:
    receiver = webhook_receiver
    config = _config(tmp_path, redis_url, receiver, ("ok",))

    code, out, err = await _cli("send", "ok_alert", "--timeout", "0.5", "-c", str(config))

    assert code == 1, out + err
    (row,) = [line for line in out.splitlines() if line.startswith("ok ")]
    assert row.split()[:2] == ["ok", "pending"]
    assert "no worker finished it within 0.5 s" in row
    prefix = redis_url.split("prefix=", 1)[1]
    assert (
        "1 delivery still pending after 0.5 s: check that a worker (`empathy-webhooks worker`) "
        "runs on RedisStore('redis://127.0.0.1:6379/0', role='producer', "
        f"prefix='{prefix}') with these webhooks; what is pending stays queued there until "
        "one does"
    ) in err
    assert receiver.requests == []
    # --no-wait still only queues, and says so.
    code, out, err = await _cli("send", "ok_alert", "--no-wait", "-c", str(config))
    assert code == 0, out + err
    assert "queued" in out


async def test_replay_waits_for_the_worker_and_exits_1_when_it_fails_again(
    tmp_path: Path, redis_url: str, webhook_receiver: Receiver
) -> None:
    receiver = webhook_receiver
    config = _config(tmp_path, redis_url, receiver, ("flaky",))
    receiver.respond(500)
    async with _worker(config, redis_url):
        code, out, err = await _cli("send", "flaky_alert", "-c", str(config))
        assert code == 1, out + err
        (letter,) = await _letters(config)

        code, out, err = await _cli("dead-letters", "replay", "-c", str(config))
        assert code == 1, out + err
        assert "replayed 1 dead letter(s)" in out
        (row,) = [line for line in out.splitlines() if line.startswith("flaky ")]
        assert " failed " in row and "500" in row
        (again,) = await _letters(config)
        assert again["event"] == letter["event"]

        receiver.respond(200)
        code, out, err = await _cli("dead-letters", "replay", "-c", str(config))
        assert code == 0, out + err
        (row,) = [line for line in out.splitlines() if line.startswith("flaky ")]
        assert " delivered " in row
    assert await _letters(config) == []
    assert [r.answered for r in receiver.requests] == [500, 500, 200]


async def test_replay_leaves_the_letter_of_a_webhook_the_configuration_lacks(
    tmp_path: Path, redis_url: str, webhook_receiver: Receiver
) -> None:
    """The dispatcher's replay, the gateway's and the CLI's: refused, the letter kept. Before,
    on Redis, the letter left the dead letters for a delivery nobody would send."""
    receiver = webhook_receiver
    receiver.respond(400)
    before = _config(tmp_path, redis_url, receiver, ("gone",))
    async with _worker(before, redis_url):
        # Only queued here (the wait of `send` has tests of its own), then failed by the worker.
        code, out, err = await _cli("send", "gone_alert", "--no-wait", "-c", str(before))
        assert code == 0, out + err
        # Watched in this process: the CLI, started every 50 ms, cost seconds of CPU.
        store = open_redis_store(redis_url)
        await store.open()
        try:
            async with asyncio.timeout(60):
                while not await store.dead_letters():  # noqa: ASYNC110 - the worker writes it
                    await asyncio.sleep(0.05)
        finally:
            await store.close()
    receiver.respond(200)
    config = _config(tmp_path, redis_url, receiver, ("ok",))
    (letter,) = await _letters(config)
    letter_id = str(letter["dead_letter_id"])

    other = CustomWebhook(name="ok", url=receiver.url("/ok"))
    async with WebhookDispatcher(webhooks=[other], store=redis_url) as producer:
        with pytest.raises(UnknownWebhookError, match="is for unknown webhook 'gone'"):
            await producer.replay_dead_letter(letter_id)
    assert [d["dead_letter_id"] for d in await _letters(config)] == [letter_id]

    async with _serve(config) as url, aiohttp.ClientSession() as session:
        async with session.post(
            f"{url}/v1/dead-letters/{letter_id}/replay",
            headers={"Authorization": f"Bearer {ADMIN}"},
        ) as answer:
            assert answer.status == 409
            assert answer.content_type == "application/problem+json"
            body = await answer.json()
    assert "is for unknown webhook 'gone'" in body["detail"]
    assert [d["dead_letter_id"] for d in await _letters(config)] == [letter_id]

    code, out, err = await _cli("dead-letters", "replay", "-c", str(config))
    assert code == 1, out + err
    assert "not replayed: 1 dead letter(s) for webhook 'gone'" in err
    assert [d["dead_letter_id"] for d in await _letters(config)] == [letter_id]
    assert [r.path for r in receiver.requests] == ["/gone"]
