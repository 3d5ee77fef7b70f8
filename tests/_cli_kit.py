"""The `empathy-webhooks` CLI run in this process, as a fresh process would run it.

A subprocess costs one to two seconds of CPU to start (aiohttp, redis-py, structlog and the
plugins are imported each time), so tests that check what a command prints or returns call
`main(argv)` here; a few tests (the console script's `--help`, `listen`, a closed pipe, the
worker's signals) still start the real process, so the entry point stays tested."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import attrs

from empathy_webhooks_core import plugins
from empathy_webhooks_core.cli import main

CLI = str(Path(sys.executable).parent / "empathy-webhooks")
#: The core's own types only, so these tests do not depend on which plugins are installed.
CORE_ONLY = {"EMPATHY_WEBHOOKS_LOAD_PLUGINS": ""}


@attrs.frozen
class Result:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


def environ(extra: dict[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMPATHY_WEBHOOKS")}
    return {**env, **CORE_ONLY, **(extra or {})}


def run_subprocess(*args: str, env: dict[str, str] | None = None) -> Result:
    """The installed console script in a real process (the entry point's own smoke test)."""
    done = subprocess.run(
        [CLI, *args], capture_output=True, text=True, env=environ(env), timeout=60
    )
    return Result(done.returncode, done.stdout, done.stderr)


@contextlib.contextmanager
def _as_a_process(env: dict[str, str], cwd: Path | None) -> Iterator[None]:
    """What a fresh process would have: exactly this environment (PYTHONPATH on sys.path),
    this working folder, no plugin manager built yet and no log handler from an earlier `-v`;
    all of it put back afterwards, so no run leaks into the next test."""
    logger = logging.getLogger("empathy_webhooks")
    handlers, level = list(logger.handlers), logger.level
    path, here = list(sys.path), os.getcwd()
    extra_path = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    with mock.patch.dict(os.environ, env, clear=True):
        sys.path[:0] = extra_path
        plugins.reset_plugin_manager()
        if cwd is not None:
            os.chdir(cwd)
        try:
            yield
        finally:
            os.chdir(here)
            plugins.reset_plugin_manager()
            sys.path[:] = path
            logger.handlers[:] = handlers
            logger.setLevel(level)


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Result:
    """The CLI's `main(argv)` in this process: its exit code, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with (
        _as_a_process(environ(env), cwd),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        try:
            main(list(args))
        except SystemExit as exit_:
            code = exit_.code
        else:  # pragma: no cover - main always exits
            raise AssertionError("main() returned without sys.exit")
    assert isinstance(code, int), code
    return Result(code, out.getvalue(), err.getvalue())


async def arun(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Result:
    """The CLI without blocking the loop a test's `Receiver` runs on (commands start their
    own event loop with `asyncio.run`, so they run in a thread)."""
    return await asyncio.wait_for(asyncio.to_thread(run, *args, env=env, cwd=cwd), 60)


def completed(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    """`run`, answered as `subprocess.run` would have answered the console script."""
    result = run(*args, env=env, cwd=cwd)
    return subprocess.CompletedProcess([CLI, *args], result.code, result.out, result.err)


async def listen(*args: str) -> tuple[asyncio.subprocess.Process, str]:
    """`empathy-webhooks listen --port 0 --count 1 ARGS` as a real process, and the URL it
    listens on (its first line, in text or JSON)."""
    proc = await asyncio.create_subprocess_exec(
        CLI,
        "listen",
        "--port",
        "0",
        "--count",
        "1",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    first = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
    url = json.loads(first)["listening"] if first.startswith("{") else first.split()[2]
    return proc, url
