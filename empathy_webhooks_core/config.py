"""Configuration files: `webhooks.toml` into webhook objects.

A file holds an optional `store` URL and one `[[webhooks]]` table per webhook::

    store = "sqlite:///outbox.db"

    [[webhooks]]
    type = "slack"                          # any installed plugin's webhook type
    name = "team_alerts"                    # optional; defaults to "<type>_webhook"
    webhook_url = "${SLACK_WEBHOOK_URL}"    # ${NAME} comes from the environment
    events = ["prediction", "alert"]
    filter = { severity = { gte = "high" }, data = { confidence = { gte = 0.8 } } }
    retry_policy = { max_retries = 5, initial_delay_seconds = 1 }
    rate_limit = { max_requests_per_minute = 60 }

Every other key of a webhook table is a field of its type's class. Every problem is reported
at once, each with its exact place (`webhooks[2].retry_policy.max_retries: expected an
integer, got 'three'`); unknown keys and types get a did-you-mean. Error text never shows
a secret: values that came from the environment and values of credential fields are hidden.

Declarative filters (what the reference writes as `filter=lambda event: ...`): a table whose
keys are event fields (`event_type`, `severity`, `classification`, `user_id`,
`empathy_level`), `data` and `metadata` (tables of dotted paths into the event's data,
`"context.environment"`), and `any` (a list of filter tables, one of which must pass). All
conditions must pass. A condition is a value (equals), a list (one of), or a table of
operators: `eq`, `ne`, `in`, `not_in`, `gt`, `gte`, `lt`, `lte`, `exists`. For `severity`,
equality is case-insensitive and `gt`/`gte`/`lt`/`lte` compare ranks (info < low < medium <
high < critical) as the plugins read them, so `severity = { gte = "high" }` passes high and
critical events (and, without an explicit severity, security and compliance findings).
A value that is missing or of another kind fails a comparison instead of raising.
"""

from __future__ import annotations

import operator
import os
import re
import tomllib
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import attrs

from .converter import ConfigError, did_you_mean, structure
from .events import Event
from .formatting import Severity, severity_of
from .webhooks import Webhook

if typing.TYPE_CHECKING:
    import pluggy

__all__ = [
    "Config",
    "ConfigError",
    "EventFilter",
    "compile_filter",
    "expand_env",
    "load_config",
    "parse_config",
]

TOP_LEVEL_KEYS = ("store", "webhooks")
#: How deeply a configuration may nest (tables, inline tables, arrays). A real one uses a
#: handful of levels; a limit keeps a pathological file a clear error, not a RecursionError.
MAX_CONFIG_DEPTH = 64
_ENV = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SECRET_NAME = re.compile(
    r"(secret|token|password|passwd|api[_-]?key|app[_-]?key|authorization|routing[_-]?key"
    r"|credential|webhook_url)",
    re.IGNORECASE,
)
_HIDDEN = "(value hidden)"


@attrs.frozen(kw_only=True)
class Config:
    """A loaded configuration: the webhooks, ready for a dispatcher, and the store URL."""

    webhooks: tuple[Webhook, ...]
    store: str | None = None
    source: str | None = None

    def webhook(self, name: str) -> Webhook:
        for webhook in self.webhooks:
            if webhook.name == name:
                return webhook
        known = ", ".join(w.name for w in self.webhooks) or "none"
        raise KeyError(f"no webhook named {name!r} in the configuration (known: {known})")


# -- ${ENV} expansion ------------------------------------------------------------------------


