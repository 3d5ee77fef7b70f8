"""The hook reference is built from the hook specifications, and kept in step with them.

`docs/hooks.md` pulls the docstrings of `hookspecs.py` in when the site is built (mkdocstrings),
so the reference text cannot drift; these tests check that each spec has a docstring worth
reading, that the page's table lists every hook with its calling rule, and that the built site
(`mkdocs build --strict`: every warning an error) shows every hook and parameter.
"""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

from empathy_webhooks_core import hookspecs
from empathy_webhooks_core.plugins import build_plugin_manager

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
HOOKS_MD = DOCS / "hooks.md"
SPECS = [
    value
    for value in vars(hookspecs).values()
    if inspect.isfunction(value) and hasattr(value, "empathy_webhooks_spec")
]


def _firstresult(spec: object) -> bool:
    return bool(getattr(spec, "empathy_webhooks_spec", {}).get("firstresult"))


def test_every_hook_the_manager_knows_is_a_documented_spec() -> None:
    pm = build_plugin_manager(load_entry_points=False)
    known = {name for name in vars(pm.hook) if not name.startswith("_")}
    assert {spec.__name__ for spec in SPECS} == known


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.__name__)
def test_every_hookspec_is_documented(spec) -> None:
    doc = inspect.getdoc(spec) or ""
    assert len(doc) >= 80, f"{spec.__name__} needs a docstring that says when it fires"
    documented = set(re.findall(r":param (\w+):", doc))
    parameters = set(inspect.signature(spec).parameters)
    assert documented == parameters, (
        f"{spec.__name__}: document every parameter with ':param name:' "
        f"(missing {sorted(parameters - documented)}, unknown {sorted(documented - parameters)})"
    )
    returns_something = inspect.signature(spec).return_annotation not in ("None", None)
    if returns_something:
        assert ":return" in doc or "return" in doc.lower(), (
            f"{spec.__name__} returns a value; say what"
        )


def test_the_reference_table_lists_every_hook_with_its_calling_rule() -> None:
    rows = dict(re.findall(r"^\| `(\w+)` \| (.+?) \|$", HOOKS_MD.read_text(), re.MULTILINE))
    assert set(rows) == {spec.__name__ for spec in SPECS}
    for spec in SPECS:
        assert ("firstresult" in rows[spec.__name__]) == _firstresult(spec), spec.__name__
    assert "::: empathy_webhooks_core.hookspecs" in HOOKS_MD.read_text()


@pytest.mark.slow
def test_the_site_builds_strictly_and_shows_every_hook_and_parameter(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    page = re.sub(r"<[^>]+>", " ", (tmp_path / "hooks" / "index.html").read_text())
    for spec in SPECS:
        assert f"{spec.__name__} (" in re.sub(r"\s+", " ", page), spec.__name__
        for parameter in inspect.signature(spec).parameters:
            assert parameter in page, f"{spec.__name__}: {parameter}"


def test_every_hook_has_a_test_that_implements_it() -> None:
    """The datasette pair: every hook is documented (above) and exercised by at least one test
    that implements it in a plugin of its own (a `@hookimpl` function of that name in a test
    file), beside the first-party plugins that implement it."""
    folders = [ROOT / "tests", *ROOT.glob("plugins/*/tests"), *ROOT.glob("examples/*/tests")]
    tests = [path for folder in folders for path in folder.rglob("test_*.py")]
    implemented: set[str] = set()
    for path in tests:
        text = path.read_text(encoding="utf-8")
        implemented.update(re.findall(r"@hookimpl(?:\([^)]*\))?\s+(?:async\s+)?def (\w+)\(", text))
    untested = sorted(spec.__name__ for spec in SPECS if spec.__name__ not in implemented)
    assert not untested, f"hooks no test implements: {untested}"


def test_docs_link_the_hook_reference() -> None:
    assert "hooks.md" in (DOCS / "writing-plugins.md").read_text(encoding="utf-8")
    assert hookspecs.__doc__ and "entry point" in hookspecs.__doc__
