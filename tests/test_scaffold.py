"""`create_plugin` writes a distribution that imports, renders, delivers and passes its tests."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from empathy_webhooks_core import Event
from empathy_webhooks_core._version import __version__
from empathy_webhooks_core.delivery import render_request
from empathy_webhooks_core.plugins import build_plugin_manager
from empathy_webhooks_core.scaffold import create_plugin, main, plugin_names

ROOT = Path(__file__).resolve().parents[1]


def test_names() -> None:
    assert plugin_names("my-service") == {
        "name": "my_service",
        "dist": "empathy-webhooks-my-service",
        "package": "empathy_webhooks_my_service",
        "cls": "MyServiceWebhook",
        "title": "My Service",
    }


@pytest.mark.parametrize("bad", ["", "Acme", "1acme", "acme!", "acme-", "a b", "../x"])
def test_rejects_bad_names(bad: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="plugin name"):
        create_plugin(bad, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_writes_the_plugin_shape(tmp_path: Path) -> None:
    root = create_plugin("acme", tmp_path)
    assert root == tmp_path / "empathy-webhooks-acme"
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == [
        "README.md",
        "empathy_webhooks_acme/__init__.py",
        "empathy_webhooks_acme/format.py",
        "empathy_webhooks_acme/py.typed",
        "pyproject.toml",
        "tests/test_acme.py",
        "tests/test_conformance.py",
    ]
    project = tomllib.loads((root / "pyproject.toml").read_text())
    assert project["project"]["name"] == "empathy-webhooks-acme"
    # Bounded like the first-party plugins' (tests/test_versions.py): this core accepted, the
    # next breaking one (a minor release before 1.0, a major after) refused.
    (core,) = map(Requirement, project["project"]["dependencies"])
    assert core.name == "empathy-webhooks-core"
    this = Version(__version__)
    assert this in core.specifier
    breaking = f"0.{this.minor + 1}.0" if this.major == 0 else f"{this.major + 1}.0.0"
    assert Version(breaking) not in core.specifier
    assert project["project"]["entry-points"]["empathy_webhooks"] == {
        "acme": "empathy_webhooks_acme"
    }
    assert "pip install empathy-webhooks-acme" in (root / "README.md").read_text()
    with pytest.raises(FileExistsError):
        create_plugin("acme", tmp_path)


def test_generated_package_imports_and_renders(tmp_path: Path, monkeypatch) -> None:
    root = create_plugin("acme", tmp_path)
    monkeypatch.syspath_prepend(str(root))
    module = importlib.import_module("empathy_webhooks_acme")
    try:
        pm = build_plugin_manager(load_entry_points=False, extra_plugins=[module])
        webhook = module.AcmeWebhook(url="https://example.com/hook", token="tok-12345")
        event = Event(event_type="alert", event_id="evt_1", data={"title": "Disk full"})
        request = render_request(webhook, event, plugin_manager=pm)
        assert request.json_body() == {
            "title": "Disk full",
            "text": "",
            "severity": "medium",
            "event_type": "alert",
            "event_id": "evt_1",
        }
        assert request.headers["Authorization"] == "Bearer tok-12345"
        assert "tok-12345" not in repr(webhook)
    finally:
        for name in [m for m in sys.modules if m.startswith("empathy_webhooks_acme")]:
            del sys.modules[name]


def test_generated_tests_pass_raise_no_warning_and_lint_clean(tmp_path: Path) -> None:
    """One run of the generated suite, warnings as errors (it also stands for what was
    test_first_minutes' test_the_generated_plugin_tests_raise_no_warning, which ran it again)."""
    root = create_plugin("my-service", tmp_path)
    env = {**os.environ, "PYTHONPATH": str(root)}
    env.pop("PYTEST_ADDOPTS", None)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-W",
            "error",
            "-p",
            "no:cacheprovider",
            "-c",
            str(root / "pyproject.toml"),
            "--rootdir",
            str(root),
            str(root / "tests"),
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    # Everything passes but the entry-point check, which needs the distribution installed.
    assert "1 skipped" in run.stdout and " failed" not in run.stdout, run.stdout
    assert "warning" not in run.stdout.lower(), run.stdout
    lint = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "--no-cache",
            str(root),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_module_entry(tmp_path: Path, capsys) -> None:
    assert main(["acme", str(tmp_path)]) == 0
    assert "created" in capsys.readouterr().out
    assert main(["acme", str(tmp_path)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main([]) == 2
