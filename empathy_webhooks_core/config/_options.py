"""Option tables into attrs objects with the project's cattrs converter, every field judged.

cattrs structures a table field by field and keeps every field's exception (detailed
validation). The hooks here add what a configuration file needs on top of that:

- each field's own converter and validator run as soon as the field is structured, so a
  table with three mistakes reports three (the class's `__init__` stops at the first);
- unknown keys and `Literal` choices get a did-you-mean;
- a credential field's value is never echoed: a wrong-typed one is described by its kind,
  and every string a credential field holds is handed to `remember_secret`, so that the
  reader can keep it out of every problem line.

Each class's exception group is walked into `Problem`s placed relative to its table, in
the order the table wrote its keys, and raised as one `Invalid`.
"""

from __future__ import annotations

import collections.abc
import re
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal

import attrs
from cattrs.errors import (
    BaseValidationError,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
)
from cattrs.gen import make_dict_structure_fn_from_attrs, override

from ..converter import ConfigError, WrongType, closest, converter, did_you_mean
from ..redaction import is_secret_field, is_secret_name
from ._problems import _join, _kind

__all__ = ["Invalid", "OptionTables", "Problem", "under"]

_SECRET_NAME = re.compile(
    r"(secret|token|password|passwd|api[_-]?key|app[_-]?key|authorization|routing[_-]?key"
    r"|credential|webhook_url)",
    re.IGNORECASE,
)
_HIDDEN = "(value hidden)"
_UnionType = type(int | None)
_SEQUENCES = (tuple, list, frozenset, set, collections.abc.Sequence, collections.abc.Set)
_MAPPINGS = (dict, collections.abc.Mapping)
Hook = Callable[[Any, Any], Any]


@attrs.frozen
class Problem:
    """One mistake, placed relative to the table being structured."""

    path: str
    message: str
    #: Found by the class's own check once every field passed (its `__init__`), so it may
    #: be a consequence of any field rather than of the one it names.
    whole: bool = False


