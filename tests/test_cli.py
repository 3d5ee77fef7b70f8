"""The `empathy-webhooks` CLI: exit codes, output, exact configuration errors, and `listen`
verifying what `send` signed. Most tests call the CLI's `main(argv)` in this process (a
subprocess costs a second of start-up under load); `listen` and `--help` run the installed
console script for real, so the entry point itself stays tested."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from empathy_webhooks_core.testing import ReceivedRequest, Receiver, Reply

from ._cli_kit import CLI, arun, environ, run, run_subprocess


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


FAST = "retry_policy = { max_retries = 1, initial_delay_seconds = 0.01 }"


def test_help_documents_the_commands_and_exit_codes() -> None:
    result = run_subprocess("--help")
    assert result.code == 0
    for command in (
        "plugins",
        "validate",
        "render",
        "send",
        "test",
        "listen",
        "stats",
        "dead-letters",
        "deliveries",
        "demo",
        "worker",
        "new-plugin",
    ):
        assert command in result.out
    assert "0  everything worked" in result.out
    assert "1  something failed" in result.out
    assert "2  usage or configuration error" in result.out
    assert run().code == 2
    assert run("send", "--bogus").code == 2


def test_validate_a_good_file(tmp_path: Path) -> None:
    config = write(
        tmp_path / "webhooks.toml",
        """
store = "sqlite:///outbox.db"
[[webhooks]]
type = "custom"
name = "audit"
url = "https://example.com/hook?token=${TOKEN}"
events = ["prediction", "alert"]
filter = { severity = { gte = "high" } }
""",
    )
    result = run("validate", env={"TOKEN": "tok-secret"}, cwd=tmp_path)
    assert result.code == 0, result.err
    assert f"{config.name}: valid, 1 webhook(s), store sqlite:///outbox.db" in result.out
    assert "audit" in result.out and "severity >= 'high'" in result.out
    assert "tok-secret" not in result.out
    as_json = run("validate", "--json", "-c", str(config), env={"TOKEN": "tok-secret"}).json()
    assert as_json["valid"] is True
    assert as_json["webhooks"][0]["events"] == ["prediction", "alert"]
    assert "tok-secret" not in json.dumps(as_json)


def test_validate_prints_each_problem_at_its_place(tmp_path: Path) -> None:
    config = write(
        tmp_path / "bad.toml",
        """
[[webhooks]]
type = "custom"
url = "https://example.com/a"

[[webhooks]]
type = "custom"
name = "b"
url = "${B_URL}"

[[webhooks]]
type = "custom"
name = "c"
url = "https://example.com/c"
headers = { Authorization = "Bearer ${TOKEN}" }
signing_secret = 314159265
retry_policy = { max_retries = "three" }
rate_limit = { max_requests_per_minute = 60, stratgy = "sliding_window" }
filter = { severity = ["high"], clasification = "SENSITIVE" }

[[webhooks]]
type = "custm"
""",
    )
    result = run("validate", "--config", str(config), env={"TOKEN": "tok-do-not-print"})
    assert result.code == 2
    assert result.out == ""
    # The field whose variable is missing is not judged again (no second, confusing line).
    assert result.err.splitlines() == [
        f"{config}: 6 problem(s)",
        "webhooks[1].url: environment variable B_URL is not set",
        "webhooks[2].signing_secret: expected a string or a list of strings, got an integer",
        "webhooks[2].retry_policy.max_retries: expected an integer, got 'three'",
        "webhooks[2].rate_limit: unknown key 'stratgy' (did you mean 'strategy'?)",
        "webhooks[2].filter: unknown filter key 'clasification' (did you mean 'classification'?)",
        "webhooks[3].type: unknown webhook type 'custm' (did you mean 'custom'?); installed "
        "types: custom",
    ]
    assert "314159265" not in result.err and "tok-do-not-print" not in result.err
    as_json = run("validate", "--json", "-c", str(config)).json()
    assert as_json["valid"] is False
    assert "webhooks[1].url: environment variable B_URL is not set" in as_json["errors"]


def test_a_missing_configuration_file_is_a_usage_error(tmp_path: Path) -> None:
    result = run("validate", cwd=tmp_path)
    assert result.code == 2
    assert "no configuration file 'webhooks.toml'" in result.err


def test_plugins_lists_types_and_load_failures(tmp_path: Path) -> None:
    result = run("plugins", "--json")
    assert result.code == 0, result.err
    listing = result.json()
    custom = next(p for p in listing["plugins"] if "custom" in p["webhook_types"])
    assert custom["distribution"] == "empathy-webhooks-core"
    assert listing["load_errors"] == []
    # A distribution whose entry point cannot be imported: listed with the reason, exit 1.
    dist = tmp_path / "empathy_webhooks_broken-0.1.dist-info"
    dist.mkdir()
    write(dist / "METADATA", "Metadata-Version: 2.1\nName: empathy-webhooks-broken\nVersion: 0.1\n")
    write(dist / "entry_points.txt", "[empathy_webhooks]\nbroken = no_such_module_xyz\n")
    env = {"PYTHONPATH": str(tmp_path), "EMPATHY_WEBHOOKS_LOAD_PLUGINS": "broken"}
    result = run("plugins", env=env)
    assert result.code == 1
    assert "Failed to load" in result.out
    assert "broken" in result.out and "ModuleNotFoundError" in result.out
    errors = run("plugins", "--json", env=env).json()["load_errors"]
    assert errors == [
        {
            "name": "broken",
            "distribution": "empathy-webhooks-broken",
            "error": "ModuleNotFoundError: No module named 'no_such_module_xyz'",
        }
    ]


def test_render_shows_each_request_without_sending(tmp_path: Path) -> None:
    config = write(
        tmp_path / "webhooks.toml",
        """