class _Problems:
    """Problems found so far, and the secret values no problem line may show."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.secrets: set[str] = set()
        # Places whose variable is missing: already reported, so not judged again.
        self.unset: set[str] = set()

    def add(self, path: str, message: str) -> None:
        self.lines.append(f"{path}: {message}" if path else message)

    def extend(self, lines: Iterable[str]) -> None:
        self.lines.extend(lines)

    def redacted(self) -> list[str]:
        # Longest first, so a secret containing another is masked whole.
        secrets = sorted((s for s in self.secrets if len(s) >= 3), key=len, reverse=True)
        out = []
        for line in self.lines:
            for secret in secrets:
                line = line.replace(repr(secret), "***").replace(secret, "***")
            out.append(line)
        return out


def expand_env(
    value: Any,
    env: Mapping[str, str],
    path: str = "",
    problems: _Problems | None = None,
) -> Any:
    """`value` with `${NAME}` (or `${NAME:-default}`) replaced from `env` in every string,
    however deeply nested; `$${` stands for a literal `${`. Keys are never expanded.

    A missing variable is a problem naming the variable and the place, never a value.
    """
    own = problems is None
    problems = problems if problems is not None else _Problems()
    if isinstance(value, str):
        result: Any = _expand_string(value, env, path, problems)
    elif isinstance(value, Mapping):
        result = {
            key: expand_env(item, env, _join(path, key), problems) for key, item in value.items()
        }
    elif isinstance(value, list):
        result = [expand_env(item, env, f"{path}[{i}]", problems) for i, item in enumerate(value)]
    else:
        result = value
    if own and problems.lines:
        raise ConfigError(problems.redacted())
    return result


def _expand_string(text: str, env: Mapping[str, str], path: str, problems: _Problems) -> str:
    if "$" not in text:
        return text

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name, default = match.group(1), match.group(2)
        found = env.get(name)
        if found is None or (found == "" and default is not None):
            if default is not None:
                return default
            problems.add(path, f"environment variable {name} is not set")
            problems.unset.add(path)
            return ""
        problems.secrets.add(found)
        return found

    return _ENV.sub(replace, text)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else str(key)


# -- declarative filters ---------------------------------------------------------------------

_EVENT_FIELDS = ("event_type", "severity", "classification", "user_id", "empathy_level")
_FILTER_KEYS = (*_EVENT_FIELDS, "data", "metadata", "any")
_ORDER_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}
_SYMBOLS = {"eq": "==", "ne": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_OPERATORS = ("eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "exists")
_MISSING = object()
_SEVERITY_RANKS = {level.name.lower(): level for level in Severity}


def _severity_word(event: Event) -> Any:
    for raw in (event.severity, event.data.get("severity")):
        if isinstance(raw, str) and raw.strip():
            return raw.strip().lower()
    return _MISSING


def _dig(mapping: Mapping[str, Any], dotted: str) -> Any:
    value: Any = mapping
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _comparable(a: Any, b: Any) -> bool:
    numbers = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return False
    return (isinstance(a, numbers) and isinstance(b, numbers)) or (
        isinstance(a, str) and isinstance(b, str)
    )


@attrs.frozen
class _Condition:
    """One test on one value of the event."""

    subject: str
    op: str
    operand: Any
    getter: Callable[[Event], Any] = attrs.field(eq=False, repr=False)
    severity: bool = False

    def __call__(self, event: Event) -> bool:
        if self.severity and self.op in _ORDER_OPS:
            # Ranked as the plugins rank it, so an event without a severity gets its type's
            # default (security and compliance findings are high).
            return _ORDER_OPS[self.op](severity_of(event), self.operand)
        value = self.getter(event)
        if self.op == "exists":
            return (value is not _MISSING and value is not None) is self.operand
        if value is _MISSING:
            value = None
        if self.op == "eq":
            return bool(value == self.operand)
        if self.op == "ne":
            return bool(value != self.operand)
        if self.op == "in":
            return value in self.operand
        if self.op == "not_in":
            return value not in self.operand
        if not _comparable(value, self.operand):
            return False
        return _ORDER_OPS[self.op](value, self.operand)

    def describe(self) -> str:
        if self.op == "exists":
            return f"{self.subject} {'exists' if self.operand else 'is absent'}"
        operand = self.operand
        if isinstance(operand, Severity):
            operand = operand.name.lower()
        if self.op in ("in", "not_in"):
            words = "in" if self.op == "in" else "not in"
            return f"{self.subject} {words} {list(operand)!r}"
        return f"{self.subject} {_SYMBOLS[self.op]} {operand!r}"


@attrs.frozen(repr=False)
class EventFilter:
    """A compiled declarative filter: a callable of the event, as `Webhook.filter` expects.

    `all_of` must all pass; then, if `any_of` is not empty, one of its filters must pass.
    """

    all_of: tuple[_Condition, ...] = ()
    any_of: tuple[EventFilter, ...] = ()
    spec: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)

    def __call__(self, event: Event) -> bool:
        if not all(condition(event) for condition in self.all_of):
            return False
        return not self.any_of or any(option(event) for option in self.any_of)

    def describe(self) -> str:
        parts = [condition.describe() for condition in self.all_of]
        if self.any_of:
            options = [option.describe() for option in self.any_of]
            options = [f"({o})" if " and " in o else o for o in options]
            parts.append("(" + " or ".join(options) + ")" if parts else " or ".join(options))
        return " and ".join(parts) or "everything"

    def __str__(self) -> str:
        return self.describe()

    def __repr__(self) -> str:
        return f"EventFilter({self.describe()!r})"


def _field_getter(name: str) -> Callable[[Event], Any]:
    if name == "severity":
        return _severity_word
    return lambda event: getattr(event, name)


def _nested_getter(root: str, dotted: str) -> Callable[[Event], Any]:
    return lambda event: _dig(getattr(event, root), dotted)


def compile_filter(spec: Any, path: str = "filter") -> EventFilter:
    """Compile a declarative filter table (see the module docstring) into an `EventFilter`,
    or raise `ConfigError` listing every mistake with its place."""
    problems = _Problems()
    compiled = _compile_filter(spec, path, problems)
    if problems.lines:
        raise ConfigError(problems.redacted())
    assert compiled is not None
    return compiled


def _compile_filter(spec: Any, path: str, problems: _Problems) -> EventFilter | None:
    if not isinstance(spec, Mapping):
        problems.add(path, f"expected a table of conditions, got {_kind(spec)}")
        return None
    conditions: list[_Condition] = []
    options: list[EventFilter] = []
    for key, value in spec.items():
        where = _join(path, key)
        if key in _EVENT_FIELDS:
            conditions.extend(
                _conditions(key, value, where, _field_getter(key), problems, key == "severity")
            )
        elif key in ("data", "metadata"):
            if not isinstance(value, Mapping) or not value:
                problems.add(where, "expected a table of dotted keys and conditions")
                continue
            for dotted, condition in value.items():
                conditions.extend(
                    _conditions(
                        f"{key}.{dotted}",
                        condition,
                        _join(where, _quote(dotted)),
                        _nested_getter(key, dotted),
                        problems,
                    )
                )
        elif key == "any":
            if not isinstance(value, list) or not value:
                problems.add(where, "expected a list of filter tables")
                continue
            for index, option in enumerate(value):
                built = _compile_filter(option, f"{where}[{index}]", problems)
                if built is not None:
                    options.append(built)
        else:
            problems.add(path, f"unknown filter key {key!r}{did_you_mean(key, _FILTER_KEYS)}")
    return EventFilter(tuple(conditions), tuple(options), dict(spec))


def _quote(key: str) -> str:
    return f'"{key}"' if "." in key else key


def _conditions(
    subject: str,
    value: Any,
    where: str,
    getter: Callable[[Event], Any],
    problems: _Problems,
    severity: bool = False,
) -> list[_Condition]:
    if isinstance(value, Mapping):
        ops = dict(value)
    elif isinstance(value, list):
        ops = {"in": value}
    else:
        ops = {"eq": value}
    if not ops:
        problems.add(where, f"expected a value, a list or a table of operators ({_ops()})")
        return []
    built = []
    for op, operand in ops.items():
        if op not in _OPERATORS:
            problems.add(
                where, f"unknown operator {op!r}{did_you_mean(op, _OPERATORS)}; operators: {_ops()}"
            )
            continue
        checked = _operand(
            op,
            operand,
            f"{where}.{op}" if isinstance(value, Mapping) else where,
            problems,
            severity,
        )
        if checked is not _MISSING:
            built.append(_Condition(subject, op, checked, getter, severity))
    return built


def _ops() -> str:
    return ", ".join(_OPERATORS)


def _operand(op: str, operand: Any, where: str, problems: _Problems, severity: bool) -> Any:
    if op == "exists":
        if not isinstance(operand, bool):
            problems.add(where, f"expected true or false, got {_kind(operand)}")
            return _MISSING
        return operand
    if op in ("in", "not_in"):
        if not isinstance(operand, list):
            problems.add(where, f"expected a list, got {_kind(operand)}")
            return _MISSING
        if severity:
            operand = [o.lower() if isinstance(o, str) else o for o in operand]
        return tuple(operand)
    if isinstance(operand, Mapping | list):
        problems.add(where, f"expected a single value, got {_kind(operand)}")
        return _MISSING
    if severity and isinstance(operand, str):
        if op in _ORDER_OPS:
            rank = _SEVERITY_RANKS.get(operand.strip().lower())
            if rank is None:
                choices = ", ".join(_SEVERITY_RANKS)
                problems.add(
                    where,
                    f"unknown severity {operand!r}{did_you_mean(operand.lower(), _SEVERITY_RANKS)}"
                    f"; severities rank {choices}",
                )
                return _MISSING
            return rank
        return operand.lower()
    if op in _ORDER_OPS and (
        isinstance(operand, bool) or not isinstance(operand, int | float | str)
    ):
        problems.add(where, f"expected a number or a string to compare with, got {_kind(operand)}")
        return _MISSING
    return operand


def _kind(value: Any) -> str:
    """A value's kind for error text: never the value itself (it may be a secret)."""
    if isinstance(value, bool):
        return "true or false"
    names = {
        str: "a string",
        int: "an integer",
        float: "a number",
        list: "a list",
        dict: "a table",
    }
    for kind, name in names.items():
        if isinstance(value, kind):
            return name
    return f"a {type(value).__name__}"


