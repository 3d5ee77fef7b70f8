"""`${NAME}` expansion: configuration values from the environment, secrets kept out of files.

`${NAME}` (or `${NAME:-default}`) in any string, however deeply nested, is replaced from the
environment; `$${` stands for a literal `${`. A missing variable is a problem naming the
variable and its place, never a value, and every value that came from the environment is
hidden from error text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..converter import ConfigError
from ._problems import _join, _Problems

_ENV = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


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
