"""Audit 3: what Datadog accepts but does not keep is never a silent success, and one bad
timestamp never costs the points buffered with it."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import empathy_webhooks_datadog as plugin
import pytest
from empathy_webhooks_datadog import DatadogWebhook, _late_event
from empathy_webhooks_datadog.metrics import original_tag

from empathy_webhooks_core import Event, WebhookDispatcher, hookimpl
from empathy_webhooks_core.delivery import render_request
from empathy_webhooks_core.plugins import build_plugin_manager
from empathy_webhooks_core.testing import ReceivedRequest, Receiver, Reply

API_KEY = "dd-audit3-api-key-0123456789abcdef"
FAST = {"initial_delay_seconds": 0.001, "max_delay_seconds": 0.01, "max_retries": 0}
#: What the v2 intake's `IntakePayloadAccepted` carries besides `[]`: "non-fatal errors".
DROPPED = f"Point timestamp is too old: 1 point dropped (key {API_KEY})"


class Successes:
    def __init__(self) -> None:
        self.details: list[dict[str, Any]] = []

    @hookimpl
    def on_success(self, webhook: Any, event: Any, result: Any) -> None:
        self.details.append(dict(result.details))


def manager(*extra: Any) -> Any:
    return build_plugin_manager(load_entry_points=False, extra_plugins=[plugin, *extra])


def partly_accepting(request: ReceivedRequest) -> Reply:
    if request.path == "/api/v2/series":
        return Reply(status=202, body={"errors": [DROPPED]})
    return Reply(status=202, body={"status": "ok", "event": {"id": 7}})


@pytest.fixture
async def datadog() -> AsyncIterator[Receiver]:
    async with Receiver() as receiver:
        receiver.handler = partly_accepting
        yield receiver


def figures(stats: dict[str, Any]) -> dict[str, Any]:
    return {k.removeprefix("plugin.datadog."): v for k, v in stats.items() if "datadog" in k}


async def test_a_202_listing_errors_for_custom_metrics_is_counted_and_logged(
    datadog: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: `{"errors": ["..."]}` in a 202 was read as a plain success: the points counted
    as sent, no log, no `last_error`; Datadog had dropped them."""
    caplog.set_level(logging.WARNING, logger="empathy_webhooks")
    hook = DatadogWebhook(api_key=API_KEY, base_url=datadog.url(""), retry_policy=FAST)
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager()) as dispatcher:
        hook.send_metric("audit.metric", 1.0)
        await dispatcher.drain()
        stats = figures(dispatcher.get_webhook_stats(hook.name))
    assert stats["points_sent"] == 1  # accepted: not retried, not dropped by us
    assert stats["accepted_with_errors"] == 1
    assert stats["last_error"].startswith("metrics accepted with errors: Point timestamp")
    assert API_KEY not in stats["last_error"] and "***" in stats["last_error"]
    [record] = [r for r in caplog.records if "datadog_accepted_with_errors" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert API_KEY not in caplog.text


async def test_a_202_listing_errors_for_an_events_gauges_is_said_too(datadog: Receiver) -> None:
    """The delivery's answer is the event's (its id in the details): the gauges' 202 with
    errors was dropped on the floor."""
    seen = Successes()
    hook = DatadogWebhook(api_key=API_KEY, base_url=datadog.url(""), retry_policy=FAST)
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager(seen)) as dispatcher:
        await dispatcher.emit("performance_issue", {"endpoint": "/api", "avg_response_time": 850})
        await dispatcher.drain()
        stats = figures(dispatcher.get_webhook_stats(hook.name))
    [details] = seen.details
    assert details["datadog_event_id"] == "7"
    assert stats["accepted_with_errors"] == 1
    assert stats["last_error"].startswith("event metrics accepted with errors:")


async def test_an_event_answer_listing_errors_puts_them_in_the_details() -> None:
    seen = Successes()
    async with Receiver() as datadog:
        datadog.handler = lambda request: Reply(
            status=202, body={"status": "ok", "event": {"id": 8}, "errors": ["tag dropped"]}
        )
        hook = DatadogWebhook(api_key=API_KEY, base_url=datadog.url(""), retry_policy=FAST)
        async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager(seen)) as d:
            await d.emit("alert", {"title": "Disk full"})
            await d.drain()
            stats = figures(d.get_webhook_stats(hook.name))
    assert seen.details == [{"datadog_event_id": "8", "datadog_errors": "tag dropped"}]
    assert stats["accepted_with_errors"] == 1


