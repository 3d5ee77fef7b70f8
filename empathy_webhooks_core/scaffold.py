"""`empathy-webhooks new-plugin NAME`: write a working plugin distribution with its tests.

The result has the shape every plugin has (pyproject with the entry point, a package with the
webhook class and its hook implementations, `py.typed`, a README, tests including the
conformance suite). It renders a plain JSON message to an HTTP endpoint with a bearer token;
the author changes `format.py` to speak their service's language.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from string import Template

from empathy_webhooks_core._contract import PLUGIN_API_VERSION
from empathy_webhooks_core._version import compatible_range

__all__ = ["create_plugin", "main", "plugin_names"]

_NAME = re.compile(r"[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*")


def plugin_names(name: str) -> dict[str, str]:
    """Every spelling of a plugin's name: `my-service` -> distribution
    `empathy-webhooks-my-service`, package `empathy_webhooks_my_service`, entry point and
    type `my_service`, class `MyServiceWebhook`."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            f"plugin name {name!r} must be lower-case letters and digits, words joined by "
            "'-' or '_', starting with a letter (for example 'acme' or 'my-service')"
        )
    ident = name.replace("-", "_")
    return {
        "name": ident,
        "dist": f"empathy-webhooks-{ident.replace('_', '-')}",
        "package": f"empathy_webhooks_{ident}",
        "cls": "".join(part.capitalize() for part in ident.split("_")) + "Webhook",
        "title": " ".join(part.capitalize() for part in ident.split("_")),
    }


_PYPROJECT = """\
[build-system]
requires = ["setuptools>=77"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "$title target for empathy-webhooks."
readme = "README.md"
requires-python = ">=3.11"
license = "MIT"
dependencies = ["empathy-webhooks-core$core_range"]

[project.optional-dependencies]
test = ["pytest>=8", "pytest-asyncio>=0.23", "hypothesis>=6.100"]

[project.entry-points.empathy_webhooks]
$name = "$package"

[tool.setuptools]
# The package sits at the project's top level: saying so keeps `pip install -e` quiet.
package-dir = { "" = "." }

[tool.setuptools.packages.find]
include = ["${package}*"]

[tool.setuptools.package-data]
"*" = ["py.typed"]

[tool.pytest.ini_options]
asyncio_mode = "auto"
asyncio_default_fixture_loop_scope = "function"

[tool.ruff]
line-length = 100
target-version = "py311"

[tool.ruff.lint]
select = ["E", "F", "W", "I", "B", "UP", "S", "ASYNC", "RUF"]
ignore = ["S101"]

[tool.ruff.lint.per-file-ignores]
"tests/**" = ["S"]
"""

_INIT = '''\
"""$title: Empathy Framework events delivered to $title.

The module is the plugin: its `@hookimpl` functions are found through the entry point
`$name = "$package"` in the `empathy_webhooks` group.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import attrs
from empathy_webhooks_core.plugin import (
    Event,
    OutgoingRequest,
    Webhook,
    apply_template,
    check_url,
    hookimpl,
    secret_field,
)

from .format import TEXT_LIMIT, TITLE_LIMIT, build_payload

#: The plugin API this plugin is written for: the core refuses it, saying why, if it cannot
#: keep that promise.
PLUGIN_API = "$api"

__all__ = ["TEXT_LIMIT", "TITLE_LIMIT", "$cls", "build_payload"]


@attrs.frozen(kw_only=True, eq=False)
class $cls(Webhook):
    """Posts a JSON message to a $title endpoint."""

    kind: ClassVar[str] = "$name"

    url: str = attrs.field(validator=lambda _, __, value: check_url(value))
    # A declared credential: the core masks it in reprs, logs, errors, dead letters and CLI
    # output. (A chat webhook whose URL is itself the credential: subclass SecretUrlWebhook.)
    token: str | None = secret_field(default=None)


@hookimpl
def webhook_types() -> Mapping[str, type[Webhook]]:
    return {"$name": $cls}


@hookimpl
def format_payload(webhook: $cls, event: Event) -> OutgoingRequest:
    # The core calls this only for this plugin's own webhooks (the type it registered
    # above, and subclasses): no isinstance check.
    # The user's template: a dict merged over the payload, a string as its text.
    payload = apply_template(webhook, event, build_payload(event), text=lambda t: {"text": t})
    headers = {"Authorization": f"Bearer {webhook.token}"} if webhook.token else {}
    return OutgoingRequest.json(webhook.url, payload, headers=headers)
'''

_FORMAT = '''\
"""Event -> $title message, within the service's limits."""

from __future__ import annotations

from typing import Any

from empathy_webhooks_core.plugin import Event, event_title, first_text, severity_of, truncate

__all__ = ["TEXT_LIMIT", "TITLE_LIMIT", "build_payload"]

#: Set these to the service's documented limits: cut, never refused.
TITLE_LIMIT = 150
TEXT_LIMIT = 4000


def build_payload(event: Event) -> dict[str, Any]:
    """The JSON body for one event. Pure: no I/O, no clock."""
    text = first_text(event.data, "description", "message", "prediction", "details") or ""
    return {
        "title": truncate(" ".join(event_title(event).split()), TITLE_LIMIT),
        "text": truncate(text, TEXT_LIMIT),
        "severity": severity_of(event).name.lower(),
        "event_type": event.event_type,
        "event_id": event.event_id,
    }
'''

