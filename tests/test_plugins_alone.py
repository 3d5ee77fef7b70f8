"""Each chat plugin, installed alone beside the core in a fresh virtual environment, is
discovered and delivers; uninstalled, it is gone. Slow (a venv and wheels)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from ._once import IGNORE, PIP_WHEEL, ROOT, clean_env

# Its own steps time out after 300 s; under xdist on a loaded machine the whole can pass 120 s.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

# Runs inside the fresh venv: the loaded types, then one delivery through the named type.
PROBE = """
import asyncio, json, sys
from empathy_webhooks_core import WebhookDispatcher
from empathy_webhooks_core.plugins import Hooks, build_plugin_manager
from empathy_webhooks_core.testing import Receiver, Reply

kind, reply = sys.argv[1], json.loads(sys.argv[2])

async def main():
    pm = build_plugin_manager(strict=True)
    types = Hooks(pm).webhook_types()
    result = {"types": sorted(types)}
    if kind in types:
        async with Receiver() as receiver:
            receiver.respond(**reply)
            webhook = types[kind](webhook_url=receiver.url("/hook/123/secret-token"))
            async with WebhookDispatcher([webhook], plugin_manager=pm) as dispatcher:
                await dispatcher.emit("alert", {"message": "disk full"}, severity="high")
            result["answered"] = [r.answered for r in receiver.requests]
            result["stats"] = dispatcher.get_webhook_stats(webhook.name)["delivered_count"]
    print(json.dumps(result))

asyncio.run(main())
"""

PLUGINS = {
    "slack": {"status": 200, "body": "ok"},
    "teams": {"status": 202},
    "discord": {"status": 200, "body": {"id": "1"}},
}


def _run(*args: str | Path) -> str:
    done = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, env=clean_env(), timeout=300
    )
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_each_chat_plugin_alone_with_the_core(tmp_path: Path, core_wheel: Path) -> None:
    # Built from copies, so the builds leave nothing in the work tree; the core's wheel is the
    # run's shared one (tests/_once.py).
    sources = [
        shutil.copytree(ROOT / "plugins" / name, tmp_path / "src" / name, ignore=IGNORE)
        for name in PLUGINS
    ]
    wheels = tmp_path / "wheels"
    _run(*PIP_WHEEL, "-w", wheels, *sources)
    shutil.copy(core_wheel, wheels)

    python = tmp_path / "venv" / "bin" / "python"
    venv.create(tmp_path / "venv", with_pip=False)
    pip = [sys.executable, "-m", "pip", "--python", python]
    _run(*pip, "install", "-q", "--no-compile", *wheels.glob("empathy_webhooks_core-*.whl"))

    for name, reply in PLUGINS.items():
        [wheel] = wheels.glob(f"empathy_webhooks_{name}-*.whl")
        _run(*pip, "install", "-q", "--no-compile", "--no-deps", wheel)
        seen = json.loads(_run(python, "-c", PROBE, name, json.dumps(reply)).splitlines()[-1])
        assert seen["types"] == sorted(["custom", name]), seen  # alone with the core
        assert seen["answered"] == [reply["status"]] and seen["stats"] == 1, seen
        _run(*pip, "uninstall", "-y", "-q", f"empathy-webhooks-{name}")
        gone = json.loads(_run(python, "-c", PROBE, name, json.dumps(reply)).splitlines()[-1])
        assert gone == {"types": ["custom"]}, gone
