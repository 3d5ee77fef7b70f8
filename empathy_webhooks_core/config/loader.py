"""Loading: a `webhooks.toml` (or a dict of the same shape) into a `Config` of webhooks and
the store URL, every problem reported at once with its place."""

from __future__ import annotations

import json
import os
import re
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from ..converter import ConfigError, did_you_mean
from ..plugins import get_plugin_manager, hooks_for
from ..redaction import declare_secret_values
from ..webhooks import Webhook
from ._problems import _join, _kind, _Problems
from .env import expand_env
from .serve import ServeConfig, parse_serve
from .webhook_tables import WebhookTables

if typing.TYPE_CHECKING:
    import pluggy

TOP_LEVEL_KEYS = ("store", "webhooks", "serve")
#: A header of a webhook table (or of a fallback table inside it): `webhooks[0].headers.X`,
#: `webhooks[1].fallback.extra_headers.X`.
_HEADER_PLACE = re.compile(r"webhooks\[(\d+)\](?:\.fallback)*\.(?:\w+_)?headers\.")
#: How deeply a configuration may nest (tables, inline tables, arrays). A real one uses a
#: handful of levels; a limit keeps a pathological file a clear error, not a RecursionError.
MAX_CONFIG_DEPTH = 64


@attrs.frozen(kw_only=True)
class Config:
    """A loaded configuration: the webhooks, ready for a dispatcher, and the store URL."""

    webhooks: tuple[Webhook, ...]
    store: str | None = None
    source: str | None = None
    #: `[serve]`: the gateway's settings (`empathy-webhooks serve`), None when absent.
    serve: ServeConfig | None = None
    #: What is allowed but probably not meant, one line each with its place (an event type
    #: one letter off a known one, no webhooks at all); secrets masked.
    warnings: tuple[str, ...] = ()

    def webhook(self, name: str) -> Webhook:
        for webhook in self.webhooks:
            if webhook.name == name:
                return webhook
        known = ", ".join(w.name for w in self.webhooks) or "none"
        raise KeyError(f"no webhook named {name!r} in the configuration (known: {known})")


def parse_config(
    data: Mapping[str, Any],
    *,
    env: Mapping[str, str] | None = None,
    plugin_manager: pluggy.PluginManager | None = None,
    source: str | None = None,
) -> Config:
    """Build a `Config` from already parsed TOML (or any dict of the same shape).

    Raises `ConfigError` whose `problems` list every mistake, each with its place.
    """

    deep = _too_deep(data)
    if deep is not None:
        raise ConfigError([f"{deep}: nested more than {MAX_CONFIG_DEPTH} levels deep"])
    pm = plugin_manager or get_plugin_manager()
    problems = _Problems()
    raw_serve = data.get("serve")
    data = expand_env(dict(data), os.environ if env is None else env, "", problems)
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            problems.add("", f"unknown top-level key {key!r}{did_you_mean(key, TOP_LEVEL_KEYS)}")
    store = data.get("store")
    if store is not None and not isinstance(store, str):
        problems.add("store", f"expected a URL string (sqlite:///outbox.db), got {_kind(store)}")
        store = None
    elif store is not None:
        # Not a cycle: the stores (about 13 ms) load only for a configuration that names one,
        # so every CLI command on a configuration without `store` starts without them.
        from ..stores import store_url_problem

        problem = store_url_problem(store, hooks_for(pm).store_backends(), pm)
        if problem is not None:
            problems.add("store", problem)
    raw = data.get("webhooks", [])
    if isinstance(raw, Mapping):
        problems.add("webhooks", "expected a list of tables: write [[webhooks]], not [webhooks]")
        raw = []
    elif not isinstance(raw, list):
        problems.add("webhooks", f"expected a list of [[webhooks]] tables, got {_kind(raw)}")
        raw = []
    tables = WebhookTables(hooks_for(pm).webhook_types(), pm, problems)
    webhooks: list[Webhook] = []
    seen: dict[str, int] = {}
    for index, table in enumerate(raw):
        path = f"webhooks[{index}]"
        webhook = tables.webhook_at(table, path)
        if webhook is None:
            continue
        if webhook.name in seen:
            problems.add(
                _join(path, "name"),
                f"{webhook.name!r} is already the name of webhooks[{seen[webhook.name]}]; "
                "give each webhook a distinct name",
            )
            continue
        seen[webhook.name] = index
        webhooks.append(webhook)
        _declare_env_headers(webhook, index, problems)
    for name, where in tables.fallback_names:
        if name not in seen:
            known = ", ".join(seen) or "none"
            problems.add(
                where,
                f"no webhook named {name!r}{did_you_mean(name, seen)} (webhooks: {known})",
            )
    if not problems.lines:
        _check_fallbacks(webhooks, problems)
    if not raw and not problems.lines:
        problems.warn("webhooks", "no [[webhooks]] tables: no event will be sent anywhere")
    serve = parse_serve(raw_serve, data.get("serve"), problems)
    if problems.lines:
        raise ConfigError(problems.redacted(), problems.redacted(problems.warnings))
    return Config(
        webhooks=tuple(webhooks),
        store=store,
        source=source,
        serve=serve,
        warnings=tuple(problems.redacted(problems.warnings)),
    )


