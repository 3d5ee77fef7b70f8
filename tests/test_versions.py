"""One version for the whole family, set in one place (`scripts/set_version.py`): every
first-party plugin is at the core's version and requires the core's compatible range; the example
plugin (a stand-in for a third party) keeps its own version but requires the same range."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "set_version.py"
PLUGINS = sorted(p.parent for p in (ROOT / "plugins").glob("*/pyproject.toml"))
EXAMPLES = sorted(p.parent for p in (ROOT / "examples").glob("*/pyproject.toml"))


def _core_version(root: Path = ROOT) -> str:
    text = (root / "empathy_webhooks_core" / "_version.py").read_text()
    (version,) = re.findall(r'^__version__ = "([^"]*)"$', text, re.MULTILINE)
    return version


def _project(source: Path) -> dict:
    return tomllib.loads((source / "pyproject.toml").read_text())["project"]


def _core_requirement(source: Path) -> Requirement:
    (requirement,) = [
        r
        for r in map(Requirement, _project(source)["dependencies"])
        if r.name == "empathy-webhooks-core"
    ]
    return requirement


def _expected_range(version: str) -> str:
    # Semver: before 1.0 a minor release may break, so a 0.Y plugin accepts 0.Y only; from 1.0
    # on, anything below the next major.
    v = Version(version)
    upper = f"{v.major}.{v.minor + 1}" if v.major == 0 else f"{v.major + 1}"
    return f">={v.major}.{v.minor},<{upper}"


def test_the_core_version_is_a_plain_release() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", _core_version())


def test_the_core_version_is_dynamic_from_its_one_file() -> None:
    assert "version" not in _project(ROOT)
    assert "version" in _project(ROOT)["dynamic"]


@pytest.mark.parametrize("source", PLUGINS, ids=lambda p: p.name)
def test_every_plugin_is_at_the_core_version(source: Path) -> None:
    assert _project(source)["version"] == _core_version()


@pytest.mark.parametrize("source", PLUGINS + EXAMPLES, ids=lambda p: p.name)
def test_every_plugin_requires_the_compatible_core_range(source: Path) -> None:
    requirement = _core_requirement(source)
    assert str(requirement.specifier) == str(
        Requirement(f"x{_expected_range(_core_version())}").specifier
    ), f"{source.name}: {requirement}"
    # The core the plugin ships beside satisfies it; the next breaking core does not.
    core = Version(_core_version())
    assert core in requirement.specifier
    breaking = Version(f"0.{core.minor + 1}.0" if core.major == 0 else f"{core.major + 1}.0.0")
    assert breaking not in requirement.specifier


@pytest.mark.parametrize("source", EXAMPLES, ids=lambda p: p.name)
def test_an_example_keeps_a_version_of_its_own(source: Path) -> None:
    Version(_project(source)["version"])  # valid, and free to differ from the core's


def test_the_tree_is_in_step_by_the_script_too() -> None:
    done = subprocess.run(
        [sys.executable, SCRIPT, "--check"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


def _copy_tree(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "empathy_webhooks_core").mkdir(parents=True)
    shutil.copy(ROOT / "empathy_webhooks_core" / "_version.py", root / "empathy_webhooks_core")
    for source in PLUGINS + EXAMPLES:
        target = root / source.relative_to(ROOT)
        target.mkdir(parents=True)
        shutil.copy(source / "pyproject.toml", target)
    return root


def _set(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, SCRIPT, "--root", str(root), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("0.2.0", ">=0.2,<0.3"),
        ("0.1.7", ">=0.1,<0.2"),
        ("1.0.0", ">=1.0,<2"),
        ("2.3.1", ">=2.3,<3"),
    ],
)
def test_the_script_moves_the_whole_family(tmp_path: Path, version: str, expected: str) -> None:
    root = _copy_tree(tmp_path)
    example_versions = {e.name: _project(root / e.relative_to(ROOT))["version"] for e in EXAMPLES}
    done = _set(root, version)
    assert done.returncode == 0, done.stderr
    assert _core_version(root) == version
    for source in PLUGINS:
        copy = root / source.relative_to(ROOT)
        assert _project(copy)["version"] == version
        assert _core_requirement(copy) == Requirement(f"empathy-webhooks-core{expected}")
    for source in EXAMPLES:
        copy = root / source.relative_to(ROOT)
        assert _project(copy)["version"] == example_versions[source.name]
        assert _core_requirement(copy) == Requirement(f"empathy-webhooks-core{expected}")
    # The rest of each file is untouched: the other dependencies are still there.
    email = _project(root / "plugins" / "email")["dependencies"]
    assert any(d.startswith("aiosmtplib") for d in email)
    assert _set(root, "--check").returncode == 0
    stale = _set(root, "--check", "9.9.9")
    assert stale.returncode == 1 and "plugins/slack/pyproject.toml" in stale.stderr


@pytest.mark.parametrize("bad", ["1.2", "v1.2.3", "1.2.3rc1", "01.2.3", ""])
def test_the_script_refuses_a_version_that_is_not_x_y_z(tmp_path: Path, bad: str) -> None:
    root = _copy_tree(tmp_path)
    before = {p: p.read_text() for p in root.rglob("*") if p.is_file()}
    done = _set(root, bad)
    assert done.returncode == 2
    assert "X.Y.Z" in done.stderr
    assert {p: p.read_text() for p in root.rglob("*") if p.is_file()} == before


def test_the_script_writes_nothing_when_one_file_is_unreadable(tmp_path: Path) -> None:
    root = _copy_tree(tmp_path)
    # A plugin whose core requirement was removed by hand: refused, and no file half-moved.
    teams = root / "plugins" / "teams" / "pyproject.toml"
    teams.write_text(re.sub(r'"empathy-webhooks-core[^"]*",? ?', "", teams.read_text()))
    before = {p: p.read_text() for p in root.rglob("*") if p.is_file()}
    done = _set(root, "0.3.0")
    assert done.returncode == 2
    assert "plugins/teams/pyproject.toml" in done.stderr
    assert {p: p.read_text() for p in root.rglob("*") if p.is_file()} == before