# -- webhooks --------------------------------------------------------------------------------


def _is_secret(field: attrs.Attribute[Any], cls: type | None = None) -> bool:
    from .redaction import is_secret_field

    return (
        field.repr is False
        or is_secret_field(field, cls)
        or bool(_SECRET_NAME.search(field.alias or field.name))
    )


def _type_hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # an annotation we cannot resolve: fall back to the raw strings
        return {f.name: f.type for f in attrs.fields(cls)}


def _optional(tp: Any) -> Any:
    """`X` for `X | None`, else `tp` unchanged."""
    args = typing.get_args(tp)
    if args and type(None) in args and typing.get_origin(tp) in (typing.Union, _UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return tp


_UnionType = type(int | None)


def _is_sequence_type(tp: Any) -> bool:
    return typing.get_origin(tp) in (tuple, list, frozenset, set, typing.Sequence)


class _Builder:
    """Builds webhooks (and their option objects) from tables, collecting every problem."""

    def __init__(self, types: Mapping[str, type[Webhook]], pm: Any, problems: _Problems) -> None:
        self.types = types
        self.pm = pm
        self.problems = problems
        # Fallbacks named by string, checked once every webhook's name is known.
        self.fallback_names: list[tuple[str, str]] = []

    # One attrs object (a webhook, a retry policy, ...) from a table.
    def build(
        self, cls: type, table: Mapping[str, Any], path: str, skip: Iterable[str] = ()
    ) -> Any:
        fields = {f.alias or f.name: f for f in attrs.fields(cls) if f.init}
        hints = _type_hints(cls)
        kwargs: dict[str, Any] = {}
        before = len(self.problems.lines)
        skipped = set(skip)
        unset = False
        for key, value in table.items():
            if key in skipped:
                continue
            field = fields.get(key)
            if field is None:
                known = [name for name in fields if not name.startswith("_")]
                self.problems.add(path, f"unknown key {key!r}{did_you_mean(key, known)}")
                continue
            where = _join(path, key)
            if any(
                p == where or p.startswith((f"{where}.", f"{where}[")) for p in self.problems.unset
            ):
                unset = True
                continue
            if _is_secret(field, cls) and isinstance(value, str):
                self.problems.secrets.add(value)
            built = self.field_value(cls, field, hints.get(field.name, field.type), value, where)
            if built is _MISSING:
                continue
            if self.check_field(field, built, where):
                kwargs[key] = built
        for name, field in fields.items():
            if field.default is attrs.NOTHING and name not in table and not name.startswith("_"):
                self.problems.add(_join(path, name), "required key is missing")
        if unset or len(self.problems.lines) > before:
            return _MISSING
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            self.problems.add(*self._place(path, str(exc), fields))
            return _MISSING
        except Exception as exc:  # a plugin's class that fails otherwise: still one line
            self.problems.add(path, f"{type(exc).__name__}: {exc}")
            return _MISSING

    def _place(self, path: str, message: str, fields: Iterable[str]) -> tuple[str, str]:
        """Attach a validator's message (`max_retries must be ...`) to the field it names."""
        for name in sorted(fields, key=len, reverse=True):
            if message.startswith(f"{name} "):
                return _join(path, name), message[len(name) + 1 :]
        return path, message

    def check_field(self, field: attrs.Attribute[Any], value: Any, where: str) -> bool:
        """Run the field's converter and validator now, so every field's mistake is reported
        (the class's `__init__` would stop at the first)."""
        try:
            converted = field.converter(value) if callable(field.converter) else value
            if field.validator is not None:
                field.validator(None, field, converted)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ConfigError):
                # The options' own coercion names places from the webhook down.
                parent = where.rpartition(".")[0]
                self.problems.extend(
                    f"{parent}.{line}" if parent and not line.startswith(where) else line
                    for line in exc.problems
                )
                return False
            message = str(exc)
            name = field.alias or field.name
            if message.startswith(f"{name} "):
                message = message[len(name) + 1 :]
            self.problems.add(where, message)
            return False
        except Exception:  # noqa: S110 - a validator that needs the instance: __init__ checks it
            pass
        return True

    def field_value(
        self, cls: type, field: attrs.Attribute[Any], tp: Any, value: Any, where: str
    ) -> Any:
        name = field.alias or field.name
        if issubclass(cls, Webhook):
            if name == "filter":
                return self._compile(value, where)
            if name == "on_failure":
                self.problems.add(
                    where,
                    "takes a Python function and cannot be set in a configuration file; "
                    "failed deliveries are kept as dead letters (`empathy-webhooks dead-letters`)",
                )
                return _MISSING
            if name == "fallback":
                return self._fallback(value, where)
            if name == "signing_secret":
                if isinstance(value, str) or (
                    isinstance(value, list) and all(isinstance(v, str) for v in value)
                ):
                    self.problems.secrets.update([value] if isinstance(value, str) else value)
                    return value
                self.problems.add(
                    where, f"expected a string or a list of strings, got {_kind(value)}"
                )
                return _MISSING
        return self.structure(tp, value, where, secret=_is_secret(field, cls))

    def structure(self, tp: Any, value: Any, where: str, *, secret: bool = False) -> Any:
        inner = _optional(tp)
        if value is None:
            return None
        if attrs.has(inner):
            if isinstance(value, inner | bool):
                # `circuit_breaker = false`: the field's own converter knows what a bool means.
                return value
            if not isinstance(value, Mapping):
                self.problems.add(where, f"expected a table of options, got {_kind(value)}")
                return _MISSING
            return self.build(inner, value, where)
        if typing.get_origin(inner) is Literal:
            choices = typing.get_args(inner)
            if value in choices:
                return value
            listed = ", ".join(repr(c) for c in choices)
            got = _kind(value) if secret or not isinstance(value, str) else repr(value)
            hint = did_you_mean(value, choices) if isinstance(value, str) else ""
            self.problems.add(where, f"expected one of {listed}, got {got}{hint}")
            return _MISSING
        if inner is Any or isinstance(inner, str) or inner is object:
            return value
        if _is_sequence_type(inner) and isinstance(value, str):
            value = [value]
        if secret and inner in (str, int, float, bool):
            if not isinstance(value, inner) or isinstance(value, bool) is not (inner is bool):
                self.problems.add(where, f"expected {_kind(inner())}, got {_kind(value)} {_HIDDEN}")
                return _MISSING
            return value
        try:
            return structure(value, inner, path=where)
        except ConfigError as exc:
            self.problems.extend(
                line if line.startswith(where) else f"{where}: {line}" for line in exc.problems
            )
            return _MISSING
        except Exception:
            # A type the converter does not know (a callable, a union of classes): the
            # class's own converter and validator judge the value.
            return value

    def _compile(self, value: Any, where: str) -> Any:
        before = len(self.problems.lines)
        compiled = _compile_filter(value, where, self.problems)
        return compiled if len(self.problems.lines) == before else _MISSING

    def _fallback(self, value: Any, where: str) -> Any:
        if isinstance(value, str):
            self.fallback_names.append((value, where))
            return value
        if isinstance(value, Mapping):
            return self.webhook(value, where)
        self.problems.add(
            where, f"expected a webhook's name or a webhook table, got {_kind(value)}"
        )
        return _MISSING

    def webhook(self, table: Any, path: str) -> Any:
        if not isinstance(table, Mapping):
            self.problems.add(path, f"expected a table of options, got {_kind(table)}")
            return _MISSING
        kind = table.get("type")
        installed = ", ".join(sorted(self.types)) or "none"
        if kind is None:
            self.problems.add(
                _join(path, "type"), f"required key is missing (installed types: {installed})"
            )
            return _MISSING
        if not isinstance(kind, str):
            self.problems.add(_join(path, "type"), f"expected a string, got {_kind(kind)}")
            return _MISSING
        cls = self.types.get(kind)
        if cls is None:
            failed = next((e for e in getattr(self.pm, "load_errors", []) if e.name == kind), None)
            if failed is not None:
                message = (
                    f"the {kind!r} plugin is installed but failed to load ({failed.error}); "
                    f"installed types: {installed}"
                )
            else:
                hint = (
                    self.pm.install_hint(kind)
                    if hasattr(self.pm, "install_hint")
                    else f"pip install empathy-webhooks-{kind}"
                )
                message = (
                    f"unknown webhook type {kind!r}{did_you_mean(kind, self.types)}; "
                    f"installed types: {installed} (a plugin adds its type: {hint})"
                )
            self.problems.add(_join(path, "type"), message)
            return _MISSING
        return self.build(cls, table, path, skip=("type",))


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
    from .plugins import Hooks, get_plugin_manager

    deep = _too_deep(data)
    if deep is not None:
        raise ConfigError([f"{deep}: nested more than {MAX_CONFIG_DEPTH} levels deep"])
    pm = plugin_manager or get_plugin_manager()
    problems = _Problems()
    data = expand_env(dict(data), os.environ if env is None else env, "", problems)
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            problems.add("", f"unknown top-level key {key!r}{did_you_mean(key, TOP_LEVEL_KEYS)}")
    store = data.get("store")
    if store is not None and not isinstance(store, str):
        problems.add("store", f"expected a URL string (sqlite:///outbox.db), got {_kind(store)}")
        store = None
    elif store is not None:
        from .stores import store_url_problem

        problem = store_url_problem(store, Hooks(pm).store_backends(), pm)
        if problem is not None:
            problems.add("store", problem)
    raw = data.get("webhooks", [])
    if isinstance(raw, Mapping):
        problems.add("webhooks", "expected a list of tables: write [[webhooks]], not [webhooks]")
        raw = []
    elif not isinstance(raw, list):
        problems.add("webhooks", f"expected a list of [[webhooks]] tables, got {_kind(raw)}")
        raw = []
    builder = _Builder(Hooks(pm).webhook_types(), pm, problems)
    webhooks: list[Webhook] = []
    seen: dict[str, int] = {}
    for index, table in enumerate(raw):
        path = f"webhooks[{index}]"
        webhook = builder.webhook(table, path)
        if webhook is _MISSING:
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
    for name, where in builder.fallback_names:
        if name not in seen:
            known = ", ".join(seen) or "none"
            problems.add(
                where,
                f"no webhook named {name!r}{did_you_mean(name, seen)} (webhooks: {known})",
            )
    if problems.lines:
        raise ConfigError(problems.redacted())
    return Config(webhooks=tuple(webhooks), store=store, source=source)


def load_config(
    path: str | os.PathLike[str],
    *,
    env: Mapping[str, str] | None = None,
    plugin_manager: pluggy.PluginManager | None = None,
) -> Config:
    """Read and build a `webhooks.toml`. Raises `ConfigError` (one line per problem)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{file}: no such configuration file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{file}: cannot read it ({type(exc).__name__}: {exc})"]) from None
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
