"""The core built once as a wheel for the tests that install it into fresh virtual environments
(`test_plugins_alone.py`, `test_example_wheel.py`): each built its own, about 5 s of CPU apiece
on this 2-core machine, for the same bytes."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Never part of a build: caches, an editable install's metadata, old builds, the tests.
IGNORE = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "tests")
# No build isolation: the dev install brings setuptools>=77 (what every pyproject.toml asks
# for), so pip does not make a fresh build environment per project (~7 s each under load).
PIP_WHEEL = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]


def clean_env() -> dict[str, str]:
    """The environment for a fresh venv's tools: none of this run's Python or project settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "EMPATHY_"))}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def build_core_wheel(folder: Path) -> Path:
    """The core's wheel in `folder`, built from a copy (so the build leaves nothing in the work
    tree) the first time any test process of this run asks; later callers wait for it under a
    file lock, then reuse it."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        built = sorted(folder.glob("empathy_webhooks_core-*.whl"))
        if built:
            return built[-1]
        source = folder / "src"
        source.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy(ROOT / name, source / name)
        package = "empathy_webhooks_core"
        shutil.copytree(ROOT / package, source / package, ignore=IGNORE)
        done = subprocess.run(
            [*PIP_WHEEL, "-w", folder, source],
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=300,
        )
        assert done.returncode == 0, f"building the core's wheel\n{done.stdout}\n{done.stderr}"
        shutil.rmtree(source)
        [wheel] = folder.glob("empathy_webhooks_core-*.whl")
        return wheel
