"""`${NAME}` expansion: configuration values from the environment, secrets kept out of files.

`${NAME}` (or `${NAME:-default}`) in any string, however deeply nested, is replaced from the
environment; `$${` stands for a literal `${`. A missing variable is a problem naming the
variable and its place, never a value, and every value that came from the environment is
hidden from error text.

Anything else that starts with `${` (`${ NAME }`, `${NAME`, `${env:NAME}`, the shell's
`${NAME-default}`) is a problem too: kept as written, `signing_secret = "${ SECRET }"` would
sign with those eleven characters. A shell-style `$NAME` is not expanded either: in a
credential's place (`signing_secret`, a token, an `Authorization` header) it is a problem for
the same reason, elsewhere a warning.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..converter import ConfigError
from ..redaction import is_secret_name
from ._problems import _join, _Problems

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_ENV = re.compile(
    r"\$\$\{"  # the escape: a literal "${"
    rf"|\$\{{({_NAME})(?::-([^}}]*))?\}}"  # a reference, with its default
    r"|\$\{[^}\n]{0,64}\}?"  # any other "${...": not a reference
    r"|(?<![\w$])\$([A-Z][A-Z0-9_]+)\b"  # a shell-style $NAME, which is not expanded
)
#: Places whose last key names a credential (`is_secret_name`), and a few the redaction's
#: header names do not cover.
_CREDENTIAL_PLACE = re.compile(r"(^|_)(secret|token|password|credential|webhook_url)$", re.I)


def expand_env(
    value: Any,
    env: Mapping[str, str],
    path: str = "",
    problems: _Problems | None = None,
) -> Any:
    """`value` with `${NAME}` (or `${NAME:-default}`) replaced from `env` in every string,
    however deeply nested; `$${` stands for a literal `${`. Keys are never expanded.

    A missing variable is a problem naming the variable and the place, never a value; so is
    a `${` that does not start a reference, and a shell-style `$NAME` in a credential's
    place (elsewhere it is a warning, kept in `problems.warnings`).
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


def credential_place(path: str) -> bool:
    """Whether the place `path` (`webhooks[0].headers.Authorization`) holds a credential,
    judged by its last key."""
    key = re.sub(r"(\[\d+\])+$", "", path).rpartition(".")[2]
    return bool(key) and (is_secret_name(key) or bool(_CREDENTIAL_PLACE.search(key)))


def _expand_string(text: str, env: Mapping[str, str], path: str, problems: _Problems) -> str:
    if "$" not in text:
        return text
    before = len(problems.lines)

    def replace(match: re.Match[str]) -> str:
        whole = match.group(0)
        if whole == "$${":
            return "${"
        bare = match.group(3)
        if bare is not None:
            message = (
                f"environment variable {bare} is written the shell's way, which is not "
                f"expanded: write ${{{bare}}}"
            )
            if credential_place(path):
                problems.add(path, message)
            else:
                problems.warn(path, f"{message} (it is kept as written)")
            return whole
        name, default = match.group(1), match.group(2)
        if name is None:
            # Never the text itself in a credential's place: it may be the credential.
            shown = "" if credential_place(path) else f" {whole!r}"
            problems.add(
                path,
                f"a ${{ that is not a reference{shown}: write ${{NAME}} or "
                "${NAME:-default} (NAME of letters, digits and _), or $${ for a literal ${",
            )
            return whole
        if default is not None and "${" in default:
            problems.add(
                path, f"the default of ${{{name}:-...}} holds a ${{: defaults are not expanded"
            )
            return whole
        found = env.get(name)
        if found is None or (found == "" and default is not None):
            if default is not None:
                return default
            problems.add(path, f"environment variable {name} is not set")
            return ""
        if not found.strip() and path.rpartition(".")[2].lower().endswith("url"):
            # `?token=${RELAY_TOKEN}` set to "" made a URL that parses and every request to
            # which is refused (a blank credential field is refused where it is judged).
            problems.warn(path, f"environment variable {name} is set but empty")
        if found:
            problems.secrets.add(found)
            problems.from_env.append((path, found))
        return found

    expanded = _ENV.sub(replace, text)
    if len(problems.lines) > before:
        # Reported here: the place is not judged again with a value that is not the one meant.
        problems.unset.add(path)
    return expanded