async def test_a_plain_202_is_no_error(datadog: Receiver) -> None:
    datadog.handler = lambda request: Reply(status=202, body={"errors": []})
    hook = DatadogWebhook(api_key=API_KEY, base_url=datadog.url(""), retry_policy=FAST)
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager()) as dispatcher:
        hook.send_metric("audit.metric", 1.0)
        await dispatcher.drain()
        stats = figures(dispatcher.get_webhook_stats(hook.name))
    assert (stats["accepted_with_errors"], stats["last_error"]) == (0, None)


async def test_a_millisecond_timestamp_costs_no_other_point(datadog: Receiver) -> None:
    """Before: one point stamped in milliseconds (the year 58000) made the flush raise while
    tagging it with its original date: every point buffered with it was lost, none counted
    as dropped, only a generic `flush_failed` logged. It is now re-stamped and counted as
    early, as the README says of milliseconds given as seconds."""
    datadog.handler = lambda request: Reply(status=202, body={"errors": []})
    hook = DatadogWebhook(api_key=API_KEY, base_url=datadog.url(""), retry_policy=FAST)
    millis = time.time() * 1000
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager()) as dispatcher:
        hook.send_metric("before.metric", 1.0)
        hook.send_metric("millis.metric", 2.0, timestamp=millis)
        hook.send_metric("after.metric", 3.0)
        await dispatcher.drain()
        stats = figures(dispatcher.get_webhook_stats(hook.name))
    sent = {
        entry["metric"]: entry for request in datadog.requests for entry in request.json()["series"]
    }
    assert set(sent) == {"before.metric", "millis.metric", "after.metric"}
    assert f"original_timestamp:{int(millis)}" in sent["millis.metric"]["tags"]
    assert (stats["points_sent"], stats["points_dropped"], stats["points_early"]) == (3, 0, 1)


@pytest.mark.parametrize("timestamp", [float("nan"), float("inf"), float("-inf")])
def test_a_timestamp_that_is_no_number_is_refused_to_the_caller(timestamp: float) -> None:
    hook = DatadogWebhook(api_key=API_KEY)
    with pytest.raises(ValueError, match="timestamp must be POSIX seconds"):
        hook.send_metric("audit.metric", 1.0, timestamp=timestamp)


def test_an_original_tag_always_has_a_value() -> None:
    assert original_tag(1_700_000_000) == "original_timestamp:2023-11-14T22:13:20Z"
    assert original_tag(1e15) == "original_timestamp:1000000000000000"


def test_a_late_event_whose_template_time_no_date_can_show_is_still_sent() -> None:
    """A template may set `date_happened` to anything: re-stamping it must not raise (it
    did, in `original_tag`, failing the delivery)."""
    hook = DatadogWebhook(api_key=API_KEY, templates={"alert": {"date_happened": -(10**15)}})
    request = render_request(hook, Event(event_type="alert", data={}), plugin_manager=manager())
    late = _late_event(request, time.time())
    assert late is not None
    assert "original_timestamp:-1000000000000000" in late.json_body()["tags"]


async def test_the_api_paths_go_before_a_base_urls_query() -> None:
    """Before: `/api/v1/events` was appended after a relay's `?token=` (the token's value
    became `t0ken/api/v1/events`, the path `/`): every event and point refused."""
    async with Receiver() as relay:
        relay.handler = lambda request: Reply(status=202, body={"errors": []})
        hook = DatadogWebhook(
            api_key=API_KEY, base_url=relay.url("/dd/") + "?token=relay-t0ken", retry_policy=FAST
        )
        assert hook.events_url == relay.url("/dd/api/v1/events") + "?token=relay-t0ken"
        async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager()) as dispatcher:
            await dispatcher.emit("performance_issue", {"endpoint": "/x", "error_rate": 0.2})
            hook.send_metric("audit.metric", 1.0)
            await dispatcher.drain()
        seen = sorted((request.path, tuple(request.query.items())) for request in relay.requests)
    token = (("token", "relay-t0ken"),)
    assert seen == [
        ("/dd/api/v1/events", token),
        ("/dd/api/v2/series", token),
        ("/dd/api/v2/series", token),
    ]
    assert "relay-t0ken" not in hook.url and "relay-t0ken" not in repr(hook)
