"""User overrides of a plugin's payload (`Webhook.templates`), applied the same way by every
plugin: a template gives a whole value or a partial dict merged over the plugin's default."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .events import Event
from .webhooks import Webhook

__all__ = ["merge_payload", "render_template"]


def render_template(webhook: Webhook, event: Event) -> Any | None:
    """The user's template for this event, evaluated: None when there is none; a function's
    result; a string formatted with the event's envelope (`"{event_type}: {data[endpoint]}"`);
    a dict as a copy."""
    template = webhook.template_for(event)
    if template is None:
        return None
    if callable(template):
        return template(event)
    if isinstance(template, str):
        return template.format(**event.to_envelope())
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