class Invalid(Exception):
    """A value that cannot be structured, with every problem found in it."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p.path}: {p.message}" for p in problems))

    @classmethod
    def one(cls, message: str) -> Invalid:
        return cls([Problem("", message)])


def under(base: str, path: str) -> str:
    """`path` (relative) placed under `base`."""
    if not path:
        return base
    return f"{base}{path}" if path.startswith("[") or not base else _join(base, path)


def is_secret(field: attrs.Attribute[Any], cls: type | None = None) -> bool:
    return (
        field.repr is False
        or is_secret_field(field, cls)
        or bool(_SECRET_NAME.search(field.alias or field.name))
    )


def key_of(field: attrs.Attribute[Any]) -> str:
    return field.alias or field.name


class OptionTables:
    """A copy of the project's converter whose attrs classes are structured field by field.

    Each class's structuring function is generated once and kept for the process, so a hook
    holds no state of one configuration: `remember_secret` is how a credential field's
    string is handed to whoever reads the configuration now. Subclasses change how one
    field's value is built by overriding `builder`.
    """

    def __init__(self, remember_secret: Callable[[str], None]) -> None:
        self.remember_secret = remember_secret
        self.converter = converter.copy()
        self.converter.register_structure_hook_factory(attrs.has, self._class_hook)

    def structure(self, table: Any, cls: type) -> Any:
        """`cls` from `table`, or `Invalid` with every problem placed relative to it."""
        return self.converter.structure(table, cls)

    def _class_hook(self, cls: type) -> Hook:
        hints = _type_hints(cls)
        fields = [f for f in attrs.fields(cls) if f.init]
        overrides: dict[str, Any] = {
            f.name: override(struct_hook=self._field_hook(cls, f, hints.get(f.name, f.type)))
            for f in fields
        }
        try:
            # From the fields themselves: every field has its own hook, so no annotation
            # needs resolving (a plugin's may not resolve at all), nor a generic's parameters.
            generated: Hook = make_dict_structure_fn_from_attrs(
                list(attrs.fields(cls)),
                cls,
                self.converter,
                {p.__name__: Any for p in getattr(cls, "__parameters__", ())},
                _cattrs_forbid_extra_keys=True,
                _cattrs_detailed_validation=True,
                _cattrs_use_alias=True,
                **overrides,
            )
        except Exception as exc:  # a class cattrs cannot handle: one line, not a traceback
            unreadable = f"{cls.__name__} cannot be read from a table ({type(exc).__name__}: {exc})"

            def refuse(table: Any, _: Any) -> Any:
                raise Invalid.one(unreadable)

            return refuse

        # The option tables inside this one (`retry_policy`): an unknown key that is one of
        # their fields (`timeout_seconds` beside `url`) is answered with where it belongs.
        nested = {
            key_of(f): inner
            for f in fields
            if attrs.has(inner := _optional(hints.get(f.name, f.type))) and isinstance(inner, type)
        }

        def structure(table: Any, _: Any) -> Any:
            if not isinstance(table, Mapping):
                raise Invalid.one(f"expected a table of options, got {_kind(table)}")
            try:
                return generated(table, cls)
            except ClassValidationError as exc:
                raise Invalid(_class_problems(exc, fields, list(table), nested)) from None

        return structure

    def _field_hook(self, cls: type, field: attrs.Attribute[Any], tp: Any) -> Hook:
        secret = is_secret(field, cls)
        build = self.builder(cls, field, tp, secret)

        def hook(value: Any, _: Any) -> Any:
            if secret and isinstance(value, str):
                self.remember_secret(value)
            built = build(value)
            _check(field, built)
            return built

        return hook

    def builder(
        self, cls: type, field: attrs.Attribute[Any], tp: Any, secret: bool
    ) -> Callable[[Any], Any]:
        """How a field's value is built from what the file wrote, before its own converter
        and validator judge it."""
        return lambda value: self.value(tp, value, secret=secret)

    def value(self, tp: Any, value: Any, *, secret: bool = False) -> Any:
        inner = _optional(tp)
        if value is None:
            return None  # the field's own validator says whether None is allowed
        if attrs.has(inner):
            if isinstance(value, inner | bool):
                # `circuit_breaker = false`: the field's own converter knows what a bool means.
                return value
            return self.converter.structure(value, inner)
        if typing.get_origin(inner) is Literal:
            return _choice(typing.get_args(inner), value, secret)
        if inner is Any or isinstance(inner, str) or inner is object:
            return value
        origin = typing.get_origin(inner)
        if origin in (tuple, list, frozenset, set, typing.Sequence) and (isinstance(value, str)):
            value = [value]
        # Said here, in the file's words: iterating would say "'int' object is not iterable".
        if origin in _SEQUENCES and not isinstance(value, list | tuple):
            raise Invalid.one(f"expected a list, got {_kind(value)}")
        if origin in _MAPPINGS and not isinstance(value, Mapping):
            raise Invalid.one(f"expected a table, got {_kind(value)}")
        if secret and inner in (str, int, float, bool):
            if not isinstance(value, inner) or isinstance(value, bool) is not (inner is bool):
                raise Invalid.one(f"expected {_kind(inner())}, got {_kind(value)} {_HIDDEN}")
            return value
        try:
            return self.converter.structure(value, inner)
        except (BaseValidationError, ForbiddenExtraKeysError, Invalid, TypeError, ValueError):
            raise
        except Exception:
            # A type the converter does not know (a callable, a union of classes): the
            # class's own converter and validator judge the value.
            return value


def _choice(choices: tuple[Any, ...], value: Any, secret: bool) -> Any:
    if value in choices:
        return value
    listed = ", ".join(repr(c) for c in choices)
    got = _kind(value) if secret or not isinstance(value, str) else repr(value)
    hint = did_you_mean(value, choices) if isinstance(value, str) else ""
    raise Invalid.one(f"expected one of {listed}, got {got}{hint}")


def _check(field: attrs.Attribute[Any], value: Any) -> None:
    """Run the field's converter and validator now, so every field's mistake is reported
    (the class's `__init__` would stop at the first)."""
    try:
        converted = field.converter(value) if callable(field.converter) else value
        if field.validator is not None:
            field.validator(None, field, converted)
    except ConfigError:
        raise  # the options' own coercion: places named from the class down
    except (TypeError, ValueError) as exc:
        raise Invalid.one(_without_name(str(exc), key_of(field))) from None
    except Exception:  # noqa: S110 - a validator that needs the instance: __init__ checks it
        pass


def _without_name(message: str, name: str) -> str:
    return message[len(name) + 1 :] if message.startswith(f"{name} ") else message


def _class_problems(
    exc: ClassValidationError,
    fields: list[attrs.Attribute[Any]],
    keys: list[Any],
    nested: Mapping[str, type] | None = None,
) -> list[Problem]:
    """Every problem cattrs gathered for one table, in the order the table wrote its keys
    (missing keys after them, then what the class's own check found)."""
    by_name = {f.name: f for f in fields}
    ranked: list[tuple[int, Problem]] = []
    last = len(keys)

    def rank(key: str) -> int:
        return keys.index(key) if key in keys else last

    noted, other = exc.group_exceptions()
    for sub, note in noted:
        field = by_name.get(note.name)
        key = key_of(field) if field is not None else note.name
        ranked.extend((rank(key), p) for p in _problems_at(sub, key))
    for sub in other:
        if isinstance(sub, ForbiddenExtraKeysError):
            known = [key_of(f) for f in fields if not key_of(f).startswith("_")]
            ranked.extend(
                (rank(k), Problem("", f"unknown key {k!r}{_suggest(str(k), known, nested)}"))
                for k in sub.extra_fields
            )
        elif isinstance(sub, TypeError | ValueError):
            ranked.append((last + 1, _placed(str(sub), [key_of(f) for f in fields])))
        else:  # a plugin's class that fails otherwise: still one line
            ranked.append((last + 1, Problem("", f"{type(sub).__name__}: {sub}", whole=True)))
    ranked.sort(key=lambda item: item[0])
    return [problem for _, problem in ranked]


def _suggest(key: str, known: list[str], nested: Mapping[str, type] | None) -> str:
    """A did-you-mean among the table's own keys, else among the fields of the option
    tables inside it (`timeout` beside `url` belongs in `retry_policy`)."""
    here = did_you_mean(key, known)
    if here or not nested:
        return here
    for table, option_class in nested.items():
        inner = [key_of(f) for f in attrs.fields(option_class) if f.init]
        meant = closest(key, inner)
        if meant is not None:
            return f" (did you mean {table}.{meant}? write {table} = {{ {meant} = ... }})"
    return ""


def _placed(message: str, names: list[str]) -> Problem:
    """Attach the class's message (`max_retries must be ...`) to the field it names."""
    for name in sorted(names, key=len, reverse=True):
        if message.startswith(f"{name} "):
            return Problem(name, message[len(name) + 1 :], whole=True)
    return Problem("", message, whole=True)


def _problems_at(exc: BaseException, path: str) -> list[Problem]:
    """What one field's (or one item's) exception says, placed under `path`."""
    if isinstance(exc, Invalid):
        return [Problem(under(path, p.path), p.message) for p in exc.problems]
    if isinstance(exc, ConfigError):
        # Lines named from the class down (`retry_policy.max_retries: ...`).
        parent = path.rpartition(".")[0]
        return [_split(line, parent) for line in exc.problems]
    if isinstance(exc, IterableValidationError):
        noted, other = exc.group_exceptions()
        found = [
            p
            for sub, note in noted
            for p in _problems_at(_hidden(sub, note.index), f"{path}[{note.index!r}]")
        ]
        return found + [Problem(path, str(sub)) for sub in other]
    if isinstance(exc, KeyError):
        return [Problem(path, "required key is missing")]
    return [Problem(path, str(exc))]


def _hidden(exc: BaseException, key: Any) -> BaseException:
    """A wrong value under a credential's name (a header `X-Api-Key = 1234`), described by its
    kind only, as a credential field's is."""
    if isinstance(exc, WrongType) and isinstance(key, str) and is_secret_name(key):
        return Invalid.one(f"expected {exc.label}, got {_kind(exc.value)} {_HIDDEN}")
    return exc


def _split(line: str, parent: str) -> Problem:
    where, sep, message = line.partition(": ")
    if not sep or " " in where:
        return Problem(parent, line)
    return Problem(under(parent, where), message)


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