def _declare_env_headers(webhook: Webhook, index: int, problems: _Problems) -> None:
    """Header values taken from the environment are credentials whatever the header's name
    (`X-Routing = "${ROUTING_KEY}"`): declared on the webhook and its fallback tables, so
    they are masked wherever request headers are shown or kept (attempt records, dead
    letters, `render`, logs), as `Authorization`'s are."""
    values = [
        value
        for place, value in problems.from_env
        if (found := _HEADER_PLACE.match(place)) is not None
        and int(found.group(1)) == index
        and _may_be_credential(value)
    ]
    if not values:
        return
    target: Webhook | str | None = webhook
    while isinstance(target, Webhook):
        declare_secret_values(target, values)
        target = target.fallback


def _may_be_credential(value: str) -> bool:
    """Whether a header value from the environment may be a credential: long (12 characters
    or more), or 8 or more holding letters and digits. A declared value is masked wherever it
    shows, in every log line and output: a short word (`X-Env = "${STAGE}"`, `prod`) was
    masked inside the webhook's name and the event's text too, garbling every line."""
    if len(value) >= 12:
        return True
    return (
        len(value) >= 8
        and any(char.isdigit() for char in value)
        and any(char.isalpha() for char in value)
    )


def _check_fallbacks(webhooks: list[Webhook], problems: _Problems) -> None:
    """Every fallback leads somewhere that ends. A fallback table named as another webhook
    would hand failures to that other one (the dispatcher knows webhooks by name), and a
    chain that comes back to where it started would send a failed event around forever."""
    places: dict[str, str] = {}
    follows: dict[str, str] = {}
    for index, top in enumerate(webhooks):
        places[top.name] = f"webhooks[{index}]"
    for index, top in enumerate(webhooks):
        webhook, path = top, f"webhooks[{index}]"
        while webhook.fallback is not None:
            fallback, where = webhook.fallback, _join(path, "fallback")
            name = fallback if isinstance(fallback, str) else fallback.name
            if name == webhook.name:
                problems.add(where, f"{name!r} is this webhook itself; a fallback is another one")
                break
            follows[webhook.name] = name
            if isinstance(fallback, str):
                break
            if name in places:
                problems.add(
                    _join(where, "name"),
                    f"{name!r} is already the name of {places[name]}, which would receive the "
                    "failures instead of this table; give the fallback table its own name (or "
                    f'name the one meant: fallback = "{name}")',
                )
                break
            places[name] = where
            webhook, path = fallback, where
    reported: set[str] = set()
    for start in places:
        chain = [start]
        while chain[-1] in follows and follows[chain[-1]] not in chain:
            chain.append(follows[chain[-1]])
        loop = follows.get(chain[-1])
        if loop is None or loop in reported:
            continue
        cycle = chain[chain.index(loop) :]
        reported.update(cycle)
        problems.add(
            _join(places[cycle[0]], "fallback"),
            f"the fallbacks go round in a circle ({' -> '.join([*cycle, cycle[0]])}): an event "
            "that fails at each would be sent around forever; end the chain with a webhook "
            "that has no fallback",
        )


