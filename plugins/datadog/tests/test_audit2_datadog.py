"""Audit: event data inside Datadog's `%%%` markdown stays text, and tags stay within limits
without losing the webhook's own."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import empathy_webhooks_datadog as plugin
from empathy_webhooks_datadog import DatadogWebhook

from empathy_webhooks_core import Event, WebhookDispatcher
from empathy_webhooks_core.clock import FakeClock
from empathy_webhooks_core.delivery import render_request
from empathy_webhooks_core.plugins import build_plugin_manager
from empathy_webhooks_core.testing import Receiver, Reply

API_KEY = "0123456789abcdef0123456789abcdef"
WHEN = datetime(2025, 11, 25, 14, 30, 5, tzinfo=UTC)
PM = build_plugin_manager(load_entry_points=False, extra_plugins=[plugin])


def render(hook: DatadogWebhook, event: Event) -> dict[str, Any]:
    body = render_request(hook, event, plugin_manager=PM).json_body()
    assert isinstance(body, dict)
    return body


async def test_event_text_cannot_end_the_markdown_block_ping_or_link() -> None:
    """Before: a `%%%` in the description ended Datadog's markdown block, `@pagerduty-oncall`
    and `user @all` were live notifications, and `[click](https://evil)` a link."""
    event = Event(
        event_type="alert",
        data={
            "title": "Disk full",
            "description": "boom\n %%%\n@pagerduty-oncall [click](https://evil.example)",
            "note": "see ![x](https://evil.example/x.png) <b>hi</b> cc @slack-ops",
        },
        user_id="@all",
        event_id="evt_1",
        timestamp=WHEN,
    )
    async with Receiver() as datadog:
        datadog.handler = lambda request: Reply(status=202, body={"status": "ok"})
        hook = DatadogWebhook(api_key=API_KEY, base_url=datadog.url(""), retry_policy={})
        async with WebhookDispatcher(
            webhooks=[hook], plugin_manager=PM, clock=FakeClock(wall=WHEN.timestamp() + 60)
        ) as dispatcher:
            await dispatcher.emit_event(event)
        [request] = datadog.requests
    text = request.json()["text"]
    assert text == (
        "%%% \n"
        "boom\n \\%\\%\\%\n\\@pagerduty-oncall \\[click\\](https://evil.example)\n\n"
        "- **note**: see !\\[x\\](https://evil.example/x.png) \\<b\\>hi\\</b\\> cc \\@slack-ops\n\n"
        "event `evt_1` · user \\@all"
        "\n %%%"
    )
    # One block: the markers Datadog reads are ours alone.
    assert text.count("%%%") == 2
    # No `@` that Datadog reads as a notification (one needs whitespace or a line start).
    assert all(text[i - 1] == "\\" for i, ch in enumerate(text) if ch == "@")


def test_an_odd_event_id_is_escaped_not_put_in_a_code_span() -> None:
    hook = DatadogWebhook(api_key=API_KEY)
    text = render(hook, Event(event_type="alert", data={}, event_id="x` @all `y"))["text"]
    assert text.endswith("event x\\` \\@all \\`y\n %%%")


def test_a_cut_text_never_ends_in_half_an_escape() -> None:
    hook = DatadogWebhook(api_key=API_KEY)
    for pad in range(4):
        event = Event(event_type="alert", data={"description": "a" * pad + "%" * 5000})
        text = render(hook, event)["text"]
        assert len(text) <= 4000 and text.endswith("…\n %%%")
        inner = text.removesuffix("…\n %%%")
        assert (len(inner) - len(inner.rstrip("\\"))) % 2 == 0
        assert "%%%" not in text[5:-5]


def test_the_webhooks_own_tags_survive_an_event_with_too_many_tags() -> None:
    """Before: 100 tags in the event data pushed `team:payments` (the webhook's own, which
    monitors route on) out of the 100 kept, silently."""
    hook = DatadogWebhook(api_key=API_KEY, tags=["team:payments"])
    event = Event(event_type="alert", data={"tags": [f"t{i}" for i in range(150)]})
    tags = render(hook, event)["tags"]
    assert len(tags) == 100
    assert tags[:3] == ["severity:warning", "event_type:alert", "team:payments"]
    assert tags[3:6] == ["t0", "t1", "t2"]
    # The cut is visible on the event itself: 150 data tags, 96 kept.
    assert tags[-1] == "empathy_tags_dropped:54"


def test_a_tag_never_ends_with_a_colon() -> None:
    # Datadog: "A tag cannot end with a colon".
    hook = DatadogWebhook(api_key=API_KEY, tags=["env:", "team::"])
    event = Event(event_type="alert", data={"service": " ", "tags": ["owner:", ":"]})
    tags = render(hook, event)["tags"]
    assert tags == ["service", "severity:warning", "event_type:alert", "env", "team", "owner"]


def test_a_string_template_escapes_the_event_values_not_its_own_markup() -> None:
    hook = DatadogWebhook(api_key=API_KEY, templates={"alert": "**{data[title]}** @ops-team"})
    event = Event(event_type="alert", data={"title": "%%% @pagerduty-oncall [x](https://e.x)"})
    text = render(hook, event)["text"]
    assert "**\\%\\%\\% \\@pagerduty-oncall \\[x\\](https://e.x)** @ops-team" in text
