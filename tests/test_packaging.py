"""Every distribution of the family ships its licence: each has a LICENSE file beside its
pyproject.toml, which setuptools (77+, PEP 639) puts into the wheel and the sdist. Building the
core and one plugin proves the second half. Each also says who made it, what it is for and which
Pythons it supports, in classifiers PyPI accepts. Slow (two builds): deselect with -m "not slow".
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from trove_classifiers import classifiers as KNOWN_CLASSIFIERS

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


# Every distribution of the family says these; each adds its own "Topic ::" lines.
COMMON_CLASSIFIERS = {
    "Development Status :: 3 - Alpha",
    "Framework :: AsyncIO",
    "Intended Audience :: Developers",
    "Programming Language :: Python :: 3",
    "Programming Language :: Python :: 3.11",
    "Programming Language :: Python :: 3.12",
    "Programming Language :: Python :: 3.13",
    "Typing :: Typed",
}


def _project(source: Path) -> dict:
    return tomllib.loads((source / "pyproject.toml").read_text())["project"]


@pytest.mark.parametrize("source", DISTRIBUTIONS, ids=lambda p: p.name)
def test_every_distribution_carries_its_metadata(source: Path) -> None:
    project = _project(source)
    assert project["authors"] == [{"name": "The empathy-webhooks authors"}]
    assert project["requires-python"] == ">=3.11"
    assert "empathy-webhooks" in project["keywords"]
    assert len(project["keywords"]) == len(set(project["keywords"])), "a keyword twice"
    classifiers = project["classifiers"]
    assert COMMON_CLASSIFIERS <= set(classifiers), COMMON_CLASSIFIERS - set(classifiers)
    assert any(c.startswith("Topic :: ") for c in classifiers)
    # PyPI refuses an upload with an unknown classifier; setuptools 77+ refuses a licence
    # classifier beside an SPDX `license` (PEP 639).
    assert set(classifiers) <= KNOWN_CLASSIFIERS, set(classifiers) - KNOWN_CLASSIFIERS
    assert not [c for c in classifiers if c.startswith("License ::")]
    # No public home exists yet: a URL here would be invented.
    assert "urls" not in project


def test_every_package_ships_its_type_marker() -> None:
    # "Typing :: Typed" is a promise only a py.typed inside the package keeps.
    for source in DISTRIBUTIONS:
        include = tomllib.loads((source / "pyproject.toml").read_text())["tool"]["setuptools"]
        (package,) = [name.rstrip("*") for name in include["packages"]["find"]["include"]]
        assert (source / package / "py.typed").is_file(), f"{source.name}: no py.typed"


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
    # The metadata reaches what an installer reads: the wheel's METADATA file.
    (wheel,) = tmp_path.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = archive.read(name).decode()
    assert "Author: The empathy-webhooks authors" in metadata
    assert "Requires-Python: >=3.11" in metadata
    assert "Classifier: Typing :: Typed" in metadata
    assert "License-Expression: MIT" in metadata
    assert "Classifier: License ::" not in metadata
    if source != ROOT:
        # The plugin's bounded core range (tests/test_versions.py) is what pip will enforce.
        (core,) = [
            Requirement(line.split(":", 1)[1])
            for line in metadata.splitlines()
            if line.startswith("Requires-Dist: empathy-webhooks-core")
        ]
        (declared,) = [
            Requirement(d) for d in _project(source)["dependencies"] if "webhooks-core" in d
        ]
        assert core.specifier == declared.specifier and not list(core.specifier.filter(["99.0.0"]))
