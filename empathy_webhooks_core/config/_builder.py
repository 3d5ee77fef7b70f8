"""Webhooks (and their option objects) built from configuration tables, every problem
collected in one pass with its exact place; unknown keys and types get a did-you-mean.

Error text never shows a secret: values that came from the environment and values of
credential fields are hidden.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import attrs

from ..converter import ConfigError, did_you_mean, structure
from ..webhooks import Webhook
from ._problems import _MISSING, _join, _kind, _Problems
from .filters import _compile_filter

_SECRET_NAME = re.compile(
    r"(secret|token|password|passwd|api[_-]?key|app[_-]?key|authorization|routing[_-]?key"
    r"|credential|webhook_url)",
    re.IGNORECASE,
)
_HIDDEN = "(value hidden)"


def _is_secret(field: attrs.Attribute[Any], cls: type | None = None) -> bool:
    from ..redaction import is_secret_field

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
        if kind is None and "url" in table and "custom" in self.types:
            # A bare URL: a generic webhook, which a URL naming a service (hooks.slack.com)
            # turns into that service's webhook when it joins a dispatcher (claims.py).
            return self.build(self.types["custom"], table, path)
        if kind == "custom" and "raw" not in table:
            # Written out, "custom" means the generic envelope, whatever the URL names.
            table = {**table, "raw": True}
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
