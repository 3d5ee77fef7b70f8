"""docs/hooks.md is generated from the hook specifications and kept in step with them."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from empathy_webhooks_core import hookspecs
from empathy_webhooks_core.plugins import build_plugin_manager
from empathy_webhooks_core.testing.hookdocs import hookspec_functions, main, render_markdown

DOCS = Path(__file__).resolve().parents[1] / "docs"
HOOKS_MD = DOCS / "hooks.md"
SPECS = hookspec_functions()


def test_hooks_md_is_up_to_date() -> None:
    assert HOOKS_MD.read_text(encoding="utf-8") == render_markdown(), (
        "docs/hooks.md is out of step with hookspecs.py; regenerate it with "
        "`python -m empathy_webhooks_core.testing.hookdocs docs/hooks.md`"
    )


def test_check_mode(tmp_path: Path) -> None:
    assert main(["--check", str(HOOKS_MD)]) == 0
    stale = tmp_path / "hooks.md"
    stale.write_text("# old\n")
    assert main(["--check", str(stale)]) == 1
    assert main([str(stale)]) == 0
    assert main(["--check", str(stale)]) == 0


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
    assert documented <= parameters, f"{spec.__name__} documents unknown parameters"
    returns_something = inspect.signature(spec).return_annotation not in ("None", None)
    if returns_something:
        assert ":return" in doc or "return" in doc.lower(), (
            f"{spec.__name__} returns a value; say what"
        )
    assert f"\n## {spec.__name__}\n" in HOOKS_MD.read_text(encoding="utf-8")


def test_docs_link_the_hook_reference() -> None:
    assert "hooks.md" in (DOCS / "writing-plugins.md").read_text(encoding="utf-8")
    assert hookspecs.__doc__ and "entry point" in hookspecs.__doc__
