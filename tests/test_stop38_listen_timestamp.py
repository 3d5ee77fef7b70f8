"""`empathy-webhooks listen` verifies as the library's receiving helpers do: a request signed
with `X-Signature` alone has no timestamp, so one captured could be replayed forever, and it
is refused (saying why) unless `--no-require-timestamp`, as `require_timestamp=False` is the
helpers' opt-out. Real console script, real deliveries from the library over loopback."""

from __future__ import annotations

import asyncio
import json

from empathy_webhooks_core import CustomWebhook, WebhookDispatcher

from ._cli_kit import CLI, environ, run_subprocess

SECRET = "listen-stop38-secret"


async def _listen(*args: str, schemes: list[str]) -> tuple[int | None, list[dict], list[int]]:
    """`listen --json` on a free port, one delivery per signature scheme sent to it by a
    dispatcher; its exit code, its JSON lines after the first, and the statuses answered."""
    proc = await asyncio.create_subprocess_exec(
        CLI,
        "listen",
        "--port",
        "0",
        "--json",
        "--secret",
        SECRET,
        "--count",
        str(len(schemes)),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environ(None),
    )
    try:
        assert proc.stdout is not None
        first = json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))
        statuses: list[int] = []
        for number, scheme in enumerate(schemes):
            hook = CustomWebhook(
                name=f"to_listen_{number}",
                url=f"{first['listening']}hook",
                signing_secret=SECRET,
                signature_scheme=scheme,
                retry_policy={"max_retries": 0},
                circuit_breaker=False,
            )
            async with WebhookDispatcher(webhooks=[hook]) as dispatcher:
                event = await dispatcher.emit("alert", {"scheme": scheme})
                await dispatcher.drain()
                [record] = (await dispatcher.deliveries(event_id=event.event_id)).items
                statuses.append(record.attempts[-1].status)
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return proc.returncode, [first, *map(json.loads, out.decode().splitlines())], statuses


async def test_listen_refuses_x_signature_alone_by_default_and_says_why() -> None:
    code, lines, statuses = await _listen(schemes=["x-signature", "both", "standard-webhooks"])
    assert statuses == [401, 200, 200]
    assert code == 1
    assert lines[0]["require_timestamp"] is True
    untimed, both, standard = lines[1:]
    assert (untimed["signature"], untimed["schemes"]) == ("no timestamp", {"x-signature": True})
    assert "signed with X-Signature alone" in untimed["refused"]
    assert "replayed forever" in untimed["refused"]
    assert "--no-require-timestamp accepts it" in untimed["refused"]
    assert both["signature"] == standard["signature"] == "valid"
    assert both["refused"] is None and standard["refused"] is None


async def test_no_require_timestamp_accepts_a_valid_x_signature_alone() -> None:
    code, lines, statuses = await _listen("--no-require-timestamp", schemes=["x-signature"])
    assert statuses == [200] and code == 0
    assert lines[0]["require_timestamp"] is False
    assert (lines[1]["signature"], lines[1]["refused"]) == ("valid", None)


def test_listen_help_names_the_opt_out() -> None:
    result = run_subprocess("listen", "--help")
    assert result.code == 0
    text = " ".join(result.out.split())
    assert "--no-require-timestamp" in text
    assert "X-Signature alone" in text
