"""User overrides of a plugin's payload (`Webhook.templates`), applied the same way by every
plugin: a template gives a whole value or a partial dict merged over the plugin's default."""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping
from typing import Any

from .events import Event
from .webhooks import Webhook

__all__ = ["format_template", "merge_payload", "render_template"]


class _Escaping(string.Formatter):
    """`str.format` whose every replacement field goes through `escape`: a string template's
    own markup is the user's, the event's values in it are text."""

    def __init__(self, escape: Callable[[str], str]) -> None:
        self._escape = escape

    def format_field(self, value: Any, format_spec: str) -> str:
        return self._escape(format(value, format_spec))


def format_template(
    template: str, values: Mapping[str, Any], *, escape: Callable[[str], str] | None = None
) -> str:
    """A string template formatted with `values` (an event's envelope), each replacement
    field through `escape` when the service reads the text as markup: the template's own
    markup is the user's, the event's values in it are text."""
    if escape is None:
        return template.format(**values)
    return _Escaping(escape).format(template, **values)


def render_template(
    webhook: Webhook, event: Event, *, escape: Callable[[str], str] | None = None
) -> Any | None:
    """The user's template for this event, evaluated: None when there is none; a function's
    result; a string formatted with the event's envelope (`"{event_type}: {data[endpoint]}"`),
    each value through `escape` when the service reads the text as markup (a value from the
    event could otherwise notify, link or end a block); a dict as a copy."""
    template = webhook.template_for(event)
    if template is None:
        return None
    if callable(template):
        return template(event)
    if isinstance(template, str):
        return format_template(template, event.to_envelope(), escape=escape)
    return dict(template)


def merge_payload(default: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`default` with `override` laid over it: nested dicts merge key by key, any other value
    replaces, and a None in `override` removes the key."""
    merged = dict(default)
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_payload(merged[key], value)
        else:
            merged[key] = value
    return merged
