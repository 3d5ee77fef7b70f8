"""Generate `docs/hooks.md` from the hook specifications' docstrings.

The hook reference is the docstrings of `empathy_webhooks_core.hookspecs`, rendered as
Markdown; `tests/test_hookspec_docs.py` fails when the file and the docstrings drift apart::

    python -m empathy_webhooks_core.testing.hookdocs docs/hooks.md     # write it
    python -m empathy_webhooks_core.testing.hookdocs --check docs/hooks.md
"""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["hookspec_functions", "main", "render_markdown"]

_ROLE = re.compile(r":(?:func|class|meth|attr|mod|data|exc):`~?([^`]+)`")
_FIELD = re.compile(r"^:(param|return|returns|raises)\s*([^:]*):\s*(.*)$")


def hookspec_functions(module: ModuleType | None = None) -> list[Callable[..., Any]]:
    """The module's hook specifications, in the order they are written."""
    if module is None:
        from .. import hookspecs as module
    marker = "empathy_webhooks_spec"
    return [
        value
        for value in vars(module).values()
        if inspect.isfunction(value) and hasattr(value, marker)
    ]


def _roles(text: str) -> str:
    """Sphinx roles to code spans: ``:class:`~pkg.Webhook``` -> `Webhook`."""
    return _ROLE.sub(lambda m: f"`{m.group(1).rsplit('.', 1)[-1]}`", text)


def _docstring(text: str) -> str:
    """A reST docstring as Markdown: field lists become bullets, `::` blocks code blocks."""
    out: list[str] = []
    lines = _roles(inspect.cleandoc(text)).replace("``", "`").splitlines()
    in_code = False
    in_fields = False
    for line in lines:
        if in_code:
            if line and not line.startswith("    "):
                while out and not out[-1]:
                    out.pop()
                out += ["```", ""]
                in_code = False
            else:
                if line or out[-1] != "```":
                    out.append(line[4:])
                continue
        field = _FIELD.match(line)
        if field:
            kind, name, rest = field.groups()
            if not in_fields and out and out[-1]:
                out.append("")
            in_fields = True
            label = {"param": f"`{name.strip()}`", "raises": "raises"}.get(kind, "returns")
            out.append(f"- **{label}**: {rest}")
            continue
        if in_fields and line.startswith("    "):
            out[-1] += " " + line.strip()
            continue
        in_fields = False
        if line.rstrip().endswith("::"):
            out += [line.rstrip()[:-1], "", "```"]
            in_code = True
            continue
        out.append(line)
    if in_code:
        while out and not out[-1]:
            out.pop()
        out.append("```")
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip()


def _options(function: Callable[..., Any]) -> str:
    options = getattr(function, "empathy_webhooks_spec", {}) or {}
    notes = []
    if options.get("firstresult"):
        notes.append("first non-None result wins (`firstresult`)")
    else:
        notes.append("every implementation is called")
    return "; ".join(notes)


def render_markdown(module: ModuleType | None = None) -> str:
    """The whole hook reference as Markdown."""
    if module is None:
        from .. import hookspecs as module
    parts = [
        "# Hook reference",
        "",
        "<!-- Generated from empathy_webhooks_core/hookspecs.py by "
        "`python -m empathy_webhooks_core.testing.hookdocs docs/hooks.md`; do not edit. -->",
        "",
        _docstring(module.__doc__ or ""),
        "",
        "| hook | called |",
        "|---|---|",
    ]
    functions = hookspec_functions(module)
    for function in functions:
        parts.append(f"| [`{function.__name__}`](#{function.__name__}) | {_options(function)} |")
    for function in functions:
        signature = str(inspect.signature(function)).replace("'", "")
        parts += [
            "",
            f"## {function.__name__}",
            "",
            "```python",
            f"def {function.__name__}{signature}",
            "```",
            "",
            f"*{_options(function)[0].upper()}{_options(function)[1:]}.*",
            "",
            _docstring(function.__doc__ or ""),
        ]
    return "\n".join(parts).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    check = "--check" in args
    paths = [a for a in args if a != "--check"]
    text = render_markdown()
    if not paths:
        sys.stdout.write(text)
        return 0
    path = Path(paths[0])
    if check:
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            print(f"{path} is out of date; run: python -m {__spec__.name} {path}", file=sys.stderr)
            return 1
        return 0
    path.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