def load_config(
    path: str | os.PathLike[str],
    *,
    env: Mapping[str, str] | None = None,
    plugin_manager: pluggy.PluginManager | None = None,
) -> Config:
    """Read and build a `webhooks.toml` (or a `.json` file of the same shape). Raises
    `ConfigError` (one line per problem)."""
    file = Path(path)
    try:
        # utf-8-sig: a byte order mark (some Windows editors write one) is not TOML's error.
        text = file.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError([f"{file}: no such configuration file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{file}: cannot read it ({type(exc).__name__}: {exc})"]) from None
    if file.suffix.lower() == ".json":
        return parse_config(
            _json_tables(text, file), env=env, plugin_manager=plugin_manager, source=str(file)
        )
    line = _too_deep_line(text)
    if line is not None:
        raise ConfigError(
            [
                f"{file}, line {line}: nested more than {MAX_CONFIG_DEPTH} levels deep (arrays "
                "and inline tables inside each other); a configuration needs a few"
            ]
        )
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{file}: not valid TOML: {exc}"]) from None
    except RecursionError:  # our scan above missed a way to nest: still one clear line
        raise ConfigError([f"{file}: nested too deeply to read"]) from None
    return parse_config(data, env=env, plugin_manager=plugin_manager, source=str(file))


def _json_tables(text: str, file: Path) -> dict[str, Any]:
    """A `.json` configuration: the same shape as the TOML file. What JSON allows and TOML
    does not is refused, as TOML refuses it: a key given twice (`json` keeps the last one
    without a word, so the first `signing_secret` would vanish), NaN and infinities."""

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        table: dict[str, Any] = {}
        for key, value in pairs:
            if key in table:
                raise ValueError(f"the key {key!r} is given twice in one object")
            table[key] = value
        return table

    def no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not a number a configuration may hold")

    try:
        data = json.loads(text, object_pairs_hook=unique, parse_constant=no_constant)
    except json.JSONDecodeError as exc:
        raise ConfigError([f"{file}: not valid JSON: {exc}"]) from None
    except ValueError as exc:
        raise ConfigError([f"{file}: {exc}"]) from None
    except RecursionError:
        raise ConfigError([f"{file}: nested too deeply to read"]) from None
    if not isinstance(data, dict):
        raise ConfigError([f"{file}: expected a JSON object at the top, got {_kind(data)}"])
    return data


def _too_deep(data: Any) -> str | None:
    """The path of the first place nested deeper than `MAX_CONFIG_DEPTH`, found without
    recursion (so a dict built in code cannot make expansion hit the recursion limit)."""
    stack: list[tuple[Any, str, int]] = [(data, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, Mapping | list):
            if depth >= MAX_CONFIG_DEPTH:
                return _shown_path(path) or "(top level)"
            items = value.items() if isinstance(value, Mapping) else enumerate(value)
            for key, item in items:
                where = f"{path}[{key}]" if isinstance(value, list) else _join(path, str(key))
                stack.append((item, where, depth + 1))
    return None


def _shown_path(path: str) -> str:
    return path if len(path) <= 200 else f"{path[:90]}…{path[-90:]}"


def _too_deep_line(text: str) -> int | None:
    """The line where `[`/`{` nesting first passes `MAX_CONFIG_DEPTH` in TOML text, skipping
    strings and comments; None when it never does. tomllib recurses per level, so this is
    checked before parsing (and table headers such as `[a.b.c]` do not nest this way)."""
    depth = 0
    line = 1
    index = 0
    in_value = False  # brackets at the start of a line are table headers, not nesting
    length = len(text)
    while index < length:
        char = text[index]
        if char == "\n":
            line += 1
            if depth == 0:
                in_value = False
        elif char == "#":
            end = text.find("\n", index)
            index = length if end < 0 else end
            continue
        elif char in "\"'":
            quote = text[index : index + 3] if text[index : index + 3] in ('"""', "'''") else char
            index += len(quote)
            while index < length and not text.startswith(quote, index):
                if text[index] == "\\" and quote[0] == '"':
                    index += 1
                elif text[index] == "\n":
                    line += 1
                index += 1
            index += len(quote)
            continue
        elif char == "=":
            in_value = True
        elif in_value and char in "[{":
            depth += 1
            if depth > MAX_CONFIG_DEPTH:
                return line
        elif in_value and char in "]}":
            depth = max(0, depth - 1)
        index += 1
    return None
