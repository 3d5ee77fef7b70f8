"""The versioned plugin contract: a plugin says which plugin API it needs, the core refuses an
incompatible one at start-up, naming both versions, and warns before a name leaves the API."""

from __future__ import annotations

import importlib
import textwrap
import warnings
from pathlib import Path

import pytest

import empathy_webhooks_core.plugin as plugin_api
from empathy_webhooks_core import ConfigError
from empathy_webhooks_core._contract import api_version_problem
from empathy_webhooks_core.config import parse_config
from empathy_webhooks_core.plugin import PLUGIN_API_VERSION
from empathy_webhooks_core.plugins import PluginVersionError, build_plugin_manager

ROOT = Path(__file__).resolve().parents[1]

PLUGIN = """
from typing import ClassVar

import attrs

from empathy_webhooks_core.plugin import OutgoingRequest, Webhook, hookimpl

PLUGIN_API = {version!r}


@attrs.frozen(kw_only=True, eq=False)
class {cls}(Webhook):
    kind: ClassVar[str] = {name!r}
    url: str


@hookimpl
def webhook_types():
    return {{{name!r}: {cls}}}


@hookimpl
def format_payload(webhook, event):
    return OutgoingRequest.json(webhook.url, {{"type": event.event_type}})
"""


def _distribution(site: Path, name: str, version: str) -> None:
    """What `pip install` leaves behind: a module and its dist-info with an entry point."""
    module = f"{name}_plugin"
    source = PLUGIN.format(version=version, name=name, cls=f"{name.title()}Webhook")
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{module}-3.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 3.1\n")
    (info / "entry_points.txt").write_text(f"[empathy_webhooks]\n{name} = {module}\n")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    _distribution(tmp_path, "current", PLUGIN_API_VERSION)
    _distribution(tmp_path, "future", "2.0")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


ONLY_OURS = {"EMPATHY_WEBHOOKS_LOAD_PLUGINS": "current,future"}


def test_the_core_declares_its_plugin_api_version() -> None:
    assert PLUGIN_API_VERSION == "1.2"
    assert plugin_api.PLUGIN_API_ATTRIBUTE == "PLUGIN_API"


def test_an_incompatible_plugin_is_refused_at_start_up_naming_both_versions(site: Path) -> None:
    pm = build_plugin_manager(env=ONLY_OURS)
    assert pm.has_plugin("current")
    assert not pm.has_plugin("future")
    [error] = pm.load_errors
    assert (error.name, error.distribution) == ("future", "future")
    assert error.error == (
        "PluginVersionError: plugin 'future' needs plugin API 2.0, but this core provides "
        "plugin API 1.2: upgrade empathy-webhooks-core"
    )


def test_strict_start_up_raises_instead(site: Path) -> None:
    with pytest.raises(
        PluginVersionError, match=r"needs plugin API 2\.0.*provides plugin API 1\.2"
    ):
        build_plugin_manager(env=ONLY_OURS, strict=True)


def test_a_configuration_naming_the_refused_plugins_type_says_why(site: Path) -> None:
    pm = build_plugin_manager(env=ONLY_OURS)
    tables = [{"type": "future", "name": "f", "url": "https://example.com/f"}]
    with pytest.raises(ConfigError) as caught:
        parse_config({"webhooks": tables}, env={}, plugin_manager=pm)
    assert "needs plugin API 2.0, but this core provides plugin API 1.2" in str(caught.value)
    config = parse_config(
        {"webhooks": [{"type": "current", "name": "c", "url": "https://example.com/c"}]},
        env={},
        plugin_manager=pm,
    )
    assert [w.name for w in config.webhooks] == ["c"]


def test_a_plugin_object_passed_by_the_host_is_checked_too() -> None:
    class Future:
        PLUGIN_API = "1.7"
        __name__ = "host_plugin"

    with pytest.raises(PluginVersionError) as caught:
        build_plugin_manager(load_entry_points=False, extra_plugins=[Future()])
    assert str(caught.value) == (
        "plugin 'host_plugin' needs plugin API 1.7, but this core provides plugin API 1.2: "
        "upgrade empathy-webhooks-core"
    )


@pytest.mark.parametrize(
    ("wanted", "core", "refused"),
    [
        (None, "1.3", None),
        ("1.0", "1.3", None),
        ("1.3", "1.3", None),
        ("1.4", "1.3", "needs plugin API 1.4, but this core provides plugin API 1.3: upgrade"),
        ("2.0", "1.3", "needs plugin API 2.0, but this core provides plugin API 1.3: upgrade"),
        (
            "1.3",
            "2.0",
            "needs plugin API 1.3, but this core provides plugin API 2.0: install a release "
            "of 'acme' written for plugin API 2.x",
        ),
        ("1", "1.3", "declares PLUGIN_API = '1', which is not a \"MAJOR.MINOR\" version"),
        (1.0, "1.3", 'declares PLUGIN_API = 1.0, which is not a "MAJOR.MINOR" version'),
    ],
)
def test_compatibility_rule(wanted: object, core: str, refused: str | None) -> None:
    """Same major, and a minor no newer than the core's: a minor version only adds names."""

    class Plugin:
        PLUGIN_API = wanted

    problem = api_version_problem(Plugin, "acme", core)
    if refused is None:
        assert problem is None
    else:
        assert problem is not None
        assert refused in problem


def test_every_first_party_plugin_and_the_scaffold_declare_the_version(tmp_path: Path) -> None:
    from empathy_webhooks_core import scaffold

    modules = [
        "empathy_webhooks_datadog",
        "empathy_webhooks_discord",
        "empathy_webhooks_email",
        "empathy_webhooks_github",
        "empathy_webhooks_grafana",
        "empathy_webhooks_jira",
        "empathy_webhooks_pagerduty",
        "empathy_webhooks_redis",
        "empathy_webhooks_slack",
        "empathy_webhooks_teams",
        "empathy_webhooks_ntfy",
    ]
    for name in modules:
        assert importlib.import_module(name).PLUGIN_API == PLUGIN_API_VERSION, name
    folder = scaffold.create_plugin("acme", tmp_path)
    init = (folder / "empathy_webhooks_acme" / "__init__.py").read_text(encoding="utf-8")
    assert f'PLUGIN_API = "{PLUGIN_API_VERSION}"' in init


def test_a_deprecated_name_still_works_and_warns_once_per_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """How a name leaves the plugin API: it keeps working for at least one minor version and
    says what replaces it and when it goes."""
    monkeypatch.setitem(plugin_api._DEPRECATED, "old_truncate", ("truncate", "1.2"))
    with pytest.warns(DeprecationWarning) as caught:
        old = plugin_api.old_truncate
    assert old is plugin_api.truncate
    assert str(caught[0].message) == (
        "empathy_webhooks_core.plugin.old_truncate is deprecated and will be removed in plugin "
        "API 1.2; use empathy_webhooks_core.plugin.truncate"
    )
    assert caught[0].filename == __file__  # points at the plugin's line, not the core's
    with pytest.raises(AttributeError, match="no attribute 'never_was'"):
        _ = plugin_api.never_was


def test_the_namespace_has_nothing_deprecated_at_1_0() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in plugin_api.__all__:
            getattr(plugin_api, name)
    assert plugin_api._DEPRECATED == {}
