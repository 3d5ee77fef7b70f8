"""Every module of the gateway and the console imports on its own, in a fresh interpreter.

Their imports read one way (serve -> app -> routes -> keys; console -> the gateway's modules),
at the top of each module but for the documented lazy ones; a cycle shows up as an ImportError
only for the module a program happens to import first, so each one is tried first here."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import empathy_webhooks_core.console
import empathy_webhooks_core.gateway

MODULES = sorted(
    ["empathy_webhooks_core.console", "empathy_webhooks_core.gateway"]
    + [
        info.name
        for package in (empathy_webhooks_core.console, empathy_webhooks_core.gateway)
        for info in pkgutil.iter_modules(package.__path__, package.__name__ + ".")
    ]
)


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_first(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
