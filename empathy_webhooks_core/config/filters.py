"""Declarative filters: what the reference writes as `filter=lambda event: ...`, as a table.

A filter is a table whose keys are event fields (`event_type`, `severity`, `classification`,
`user_id`, `empathy_level`), `data` and `metadata` (tables of dotted paths into the event's
data, `"context.environment"`), and `any` (a list of filter tables, one of which must pass).
All conditions must pass. A condition is a value (equals), a list (one of), or a table of
operators: `eq`, `ne`, `in`, `not_in`, `gt`, `gte`, `lt`, `lte`, `exists`. For `severity`,
equality is case-insensitive and `gt`/`gte`/`lt`/`lte` compare ranks (info < low < medium <
high < critical) as the plugins read them, so `severity = { gte = "high" }` passes high and
critical events (and, without an explicit severity, security and compliance findings).
A value that is missing or of another kind fails a comparison instead of raising. Equality on
`severity` passes the events the plugins rank as the word names (`"high"` passes an `error`),
a `data`/`metadata` operand that is text reading as a number (`"${MIN}"`) compares as that
number with a number, and `event_type` names holding `*`, `?` or `[` are patterns, as in
`events`.

An operand that no event can hold is refused: `empathy_level` is a whole number from 1 to 5,
and `event_type`, `severity`, `classification` and `user_id` are text, so `empathy_level = {
gt = "3" }` or `severity = 3` would never pass. What only looks mistaken is a warning
(`filter_doubts`): a severity word no plugin knows, an event type one letter off a known one.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from .._doubts import event_type_doubt
from .._formatting import _SEVERITY_WORDS, Severity, severity_of
from .._routing import _GLOB, EventMatcher
from ..converter import ConfigError, did_you_mean
from ..events import Event
from ..redaction import REDACTED, is_secret_name
from ._problems import _MISSING, _join, _kind, _Problems

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


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number(text: Any) -> Any:
    """The number a text reads as (`"0.8"`, `" 10 "`), or `text` itself."""
    if not isinstance(text, str):
        return text
    try:
        return int(text.strip())
    except ValueError:
        pass
    try:
        number = float(text.strip())
    except ValueError:
        return text
    return number if math.isfinite(number) else text


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
    #: Where the filter table wrote it (`severity.in`), for a warning about it.
    where: str = attrs.field(default="", eq=False, repr=False)
    #: A data or metadata condition's operand with each text that reads as a number made
    #: that number, used when the event's value is a number; None when no text reads so. A
    #: file's `${VAR}` is always text, so `gte = "${MIN_CONFIDENCE}"` compared a number with
    #: text and passed no event at all.
    numbers: Any = attrs.field(default=None, eq=False, repr=False)
    #: An `event_type` condition's names as `events` reads them (`"security_*"`), when one
    #: of them is a pattern; None when all are plain names (compared as they are).
    matcher: EventMatcher | None = attrs.field(default=None, eq=False, repr=False)

    def __call__(self, event: Event) -> bool:
        op = self.op
        if self.severity and op in _ORDER_OPS:
            # Ranked as the plugins rank it, so an event without a severity gets its type's
            # default (security and compliance findings are high).
            return _ORDER_OPS[op](severity_of(event), self.operand)
        value = self.getter(event)
        if op == "exists":
            return (value is not _MISSING and value is not None) is self.operand
        if value is _MISSING:
            value = None
        if self.matcher is not None:
            hit = isinstance(value, str) and self.matcher(value)
            return hit if op in ("eq", "in") else not hit
        if self.severity:
            # A rank's name also passes the events the plugins rank so (an "error", an event
            # of a high-severity type without one), as `gte` does: `severity = ["high",
            # "critical"]` let a security finding without a severity through to nobody.
            ranked = severity_of(event).name.lower()
            words = self.operand if op in ("in", "not_in") else (self.operand,)
            hit = value in words or ranked in words
            return hit if op in ("eq", "in") else not hit
        operand = self.operand
        if self.numbers is not None and _is_number(value):
            operand = self.numbers
        if op == "eq":
            return bool(value == operand)
        if op == "ne":
            return bool(value != operand)
        if op == "in":
            return value in operand
        if op == "not_in":
            return value not in operand
        if not _comparable(value, operand):
            return False
        return _ORDER_OPS[op](value, operand)

    def describe(self) -> str:
        if self.op == "exists":
            return f"{self.subject} {'exists' if self.operand else 'is absent'}"
        operand = self.operand
        if is_secret_name(self.subject.rsplit(".", 1)[-1]):
            # `data.token == "${TOKEN}"`: what `validate` shows of a filter is no place for it.
            return f"{self.subject} {_SYMBOLS.get(self.op, self.op)} {REDACTED}"
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
        operand_where = f"{where}.{op}" if isinstance(value, Mapping) else where
        checked = _operand(op, operand, operand_where, problems, severity)
        if checked is not _MISSING and _fits(subject, op, checked, operand_where, problems):
            built.append(
                _Condition(
                    subject,
                    op,
                    checked,
                    getter,
                    severity,
                    operand_where,
                    numbers=_numbers_of(subject, op, checked),
                    matcher=_matcher_of(subject, op, checked),
                )
            )
    return built


def _numbers_of(subject: str, op: str, operand: Any) -> Any:
    """`_Condition.numbers`: for a data or metadata condition only (the event's own fields
    have one kind each, checked by `_fits`)."""
    if op == "exists" or not subject.startswith(("data.", "metadata.")):
        return None
    if op in ("in", "not_in"):
        numbers = tuple(_number(item) for item in operand)
        return numbers if numbers != operand else None
    number = _number(operand)
    return number if number is not operand else None


def _matcher_of(subject: str, op: str, operand: Any) -> EventMatcher | None:
    """`_Condition.matcher`: `event_type` names holding `*`, `?` or `[` are patterns, as in
    `events` (they were compared as they are, so `"security_*"` passed no event)."""
    if subject != "event_type" or op not in ("eq", "ne", "in", "not_in"):
        return None
    names = list(operand) if op in ("in", "not_in") else [operand]
    if not any(isinstance(name, str) and _GLOB.search(name) for name in names):
        return None
    return EventMatcher(name for name in names if isinstance(name, str))


#: The event fields whose value is text, and what `empathy_level` may be.
_TEXT_FIELDS = ("event_type", "severity", "classification", "user_id")
_LEVELS = range(1, 6)


def _fits(subject: str, op: str, operand: Any, where: str, problems: _Problems) -> bool:
    """Whether an event field could ever hold `operand` (a list's every item): a condition
    that compares `empathy_level` with text, or `severity` with a number, never passes."""
    if op == "exists" or subject not in (*_TEXT_FIELDS, "empathy_level"):
        return True
    items = list(operand) if op in ("in", "not_in") else [operand]
    if subject == "empathy_level":
        wrong = [i for i in items if isinstance(i, bool) or not isinstance(i, int)]
        if wrong:
            problems.add(
                where,
                f"empathy_level is a whole number from 1 to 5, got {_kind(wrong[0])}"
                + (f" ({wrong[0]!r})" if isinstance(wrong[0], str) else ""),
            )
            return False
        outside = [i for i in items if i not in _LEVELS]
        if outside and op in ("eq", "in", "gt", "gte", "lt", "lte"):
            problems.add(where, f"empathy_level is a whole number from 1 to 5, got {outside[0]!r}")
            return False
        return True
    if subject == "severity" and op in _ORDER_OPS:
        return True  # a rank, already checked against the severity scale
    wrong = [i for i in items if not isinstance(i, str)]
    if wrong:
        number = isinstance(wrong[0], int | float) and not isinstance(wrong[0], bool)
        hint = f' (in quotes: "{wrong[0]}")' if number else ""
        problems.add(where, f"{subject} is text: expected a string, got {_kind(wrong[0])}{hint}")
        return False
    return True


def filter_doubts(compiled: EventFilter) -> list[tuple[str, str]]:
    """What in a compiled filter is allowed but probably not meant, as (place relative to the
    filter, message): a severity word the plugins do not know (it passes only events that
    say exactly that word), an event type a letter or two off one the framework sends."""
    found: list[tuple[str, str]] = []
    for condition in compiled.all_of:
        if condition.op not in ("eq", "ne", "in", "not_in"):
            continue
        items = list(condition.operand) if condition.op in ("in", "not_in") else [condition.operand]
        for item in items:
            if not isinstance(item, str):
                continue
            if condition.subject == "severity" and item.strip().lower() not in _SEVERITY_WORDS:
                found.append(
                    (
                        condition.where,
                        f"{item!r} is not a severity the plugins know"
                        f"{did_you_mean(item.lower(), _SEVERITY_RANKS)}; only an event whose "
                        f"severity is exactly {item!r} matches it",
                    )
                )
            elif condition.subject == "event_type":
                doubt = event_type_doubt(item)
                if doubt:
                    found.append((condition.where, doubt))
    for option in compiled.any_of:
        found.extend(filter_doubts(option))
    return found


def allows_event_types(compiled: EventFilter, subscribed: Callable[[str], bool]) -> bool:
    """Whether an event the webhook subscribes to (`subscribed(event_type)`) could pass the
    filter, as far as its `event_type` conditions say."""
    for condition in compiled.all_of:
        if condition.subject != "event_type" or condition.matcher is not None:
            continue  # a pattern's names are not known here: it may pass some
        if condition.op == "eq" and not subscribed(condition.operand):
            return False
        if condition.op == "in" and not any(subscribed(item) for item in condition.operand):
            return False
    return not compiled.any_of or any(
        allows_event_types(option, subscribed) for option in compiled.any_of
    )


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
        if op == "in" and not operand:
            problems.add(where, "an empty list: no event would pass")
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
