"""A new user's first minutes: the README's quick start and CI, `make clean`, the install's
output, and the documentation's code run as written."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ._cli_kit import completed
from ._once import once_per_run

ROOT = Path(__file__).resolve().parents[1]
PROJECTS = [
    ROOT,
    *sorted(p.parent for p in ROOT.glob("plugins/*/pyproject.toml")),
    *sorted(p.parent for p in ROOT.glob("examples/*/pyproject.toml")),
]


def _git(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


def _copy_tracked_files(dest: Path) -> None:
    """The repository's tracked files as they are now (uncommitted edits included)."""
    for name in _git("ls-files", "-z", cwd=ROOT).split("\0"):
        source = ROOT / name
        if name and source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)


# -- make clean --------------------------------------------------------------------------------


def _artefacts(project: Path) -> list[str]:
    """What an install, a build and a test run leave in one project (its path relative to the
    repository: '' for the root)."""
    package = "empathy_webhooks_core" if project == ROOT else f"empathy_webhooks_{project.name}"
    base = project.relative_to(ROOT).as_posix()
    prefix = "" if base == "." else base + "/"
    return [
        f"{prefix}{package.replace('_', '-')}.egg-info/PKG-INFO",
        f"{prefix}{package}.egg-info/SOURCES.txt",
        f"{prefix}build/lib/{package}/__init__.py",
        f"{prefix}build/bdist.linux-x86_64/x",
        f"{prefix}dist/{package}-0.1.0-py3-none-any.whl",
        f"{prefix}{package}/__pycache__/__init__.cpython-311.pyc",
        f"{prefix}tests/__pycache__/conftest.cpython-311-pytest-9.0.pyc",
        f"{prefix}.mypy_cache/3.11/x.json",
        f"{prefix}.ruff_cache/0.6/x",
        f"{prefix}.pytest_cache/v/cache/lastfailed",
        f"{prefix}.hypothesis/examples/x",
    ]