[[webhooks]]
type = "custom"
name = "audit"
url = "http://127.0.0.1:9/hook"
signing_secret = "render-secret"
headers = { Authorization = "Bearer tok-do-not-print" }

[[webhooks]]
type = "custom"
name = "alerts_only"
url = "http://127.0.0.1:9/alerts"
events = ["alert"]
""",
    )
    result = run(
        "render",
        "prediction",
        "--data",
        '{"prediction": "p", "confidence": 0.9}',
        "--level",
        "4",
        "-c",
        str(config),
    )
    assert result.code == 0, result.err
    assert "POST http://127.0.0.1:9/hook" in result.out
    assert "(signed when sent: both signature headers)" in result.out
    assert "skipped: not subscribed (events: alert)" in result.out
    assert "tok-do-not-print" not in result.out and "render-secret" not in result.out
    rendered = run("render", "prediction", "--json", "-c", str(config)).json()
    audit = rendered["requests"][0]
    body = json.loads(audit["body"])
    # Without --data the built-in sample is used: the reference's level-4 prediction.
    assert body["data"]["prediction"] == "Auth deployment may conflict with user-service v2.1"
    assert body["empathy_level"] == 4
    assert rendered["requests"][1]["skipped"].startswith("not subscribed")


def service(request: ReceivedRequest) -> Reply:
    return Reply(status=500, body="broken") if request.path == "/fail" else Reply(status=200)


async def test_send_reports_per_webhook_and_exits_1_on_a_failure(tmp_path: Path) -> None:
    async with Receiver() as receiver:
        receiver.handler = service
        config = write(
            tmp_path / "webhooks.toml",
            f"""
[[webhooks]]
type = "custom"
name = "good"
url = "{receiver.url("/ok")}"
{FAST}

[[webhooks]]
type = "custom"
name = "bad"
url = "{receiver.url("/fail")}"
events = ["alert"]
{FAST}

