"""Child processes for the tests of several processes on one store: each runs a script that
prints `emitted <event id>` per event it emits and `all-emitted` when done, then delivers until
its stdin closes. A test can stop (SIGSTOP) and continue them, as a frozen VM would."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

__all__ = ["emitted", "finish", "start_child", "until"]


async def start_child(tmp_path: Path, source: str, *args: object) -> asyncio.subprocess.Process:
    """Run `source` (a Python script) with `args`, its stdin, stdout and stderr piped.

    The source goes as `-c`, never as a file written per child: a child still starting when
    the next one's spawn rewrote the same file read it truncated, ran nothing and exited 0
    (about 1 start in 130 on a loaded machine; a worker that never joined, a flaky test)."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-P",
        "-c",
        source,
        *(str(arg) for arg in args),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


async def emitted(proc: asyncio.subprocess.Process) -> set[str]:
    """The event ids the child emitted, once it says it emitted all."""
    assert proc.stdout is not None
    ids = set()
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip()
        if not line:
            assert proc.stderr is not None
            raise AssertionError(f"the child ended: {(await proc.stderr.read()).decode()}")
        if line == "all-emitted":
            return ids
        ids.add(line.split()[1])


async def finish(proc: asyncio.subprocess.Process) -> str:
    """Continue it if stopped, close its stdin (it closes its dispatcher and ends); its log."""
    if proc.returncode is None:
        proc.send_signal(signal.SIGCONT)
        if proc.stdin is not None:
            proc.stdin.close()
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 20)
    except TimeoutError:
        proc.kill()
        _, err = await proc.communicate()
    return err.decode()


async def until(condition: object, timeout: float = 20) -> None:
    """Wait until `condition()` is true (polled every 20 ms), at most `timeout` seconds."""
    assert callable(condition)
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - answers land in the receiver's list
            await asyncio.sleep(0.02)
