"""The plugin API boundary: plugins see one namespace, every core module is public or private.

- A plugin's package imports core names from `empathy_webhooks_core.plugin` (and a store
  backend from `empathy_webhooks_core.plugin.store`) only.
- A plugin's tests, and the examples, import only public names: the plugin namespace, the
  testing kit, and the modules listed in docs/public-api.md.
- Every module of the core is listed in docs/public-api.md or has an underscore in its path.
"""

from __future__ import annotations

import ast
import importlib
import pathlib
import pkgutil
import re
import textwrap
import types

import pytest

import empathy_webhooks_core
import empathy_webhooks_core.plugin as plugin_api
from empathy_webhooks_core import scaffold

ROOT = pathlib.Path(__file__).resolve().parents[1]
CORE = "empathy_webhooks_core"
PUBLIC_API_DOC = ROOT / "docs" / "public-api.md"
NAMESPACES = frozenset({f"{CORE}.plugin", f"{CORE}.plugin.store"})
#: Tests of the core that live in a plugin because they need what it brings, and so reach a
#: core module no plugin may use. Each entry says why.
CORE_TESTS_IN_PLUGINS = {
    # The core's `stats` command reading a Redis store: its figures come from the store.
    "plugins/redis/tests/test_redis_store.py": frozenset({f"{CORE}.cli.stats"}),
}


def documented_modules() -> frozenset[str]:
    """The modules docs/public-api.md lists as public (its table's first column)."""
    text = PUBLIC_API_DOC.read_text(encoding="utf-8")
    return frozenset(re.findall(rf"^\| `({CORE}(?:\.[a-z_.]+)?)` \|", text, re.MULTILINE))


PUBLIC_MODULES = documented_modules()


