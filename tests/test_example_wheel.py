"""The ntfy example, built as a wheel and installed beside the core in a fresh virtual
environment, is discovered and delivers without a line of core changed; uninstalled, it is
gone. Slow (a venv and a few wheels): deselect with -m "not slow"."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from ._once import IGNORE, PIP_WHEEL, ROOT, clean_env

# Its own steps time out after 300 s; under xdist on a loaded machine the whole can pass 120 s.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

EXAMPLE = ROOT / "examples" / "ntfy"

# Runs inside the fresh venv: discover the plugin, deliver one event to a loopback receiver.
DELIVER = """
import asyncio, json
from empathy_webhooks_core import WebhookDispatcher
from empathy_webhooks_core.plugins import build_plugin_manager
from empathy_webhooks_core.testing import Receiver

async def main():
    pm = build_plugin_manager(strict=True)
    from empathy_webhooks_core.plugins import Hooks
    ntfy_class = Hooks(pm).webhook_types()["ntfy"]
    async with Receiver() as receiver:
        webhook = ntfy_class(server_url=receiver.url(""), topic="wheel-test", token="tk_wheel")
        async with WebhookDispatcher([webhook], plugin_manager=pm) as dispatcher:
            event = await dispatcher.emit("test_failure", {"title": "test_total failed"})
        request = receiver.requests[0]
        print(json.dumps({"event_id": event.event_id, "answered": request.answered,
                          "auth": request.header("Authorization"), "body": request.json()}))

asyncio.run(main())
"""


def _run(*args: str | Path, timeout: float = 300) -> str:
    done = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, env=clean_env(), timeout=timeout
    )
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _list_plugins(bin_dir: Path) -> str:
    """What `empathy-webhooks plugins` lists: the installed core's console script."""
    return _run(bin_dir / "empathy-webhooks", "plugins")


def test_example_wheel_installs_is_discovered_delivers_and_uninstalls(
    tmp_path: Path, core_wheel: Path
) -> None:
    # Built from a copy, so the build leaves nothing in the work tree; the core's wheel is the
    # run's shared one (tests/_once.py).
    example = shutil.copytree(EXAMPLE, tmp_path / "src" / "ntfy", ignore=IGNORE)
    wheels = tmp_path / "wheels"
    _run(*PIP_WHEEL, "-w", wheels, example)
    shutil.copy(core_wheel, wheels)
    built = sorted(p.name.split("-")[0] for p in wheels.glob("*.whl"))
    assert built == ["empathy_webhooks_core", "empathy_webhooks_ntfy"]

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    bin_dir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    python = bin_dir / "python"
    pip = [sys.executable, "-m", "pip", "--python", python]
    # The core's own dependencies come from the package index (pip's cache keeps this quick).
    _run(*pip, "install", "-q", "--no-compile", *sorted(wheels.glob("*.whl")))

    listed = _list_plugins(bin_dir)
    assert "ntfy" in listed and "empathy-webhooks-ntfy" in listed, listed

    delivered = json.loads(_run(python, "-c", DELIVER).strip().splitlines()[-1])
    assert delivered["answered"] == 200
    assert delivered["auth"] == "Bearer tk_wheel"
    assert delivered["body"]["topic"] == "wheel-test"
    assert delivered["body"]["title"] == "test_total failed"
    assert delivered["event_id"] in delivered["body"]["message"]

    _run(*pip, "uninstall", "-y", "-q", "empathy-webhooks-ntfy")
    listed = _list_plugins(bin_dir)
    assert "ntfy" not in listed, listed
    gone = subprocess.run(
        [str(python), "-c", DELIVER], capture_output=True, text=True, env=clean_env(), timeout=60
    )
    assert gone.returncode != 0 and "KeyError: 'ntfy'" in gone.stderr, gone.stderr