_README = """\
# $dist

Deliver Empathy Framework events to $title with
[empathy-webhooks](https://pypi.org/project/empathy-webhooks-core/).

```
pip install $dist
```

```python
import os
from empathy_webhooks_core import WebhookDispatcher
from $package import $cls

webhook = $cls(url=os.environ["${NAME}_URL"], token=os.environ.get("${NAME}_TOKEN"))

async with WebhookDispatcher(webhooks=[webhook]) as dispatcher:
    await dispatcher.emit("bug_detected", {"title": "Null dereference", "file": "cart.py"})
```

In a configuration file the type is `$name`.

## What arrives

```json
{"title": "Null dereference in cart.py", "text": "", "severity": "medium",
 "event_type": "bug_detected", "event_id": "evt_..."}
```

## Development

```
pip install -e ".[test]"
pytest
```

`tests/test_conformance.py` runs the core's conformance suite against `$cls`.
"""

_TEST_PLUGIN = '''\
"""$title: what the service receives, through a real dispatcher and a loopback receiver."""

from __future__ import annotations

import importlib.metadata

import pytest
from empathy_webhooks_core import Event, WebhookDispatcher, render_request
from empathy_webhooks_core.plugins import build_plugin_manager
from empathy_webhooks_core.testing import Receiver, assert_header, assert_sent_json

import $package
from $package import $cls

EVENT = Event(
    event_type="bug_detected",
    event_id="evt_scaffold",
    data={"title": "Null dereference", "file": "cart.py", "description": "cart is None"},
)
EXPECTED = {
    "title": "Null dereference in cart.py",
    "text": "cart is None",
    "severity": "medium",
    "event_type": "bug_detected",
    "event_id": "evt_scaffold",
}


def plugin_manager():
    """This plugin alone (with the core's defaults), installed or not."""
    return build_plugin_manager(
        load_entry_points=False,
        extra_plugins=[$package],
    )


def test_renders_the_message() -> None:
    webhook = $cls(url="https://example.com/hook")
    request = render_request(webhook, EVENT, plugin_manager=plugin_manager())
    assert request.json_body() == EXPECTED


def test_token_stays_out_of_repr() -> None:
    webhook = $cls(url="https://example.com/hook", token="s3cr3t-token")
    assert "s3cr3t-token" not in repr(webhook)


async def test_delivers_to_the_service() -> None:
    async with Receiver() as receiver:
        webhook = $cls(url=receiver.url("/hook"), token="s3cr3t-token")
        pm = plugin_manager()
        async with WebhookDispatcher([webhook], plugin_manager=pm) as dispatcher:
            await dispatcher.emit_event(EVENT)
        assert_sent_json(receiver, EXPECTED)
        assert_header(receiver, "Authorization", "Bearer s3cr3t-token")


def test_entry_point_loads() -> None:
    try:
        dist = importlib.metadata.distribution("$dist")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("not installed: pip install -e .")
    (entry,) = [ep for ep in dist.entry_points if ep.group == "empathy_webhooks"]
    assert entry.load() is $package
'''

_TEST_CONFORMANCE = '''\
"""$title passes the conformance suite every plugin runs."""

from __future__ import annotations

import json

from empathy_webhooks_core import OutgoingRequest, Webhook
from empathy_webhooks_core.testing.conformance import WebhookConformance

import $package
from $package import TEXT_LIMIT, TITLE_LIMIT, $cls

TOKEN = "conformance-token-0123456789"


class Test${cls}Conformance(WebhookConformance):
    plugin = $package
    secrets = (TOKEN,)

    def make_webhook(self, url: str) -> Webhook:
        return $cls(url=url, token=TOKEN)

    def check_limits(self, request: OutgoingRequest, webhook: Webhook) -> None:
        super().check_limits(request, webhook)
        body = json.loads(request.body)
        assert len(body["title"]) <= TITLE_LIMIT
        assert len(body["text"]) <= TEXT_LIMIT
'''


def create_plugin(name: str, dest: Path) -> Path:
    """Write the distribution `empathy-webhooks-<name>/` under `dest` and return its path.

    Refuses to write over an existing directory.
    """
    names = plugin_names(name)
    root = Path(dest) / names["dist"]
    if root.exists():
        raise FileExistsError(f"{root} already exists; choose another name or destination")
    package = root / names["package"]
    files = {
        root / "pyproject.toml": _PYPROJECT,
        root / "README.md": _README,
        package / "__init__.py": _INIT,
        package / "format.py": _FORMAT,
        package / "py.typed": "",
        root / "tests" / f"test_{names['name']}.py": _TEST_PLUGIN,
        root / "tests" / "test_conformance.py": _TEST_CONFORMANCE,
    }
    # The core's semver-compatible range, not an open `>=`: a breaking core must not install
    # under a plugin written against this one.
    values = {
        **names,
        "NAME": names["name"].upper(),
        "core_range": compatible_range(),
        "api": PLUGIN_API_VERSION,
    }
    for path, template in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(template).substitute(values), encoding="utf-8")
    return root


def main(argv: list[str] | None = None) -> int:
    """`python -m empathy_webhooks_core.scaffold NAME [DEST]` (the CLI's `new-plugin`)."""
    args = sys.argv[1:] if argv is None else argv
    if not args or len(args) > 2 or args[0] in ("-h", "--help"):
        print("usage: python -m empathy_webhooks_core.scaffold NAME [DEST]", file=sys.stderr)
        return 2
    try:
        root = create_plugin(args[0], Path(args[1] if len(args) > 1 else "."))
    except (ValueError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"created {root}\nnext: cd {root} && pip install -e '.[test]' && pytest")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