@pytest.mark.skipif(shutil.which("make") is None or shutil.which("git") is None, reason="make")
def test_make_clean_leaves_no_build_artefact(tmp_path: Path) -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    repo = tmp_path / "repo"
    repo.mkdir()
    _copy_tracked_files(repo)
    _git("init", "-q", cwd=repo)
    _git("add", "-A", cwd=repo)
    before = _git("status", "--ignored", "--porcelain", cwd=repo)
    made = [".venv/bin/python", ".venv/.installed"]
    for project in PROJECTS:
        made += _artefacts(project)
    # ... and whatever this checkout's own install and test runs really left (a user's
    # databases are theirs, not build output).
    for line in _git("status", "--ignored", "--porcelain", cwd=ROOT).splitlines():
        if line.startswith("!! ") and not line.rstrip("/").endswith((".db", "-wal", "-shm")):
            name = line[3:]
            made.append(name + "x" if name.endswith("/") else name)
    for name in made:
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text("", encoding="utf-8")
    (repo / "outbox.db").write_text("a user's data", encoding="utf-8")
    assert _git("status", "--ignored", "--porcelain", cwd=repo) != before

    done = subprocess.run(["make", "clean"], cwd=repo, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    after = _git("status", "--ignored", "--porcelain", cwd=repo)
    assert after.splitlines() == [*before.splitlines(), "!! outbox.db"]


# -- .ci/run -------------------------------------------------------------------------------------


def _redis_listening() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError:
        return False
    return True


def _ci_run(tmp_path: Path, readme: str) -> subprocess.CompletedProcess[str]:
    """`.ci/run` in a scratch folder whose README holds `readme`."""
    (tmp_path / ".ci").mkdir()
    shutil.copy2(ROOT / ".ci" / "run", tmp_path / ".ci" / "run")
    (tmp_path / "README.md").write_text(readme, encoding="utf-8")
    return subprocess.run(
        ["bash", str(tmp_path / ".ci" / "run")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


QUICK_START = """\
# project

## Quick start

```sh
# a comment line is not a command
echo demo >> ran.txt   # the first command
{second}
```

Later blocks are not the quick start:

```sh
echo later >> ran.txt
```
"""


@pytest.mark.skipif(not _redis_listening(), reason=".ci/run would start Redis")
def test_ci_runs_the_readme_quick_start_in_order(tmp_path: Path) -> None:
    done = _ci_run(tmp_path, QUICK_START.format(second="echo test >> ran.txt"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "ran.txt").read_text().split() == ["demo", "test"]
    assert "$ echo demo >> ran.txt (README quick start)" in done.stderr


@pytest.mark.skipif(not _redis_listening(), reason=".ci/run would start Redis")
def test_ci_fails_when_a_quick_start_command_fails(tmp_path: Path) -> None:
    failing = QUICK_START.replace("echo demo >> ran.txt", "exit 3").format(
        second="echo test >> ran.txt"
    )
    done = _ci_run(tmp_path, failing)
    assert done.returncode == 3
    assert "the README quick start's 'exit 3' failed (exit 3)" in done.stderr
    assert not (tmp_path / "ran.txt").exists()  # nothing after the failure ran


def test_ci_refuses_a_readme_without_a_quick_start(tmp_path: Path) -> None:
    done = _ci_run(tmp_path, "# project\n\nNo quick start here.\n")
    assert done.returncode == 2
    assert 'no commands in a fenced block under a "Quick start" heading' in done.stderr


def test_the_readme_quick_start_is_the_demo_then_the_tests() -> None:
    """What `.ci/run` reads, read the same way: the two commands a new user runs."""
    done = subprocess.run(
        ["bash", "-c", 'source <(sed -n "/^quick_start()/,/^}/p" .ci/run) && quick_start'],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["make demo", "make test"]


# -- the install's output ------------------------------------------------------------------------


def _install_setuptools(target: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--target", str(target), "setuptools>=77"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot install setuptools>=77: {done.stderr[-500:]}")


@pytest.fixture(scope="session")
def setuptools_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The build backend every pyproject.toml asks for (setuptools>=77), on its own: installed
    once per run (tests/_once.py)."""
    return once_per_run(tmp_path_factory, "setuptools", _install_setuptools)


# pip's hook runner hands every warning the backend raises back to the user, even with -q (as
# BuildBackendWarning); the backend's log lines it keeps to itself. pip runs the hook in a fresh
# process per project: here one process imports the backend, then forks a child per project,
# each a fresh copy of it that has built nothing (setuptools' import paid once, not 13 times).
# argv: the folder the wheels and the warnings go to, then the projects.
BUILD_EDITABLE = r"""
import json, os, sys, traceback, warnings
out, projects = sys.argv[1], sys.argv[2:]
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    from setuptools import build_meta
on_import = [f"{w.category.__name__}: {w.message}" for w in caught]
for number, project in enumerate(projects):
    wheels = os.path.join(out, str(number))
    os.mkdir(wheels)
    pid = os.fork()
    if pid == 0:
        try:
            os.chdir(project)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                build_meta.build_editable(wheels)
            said = on_import + [f"{w.category.__name__}: {w.message}" for w in caught]
        except BaseException:
            said = {"error": traceback.format_exc()}
        with open(os.path.join(wheels, "warnings.json"), "w") as f:
            json.dump(said, f)
        os._exit(0)
    os.waitpid(pid, 0)
"""


@pytest.fixture(scope="session")
def editable_builds(setuptools_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Each project's editable wheel and the warnings its build raised, in <folder>/<index>/,
    built once per run (tests/_once.py)."""

    def build(folder: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env["PYTHONPATH"] = str(setuptools_path)
        done = subprocess.run(
            [sys.executable, "-c", BUILD_EDITABLE, str(folder), *map(str, PROJECTS)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr

    return once_per_run(tmp_path_factory, "editable-builds", build)


@pytest.mark.slow
@pytest.mark.parametrize("project", PROJECTS, ids=lambda p: p.name)
def test_an_editable_install_prints_no_setuptools_warning(
    project: Path, editable_builds: Path
) -> None:
    """What pip runs for each of `make install`'s `pip install -e` (a dozen warnings on the
    first `make demo` before)."""
    wheels = editable_builds / str(PROJECTS.index(project))
    said = json.loads((wheels / "warnings.json").read_text())
    assert isinstance(said, list), said["error"]
    assert list(wheels.glob("*.editable-*.whl"))
    assert said == []


# -- the documentation's code, run as written ----------------------------------------------------


def _python_blocks(markdown: Path, heading: str) -> list[str]:
    """The ```python blocks of one section (from `heading` to the next heading of its level)."""
    text = markdown.read_text(encoding="utf-8")
    level = heading.split(" ", 1)[0]
    start = text.index(heading + "\n")
    rest = text[start + len(heading) + 1 :]
    end = rest.find("\n" + level + " ")
    section = rest if end < 0 else rest[:end]
    blocks, inside, lines = [], False, []
    for line in section.splitlines():
        if not inside and line.startswith("```python"):
            inside, lines = True, []
        elif inside and line.startswith("```"):
            inside = False
            blocks.append("\n".join(lines) + "\n")
        elif inside:
            lines.append(line)
    return blocks


async def _run_script(script: Path, env: dict[str, str]) -> tuple[int, str, str]:
    """A script in a subprocess, without blocking the loop the test's receivers run on."""
    import asyncio

    clean = {k: v for k, v in os.environ.items() if not k.startswith("EMPATHY_WEBHOOKS")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**clean, **env},
        cwd=script.parent,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_the_readme_tour_runs_as_written(tmp_path: Path) -> None:
    pytest.importorskip("empathy_webhooks_slack")
    from empathy_webhooks_core.signing import verify_webhook_signature
    from empathy_webhooks_core.testing import Receiver

    tour = _python_blocks(ROOT / "README.md", "## A tour")[0]
    script = tmp_path / "tour.py"
    script.write_text(tour, encoding="utf-8")
    async with Receiver() as slack, Receiver() as audit:
        slack.respond(200, b"ok")  # what Slack's incoming webhooks answer
        env = {
            "SLACK_WEBHOOK_URL": slack.url("/services/T000/B000/XXXX"),
            "AUDIT_WEBHOOK_URL": audit.url("/webhooks/empathy"),
            "API_TOKEN": "tour-token",
            "WEBHOOK_SECRET": "tour-secret",
        }
        code, out, err = await _run_script(script, env)
        assert code == 0, out + err
        [to_slack] = slack.requests
        [to_audit] = audit.requests
    event_id = to_audit.json()["event_id"]
    assert out.strip() == f"sent {event_id}"
    assert to_slack.json()["channel"] == "#ai-alerts"
    assert "Level 4 Prediction" in to_slack.text()
    assert to_audit.json()["data"]["confidence"] == 0.87
    assert to_audit.header("Authorization") == "Bearer tour-token"
    assert verify_webhook_signature(to_audit.body, to_audit.header("X-Signature"), "tour-secret")
    assert to_audit.header("webhook-signature")

    # A variable left unset stops the script with its name, before anything is sent.
    del env["WEBHOOK_SECRET"]
    code, out, err = await _run_script(script, env)
    assert code != 0 and "KeyError: 'WEBHOOK_SECRET'" in err


# -- the command line ----------------------------------------------------------------------------

CLI = str(Path(sys.executable).parent / "empathy-webhooks")


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMPATHY_WEBHOOKS")}
    return {**env, "EMPATHY_WEBHOOKS_LOAD_PLUGINS": "", **(extra or {})}


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    """The CLI in this process, with the core's own types only (see tests/_cli_kit.py); the
    real console script runs in `_listen`, the closed-pipe and the worker tests below."""
    return completed(*args, env=env, cwd=cwd)


async def _listen(*args: str, posts: list[dict[str, str]]) -> tuple[int, list[str], list[int]]:
    """`listen` on a free port, these requests posted to it; its exit code, its lines and
    the statuses it answered."""
    import asyncio

    import aiohttp

    listen = await asyncio.create_subprocess_exec(
        CLI,
        "listen",
        "--port",
        "0",
        "--count",
        str(len(posts)),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_env(),
    )
    try:
        assert listen.stdout is not None
        first = (await asyncio.wait_for(listen.stdout.readline(), 30)).decode()
        url = first.split()[2]
        statuses = []
        async with aiohttp.ClientSession() as session:
            for headers in posts:
                async with session.post(
                    url + "hook", data=b'{"event_type": "alert"}', headers=headers
                ) as answer:
                    statuses.append(answer.status)
        out, _ = await asyncio.wait_for(listen.communicate(), 30)
    finally:
        if listen.returncode is None:
            listen.kill()
            await listen.wait()
    return listen.returncode, [first, *out.decode().splitlines()], statuses


async def test_listen_accepts_unsigned_requests_when_asked_and_says_why_it_refuses() -> None:
    from empathy_webhooks_core.signing import x_signature

    body = b'{"event_type": "alert"}'
    signed = {"X-Signature": x_signature(body, "listen-secret")}
    wrong = {"X-Signature": x_signature(body, "another-secret")}
    code, lines, statuses = await _listen(
        "--secret", "listen-secret", "--allow-unsigned", posts=[signed, {}, wrong]
    )
    assert statuses == [200, 200, 401]
    assert code == 1
    assert "accepting unsigned requests" in lines[0]
    text = "\n".join(lines)
    assert "signature valid (x-signature ok)  -> 200" in text
    assert "signature unsigned (accepted: --allow-unsigned)  -> 200" in text
    assert "signature invalid (x-signature BAD)  -> 401" in text
    assert "refused: X-Signature matches no secret" in text
    assert "3 received, 1 refused" in lines[-1]

    code, lines, statuses = await _listen("--secret", "listen-secret", posts=[{}])
    assert statuses == [401] and code == 1
    assert "refused: unsigned: no X-Signature or webhook-signature header " in "\n".join(lines)


def _config(tmp_path: Path, store: str | None = None) -> Path:
    path = tmp_path / "webhooks.toml"
    head = f'store = "{store}"\n' if store is not None else ""
    path.write_text(head + '[[webhooks]]\ntype = "custom"\nurl = "https://e.x/hook"\n')
    return path


@pytest.mark.parametrize(
    ("store", "problem"),
    [
        ("bogus://x", "store: no store for 'bogus' URLs (known: memory, sqlite); a plugin adds it"),
        ("sqlit:///outbox.db", "store: no store for 'sqlit' URLs (did you mean 'sqlite'?)"),
        (
            "sqlite:///outbox.db?retension=60",
            "unknown option 'retension' (did you mean 'retention'?) (known: retention, "
            "synchronous, lease, poll, role)",
        ),
        (
            "redis://127.0.0.1:6379/0",
            "store: no store for 'redis' URLs (known: memory, sqlite); a plugin adds it: ",
        ),
        ("outbox.db", "store: expected a URL such as sqlite:///outbox.db, got 'outbox.db'"),
    ],
)
def test_validate_checks_the_store(tmp_path: Path, store: str, problem: str) -> None:
    config = _config(tmp_path, store)
    result = cli("validate", "-c", str(config))
    assert result.returncode == 2, result.stdout
    assert result.stderr.splitlines()[0] == f"{config}: 1 problem(s)"
    assert problem in result.stderr
    as_json = json.loads(cli("validate", "--json", "-c", str(config)).stdout)
    assert as_json["valid"] is False and problem in as_json["errors"][0]
    # `send` stops at the same place, before anything is sent.
    sent = cli("send", "alert", "-c", str(config))
    assert sent.returncode == 2 and problem in sent.stderr
    assert not (tmp_path / "outbox.db").exists()


def test_a_store_plugin_left_out_is_named_with_the_variable(tmp_path: Path) -> None:
    pytest.importorskip("empathy_webhooks_redis")
    result = cli("validate", "-c", str(_config(tmp_path, "redis://127.0.0.1:6379/0")))
    assert result.returncode == 2
    assert (
        "the 'redis' plugin is installed but EMPATHY_WEBHOOKS_LOAD_PLUGINS='' leaves it out; "
        "add redis to it" in result.stderr
    )
    loaded = cli(
        "validate",
        "-c",
        str(_config(tmp_path, "redis://127.0.0.1:6379/0")),
        env={"EMPATHY_WEBHOOKS_LOAD_PLUGINS": "redis"},
    )
    assert loaded.returncode == 0, loaded.stderr


def test_a_misspelt_redis_store_option_is_caught_by_validate(tmp_path: Path) -> None:
    """redis-py would carry an unknown query option to its connection and fail only when it
    first connects; the store's own options and redis-py's are known, anything else is not."""
    pytest.importorskip("empathy_webhooks_redis")
    env = {"EMPATHY_WEBHOOKS_LOAD_PLUGINS": "redis"}
    bad = _config(tmp_path, "redis://127.0.0.1:6379/0?prefx=team:")
    result = cli("validate", "-c", str(bad), env=env)
    assert result.returncode == 2, result.stdout
    assert "unknown option 'prefx' (did you mean 'prefix'?)" in result.stderr
    good = _config(tmp_path, "redis://127.0.0.1:6379/0?prefix=team:&socket_timeout=5")
    assert cli("validate", "-c", str(good), env=env).returncode == 0


def test_a_bad_store_override_is_a_usage_error(tmp_path: Path) -> None:
    config = _config(tmp_path)
    result = cli("stats", "-c", str(config), "--store", "sqlite:///x.db?synchronus=full")
    assert result.returncode == 2
    assert "error: --store: " in result.stderr and "(did you mean 'synchronous'?)" in result.stderr


def test_a_bad_store_leaves_no_client_session_open() -> None:
    """`WebhookDispatcher(store="bogus://")` refuses at start, and nothing is left unclosed."""
    script = """
import asyncio, gc, warnings
warnings.simplefilter("error")
from empathy_webhooks_core import CustomWebhook, WebhookDispatcher

async def main():
    for store in ("bogus://", "sqlite:///x.db?retension=1"):
        try:
            async with WebhookDispatcher([CustomWebhook(url="https://e.x/")], store=store):
                pass
        except ValueError as exc:
            print("refused:", exc)
    gc.collect()

def unraisable(info):
    print("unraisable:", info.exc_value)
import sys
sys.unraisablehook = unraisable
asyncio.run(main())
gc.collect()
"""
    done = subprocess.run(
        [sys.executable, "-X", "dev", "-c", script],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("refused:") == 2
    assert "Unclosed" not in done.stdout + done.stderr, done.stdout + done.stderr
    assert "unraisable" not in done.stdout, done.stdout


async def test_gave_up_after_1_attempt(tmp_path: Path) -> None:
    from empathy_webhooks_core import CustomWebhook, WebhookDispatcher
    from empathy_webhooks_core.testing import Receiver

    errors = []
    async with Receiver() as receiver:
        receiver.respond(503)
        webhook = CustomWebhook(
            url=receiver.url(),
            retry_policy={"max_retries": 0},
            circuit_breaker=False,
            on_failure=lambda webhook, event, error: errors.append(error),
        )
        async with WebhookDispatcher([webhook]) as dispatcher:
            await dispatcher.emit("alert", {})
    [error] = errors
    assert error.reason.endswith("gave up after 1 attempt")
    assert "1 attempts" not in str(error)


def test_load_plugins_naming_a_plugin_not_installed_is_reported(tmp_path: Path) -> None:
    result = cli("plugins", env={"EMPATHY_WEBHOOKS_LOAD_PLUGINS": "custm,not-a-plugin"})
    assert result.returncode == 1
    assert (
        "error: EMPATHY_WEBHOOKS_LOAD_PLUGINS names 'not-a-plugin', which is not installed"
        in result.stdout
    )
    as_json = json.loads(
        cli("plugins", "--json", env={"EMPATHY_WEBHOOKS_LOAD_PLUGINS": "not-a-plugin"}).stdout
    )
    assert [entry["name"] for entry in as_json["not_installed"]] == ["not-a-plugin"]
    assert "installed: " in as_json["not_installed"][0]["error"]


def test_load_plugins_typo_is_a_log_warning_and_hints_name_the_variable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    from empathy_webhooks_core.config import ConfigError, parse_config
    from empathy_webhooks_core.plugins import build_plugin_manager

    installed = [
        ep.name
        for ep in __import__("importlib.metadata").metadata.entry_points(group="empathy_webhooks")
    ]
    if not installed:
        pytest.skip("no plugin installed")
    name = sorted(installed)[0]
    typo = name[:-1]
    with caplog.at_level(logging.WARNING, logger="empathy_webhooks"):
        pm = build_plugin_manager(env={"EMPATHY_WEBHOOKS_LOAD_PLUGINS": typo})
    assert pm.unknown_in_load_plugins == [typo]
    assert f"no installed plugin is named {typo!r} (did you mean {name!r}?)" in caplog.text
    with pytest.raises(ConfigError) as raised:
        parse_config({"webhooks": [{"type": name}]}, env={}, plugin_manager=pm)
    assert (
        f"the {name!r} plugin is installed but EMPATHY_WEBHOOKS_LOAD_PLUGINS={typo!r} leaves it "
        f"out; add {name} to it" in raised.value.problems[0]
    )


@pytest.mark.parametrize(
    "args",
    [
        ["-c", "{config}", "--json", "validate"],
        ["--json", "validate", "-c", "{config}"],
        ["validate", "--json", "-c", "{config}"],
        ["-c", "{config}", "validate", "--json", "--plain", "-v"],
        ["--plain", "-v", "-c", "{config}", "--json", "validate"],
    ],
)
def test_global_options_go_before_or_after_the_command(tmp_path: Path, args: list[str]) -> None:
    config = _config(tmp_path)
    result = cli(*(a.format(config=config) for a in args))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["file"] == str(config)


def test_an_option_in_the_wrong_place_is_told_where_it_goes(tmp_path: Path) -> None:
    config = str(_config(tmp_path))
    before = cli("--store", "sqlite:///x.db", "stats", "-c", config)
    assert before.returncode == 2
    assert (
        "--store is an option of 'stats': put it after the command's name "
        "(empathy-webhooks stats --store ...)" in before.stderr
    )
    nested = cli("-c", config, "--store", "sqlite:///x.db", "dead-letters", "list")
    assert "--store is an option of 'dead-letters list'" in nested.stderr
    elsewhere = cli("plugins", "--store", "x")
    assert elsewhere.returncode == 2
    assert "--store is not an option of 'plugins'; it belongs to: send, stats" in elsewhere.stderr
    no_json = cli("--json", "new-plugin", "acme", "--dest", str(tmp_path))
    assert no_json.returncode == 2
    assert "--json: the 'new-plugin' command prints no JSON" in no_json.stderr
    assert not (tmp_path / "empathy-webhooks-acme").exists()


def test_output_into_a_closed_pipe_is_no_traceback() -> None:
    """`empathy-webhooks plugins | head -0`: the reader is gone before the first line."""
    proc = subprocess.Popen(
        [CLI, "plugins"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env({})
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.wait(60)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert err == ""


async def test_worker_says_when_it_starts_and_stops(tmp_path: Path) -> None:
    import asyncio
    import signal

    config = _config(tmp_path, "sqlite:///outbox.db")
    worker = await asyncio.create_subprocess_exec(
        CLI,
        "worker",
        "-c",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_env(),
        cwd=tmp_path,
    )
    try:
        assert worker.stdout is not None
        first = (await asyncio.wait_for(worker.stdout.readline(), 30)).decode()
        assert first.startswith("worker started: 1 webhook(s), store sqlite:///outbox.db")
        worker.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(worker.communicate(), 30)
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
    assert worker.returncode == 0, err
    assert out.decode().splitlines() == ["worker stopped"]


def test_rich_tables_wrap_long_names_instead_of_cutting_them() -> None:
    from io import StringIO

    from rich.console import Console

    from empathy_webhooks_core.cli._common import Output

    out = Output()
    out.rich = True
    out._console = Console(file=StringIO(), width=80, highlight=False)
    name = "pagerduty_production_incidents_webhook"
    target = "https://events.pagerduty.com/v2/enqueue"
    columns = ["webhook", "type", "events", "filter", "target", "retries", "rate limit"]
    out.table(None, columns, [[name, "pagerduty", "alert", "-", target, "3", "60/min"]])
    shown = out.console.file.getvalue()
    assert "…" not in shown
    cells = [line.split("│")[1].strip() for line in shown.splitlines() if line.startswith("│")]
    assert "".join(cells) == name
    assert max(len(line) for line in shown.splitlines()) <= 80


def test_the_demo_names_the_variable_that_left_a_plugin_out() -> None:
    pytest.importorskip("empathy_webhooks_jira")
    result = subprocess.run(
        [CLI, "demo"],
        capture_output=True,
        text=True,
        env=_env({"EMPATHY_WEBHOOKS_LOAD_PLUGINS": "slack"}),
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        "skipped the Jira stand-in: its plugin is left out (the 'jira' plugin is installed but "
        "EMPATHY_WEBHOOKS_LOAD_PLUGINS='slack' leaves it out; add jira to it)" in result.stdout
    )


def test_new_plugin_prints_the_install_line_with_its_test_extra(tmp_path: Path) -> None:
    result = cli("new-plugin", "acme", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "created empathy-webhooks-acme",
        "next: pip install -e './empathy-webhooks-acme[test]' && pytest empathy-webhooks-acme",
    ]
    assert result.stderr == ""


def test_new_plugin_warns_when_the_name_is_an_installed_type(tmp_path: Path) -> None:
    result = cli("new-plugin", "custom", "--dest", str(tmp_path))
    assert result.returncode == 0
    assert result.stderr.startswith(
        "warning: empathy-webhooks-core already provides the plugin and webhook type 'custom'"
    )
    assert (tmp_path / "empathy-webhooks-custom").is_dir()


def test_the_readme_names_the_clis_real_default_store(tmp_path: Path) -> None:
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    claims = re.findall(r"CLI's default store is (\w+)", readme)
    assert claims, "the README says which store the CLI uses by default"
    assert "the CLI's default)" not in readme  # the old claim that SQLite was
    result = cli("validate", "-c", str(_config(tmp_path)))
    assert result.returncode == 0, result.stderr
    shown = re.search(r"store (\w+)", result.stdout.splitlines()[0])
    assert shown is not None
    assert set(claims) == {shown.group(1)} == {"memory"}


def test_the_testing_docs_snippets_run_as_written(tmp_path: Path) -> None:
    """Each ```python block of docs/testing.md, as a test module of a plugin's own project."""
    text = (ROOT / "docs" / "testing.md").read_text(encoding="utf-8")
    blocks = [part.split("```", 1)[0] for part in text.split("```python\n")[1:]]
    assert len(blocks) >= 2
    for number, block in enumerate(blocks):
        (tmp_path / f"test_snippet_{number}.py").write_text(block, encoding="utf-8")
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMPATHY_WEBHOOKS")}
    env.pop("PYTEST_ADDOPTS", None)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-W", "error", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(blocks)} passed" in done.stdout
