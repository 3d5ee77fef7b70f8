"""Audit: Grafana shows an annotation's text as (sanitised) HTML, so event text is escaped:
a link or an image in the data shows as written, never as a live link or a fetched image."""

from __future__ import annotations

import empathy_webhooks_grafana as plugin
import pytest
from empathy_webhooks_grafana import MAX_OWN_TAGS, GrafanaWebhook

from empathy_webhooks_core import Event
from empathy_webhooks_core.delivery import render_request
from empathy_webhooks_core.plugins import build_plugin_manager

PM = build_plugin_manager(load_entry_points=False, extra_plugins=[plugin])
HOOK = GrafanaWebhook(url="https://grafana.example.com", api_key="glsa_audit_token_123")


def test_html_in_event_text_is_escaped() -> None:
    """Before: `<a href=...>` in the data was a live link in the annotation's tooltip, and
    `<img src=...>` an image fetched from anywhere by every viewer."""
    event = Event(
        event_type="alert",
        data={
            "title": "Rotate <a href='https://evil.example'>now</a>",
            "note": '<img src="https://evil.example/t.png"> & more',
        },
        event_id="evt_1",
        user_id="<b>dev</b>",
    )
    body = render_request(HOOK, event, plugin_manager=PM).json_body()
    assert body["text"] == (
        "Alert: Rotate &lt;a href='https://evil.example'&gt;now&lt;/a&gt;\n\n"
        'note: &lt;img src="https://evil.example/t.png"&gt; &amp; more\n\n'
        "event evt_1 · user &lt;b&gt;dev&lt;/b&gt;"
    )


def test_a_cut_text_never_ends_in_half_an_entity() -> None:
    event = Event(event_type="alert", data={"title": "x", "description": "<" * 20_000})
    text = render_request(HOOK, event, plugin_manager=PM).json_body()["text"]
    assert len(text) <= 10_000 and text.endswith("&lt;…")


def test_a_string_template_escapes_the_event_values_not_its_own_markup() -> None:
    hook = GrafanaWebhook(
        url="https://grafana.example.com",
        api_key="glsa_audit_token_123",
        templates={"alert": "<b>Deploy</b> {data[title]}"},
    )
    event = Event(event_type="alert", data={"title": "<a href='https://evil.example'>x</a>"})
    body = render_request(hook, event, plugin_manager=PM).json_body()
    assert body["text"] == "<b>Deploy</b> &lt;a href='https://evil.example'&gt;x&lt;/a&gt;"


def test_more_own_tags_than_an_annotation_keeps_are_refused_when_built() -> None:
    own = [f"t{n}" for n in range(MAX_OWN_TAGS)]
    GrafanaWebhook(url="https://g.example", api_key="glsa_x_123", tags=[*own, *own])
    with pytest.raises(ValueError, match="tags: at most 44"):
        GrafanaWebhook(url="https://g.example", api_key="glsa_x_123", tags=[*own, "one more"])
