"""What the tests build once per run and share: the core's wheel (`test_plugins_alone.py`,
`test_example_wheel.py`) and a lone setuptools (`test_first_minutes.py`). Each test or test
module built its own, seconds of CPU apiece on a 2-core machine, for the same files; under
pytest-xdist every worker did."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

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


def once_per_run(
    tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], None]
) -> Path:
    """The folder `name`, filled by `make` the first time any test process of this run asks:
    the xdist workers of one run have sibling base folders, so they share their parent's (a
    plain `pytest` uses its own). Later callers wait under a file lock, then reuse it; if
    `make` fails, the next caller tries again."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    folder = base / name
    with (base / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        done = folder / ".done"
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            make(folder)
            done.touch()
    return folder


def build_core_wheel(folder: Path) -> None:
    """The core's wheel into `folder`, built from a copy: the build leaves nothing in the tree."""
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
