"""Plugin discovery: entry points found at start-up, broken ones reported and skipped."""

from __future__ import annotations

from pathlib import Path

import pytest

from empathy_webhooks_core import WebhookDispatcher
from empathy_webhooks_core.plugins import Hooks, build_plugin_manager, plugin_infos
from empathy_webhooks_core.testing import Receiver

from ._plugin_dist import install_distribution

ACME = """
from typing import ClassVar

import attrs

from empathy_webhooks_core import OutgoingRequest, Webhook, hookimpl


@attrs.frozen(kw_only=True, eq=False)
class AcmeWebhook(Webhook):
    kind: ClassVar[str] = "acme"
    url: str


@hookimpl
def webhook_types():
    return {"acme": AcmeWebhook}


@hookimpl
def format_payload(webhook, event):
    return OutgoingRequest.json(webhook.url, {"acme": event.event_type, "id": event.event_id})
"""


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    install_distribution(tmp_path, "acme", "acme_plugin", ACME)
    install_distribution(tmp_path, "broken", "broken_plugin", "raise ImportError('needs libfoo')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


async def test_an_installed_plugin_is_discovered_and_delivers(site: Path) -> None:
    pm = build_plugin_manager(env={})
    assert pm.has_plugin("acme")
    acme_class = Hooks(pm).webhook_types()["acme"]
    async with Receiver() as receiver:
        webhook = acme_class(url=receiver.url("/acme"))  # type: ignore[call-arg]
        assert webhook.name == "acme_webhook"
        async with WebhookDispatcher(webhooks=[webhook], plugin_manager=pm) as dispatcher:
            event = await dispatcher.emit("pattern_discovered", {"pattern": "x"})
        assert receiver.requests[0].json() == {"acme": "pattern_discovered", "id": event.event_id}
    [info] = [i for i in plugin_infos(pm) if i.name == "acme"]
    assert (info.distribution, info.version, info.webhook_types) == ("acme", "1.0", ("acme",))


def test_a_broken_plugin_is_reported_by_name_and_skipped(site: Path) -> None:
    pm = build_plugin_manager(env={})
    [error] = [e for e in pm.load_errors if e.name == "broken"]
    assert error.distribution == "broken"
    assert error.error == "ImportError: needs libfoo"
    assert pm.has_plugin("acme")
    with pytest.raises(ImportError, match="needs libfoo"):
        build_plugin_manager(env={}, strict=True)


def test_the_environment_variable_limits_what_loads(site: Path) -> None:
    only_acme = build_plugin_manager(env={"EMPATHY_WEBHOOKS_LOAD_PLUGINS": "acme"})
    assert only_acme.has_plugin("acme")
    assert only_acme.load_errors == []
    core = {name for name, _ in build_plugin_manager(load_entry_points=False).list_name_plugin()}
    assert {"http (core)", "custom (core)"} <= core
    names = {name for name, _ in only_acme.list_name_plugin()}
    assert names == {"acme", *core}
    none = build_plugin_manager(env={"EMPATHY_WEBHOOKS_LOAD_PLUGINS": ""})
    assert {name for name, _ in none.list_name_plugin()} == core
    assert set(Hooks(none).webhook_types()) == {"custom"}


def test_the_core_defaults_are_plugins_too() -> None:
    pm = build_plugin_manager(load_entry_points=False)
    infos = {i.name: i for i in plugin_infos(pm)}
    assert infos["http (core)"].hooks == ("classify_response", "deliver")
    assert infos["custom (core)"].webhook_types == ("custom",)


def test_importing_the_package_loads_no_plugin() -> None:
    import subprocess
    import sys

    code = (
        "import sys, empathy_webhooks_core;"
        "assert 'aiohttp' not in sys.modules and 'pluggy' not in sys.modules;"
        "import empathy_webhooks_core.plugins as p;"
        "assert p._pm is None;"
        "assert not [m for m in sys.modules if m.startswith('empathy_webhooks_') and "
        "not m.startswith('empathy_webhooks_core')], sorted(sys.modules);"
        "from empathy_webhooks_core import CustomWebhook, WebhookDispatcher;"
        "assert 'aiohttp' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_plugin_manager_has_one_hooks_facade_renewed_when_a_plugin_registers() -> None:
    import attrs

    from empathy_webhooks_core import Webhook, hookimpl
    from empathy_webhooks_core.plugins import hooks_for

    pm = build_plugin_manager(load_entry_points=False)
    first = hooks_for(pm)
    assert hooks_for(pm) is first  # one facade, so one cache of webhook types
    assert "late" not in first.webhook_types()

    @attrs.frozen(kw_only=True, eq=False)
    class LateWebhook(Webhook):
        url: str

    class Late:
        @hookimpl
        def webhook_types(self) -> dict[str, type[Webhook]]:
            return {"late": LateWebhook}

    pm.register(Late(), name="late")
    assert hooks_for(pm).webhook_types()["late"] is LateWebhook
