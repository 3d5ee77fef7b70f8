"""What the configuration modules share: the list of problems found so far (with the secret
values no line may show), how a place is named, and how a wrong value is described."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

#: A value that is not there (a missing event field, a rejected option): never a valid value.
_MISSING = object()


def _at_or_under(path: str, place: str) -> bool:
    """Whether `path` is `place` or inside it (`a.b`, `a[0]` are under `a`)."""
    return path == place or path.startswith((f"{place}.", f"{place}["))


class _Problems:
    """Problems found so far, and the secret values no problem line may show."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        #: What `add` recorded, as (place, message): for a caller that places it further.
        self.placed: list[tuple[str, str]] = []
        self.secrets: set[str] = set()
        #: Every value taken from the environment, with its place (`webhooks[0].headers.X`).
        self.from_env: list[tuple[str, str]] = []
        # Places whose `${...}` could not be expanded: already reported, so not judged again.
        self.unset: set[str] = set()
        #: What is allowed but probably not meant (a filter that can never match): said,
        #: never refused.
        self.warnings: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.lines.append(f"{path}: {message}" if path else message)
        self.placed.append((path, message))

    def extend(self, lines: Iterable[str]) -> None:
        self.lines.extend(lines)

    def warn(self, path: str, message: str) -> None:
        line = f"{path}: {message}" if path else message
        if line not in self.warnings:
            self.warnings.append(line)

    def redacted(self, lines: Iterable[str] | None = None) -> list[str]:
        """The problem lines (or `lines`) with every secret value seen masked."""
        # Longest first, so a secret containing another is masked whole.
        secrets = sorted((s for s in self.secrets if len(s) >= 3), key=len, reverse=True)
        out = []
        for line in self.lines if lines is None else lines:
            for secret in secrets:
                line = line.replace(repr(secret), "***").replace(secret, "***")
            out.append(line)
        return out


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else str(key)


def _kind(value: Any) -> str:
    """A value's kind for error text: never the value itself (it may be a secret)."""
    if isinstance(value, bool):
        return "true or false"
    if value is None:
        return "null"
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
