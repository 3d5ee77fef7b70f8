"""Set the one version of the empathy-webhooks family: `python scripts/set_version.py X.Y.Z`.

The core and every first-party plugin share one version, and this script is the one place that
changes it. It writes:

- `empathy_webhooks_core/_version.py` (the core's version, read by setuptools' dynamic version);
- `version = "X.Y.Z"` in every `plugins/*/pyproject.toml`;
- the core requirement of every plugin and of every `examples/*` plugin: the compatible range
  below. An example stands for a third-party plugin, so its own version is left alone.

The compatible range follows semantic versioning (`compatible_range` in the core's
`_version.py`, which `empathy-webhooks new-plugin` uses too): `>=X.Y,<X+1` from 1.0 on, and
`>=0.Y,<0.Y+1` before 1.0, where semver lets any minor release break.

`--check` writes nothing and exits 1, naming each file, when the tree is not at the version
given (or, with no version, at the core's own). `--root` points at another checkout.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
from collections.abc import Callable
from pathlib import Path

CORE = "empathy-webhooks-core"
VERSION_FILE = Path("empathy_webhooks_core") / "_version.py"
# A release version only (no pre-release or local part): the family ships plain X.Y.Z.
_VERSION = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
# `version = "..."` at the start of a line: the [project] table's own, never a dependency's.
_VERSION_LINE = re.compile(r'^__version__ = "([^"]*)"$', re.MULTILINE)
_PROJECT_VERSION = re.compile(r'^version = "[^"]*"$', re.MULTILINE)
# The core requirement inside a dependencies array, whatever its specifier today.
_CORE_REQUIREMENT = re.compile(r'"empathy-webhooks-core(?:\[[^\]]*\])?[^"]*"')


def parse(version: str) -> tuple[int, int, int]:
    match = _VERSION.match(version)
    if match is None:
        raise ValueError(f"not a release version X.Y.Z: {version!r}")
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def _load_rule() -> Callable[[str], str]:
    # The rule lives beside the version in the core; loaded by path, so running this script
    # needs neither an install nor the core's dependencies.
    path = Path(__file__).resolve().parents[1] / VERSION_FILE
    spec = importlib.util.spec_from_file_location("_empathy_webhooks_version", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rule: Callable[[str], str] = module.compatible_range
    return rule


def compatible_range(version: str) -> str:
    """The core versions a plugin built against `version` accepts."""
    parse(version)
    return _load_rule()(version)


def core_version(root: Path) -> str:
    match = _VERSION_LINE.search((root / VERSION_FILE).read_text())
    if match is None:
        raise ValueError(f"{root / VERSION_FILE}: no __version__ line")
    return match.group(1)


def _plugins(root: Path) -> list[Path]:
    return sorted((root / "plugins").glob("*/pyproject.toml"))


def _examples(root: Path) -> list[Path]:
    return sorted((root / "examples").glob("*/pyproject.toml"))


def planned(root: Path, version: str) -> dict[Path, str]:
    """Every file this version touches, with the text it should have."""
    parse(version)
    requirement = f'"{CORE}{compatible_range(version)}"'
    version_file = root / VERSION_FILE
    core_version(root)  # refuses a _version.py without its line before anything is planned
    line = f'__version__ = "{version}"'
    texts = {version_file: _VERSION_LINE.sub(line, version_file.read_text())}
    for path in [*_plugins(root), *_examples(root)]:
        text = path.read_text()
        text, found = _CORE_REQUIREMENT.subn(requirement, text)
        if found != 1:
            raise ValueError(f"{path}: {found} requirements on {CORE}, expected 1")
        if path.parent.parent.name == "plugins":
            text, found = _PROJECT_VERSION.subn(f'version = "{version}"', text)
            if found != 1:
                raise ValueError(f"{path}: {found} `version = ` lines, expected 1")
        texts[path] = text
    return texts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("version", nargs="?", help="X.Y.Z (with --check: the core's if omitted)")
    parser.add_argument("--check", action="store_true", help="write nothing; fail if out of step")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    args = parser.parse_args(argv)
    root: Path = args.root
    if args.version is None and not args.check:
        parser.error("a version X.Y.Z is required (or --check)")
    try:
        version = args.version if args.version is not None else core_version(root)
        # Everything is computed before anything is written: a bad file leaves the tree as it was.
        texts = planned(root, version)
    except ValueError as error:
        print(f"set_version: {error}", file=sys.stderr)
        return 2
    stale = [path for path, text in texts.items() if path.read_text() != text]
    if args.check:
        for path in stale:
            print(f"{path.relative_to(root)}: not in step with {version}", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.write_text(texts[path])
        print(f"{path.relative_to(root)}: updated for {version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
