"""The plugin API version: what the core promises plugins, and what a plugin says it needs.

A plugin module declares `PLUGIN_API = "1.2"` (the version of the contract it was written
against; see docs/writing-plugins.md). The core refuses, at start-up, a plugin whose major
version differs from the core's, or whose minor version is newer than the core's (it may use
names this core lacks). A plugin that declares nothing is loaded as before.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["PLUGIN_API_ATTRIBUTE", "PLUGIN_API_VERSION", "api_version_problem"]

#: The version of the plugin contract (the names of `empathy_webhooks_core.plugin`, the hooks
#: and their parameters). A minor release adds; only a major release removes or changes.
PLUGIN_API_VERSION = "1.2"
#: The module attribute by which a plugin declares the contract version it needs.
PLUGIN_API_ATTRIBUTE = "PLUGIN_API"

_VERSION = re.compile(r"(\d+)\.(\d+)")


def _parse(version: str) -> tuple[int, int] | None:
    match = _VERSION.fullmatch(version.strip())
    return (int(match[1]), int(match[2])) if match else None


def api_version_problem(plugin: Any, name: str, core: str = PLUGIN_API_VERSION) -> str | None:
    """Why the core cannot load `plugin` (named `name`) under its contract version `core`, or
    None when it can (or the plugin declares no version)."""
    wanted = getattr(plugin, PLUGIN_API_ATTRIBUTE, None)
    if wanted is None:
        return None
    parsed = _parse(wanted) if isinstance(wanted, str) else None
    if parsed is None:
        return (
            f"plugin {name!r} declares {PLUGIN_API_ATTRIBUTE} = {wanted!r}, which is not a "
            f'"MAJOR.MINOR" version; this core provides plugin API {core}'
        )
    have = _parse(core)
    assert have is not None  # the core's own constant
    if parsed[0] != have[0] or parsed[1] > have[1]:
        hint = (
            "upgrade empathy-webhooks-core"
            if parsed > have
            else f"install a release of {name!r} written for plugin API {have[0]}.x"
        )
        return (
            f"plugin {name!r} needs plugin API {wanted}, but this core provides plugin API "
            f"{core}: {hint}"
        )
    return None