[[webhooks]]
type = "custom"
name = "sensitive"
url = "{receiver.url("/ok")}"
filter = {{ classification = "SENSITIVE" }}
""",
        )
        data = tmp_path / "data.json"
        data.write_text('{"title": "Error rate above 5%"}')
        result = await arun(
            "send",
            "alert",
            "--data",
            f"@{data}",
            "--severity",
            "high",
            "--user",
            "ops",
            "-c",
            str(config),
        )
        assert result.code == 1, result.err
        rows = {line.split()[0]: line.split() for line in result.out.splitlines()[2:]}
        assert rows["good"][1:4] == ["delivered", "200", "1"]
        assert rows["bad"][1:4] == ["failed", "500", "2"]
        assert rows["sensitive"][1] == "skipped"
        arrived = [r.json() for r in receiver.requests if r.path == "/ok"]
        assert arrived[0]["data"] == {"title": "Error rate above 5%"}
        assert arrived[0]["severity"] == "high" and arrived[0]["user_id"] == "ops"

        receiver.requests.clear()
        result = await arun("send", "prediction", "--json", "-c", str(config))
        assert result.code == 0, result.err
        outcomes = {r["webhook"]: r for r in result.json()["results"]}
        assert outcomes["good"]["outcome"] == "delivered"
        assert outcomes["good"]["status"] == 200
        assert outcomes["bad"]["outcome"] == "skipped"
        assert outcomes["sensitive"]["reason"] == "filtered out (classification == 'SENSITIVE')"


async def test_send_many_events_from_a_json_lines_file(tmp_path: Path, receiver: Receiver) -> None:
    config = write(
        tmp_path / "webhooks.toml",
        f'[[webhooks]]\ntype = "custom"\nname = "all"\nurl = "{receiver.url()}"\n{FAST}\n',
    )
    events = tmp_path / "events.jsonl"
    events.write_text(
        "\n".join(
            json.dumps({"event_type": t, "data": {"n": n}, "ordering_key": "k"})
            for n, t in enumerate(["prediction", "alert", "bug_detected"])
        )
        + "\n# a comment\n\n"
    )
    result = await arun("send", "--events-file", str(events), "-c", str(config))
    assert result.code == 0, result.err
    assert "3 events" in result.out
    assert result.out.splitlines()[2].split()[:6] == ["all", "3", "0", "0", "0", "0"]
    assert [r.json()["data"]["n"] for r in receiver.requests] == [0, 1, 2]

    events.write_text('{"event_type": "alert"}\n{"event_typ": "alert"}\n')
    result = await arun("send", "--events-file", str(events), "-c", str(config))
    assert result.code == 2
    assert result.err.strip() == f"{events}:2: unknown key 'event_typ' (did you mean 'event_type'?)"
    assert len(receiver.requests) == 3  # nothing was sent


def test_send_usage_errors(tmp_path: Path) -> None:
    config = write(
        tmp_path / "webhooks.toml",
        '[[webhooks]]\ntype = "custom"\nurl = "${HOOK_URL}"\n',
    )
    result = run("send", "alert", "-c", str(config))
    assert result.code == 2
    assert "webhooks[0].url: environment variable HOOK_URL is not set" in result.err
    env = {"HOOK_URL": "http://127.0.0.1:9/"}
    assert "not valid JSON" in run("send", "alert", "--data", "{", "-c", str(config), env=env).err
    assert run("send", "alert", "--level", "9", "-c", str(config), env=env).code == 2
    result = run("send", "alert", "--no-wait", "-c", str(config), env=env)
    assert result.code == 2 and "durable store" in result.err


async def test_listen_verifies_a_signed_delivery_from_send(tmp_path: Path) -> None:
    listen = await asyncio.create_subprocess_exec(
        CLI,
        "listen",
        "--port",
        "0",
        "--secret",
        "shared-secret",
        "--count",
        "2",
        "--json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environ(None),
    )
    try:
        assert listen.stdout is not None
        first = json.loads(await asyncio.wait_for(listen.stdout.readline(), 30))
        url = first["listening"]
        config = write(
            tmp_path / "webhooks.toml",
            f"""
[[webhooks]]
type = "custom"
name = "local"
url = "{url}webhooks/empathy"
signing_secret = "${{SECRET}}"
retry_policy = {{ max_retries = 0 }}
""",
        )
        good = await arun(
            "send",
            "prediction",
            "--data",
            '{"prediction": "p"}',
            "--level",
            "4",
            "-c",
            str(config),
            env={"SECRET": "shared-secret"},
        )
        assert good.code == 0, good.out + good.err
        bad = await arun("send", "alert", "-c", str(config), env={"SECRET": "wrong-secret"})
        assert bad.code == 1
        assert "401" in bad.out
        out, _ = await asyncio.wait_for(listen.communicate(), 30)
    finally:
        if listen.returncode is None:
            listen.kill()
            await listen.wait()
    assert listen.returncode == 1  # one arrival had an invalid signature
    arrivals = [json.loads(line) for line in out.decode().splitlines()]
    assert [(a["event_type"], a["signature"], a["answered"]) for a in arrivals] == [
        ("prediction", "valid", 200),
        ("alert", "invalid", 401),
    ]
    assert arrivals[0]["schemes"] == {"x-signature": True, "standard-webhooks": True}
    assert arrivals[0]["path"] == "/webhooks/empathy"
    assert json.loads(arrivals[0]["body"])["empathy_level"] == 4


async def test_listen_plain_output(tmp_path: Path) -> None:
    listen = await asyncio.create_subprocess_exec(
        CLI,
        "listen",
        "--port",
        "0",
        "--count",
        "1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environ(None),
    )
    assert listen.stdout is not None
    first = (await asyncio.wait_for(listen.stdout.readline(), 30)).decode()
    assert first.startswith("listening on http://127.0.0.1:")
    url = first.split()[2]
    config = write(tmp_path / "w.toml", f'[[webhooks]]\ntype = "custom"\nurl = "{url}hook"\n')
    assert (await arun("send", "test_failure", "-c", str(config))).code == 0
    out, _ = await asyncio.wait_for(listen.communicate(), 30)
    assert listen.returncode == 0
    line = out.decode().splitlines()[0]
    assert "POST /hook  test_failure  evt_" in line
    assert "signature not checked  -> 200" in line


async def test_dead_letters_stats_and_replay_on_the_sqlite_store(
    tmp_path: Path, receiver: Receiver
) -> None:
    config = write(
        tmp_path / "webhooks.toml",
        f"""
