"""Every distribution of the family ships its licence: each has a LICENSE file beside its
pyproject.toml, which setuptools (77+, PEP 639) puts into the wheel and the sdist. Building the
core and one plugin proves the second half. Slow (two builds): deselect with -m "not slow"."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DISTRIBUTIONS = [
    ROOT,
    *sorted(p.parent for p in (ROOT / "plugins").glob("*/pyproject.toml")),
    *sorted(p.parent for p in (ROOT / "examples").glob("*/pyproject.toml")),
]


def _members(path: Path) -> list[str]:
    if path.suffix == ".whl":
        return zipfile.ZipFile(path).namelist()
    with tarfile.open(path) as archive:
        return archive.getnames()


@pytest.mark.parametrize("source", DISTRIBUTIONS, ids=lambda p: p.name)
def test_every_distribution_has_a_licence_file(source: Path) -> None:
    assert (source / "LICENSE").is_file(), f"{source} has no LICENSE file"
    assert 'license = "MIT"' in (source / "pyproject.toml").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("source", [ROOT, ROOT / "plugins" / "slack"], ids=lambda p: p.name)
def test_wheel_and_sdist_carry_the_licence(source: Path, tmp_path: Path) -> None:
    # --no-isolation: the dev install brings setuptools>=77, so no build env is downloaded.
    done = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(tmp_path), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    built = sorted(tmp_path.glob("*.whl")) + sorted(tmp_path.glob("*.tar.gz"))
    assert len(built) == 2, built
    for archive in built:
        licences = [name for name in _members(archive) if name.rsplit("/", 1)[-1] == "LICENSE"]
        assert licences, f"{archive.name} has no LICENSE"
