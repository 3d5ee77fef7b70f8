"""`send_metric` outside a dispatcher's life: never a point lost without a word.

Before: a point given once the dispatcher had closed returned `<metric point queued>` and sat in
a fresh buffer nothing would ever send (nothing counted, no log); points buffered before a
dispatcher that never came vanished at exit.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap

import empathy_webhooks_datadog as plugin
import pytest
from empathy_webhooks_datadog import DatadogWebhook

from empathy_webhooks_core import WebhookDispatcher
from empathy_webhooks_core.plugins import build_plugin_manager
from empathy_webhooks_core.testing import Receiver, Reply

API_KEY = "dd-stop38-api-key-0123456789abcdef"
PM = build_plugin_manager(load_entry_points=False, extra_plugins=[plugin])


def metric_bodies(receiver: Receiver) -> list[str]:
    return [
        entry["metric"]
        for request in receiver.requests
        if request.path == "/api/v2/series"
        for entry in request.json()["series"]
    ]


async def test_a_point_after_the_dispatcher_closed_is_refused_and_said(
    webhook_receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = webhook_receiver
    caplog.set_level(logging.WARNING, logger="empathy_webhooks")
    receiver.handler = lambda request: Reply(status=202, body={"errors": []})
    webhook = DatadogWebhook(name="dd-closed", api_key=API_KEY, base_url=receiver.url(""))
    async with WebhookDispatcher(webhooks=[webhook], plugin_manager=PM):
        webhook.send_metric("stop38.inside", 1)
    assert metric_bodies(receiver) == ["stop38.inside"]

    with pytest.raises(RuntimeError, match="dispatcher serving this webhook has closed") as raised:
        webhook.send_metric("stop38.after", 2)
    assert "dd-closed" in str(raised.value)
    [record] = [r for r in caplog.records if "datadog_metric_refused" in r.getMessage()]
    assert record.levelno == logging.ERROR
    assert "dd-closed" in record.getMessage() and "stop38.after" in record.getMessage()
    await asyncio.sleep(0.05)
    assert metric_bodies(receiver) == ["stop38.inside"]

    # A new dispatcher with the webhook takes points again.
    async with WebhookDispatcher(webhooks=[webhook], plugin_manager=PM):
        webhook.send_metric("stop38.again", 3)
    assert metric_bodies(receiver) == ["stop38.inside", "stop38.again"]
    assert API_KEY not in caplog.text


async def test_a_point_before_a_dispatcher_starts_is_still_sent(
    webhook_receiver: Receiver,
) -> None:
    receiver = webhook_receiver
    receiver.handler = lambda request: Reply(status=202, body={"errors": []})
    webhook = DatadogWebhook(name="dd-early", api_key=API_KEY, base_url=receiver.url(""))
    webhook.send_metric("stop38.early", 1)
    async with WebhookDispatcher(webhooks=[webhook], plugin_manager=PM):
        pass
    assert metric_bodies(receiver) == ["stop38.early"]


EXIT_SCRIPT = """
import asyncio, logging, sys
logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(message)s")
from empathy_webhooks_core import WebhookDispatcher
from empathy_webhooks_datadog import DatadogWebhook

webhook = DatadogWebhook(name="dd-exit", api_key={key!r}, base_url="http://127.0.0.1:9")
for n in range(3):
    webhook.send_metric("stop38.never_sent", n)
if {drain!r}:
    async def run():
        async with WebhookDispatcher(webhooks=[webhook]) as dispatcher:
            dispatcher.monitor  # a running dispatcher takes the points; its close drains them
    asyncio.run(run())
"""


def run_exit_script(drain: bool) -> subprocess.CompletedProcess[str]:
    script = textwrap.dedent(EXIT_SCRIPT).format(key=API_KEY, drain=drain)
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )


def test_points_no_dispatcher_sent_are_reported_at_exit() -> None:
    result = run_exit_script(drain=False)
    [line] = [line for line in result.stderr.splitlines() if "datadog_metrics_unsent" in line]
    assert line.startswith("ERROR ")
    assert "webhook='dd-exit'" in line and "points=3" in line
    assert "no dispatcher was started with this webhook" in line
    assert API_KEY not in result.stderr + result.stdout


def test_points_a_dispatcher_took_are_not_reported_at_exit() -> None:
    result = run_exit_script(drain=True)
    assert "datadog_metrics_unsent" not in result.stderr
