"""`[[webhooks]]` tables into webhooks.

`type` chooses the class (an installed plugin's webhook type, or `custom` for a bare `url`);
the project's cattrs converter then structures the table field by field (`_options.py`),
with hooks for the fields a file writes differently from Python code:

- `filter`: a table of conditions, compiled into an `EventFilter` (`filters.py`);
- `fallback`: another webhook's name (checked once every name is known) or a webhook table;
- `signing_secret`: a string or a list of strings, each remembered as a secret;
- `on_failure`: a Python function, so refused with a pointer to dead letters.

Every problem of every table is collected in one pass, each with its exact place; a place
whose environment variable is unset was already reported and is not judged again.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import attrs

from .._routing import EventMatcher
from ..converter import closest
from ..webhooks import Webhook
from ._options import Invalid, OptionTables, Problem, key_of, under
from ._problems import _at_or_under, _join, _kind, _Problems
from .filters import (
    EventFilter,
    _compile_filter,
    allows_event_types,
    event_type_doubt,
    filter_doubts,
)

__all__ = ["WebhookTables"]

#: The configuration being read in this context: the hooks below are generated once per
#: class for the process, so what belongs to one reading (installed types, secrets seen,
#: problems) is found here rather than held by them.
_reading: ContextVar[WebhookTables] = ContextVar("_reading")

_ON_FAILURE = (
    "takes a Python function and cannot be set in a configuration file; "
    "failed deliveries are kept as dead letters (`empathy-webhooks dead-letters`)"
)


class WebhookTables:
    """Builds webhooks from their tables for one configuration, collecting every problem
    into `problems` (with the secret values no line may show)."""

    def __init__(self, types: Mapping[str, type[Webhook]], pm: Any, problems: _Problems) -> None:
        self.types = types
        self.pm = pm
        self.problems = problems
        #: Fallbacks named by string, checked once every webhook's name is known.
        self.fallback_names: list[tuple[str, str]] = []

    def webhook_at(self, table: Any, path: str) -> Webhook | None:
        """The webhook `table` at `path` describes, or None with its problems reported."""
        webhook: Webhook | None
        try:
            webhook, found = self.webhook(table), []
        except Invalid as exc:
            webhook, found = None, exc.problems
        # Keys holding a place whose variable is unset: already reported, not judged again.
        unset = (
            [_join(path, str(k)) for k in table if self._unset_within(_join(path, str(k)))]
            if isinstance(table, Mapping)
            else []
        )
        for problem in found:
            where = under(path, problem.path)
            if (problem.whole and unset) or any(_at_or_under(where, u) for u in unset):
                continue
            self.problems.add(where, problem.message)
        if isinstance(table, Mapping):
            self._swallowed(table, path)
        if isinstance(table, Mapping) and self._resolves(table):
            self._name_fallbacks(table, path)
        if unset:
            return None
        if webhook is not None:
            self._judge(webhook, path)
        return webhook

    def _swallowed(self, table: Mapping[str, Any], path: str) -> None:
        """A setting of the webhook's found inside one of its free-form tables (`headers`,
        `templates`, a filter's `data`, a plugin's mapping) and missing from the webhook
        itself: in TOML, every key after a `[webhooks.headers]` header belongs to that table
        until the next header, so `signing_secret = ...` written below it became a header
        (sent to the receiver in clear, the requests unsigned), below `[webhooks.templates]`
        a template, below `[webhooks.filter.data]` a condition no event passed. Refused: no
        header, template or data field is meant to share a setting's name and be the only
        place that name is given."""
        try:
            cls, _ = self._class_for(table)
        except Invalid:
            return
        settings = {key_of(field) for field in attrs.fields(cls) if field.init}
        free = {key_of(field) for field in attrs.fields(cls) if field.init and _free_form(field)}
        inner: list[tuple[str, str, Mapping[str, Any]]] = []
        for key, value in table.items():
            if key in free and isinstance(value, Mapping):
                inner.append((key, f"[webhooks.{key}]", value))
            elif key == "filter" and isinstance(value, Mapping):
                for part in ("data", "metadata"):
                    if isinstance(value.get(part), Mapping):
                        inner.append((f"filter.{part}", f"[webhooks.filter.{part}]", value[part]))
        for where, header, mapping in inner:
            for name in mapping:
                if name in settings and name not in table:
                    self.problems.add(
                        _join(_join(path, where), str(name)),
                        f"{name!r} is a setting of the webhook, not part of {where}: in TOML "
                        f"every key written after a {header} header belongs to that table, "
                        f"up to the next header; write {name} above the {header} header (or "
                        f"{where.split('.')[0]} as an inline table)",
                    )

    def _judge(self, webhook: Webhook, path: str) -> None:
        """What only the whole webhook shows. A filter that no subscribed event can pass is
        a problem; an event type or a severity that only looks mistyped, and a rate_limit
        table that limits nothing, are warnings. Down a chain of fallback tables."""
        if any(ord(char) < 0x20 or char == "\x7f" for char in webhook.name):
            # A line break in a name starts a line of its own in every listing and log.
            self.problems.add(
                _join(path, "name"), "must not contain control characters (a line break, a tab)"
            )
        short = [secret for secret in webhook.signing_secret if len(secret) < _SHORT_SECRET]
        if short:
            # Never the secret, nor its length exactly: a hint at what to guess.
            self.problems.warn(
                _join(path, "signing_secret"),
                f"shorter than {_SHORT_SECRET} characters: one captured request lets anyone "
                "try short secrets offline until one matches; use 24 random bytes or more "
                "(python -c 'import secrets; print(secrets.token_urlsafe(32))')",
            )
        if webhook.signing_secret and webhook.sign_payload is False:
            self.problems.warn(
                _join(path, "sign_payload"),
                "false: the signing_secret is set but no request is signed (leave "
                "sign_payload out to sign them)",
            )
        if webhook.rate_limit is not None and not webhook.rate_limit.windows():
            self.problems.warn(
                _join(path, "rate_limit"),
                "no limit given (max_requests_per_second, max_requests_per_minute or "
                "max_requests_per_hour): nothing is limited",
            )
        for name in webhook.events:
            doubt = event_type_doubt(name)
            if doubt:
                self.problems.warn(
                    _join(path, "events"), f"{doubt}; it is kept (any name may be emitted)"
                )
        compiled = webhook.filter
        if isinstance(compiled, EventFilter):
            where = _join(path, "filter")
            for place, message in filter_doubts(compiled):
                self.problems.warn(under(where, place), message)
            if not allows_event_types(compiled, EventMatcher(webhook.events)):
                self.problems.add(
                    where,
                    f"no event can pass it: its event_type conditions allow none of the "
                    f"events the webhook subscribes to ({', '.join(webhook.events)})",
                )
        if isinstance(webhook.fallback, Webhook):
            self._judge(webhook.fallback, _join(path, "fallback"))

    def webhook(self, table: Any) -> Webhook:
        """The webhook a table describes, or `Invalid` with its problems relative to it."""
        cls, table = self._class_for(table)
        with self._reading():
            built: Webhook = _options().structure(table, cls)
        return built

    @contextmanager
    def _reading(self) -> Iterator[None]:
        token = _reading.set(self)
        try:
            yield
        finally:
            _reading.reset(token)

    def _class_for(self, table: Any) -> tuple[type[Webhook], dict[str, Any]]:
        if not isinstance(table, Mapping):
            raise Invalid.one(f"expected a table of options, got {_kind(table)}")
        kind = table.get("type")
        rest = {k: v for k, v in table.items() if k != "type"}
        installed = ", ".join(sorted(self.types)) or "none"
        if kind is None and "url" in table and "custom" in self.types:
            # A bare URL: a generic webhook, which a URL naming a service (hooks.slack.com)
            # turns into that service's webhook when it joins a dispatcher (claims.py).
            return self.types["custom"], rest
        if kind == "custom" and "raw" not in table:
            # Written out, "custom" means the generic envelope, whatever the URL names.
            rest["raw"] = True
        if kind is None:
            raise _at_type(f"required key is missing (installed types: {installed})")
        if not isinstance(kind, str):
            raise _at_type(f"expected a string, got {_kind(kind)}")
        cls = self.types.get(kind)
        if cls is None:
            raise _at_type(self._unknown_type(kind, installed))
        return cls, rest

    def _unknown_type(self, kind: str, installed: str) -> str:
        failed = next((e for e in getattr(self.pm, "load_errors", []) if e.name == kind), None)
        if failed is not None:
            return (
                f"the {kind!r} plugin is installed but failed to load ({failed.error}); "
                f"installed types: {installed}"
            )
        meant = _type_meant(kind, self.types)
        if meant is not None:
            # A typo of an installed type: a package named after the typo would not help.
            return (
                f"unknown webhook type {kind!r} (did you mean {meant!r}?); "
                f"installed types: {installed}"
            )
        # A typo of a plugin that is installed but left out (EMPATHY_WEBHOOKS_LOAD_PLUGINS):
        # answered with that plugin's own hint, not an install line named after the typo.
        meant = _type_meant(
            kind, [name for name in getattr(self.pm, "left_out", []) if name != kind]
        )
        if meant is not None:
            return (
                f"unknown webhook type {kind!r} (did you mean {meant!r}?); installed types: "
                f"{installed} ({meant!r} is a plugin's type: {self._install_hint(meant)})"
            )
        # A typo of one of the project's own plugins, not installed: the real package. An
        # install line named after the typo would send the user to a name anyone may publish.
        meant = _type_meant(kind, [name for name in PUBLISHED_TYPES if name not in self.types])
        if meant is not None and meant != kind:
            return (
                f"unknown webhook type {kind!r} (did you mean {meant!r}?); installed types: "
                f"{installed} ({meant!r} is a plugin's type: {self._install_hint(meant)})"
            )
        if kind in PUBLISHED_TYPES:
            return (
                f"unknown webhook type {kind!r}; installed types: {installed} "
                f"(a plugin adds its type: {self._install_hint(kind)})"
            )
        return (
            f"unknown webhook type {kind!r}; installed types: {installed} (a plugin adds its "
            "type: install the package that provides it; the project's own are "
            f"{', '.join(f'empathy-webhooks-{name}' for name in PUBLISHED_TYPES)})"
        )

    def _install_hint(self, kind: str) -> str:
        if hasattr(self.pm, "install_hint"):
            hint: str = self.pm.install_hint(kind)
            return hint
        return f"pip install empathy-webhooks-{kind}"

    def _resolves(self, table: Mapping[str, Any]) -> bool:
        try:
            self._class_for(table)
        except Invalid:
            return False
        return True

    def _name_fallbacks(self, table: Mapping[str, Any], path: str) -> None:
        """Remember each fallback given by name, down a chain of fallback tables."""
        where = _join(path, "fallback")
        value = table.get("fallback")
        if self._unset_within(where):
            return
        if isinstance(value, str):
            self.fallback_names.append((value, where))
        elif isinstance(value, Mapping) and self._resolves(value):
            self._name_fallbacks(value, where)

    def _unset_within(self, where: str) -> bool:
        return any(_at_or_under(p, where) for p in self.problems.unset)


def _free_form(field: attrs.Attribute[Any]) -> bool:
    """Whether a field holds a mapping of any keys (`headers`, `templates`): its annotation
    as a string (`from __future__ import annotations`, the project's way) or as the type (a
    third party's plugin may write either)."""
    text = str(field.type).replace("typing.", "").replace("collections.abc.", "")
    return text.startswith(("Mapping", "dict", "MutableMapping"))


#: Signing secrets shorter than this are a warning (Standard Webhooks asks for 24 random bytes).
_SHORT_SECRET = 16

#: What the reference's Python names a generic webhook, and what users call one.
_GENERIC = frozenset({"", "config", "custom", "generic", "http", "https"})


#: The webhook types of the plugins this project publishes (`empathy-webhooks-<type>`).
PUBLISHED_TYPES = (
    "slack",
    "teams",
    "discord",
    "jira",
    "github",
    "datadog",
    "pagerduty",
    "grafana",
    "email",
)


def _type_meant(kind: str, types: Iterable[str]) -> str | None:
    """The type `kind` most likely means: a class name as Python code writes it
    (`SlackWebhook`, `WebhookConfig`), a generic word (`http`) for `custom`, or a typo."""
    types = list(types)
    bare = kind.lower().replace("-", "").replace("_", "")
    bare = bare.removesuffix("webhook").removeprefix("webhook")
    if bare in _GENERIC and "custom" in types:
        return "custom"
    by_bare = {name.replace("-", "").replace("_", ""): name for name in types}
    return by_bare.get(bare) or closest(kind, types)


# The fields a file writes differently from Python code.
def _filter(value: Any) -> Any:
    found = _Problems()
    compiled = _compile_filter(value, "", found)
    if found.placed:
        raise Invalid([Problem(path, message) for path, message in found.placed])
    return compiled


def _fallback(value: Any) -> Any:
    if isinstance(value, str):
        return value  # checked once every webhook's name is known
    if isinstance(value, Mapping):
        return _reading.get().webhook(value)
    raise Invalid.one(f"expected a webhook's name or a webhook table, got {_kind(value)}")


def _signing_secret(value: Any) -> Any:
    if isinstance(value, str) or (
        isinstance(value, list) and all(isinstance(v, str) for v in value)
    ):
        secrets = [value] if isinstance(value, str) else value
        _reading.get().problems.secrets.update(secrets)
        if any(not secret.strip() for secret in secrets):
            # `"${SECRET}"` with the variable set to "" (or a space): said as what it
            # most likely is, not as "must be a non-empty string".
            raise Invalid.one(
                "is empty or blank (is its environment variable set?); leave signing_secret "
                "out for unsigned requests"
            )
        return value
    raise Invalid.one(f"expected a string or a list of strings, got {_kind(value)}")


def _on_failure(value: Any) -> Any:
    raise Invalid.one(_ON_FAILURE)


def _remember_secret(value: str) -> None:
    _reading.get().problems.secrets.add(value)


def _at_type(message: str) -> Invalid:
    return Invalid([Problem("type", message)])


_SPECIAL: dict[str, Callable[[Any], Any]] = {
    "filter": _filter,
    "fallback": _fallback,
    "signing_secret": _signing_secret,
    "on_failure": _on_failure,
}


class _WebhookOptions(OptionTables):
    """The option converter, with the webhook fields' own hooks."""

    def builder(
        self, cls: type, field: attrs.Attribute[Any], tp: Any, secret: bool
    ) -> Callable[[Any], Any]:
        special = _SPECIAL.get(key_of(field)) if issubclass(cls, Webhook) else None
        return special or super().builder(cls, field, tp, secret)


@functools.cache
def _options() -> _WebhookOptions:
    """Made on first use (not at import), then kept: generating a class's structuring
    function costs far more than running it."""
    return _WebhookOptions(_remember_secret)
