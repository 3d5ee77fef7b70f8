"""Every module of the gateway and the console imports on its own, first of the project's
modules, in a process that has imported none of them.

Their imports read one way (serve -> app -> routes -> keys; console -> the gateway's modules),
at the top of each module but for the documented lazy ones; a cycle shows up as an ImportError
only for the module a program happens to import first, so each one is tried first here.

One fresh interpreter imports the third-party modules they all need (aiohttp, jinja2, ...),
then forks a child per module: a child's `sys.modules` holds no module of the project, which is
what decides the order the project's own imports run in, and the third-party imports (most of
the half second a fresh interpreter spent per module) are paid once instead of 27 times."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import empathy_webhooks_core.console
import empathy_webhooks_core.gateway

from ._once import once_per_run

MODULES = sorted(
    ["empathy_webhooks_core.console", "empathy_webhooks_core.gateway"]
    + [
        info.name
        for package in (empathy_webhooks_core.console, empathy_webhooks_core.gateway)
        for info in pkgutil.iter_modules(package.__path__, package.__name__ + ".")
    ]
)

# argv: the modules, then the file the results go to ({module: "" or what went wrong}).
FORK_EACH = r"""
import importlib, json, os, sys, traceback

PROJECT = "empathy_webhooks"
modules, out = sys.argv[1:-1], sys.argv[-1]

def in_child(body):
    # body() in a forked child: ("", its result) or (what went wrong, None). The child exits
    # at once, without the parent's atexit handlers or buffers.
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            said = {"result": body()}
        except BaseException:
            said = {"error": traceback.format_exc()}
        os.write(write, json.dumps(said).encode())
        os._exit(0)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.close(read)
    _, status = os.waitpid(pid, 0)
    try:
        said = json.loads(b"".join(chunks))
    except ValueError:
        return f"the child ended without an answer (wait status {status})", None
    return said.get("error", ""), said.get("result")

def third_party():
    # What importing every module pulls in from outside the project, in import order (one
    # that fails is its own test's failure, below).
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:
            pass
    return [m for m in sys.modules if not m.startswith(PROJECT)]

def first(name):
    def body():
        loaded = [m for m in sys.modules if m.startswith(PROJECT)]
        assert not loaded, f"already imported: {loaded}"
        importlib.import_module(name)
    return body

error, needed = in_child(third_party)
if error:
    sys.exit(f"importing every module together failed:\n{error}")
for name in needed:
    try:
        importlib.import_module(name)
    except Exception:
        pass  # one only its importer can import (e.g. a platform's): the child imports it
assert not [m for m in sys.modules if m.startswith(PROJECT)]
with open(out, "w") as f:
    json.dump({name: in_child(first(name))[0] for name in modules}, f)
"""


def _import_each_first(folder: Path) -> None:
    out = folder / "results.json"
    done = subprocess.run(
        [sys.executable, "-c", FORK_EACH, *MODULES, str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and out.exists(), done.stdout + done.stderr


@pytest.fixture(scope="module")
def imported_first(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Each module's traceback when imported first ("" if it imported), once per run."""
    folder = once_per_run(tmp_path_factory, "gateway-imports", _import_each_first)
    return json.loads((folder / "results.json").read_text())


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_first(module: str, imported_first: dict[str, str]) -> None:
    assert imported_first[module] == "", imported_first[module]
