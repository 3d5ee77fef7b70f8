"""One private cattrs converter: dicts and TOML tables into option objects, with errors that
name their exact place (`retry_policy.max_retries: expected an integer, got 'three'`)."""

from __future__ import annotations

import difflib
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.errors import ForbiddenExtraKeysError

__all__ = ["ConfigError", "closest", "converter", "did_you_mean", "structure"]

T = TypeVar("T")


class ConfigError(ValueError):
    """Configuration that cannot be used. `problems` holds one line per mistake; `warnings`
    what was found besides that is allowed but probably not meant."""

    def __init__(self, problems: list[str], warnings: list[str] | None = None) -> None:
        self.problems = problems
        self.warnings = warnings or []
        super().__init__("\n".join(problems))


def closest(word: str, choices: Any) -> str | None:
    """The one of `choices` that `word` most likely meant, or None."""
    names = [str(choice) for choice in choices]
    close = difflib.get_close_matches(word, names, n=1)
    if close:
        return close[0]
    if len(word) >= 3:
        # A shortened name (`repo` for `repository`, `retry` for `retry_policy`) is too far
        # from the whole for difflib; the one name it begins is what was meant.
        starting = [name for name in names if name.lower().startswith(word.lower())]
        if len(starting) == 1:
            return starting[0]
    return None


def did_you_mean(word: str, choices: Any) -> str:
    """` (did you mean 'x'?)` for the choice `word` most likely meant, or nothing."""
    close = closest(word, choices)
    return f" (did you mean {close!r}?)" if close is not None else ""


def _describe(value: Any) -> str:
    return f"{value!r}" if isinstance(value, str) else f"{value!r} ({type(value).__name__})"


class WrongType(TypeError):
    """A value of another type than expected. `label` and `value` let a reader describe a
    credential's mistake by its kind only (a header `X-Api-Key = 1234` in a file)."""

    def __init__(self, label: str, value: Any) -> None:
        super().__init__(f"expected {label}, got {_describe(value)}")
        self.label = label
        self.value = value


def _strict(kind: type, label: str, accept: tuple[type, ...]) -> Any:
    def hook(value: Any, _: Any) -> Any:
        if isinstance(value, bool) and kind is not bool:
            raise WrongType(label, value)
        if not isinstance(value, accept):
            raise WrongType(label, value)
        return kind(value)

    return hook


converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
converter.register_structure_hook(int, _strict(int, "an integer", (int,)))
converter.register_structure_hook(float, _strict(float, "a number", (int, float)))
converter.register_structure_hook(bool, _strict(bool, "true or false", (bool,)))
converter.register_structure_hook(str, _strict(str, "a string", (str,)))


def _format(exc: BaseException, type_: Any) -> str:
    if isinstance(exc, ForbiddenExtraKeysError):
        known = [field.name for field in attrs.fields(exc.cl)] if attrs.has(exc.cl) else []
        return "; ".join(
            f"unknown key {key!r}{did_you_mean(key, known)}" for key in sorted(exc.extra_fields)
        )
    if isinstance(exc, KeyError):
        return "required key is missing"
    if isinstance(exc, TypeError) and str(exc).endswith("object is not iterable"):
        # A list's place holding one value (`tokens = 5`): Python's words, not the file's.
        return "expected a list"
    return str(exc)


def _split(line: str, path: str) -> str:
    message, _, where = line.rpartition(" @ ")
    where = where.removeprefix("$").lstrip(".")
    if path and where.startswith(path) is False:
        where = f"{path}.{where}" if where else path
    return f"{where}: {message}" if where else message


def structure(value: Any, cls: type[T], *, path: str = "") -> T:
    """Build `cls` from plain data, or raise `ConfigError` listing every problem with its path."""
    if attrs.has(cls) and not isinstance(value, dict):
        where = f"{path}: " if path else ""
        raise ConfigError([f"{where}expected a table of options, got {_describe(value)}"])
    try:
        return converter.structure(value, cls)
    except (cattrs.BaseValidationError, ForbiddenExtraKeysError) as exc:
        lines = cattrs.transform_error(exc, path="$", format_exception=_format)
        raise ConfigError([_split(line, path) for line in lines]) from None
    except (TypeError, ValueError) as exc:
        raise ConfigError([str(exc)]) from None