def imports(source: str) -> list[tuple[int, str, str | None]]:
    """(line, module, name) for each core import in `source`; name None for `import x.y`."""
    found: list[tuple[int, str, str | None]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == CORE or node.module.startswith(CORE + "."):
                found.extend((node.lineno, node.module, alias.name) for alias in node.names)
        elif isinstance(node, ast.Import):
            found.extend(
                (node.lineno, alias.name, None)
                for alias in node.names
                if alias.name == CORE or alias.name.startswith(CORE + ".")
            )
    return found


def exported(module: str) -> frozenset[str]:
    return frozenset(getattr(importlib.import_module(module), "__all__", ()))


def package_problems(source: str) -> list[str]:
    """What a plugin package's module imports from the core beyond the plugin namespace."""
    problems = []
    for line, module, name in imports(source):
        if module not in NAMESPACES:
            problems.append(f"line {line}: {module} is not the plugin API (use {CORE}.plugin)")
        elif name is not None and name not in exported(module):
            problems.append(f"line {line}: {module} has no public name {name!r}")
    return problems


def test_problems(source: str, allowed: frozenset[str] = frozenset()) -> list[str]:
    """What a plugin's test (or an example) imports from the core that is not public."""
    problems = []
    for line, module, name in imports(source):
        if module in allowed:
            continue
        if module not in PUBLIC_MODULES:
            problems.append(f"line {line}: {module} is not a public module (docs/public-api.md)")
        elif name is not None and name not in exported(module):
            problems.append(f"line {line}: {module}.{name} is not in its __all__")
    return problems


test_problems.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def _is_test(path: pathlib.Path) -> bool:
    return "tests" in path.parts or path.name.startswith("test_") or path.name == "conftest.py"


def _plugin_files() -> list[pathlib.Path]:
    files = [*ROOT.glob("plugins/*/**/*.py"), *ROOT.glob("examples/**/*.py")]
    return sorted(p for p in files if ".venv" not in p.parts and "build" not in p.parts)


PLUGIN_FILES = _plugin_files()


def test_the_scan_sees_every_first_party_plugin() -> None:
    seen = {p.relative_to(ROOT).parts[:2] for p in PLUGIN_FILES}
    for name in ("datadog", "discord", "email", "github", "grafana", "jira", "pagerduty", "redis"):
        assert ("plugins", name) in seen
    assert {("plugins", "slack"), ("plugins", "teams")} <= seen
    assert any(p.match("examples/ntfy/empathy_webhooks_ntfy/*.py") for p in PLUGIN_FILES)


@pytest.mark.parametrize("path", PLUGIN_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_plugins_and_examples_import_only_public_names(path: pathlib.Path) -> None:
    source = path.read_text(encoding="utf-8")
    is_package = not _is_test(path) and path.parent.name.startswith("empathy_webhooks_")
    allowed = CORE_TESTS_IN_PLUGINS.get(path.relative_to(ROOT).as_posix(), frozenset())
    problems = package_problems(source) if is_package else test_problems(source, allowed)
    assert not problems, f"{path.relative_to(ROOT)}:\n" + "\n".join(problems)


def test_a_private_core_import_fails_the_check() -> None:
    """The check itself: what it must refuse, in a plugin's package and in its tests."""
    source = textwrap.dedent(
        """
        from empathy_webhooks_core import Webhook
        from empathy_webhooks_core._log import get_logger
        from empathy_webhooks_core.plugin import hookimpl, _private
        import empathy_webhooks_core._formatting
        """
    )
    assert [p.split(":")[0] for p in package_problems(source)] == [
        "line 2",
        "line 3",
        "line 4",
        "line 5",
    ]
    assert [p.split(":")[0] for p in test_problems(source)] == ["line 3", "line 4", "line 5"]
    assert not package_problems("from empathy_webhooks_core.plugin import hookimpl, Event\n")
    assert not test_problems("from empathy_webhooks_core.testing import Receiver\n")


def test_the_scaffold_generates_a_plugin_on_the_boundary(tmp_path: pathlib.Path) -> None:
    folder = scaffold.create_plugin("acme", tmp_path)
    generated = sorted(folder.rglob("*.py"))
    assert generated
    for path in generated:
        source = path.read_text(encoding="utf-8")
        problems = test_problems(source) if _is_test(path) else package_problems(source)
        assert not problems, f"{path.name}:\n" + "\n".join(problems)


def _core_modules() -> list[str]:
    return sorted(
        info.name
        for info in pkgutil.walk_packages(empathy_webhooks_core.__path__, CORE + ".")
        if not info.name.endswith(".__main__")
    )


def test_every_core_module_is_public_or_private() -> None:
    """A module is private when a part of its path starts with an underscore; else it, or the
    package it belongs to, is listed in docs/public-api.md."""
    undecided = []
    for name in _core_modules():
        parts = name.split(".")
        if any(part.startswith("_") for part in parts[1:]):
            continue
        if not any(".".join(parts[:n]) in PUBLIC_MODULES for n in range(2, len(parts) + 1)):
            undecided.append(name)
    assert not undecided, (
        "neither private (underscore) nor listed in docs/public-api.md: " + ", ".join(undecided)
    )


def test_every_documented_module_exists() -> None:
    for name in PUBLIC_MODULES:
        importlib.import_module(name)


def test_the_namespace_exports_exactly_its_documented_names() -> None:
    """Everything in `__all__` is importable and on docs/public-api.md; nothing else public
    hangs off the module (a helper imported for its own use would leak into the API)."""
    page = PUBLIC_API_DOC.read_text(encoding="utf-8")
    for module in (plugin_api, importlib.import_module(f"{CORE}.plugin.store")):
        names = set(module.__all__)
        assert len(names) == len(module.__all__), "a name listed twice"
        for name in names:
            assert hasattr(module, name), name
        public = {
            name
            for name, value in vars(module).items()
            if not name.startswith(("_", "@")) and not isinstance(value, types.ModuleType)
        } - {"annotations"}
        assert public <= names, f"public but not in __all__: {sorted(public - names)}"
    missing = [n for n in plugin_api.__all__ if f"`{n}`" not in page]
    assert not missing, f"not described in docs/public-api.md: {missing}"