store = "sqlite:///{tmp_path / "outbox.db"}"
[[webhooks]]
type = "custom"
name = "flaky"
url = "{receiver.url("/flaky")}"
{FAST}
""",
    )
    env = {"EMPATHY_WEBHOOKS_LOAD_PLUGINS": ""}
    receiver.queue(Reply(status=500), Reply(status=500))
    sent = await arun(
        "send", "bug_detected", "--data", '{"title": "SQL injection"}', "-c", str(config), env=env
    )
    assert sent.code == 1
    stats = await arun("stats", "--json", "-c", str(config), env=env)
    assert stats.code == 0, stats.err
    figures = stats.json()["webhooks"]["flaky"]
    assert figures["dead_letters"] == 1 and figures["pending"] == 0
    assert "500" in figures["last_error"]
    listed = await arun("dead-letters", "list", "--json", "-c", str(config), env=env)
    (letter,) = listed.json()["dead_letters"]
    assert letter["webhook_name"] == "flaky" and letter["attempts"] == 2
    assert letter["event"]["data"] == {"title": "SQL injection"}
    plain = await arun("dead-letters", "list", "-c", str(config), env=env)
    assert letter["dead_letter_id"] in plain.out and "1 dead letter(s)" in plain.out

    replayed = await arun("dead-letters", "replay", "-c", str(config), env=env)
    assert replayed.code == 0, replayed.out + replayed.err
    assert "replayed 1 dead letter(s)" in replayed.out and "delivered" in replayed.out
    assert receiver.requests[-1].json()["event_id"] == letter["event"]["event_id"]
    listed = await arun("dead-letters", "list", "--json", "-c", str(config), env=env)
    assert listed.json()["dead_letters"] == []
    unknown = await arun("dead-letters", "replay", "dl_nope", "-c", str(config), env=env)
    assert unknown.code == 2 and "no dead letter 'dl_nope'" in unknown.err


async def test_deliveries_lists_and_shows_attempts_from_the_sqlite_store(
    tmp_path: Path, receiver: Receiver
) -> None:
    config = write(
        tmp_path / "webhooks.toml",
        f"""
