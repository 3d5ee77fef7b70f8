"""The command line and configuration loading: gaps found by a third adversarial audit.

Each test is a mistake a new user makes, or one an adversary counts on, and what they see:
the lines on stderr, the exit status, what is sent. Configuration tests read dicts and files
through `parse_config` / `load_config` with the core's own types only; CLI tests run the
command as the console script runs it (`_cli_kit`), and the worker's signals go to a real
process."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from empathy_webhooks_core import CustomWebhook, WebhookDispatcher
from empathy_webhooks_core.config import ConfigError, expand_env, load_config, parse_config
from empathy_webhooks_core.converter import did_you_mean
from empathy_webhooks_core.plugins import build_plugin_manager
from empathy_webhooks_core.stores.sqlite import SQLiteStore
from empathy_webhooks_core.testing import Receiver, Reply
from empathy_webhooks_core.worker import run_worker

from ._cli_kit import CLI, arun, environ, run


@pytest.fixture
def pm():
    # Only the core's own types: these tests must not depend on which plugins are installed.
    return build_plugin_manager(load_entry_points=False)


def problems(data, pm, env=None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, plugin_manager=pm, env=env or {})
    return caught.value.problems


def warnings_of(data, pm, env=None) -> list[str]:
    return list(parse_config(data, plugin_manager=pm, env=env or {}).warnings)


def hook(**options) -> dict:
    return {"type": "custom", "url": "https://example.com/hook", **options}


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- ${NAME}: what is not a reference is never kept as a value -------------------------------


@pytest.mark.parametrize(
    "written",
    ["${ SECRET }", "${SECRET", "${env:SECRET}", "${SECRET-fallback}", "${1SECRET}"],
)
def test_a_dollar_brace_that_is_not_a_reference_is_refused(pm, written) -> None:
    # Before: each was kept as written, and requests were signed with those characters.
    lines = problems({"webhooks": [hook(signing_secret=written)]}, pm, {"SECRET": "s3cr3t"})
    assert len(lines) == 1
    assert lines[0].startswith("webhooks[0].signing_secret: a ${ that is not a reference: ")
    assert "write ${NAME} or ${NAME:-default}" in lines[0]
    assert written not in lines[0]  # a credential's place: its text is never shown


def test_a_bad_reference_outside_a_credential_is_shown(pm) -> None:
    lines = problems({"webhooks": [hook(name="${ NAME }")]}, pm)
    assert lines == [
        "webhooks[0].name: a ${ that is not a reference '${ NAME }': write ${NAME} or "
        "${NAME:-default} (NAME of letters, digits and _), or $${ for a literal ${"
    ]


def test_a_shell_style_reference_in_a_credential_is_refused(pm) -> None:
    data = {
        "webhooks": [
            hook(name="a", signing_secret="$WEBHOOK_SECRET"),
            hook(name="b", headers={"Authorization": "Bearer $API_TOKEN"}),
        ]
    }
    assert problems(data, pm, {"WEBHOOK_SECRET": "x" * 20, "API_TOKEN": "y" * 20}) == [
        "webhooks[0].signing_secret: environment variable WEBHOOK_SECRET is written the "
        "shell's way, which is not expanded: write ${WEBHOOK_SECRET}",
        "webhooks[1].headers.Authorization: environment variable API_TOKEN is written the "
        "shell's way, which is not expanded: write ${API_TOKEN}",
    ]


def test_a_shell_style_reference_elsewhere_is_a_warning(pm) -> None:
    config = parse_config(
        {"webhooks": [hook(url="https://example.com/$HOOK_ID")]}, plugin_manager=pm, env={}
    )
    assert config.webhooks[0].url == "https://example.com/$HOOK_ID"  # kept, as before
    assert config.warnings == (
        "webhooks[0].url: environment variable HOOK_ID is written the shell's way, which is "
        "not expanded: write ${HOOK_ID} (it is kept as written)",
    )


def test_escapes_and_defaults_still_work() -> None:
    env = {"A": "alpha"}
    assert expand_env("$${A} ${A} ${B:-beta} pa$Sword $lower", env) == (
        "${A} alpha beta pa$Sword $lower"
    )
    with pytest.raises(ConfigError) as caught:
        expand_env({"k": "${A:-${B}}"}, env)
    assert caught.value.problems == [
        "k: the default of ${A:-...} holds a ${: defaults are not expanded"
    ]


def test_a_blank_signing_secret_from_the_environment_says_so(pm) -> None:
    data = {
        "webhooks": [
            hook(name="a", signing_secret="${EMPTY}"),
            hook(name="b", signing_secret=["${GOOD}", "${SPACE}"]),
        ]
    }
    hint = (
        "is empty or blank (is its environment variable set?); leave signing_secret out "
        "for unsigned requests"
    )
    env = {"EMPTY": "", "SPACE": " ", "GOOD": "g" * 20}
    assert problems(data, pm, env) == [
        f"webhooks[0].signing_secret: {hint}",
        f"webhooks[1].signing_secret: {hint}",
    ]


# -- keys in the wrong place, shortened names ------------------------------------------------


def test_an_option_of_a_nested_table_written_beside_url_says_where_it_belongs(pm) -> None:
    data = {"webhooks": [hook(timeout_seconds=5, retries=3, max_requests_per_minute=60)]}
    assert problems(data, pm) == [
        "webhooks[0]: unknown key 'timeout_seconds' (did you mean "
        "retry_policy.timeout_seconds? write retry_policy = { timeout_seconds = ... })",
        "webhooks[0]: unknown key 'retries' (did you mean retry_policy.max_retries? write "
        "retry_policy = { max_retries = ... })",
        "webhooks[0]: unknown key 'max_requests_per_minute' (did you mean "
        "rate_limit.max_requests_per_minute? write rate_limit = { max_requests_per_minute "
        "= ... })",
    ]


def test_a_shortened_name_gets_the_one_it_begins() -> None:
    assert did_you_mean("repo", ["repository", "name"]) == " (did you mean 'repository'?)"
    assert did_you_mean("max", ["max_retries", "max_delay_seconds"]) == ""  # two: no guess
    assert did_you_mean("ab", ["abc"]) == " (did you mean 'abc'?)"  # difflib's own


def test_a_typo_of_a_plugin_left_out_names_that_plugin_not_the_typo(pm) -> None:
    pm.left_out = ["slack"]
    pm.load_plugins = ""
    (line,) = problems({"webhooks": [{"type": "slak", "webhook_url": "https://x.test/"}]}, pm)
    assert line.startswith("webhooks[0].type: unknown webhook type 'slak' (did you mean 'slack'?)")
    assert "add slack to it" in line
    assert "empathy-webhooks-slak" not in line


def test_a_class_name_or_a_generic_word_as_type_gets_the_type_meant(pm) -> None:
    pm.left_out = ["pagerduty"]
    pm.load_plugins = ""
    data = {
        "webhooks": [
            {"type": "WebhookConfig", "url": "https://example.com/a"},
            {"type": "http", "url": "https://example.com/b"},
            {"type": "PagerDutyWebhook", "api_key": "k" * 32},
        ]
    }
    lines = problems(data, pm)
    assert lines[:2] == [
        "webhooks[0].type: unknown webhook type 'WebhookConfig' (did you mean 'custom'?); "
        "installed types: custom",
        "webhooks[1].type: unknown webhook type 'http' (did you mean 'custom'?); "
        "installed types: custom",
    ]
    assert lines[2].startswith(
        "webhooks[2].type: unknown webhook type 'PagerDutyWebhook' (did you mean 'pagerduty'?)"
    )
    assert "pip install" not in "".join(lines)


# -- filters that can never pass -------------------------------------------------------------


def test_an_operand_no_event_can_hold_is_refused(pm) -> None:
    data = {
        "webhooks": [
            hook(
                filter={
                    "empathy_level": {"gt": "3"},
                    "severity": 3,
                    "user_id": {"in": ["dev", 42]},
                    "classification": {"in": []},
                    "any": [{"empathy_level": 7}, {"event_type": True}],
                }
            )
        ]
    }
    assert problems(data, pm) == [
        "webhooks[0].filter.empathy_level.gt: empathy_level is a whole number from 1 to 5, "
        "got a string ('3')",
        "webhooks[0].filter.severity: severity is text: expected a string, got an integer (in "
        'quotes: "3")',
        "webhooks[0].filter.user_id.in: user_id is text: expected a string, got an integer (in "
        'quotes: "42")',
        "webhooks[0].filter.classification.in: an empty list: no event would pass",
        "webhooks[0].filter.any[0].empathy_level: empathy_level is a whole number from 1 to 5, "
        "got 7",
        "webhooks[0].filter.any[1].event_type: event_type is text: expected a string, got true "
        "or false",
    ]


def test_a_filter_outside_the_subscription_is_refused(pm) -> None:
    data = {
        "webhooks": [
            hook(name="a", events=["alert"], filter={"event_type": "prediction"}),
            hook(name="b", events=["security_*"], filter={"event_type": {"in": ["alert"]}}),
            hook(
                name="c",
                events=["alert"],
                filter={"any": [{"event_type": "prediction"}, {"event_type": "bug_detected"}]},
            ),
        ]
    }
    message = (
        "no event can pass it: its event_type conditions allow none of the events the "
        "webhook subscribes to"
    )
    assert problems(data, pm) == [
        f"webhooks[0].filter: {message} (alert)",
        f"webhooks[1].filter: {message} (security_*)",
        f"webhooks[2].filter: {message} (alert)",
    ]


def test_a_filter_that_can_pass_is_accepted(pm) -> None:
    config = parse_config(
        {
            "webhooks": [
                hook(
                    name="a",
                    events=["security_*", "alert"],
                    filter={
                        "event_type": {"in": ["security_vulnerability", "prediction"]},
                        "severity": {"in": ["HIGH", "p1", "warning"]},
                        "empathy_level": {"gte": 3},
                        "any": [{"event_type": "prediction"}, {"event_type": "alert"}],
                    },
                )
            ]
        },
        plugin_manager=pm,
        env={},
    )
    assert config.warnings == ()


def test_what_only_looks_mistyped_is_a_warning(pm) -> None:
    data = {
        "webhooks": [
            hook(
                events=["alrt", "my_own_event", "security_*", "test", "security", "alerts"],
                filter={"severity": ["hgh", "critical"], "any": [{"event_type": "alrt"}]},
            )
        ]
    }
    assert warnings_of(data, pm) == [
        "webhooks[0].events: 'alrt' is not an event type the framework sends (did you mean "
        "'alert'?); it is kept (any name may be emitted)",
        "webhooks[0].events: 'alerts' is not an event type the framework sends (did you mean "
        "'alert'?); it is kept (any name may be emitted)",
        "webhooks[0].filter.severity: 'hgh' is not a severity the plugins know (did you mean "
        "'high'?); only an event whose severity is exactly 'hgh' matches it",
        "webhooks[0].filter.any[0].event_type: 'alrt' is not an event type the framework "
        "sends (did you mean 'alert'?)",
    ]


# -- fallbacks that go nowhere, or round --------------------------------------------------


def test_fallbacks_that_loop_or_collide_are_refused(pm) -> None:
    data = {
        "webhooks": [
            hook(name="a", fallback="a"),
            # Named as webhooks[0]: the dispatcher knows webhooks by name, so b's failures
            # went to `a` and this table's URL was never used.
            hook(name="b", fallback={"name": "a", "url": "https://example.com/fb"}),
            hook(name="c", fallback="d"),
            hook(name="d", fallback="c"),
            hook(name="e", fallback={"name": "f", "url": "https://x.test/", "fallback": "g"}),
            hook(name="g", fallback="e"),
        ]
    }
    assert problems(data, pm) == [
        "webhooks[0].fallback: 'a' is this webhook itself; a fallback is another one",
        "webhooks[1].fallback.name: 'a' is already the name of webhooks[0], which would "
        "receive the failures instead of this table; give the fallback table its own name "
        '(or name the one meant: fallback = "a")',
        "webhooks[2].fallback: the fallbacks go round in a circle (c -> d -> c): an event "
        "that fails at each would be sent around forever; end the chain with a webhook that "
        "has no fallback",
        "webhooks[4].fallback: the fallbacks go round in a circle (e -> f -> g -> e): an "
        "event that fails at each would be sent around forever; end the chain with a "
        "webhook that has no fallback",
    ]


def test_an_unnamed_fallback_table_beside_an_unnamed_webhook_is_refused(pm) -> None:
    data = {"webhooks": [hook(), hook(name="x", fallback={"url": "https://example.com/fb"})]}
    assert problems(data, pm) == [
        "webhooks[1].fallback.name: 'custom_webhook' is already the name of webhooks[0], "
        "which would receive the failures instead of this table; give the fallback table "
        'its own name (or name the one meant: fallback = "custom_webhook")'
    ]


def test_a_chain_of_fallbacks_that_ends_is_accepted(pm) -> None:
    config = parse_config(
        {
            "webhooks": [
                hook(name="a", fallback="b"),
                hook(name="b", fallback={"name": "c", "url": "https://example.com/c"}),
            ]
        },
        plugin_manager=pm,
        env={},
    )
    assert [w.name for w in config.webhooks] == ["a", "b"]


# -- other things a whole configuration shows ------------------------------------------------


def test_no_webhooks_and_a_rate_limit_without_a_limit_are_warnings(pm) -> None:
    assert warnings_of({}, pm) == [
        "webhooks: no [[webhooks]] tables: no event will be sent anywhere"
    ]
    assert warnings_of({"webhooks": [hook(rate_limit={"strategy": "fixed_window"})]}, pm) == [
        "webhooks[0].rate_limit: no limit given (max_requests_per_second, "
        "max_requests_per_minute or max_requests_per_hour): nothing is limited"
    ]


def test_a_name_with_a_line_break_is_refused(pm) -> None:
    assert problems({"webhooks": [hook(name="ops\nfailed  0")]}, pm) == [
        "webhooks[0].name: must not contain control characters (a line break, a tab)"
    ]


def test_a_json_configuration_is_read_as_strictly_as_toml(tmp_path: Path, pm) -> None:
    good = write(
        tmp_path / "webhooks.json",
        json.dumps({"webhooks": [hook(name="j", retry_policy={"max_retries": 1})]}),
    )
    config = load_config(good, plugin_manager=pm, env={})
    assert config.webhooks[0].name == "j"
    assert config.webhooks[0].retry_policy.max_retries == 1
    twice = {"url": "https://x.test/", "signing_secret": "a"}
    nan = {"url": "https://x.test/", "retry_policy": {"timeout_seconds": float("nan")}}
    cases = {
        # json.loads keeps the last of two keys without a word: the first secret vanished.
        json.dumps({"webhooks": [twice]})[:-3] + ', "signing_secret": "b"}]}': (
            "the key 'signing_secret' is given twice in one object"
        ),
        json.dumps({"webhooks": [nan]}): "NaN is not a number a configuration may hold",
        "[1]": "expected a JSON object at the top, got a list",
        "{": "not valid JSON: Expecting property name enclosed in double quotes: line 1 "
        "column 2 (char 1)",
    }
    for text, message in cases.items():
        bad = write(tmp_path / "bad.json", text)
        with pytest.raises(ConfigError) as caught:
            load_config(bad, plugin_manager=pm, env={})
        assert caught.value.problems == [f"{bad}: {message}"]


def test_a_toml_file_with_a_byte_order_mark_is_read(tmp_path: Path, pm) -> None:
    path = tmp_path / "webhooks.toml"
    path.write_bytes(b'\xef\xbb\xbf[[webhooks]]\nurl = "https://example.com/a"\n')
    assert load_config(path, plugin_manager=pm, env={}).webhooks[0].url == "https://example.com/a"


# -- the command line ------------------------------------------------------------------------


def test_validate_prints_warnings_beside_problems_and_in_json(tmp_path: Path) -> None:
    config = write(
        tmp_path / "webhooks.toml",
        '[[webhooks]]\nurl = "https://example.com/a"\nevents = ["alrt"]\n',
    )
    warning = (
        "webhooks[0].events: 'alrt' is not an event type the framework sends (did you mean "
        "'alert'?); it is kept (any name may be emitted)"
    )
    result = run("validate", "-c", str(config))
    assert result.code == 0
    assert result.err.splitlines() == [f"warning: {warning}"]
    assert result.out.startswith(f"{config}: valid (1 warning(s) above), 1 webhook(s)")
    assert run("validate", "-c", str(config), "--json").json()["warnings"] == [warning]

    with config.open("a") as more:
        more.write('[[webhooks]]\nname = "b"\nurl = "https://example.com/b"\nretry_polcy = {}\n')
    result = run("validate", "-c", str(config), "--json")
    assert result.code == 2
    assert result.json()["errors"] == [
        "webhooks[1]: unknown key 'retry_polcy' (did you mean 'retry_policy'?)"
    ]
    assert result.json()["warnings"] == [warning]
    assert result.err.splitlines()[-1] == f"warning: {warning}"


def test_send_that_reaches_no_webhook_is_not_a_success(tmp_path: Path) -> None:
    config = write(
        tmp_path / "webhooks.toml",
        '[[webhooks]]\nname = "a"\nurl = "http://127.0.0.1:9/"\nevents = ["alert"]\n',
    )
    result = run("send", "alrt", "-c", str(config))
    assert result.code == 1, result
    assert result.err.splitlines() == [
        "nothing was sent: no webhook took 'alrt'",
        "note: 'alrt' is not an event type the framework sends (did you mean 'alert'?)",
    ]
    assert "skipped" in result.out

    empty = write(tmp_path / "empty.toml", "")
    result = run("send", "alert", "-c", str(empty))
    assert result.code == 1
    assert result.err.splitlines()[-1] == "nothing was sent: the configuration has no webhooks"


async def test_a_batch_with_one_failed_delivery_exits_1(tmp_path: Path, receiver: Receiver) -> None:
    receiver.queue(Reply(status=200), Reply(status=400))
    config = write(
        tmp_path / "webhooks.toml",
        f'[[webhooks]]\nname = "a"\nurl = "{receiver.url("/a")}"\nmax_concurrency = 1\n'
        "retry_policy = { max_retries = 0 }\n",
    )
    events = write(
        tmp_path / "events.jsonl",
        '{"event_type": "alert", "data": {"n": 1}}\n{"event_type": "alert", "data": {"n": 2}}\n',
    )
    result = await arun("send", "--events-file", str(events), "-c", str(config), "--json")
    assert result.code == 1, result
    assert sorted(r["outcome"] for r in result.json()["results"]) == ["delivered", "failed"]


@pytest.mark.parametrize("moment", ["nan", "inf", "-inf", "NaN", "1" + "0" * 400 + "d"])
def test_deliveries_refuses_a_time_that_is_not_one(tmp_path: Path, moment: str) -> None:
    # Before: `--since nan` listed nothing at all, as if nothing had been sent.
    config = write(tmp_path / "webhooks.toml", 'store = "sqlite:///outbox.db"\n')
    for option in ("--since", "--until"):
        result = run("deliveries", f"{option}={moment}", "-c", str(config), cwd=tmp_path)
        assert result.code == 2, result
        assert f"argument {option}: {moment!r} is not a time" in result.err


def test_new_plugin_into_a_folder_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    blocker = write(tmp_path / "a-file", "")
    result = run("new-plugin", "acme", "--dest", str(blocker))
    assert result.code == 2
    assert result.err.splitlines() == [
        f"error: cannot write the plugin to {blocker / 'empathy-webhooks-acme'}: Not a directory"
    ]


def test_a_worker_whose_store_cannot_open_never_says_it_started(tmp_path: Path) -> None:
    blocker = write(tmp_path / "a-file", "")
    config = write(tmp_path / "webhooks.toml", '[[webhooks]]\nurl = "http://127.0.0.1:9/"\n')
    done = subprocess.run(
        [CLI, "worker", "-c", str(config), "--store", f"sqlite:///{blocker}/outbox.db"],
        capture_output=True,
        text=True,
        env=environ(None),
        timeout=60,
    )
    assert done.returncode == 2, done
    assert done.stdout == ""  # before: "worker started: ...", then "worker stopped"
    assert done.stderr.startswith("error: cannot open the SQLite store")
    assert "Traceback" not in done.stderr


async def test_a_worker_on_sigterm_finishes_what_it_holds(
    tmp_path: Path, receiver: Receiver
) -> None:
    """SIGTERM while attempts are under way and more are queued: the worker says it is
    stopping, delivers them all within its grace, and leaves nothing pending in the file."""
    receiver.respond(status=200, delay=0.5)
    config = write(
        tmp_path / "webhooks.toml",
        f'store = "sqlite:///{tmp_path / "outbox.db"}"\n[[webhooks]]\nname = "h"\n'
        f'url = "{receiver.url("/h")}"\nmax_concurrency = 2\n',
    )
    events = write(
        tmp_path / "events.jsonl",
        "".join(json.dumps({"event_type": "alert", "data": {"n": n}}) + "\n" for n in range(6)),
    )
    env = environ(None)
    queued = await asyncio.create_subprocess_exec(
        CLI,
        "send",
        "--events-file",
        str(events),
        "--no-wait",
        "-c",
        str(config),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
    )
    assert await asyncio.wait_for(queued.wait(), 60) == 0
    worker = await asyncio.create_subprocess_exec(
        CLI,
        "worker",
        "-c",
        str(config),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await receiver.wait_for(1, timeout=30)
        worker.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(worker.communicate(), 30)
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
    assert worker.returncode == 0, err.decode()
    assert err.decode().splitlines() == [
        "stopping: finishing the deliveries under way (up to 10 s)"
    ]
    assert out.decode().splitlines()[-1] == "worker stopped"
    assert len(receiver.delivered_event_ids()) == 6
    stats = await arun("stats", "-c", str(config), "--json")
    assert stats.code == 0, stats
    assert stats.json()["webhooks"]["h"]["pending"] == 0, stats.out


async def test_a_worker_past_its_grace_says_what_it_left_and_nothing_is_lost(
    tmp_path: Path, receiver: Receiver
) -> None:
    url = f"sqlite:///{tmp_path / 'outbox.db'}"
    hook_ = CustomWebhook(name="h", url=receiver.url("/h"), max_concurrency=1)
    # The producer role (as `send --no-wait`): it only queues, the workers below deliver.
    producer = WebhookDispatcher(
        webhooks=[hook_], store=SQLiteStore(tmp_path / "outbox.db").for_producer()
    )
    await producer.start()
    sent = {(await producer.emit("alert", {"n": n})).event_id for n in range(4)}
    await producer.close(drain=False)

    receiver.respond(status=200, delay=2.0)
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker([hook_], url, stop=stop, grace_seconds=0.2))
    await receiver.wait_for(1, timeout=10)
    stop.set()
    left = await asyncio.wait_for(task, 10)
    assert left is not None and left.endswith("('h': 4)"), left

    receiver.respond(status=200)
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker([hook_], url, stop=stop))
    await receiver.wait_for(4, timeout=20, delivered=True)
    stop.set()
    assert await asyncio.wait_for(task, 20) is None
    assert set(receiver.delivered_event_ids()) == sent


async def test_listen_masks_its_own_secret_wherever_it_shows_up() -> None:
    import aiohttp

    secret = "listen-secret-0123456789"
    proc = await asyncio.create_subprocess_exec(
        CLI,
        "listen",
        "--port",
        "0",
        "--count",
        "1",
        "--secret",
        secret,
        "--allow-unsigned",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**environ(None), "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    first = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
    url = first.split()[2]
    async with aiohttp.ClientSession() as session:
        async with session.post(url + "hook", json={"echoed": secret}) as answer:
            assert answer.status == 200
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert secret not in (first + out.decode() + err.decode())
    assert "***" in out.decode()


def test_the_cli_module_for_the_worker_loads_no_dispatcher_at_start_up() -> None:
    # `--help` stays fast: the worker's module is imported inside its `run` only.
    code = (
        "import sys; from empathy_webhooks_core.cli import build_parser; build_parser(); "
        "print('empathy_webhooks_core.dispatcher' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environ(None), timeout=60
    )
    assert done.stdout.strip() == "False", done.stderr


def test_send_no_wait_says_when_it_made_the_store_file(tmp_path: Path) -> None:
    """A mistyped store path queues where no worker looks: said once, when the file is made."""
    config = write(tmp_path / "webhooks.toml", '[[webhooks]]\nurl = "http://127.0.0.1:9/"\n')
    store = f"sqlite:///{tmp_path / 'typo' / 'outbox.db'}"
    first = run("send", "alert", "--no-wait", "--store", store, "-c", str(config))
    assert first.code == 0, first
    assert first.err.splitlines() == [
        f"note: {tmp_path / 'typo' / 'outbox.db'} did not exist: it was made for these events, "
        "which wait there until `empathy-webhooks worker` runs on this very file"
    ]
    again = run("send", "alert", "--no-wait", "--store", store, "-c", str(config))
    assert again.code == 0 and again.err == ""


def test_from_config_says_the_file_s_warnings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A program that loads its file with `from_config` sees what `validate` would print."""
    import logging

    caplog.set_level(logging.WARNING, logger="empathy_webhooks")
    path = tmp_path / "webhooks.toml"
    path.write_text('[[webhooks]]\nname = "ops"\nurl = "http://127.0.0.1:9/h"\nevents = ["alrt"]\n')
    WebhookDispatcher.from_config(path)
    [said] = [r.getMessage() for r in caplog.records if "config_warning" in r.getMessage()]
    assert "'alrt' is not an event type" in said and "did you mean 'alert'" in said