store = "sqlite:///{tmp_path / "outbox.db"}"
[[webhooks]]
type = "custom"
name = "flaky"
url = "{receiver.url("/flaky")}"
signing_secret = "whsec_cli_history_secret_0123456789"
{FAST}
""",
    )
    env = {"EMPATHY_WEBHOOKS_LOAD_PLUGINS": ""}
    receiver.queue(Reply(status=500, body="try later"), Reply(status=200, body="thanks"))
    sent = await arun("send", "bug_detected", "-c", str(config), env=env)
    assert sent.code == 0, sent.err
    assert (await arun("send", "alert", "-c", str(config), env=env)).code == 0

    listed = await arun("deliveries", "list", "--json", "-c", str(config), env=env)
    assert listed.code == 0, listed.err
    newest, oldest = listed.json()["deliveries"]
    assert (newest["event_type"], oldest["event_type"]) == ("alert", "bug_detected")
    assert oldest["status"] == "delivered" and len(oldest["attempts"]) == 2
    first = await arun("deliveries", "--json", "--limit", "1", "-c", str(config), env=env)
    cursor = first.json()["next_cursor"]
    rest = await arun(
        "deliveries", "list", "--json", "--cursor", cursor, "-c", str(config), env=env
    )
    assert [d["delivery_id"] for d in rest.json()["deliveries"]] == [oldest["delivery_id"]]
    only = await arun(
        "deliveries",
        "list",
        "--json",
        "--event-type",
        "alert",
        "--since",
        "1h",
        "-c",
        str(config),
        env=env,
    )
    assert [d["delivery_id"] for d in only.json()["deliveries"]] == [newest["delivery_id"]]
    plain = await arun("--plain", "deliveries", "-c", str(config), env=env)
    assert "2 deliveries in" in plain.out and oldest["delivery_id"] in plain.out

    shown = await arun("--plain", "deliveries", "show", oldest["delivery_id"], "-c", str(config))
    assert shown.code == 0, shown.err
    assert "2 attempt(s)" in shown.out
    assert "< try later" in shown.out and "< thanks" in shown.out
    assert "> webhook-signature: ***" in shown.out
    assert "whsec_cli_history_secret" not in shown.out
    as_json = await arun("deliveries", "show", oldest["delivery_id"], "--json", "-c", str(config))
    attempts = as_json.json()["delivery"]["attempts"]
    assert [(a["status"], a["verdict"]) for a in attempts] == [(500, "retry"), (200, "success")]
    missing = await arun("deliveries", "show", "dlv_nope", "-c", str(config), env=env)
    assert missing.code == 1 and "no delivery 'dlv_nope'" in missing.err
    bad = await arun("deliveries", "list", "--since", "yesterday", "-c", str(config), env=env)
    assert bad.code == 2 and "is not a time" in bad.err


def test_stats_explains_that_the_memory_store_keeps_nothing(tmp_path: Path) -> None:
    write(tmp_path / "webhooks.toml", '[[webhooks]]\ntype = "custom"\nurl = "https://e.x/"\n')
    for command in (["stats"], ["dead-letters", "list"], ["deliveries"]):
        result = run(*command, cwd=tmp_path)
        assert result.code == 2
        assert "nothing persists between commands" in result.err


def test_reading_commands_refuse_a_store_file_that_does_not_exist(tmp_path: Path) -> None:
    """A mistyped path was answered with an empty store made on the spot ("0 pending, no
    dead letters") and left behind, folders and all."""
    write(tmp_path / "webhooks.toml", '[[webhooks]]\ntype = "custom"\nurl = "https://e.x/"\n')
    typo = tmp_path / "ops" / "outbox.db"
    for command in (
        ["stats"],
        ["stats", "--json"],
        ["dead-letters", "list"],
        ["dead-letters", "replay"],
        ["deliveries"],
    ):
        result = run(*command, "--store", f"sqlite:///{typo}", cwd=tmp_path)
        assert result.code == 2, (command, result)
        assert f"there is no store file at {typo}" in result.err, result.err
        assert "Traceback" not in result.err
    assert not typo.parent.exists()


def test_listen_refuses_an_empty_secret() -> None:
    """`--secret "$SECRET"` with the variable unset said "verifying with 1 secret" and then
    refused every signed request."""
    for secrets in (["--secret", ""], ["--secret", "s3cr3t-value", "--secret", "  "]):
        result = run("listen", "--port", "0", "--count", "1", *secrets)
        assert result.code == 2, result
        assert "--secret is empty (is its environment variable set?)" in result.err
        assert "s3cr3t-value" not in result.err + result.out


async def test_test_sends_a_sample_of_each_subscribed_type(
    tmp_path: Path, receiver: Receiver
) -> None:
    config = write(
        tmp_path / "webhooks.toml",
        f"""
[[webhooks]]
type = "custom"
name = "team"
url = "{receiver.url()}"
events = ["prediction", "alert", "my_own_event"]
""",
    )
    result = await arun("test", "team", "-c", str(config))
    assert result.code == 0, result.err
    assert [r.json()["event_type"] for r in receiver.requests] == [
        "prediction",
        "alert",
        "my_own_event",
    ]
    assert receiver.requests[0].json()["data"]["confidence"] == 0.87
    assert result.out.count("delivered") == 3
    missing = await arun("test", "tema", "-c", str(config))
    assert missing.code == 2 and "no webhook named 'tema'" in missing.err


def test_new_plugin_writes_a_distribution(tmp_path: Path) -> None:
    result = run("new-plugin", "acme", "--dest", str(tmp_path))
    assert result.code == 0, result.err
    assert (tmp_path / "empathy-webhooks-acme" / "pyproject.toml").exists()
    again = run("new-plugin", "acme", "--dest", str(tmp_path))
    assert again.code == 2 and "already exists" in again.err


@pytest.mark.parametrize("command", [["worker"], ["worker", "--store", "memory"]])
def test_worker_needs_a_shared_store(tmp_path: Path, command: list[str]) -> None:
    write(tmp_path / "webhooks.toml", '[[webhooks]]\ntype = "custom"\nurl = "https://e.x/"\n')
    result = run(*command, cwd=tmp_path)
    assert result.code == 2 and "shared store" in result.err
