"""The `webhook_dispatcher` fixture keeps its promise, seen from outside a test run: what a test
emits without draining is delivered at teardown, and a drain that never finishes fails the test
instead of passing silently."""

from __future__ import annotations

import pytest

# Imported here, before any in-process run: pytester forgets modules first imported during a
# run, and a second run would then mix two copies of the Webhook class.
import empathy_webhooks_core.dispatcher
import empathy_webhooks_core.testing.receiver  # noqa: F401
from empathy_webhooks_core import CustomWebhook  # noqa: F401
from empathy_webhooks_core.testing import pytest_plugin

pytest_plugins = ["pytester"]

INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
addopts = -p no:cacheprovider
"""

UNDRAINED = """
import pathlib

import pytest

from empathy_webhooks_core import CustomWebhook


@pytest.fixture
def report(webhook_receiver):
    # Requested first, so torn down after the dispatcher fixture: it sees what arrived then.
    yield
    pathlib.Path("arrived.txt").write_text(str(len(webhook_receiver.requests)))


async def test_emit_without_drain(report, webhook_receiver, webhook_dispatcher):
    dispatcher = webhook_dispatcher(CustomWebhook(url=webhook_receiver.url("/in")))
    await dispatcher.emit("alert", {"title": "left for teardown"})
"""

NEVER_ENDS = """
from empathy_webhooks_core import CustomWebhook
from empathy_webhooks_core.testing import Reply


async def test_delivery_that_never_ends(webhook_receiver, webhook_dispatcher, fake_clock):
    webhook_receiver.queue(Reply(status=503))
    webhook = CustomWebhook(name="stuck", url=webhook_receiver.url("/in"))
    # The fake clock never advances, so the retry after the 503 never comes.
    dispatcher = webhook_dispatcher([webhook], clock=fake_clock)
    await dispatcher.emit("alert", {})
"""


def test_what_a_test_leaves_queued_is_delivered_at_teardown(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_undrained=UNDRAINED)
    result = pytester.runpytest_inprocess("-q")
    result.assert_outcomes(passed=1)
    assert (pytester.path / "arrived.txt").read_text() == "1"


def test_a_drain_timeout_at_teardown_fails_the_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pytest_plugin, "CLOSE_TIMEOUT_SECONDS", 0.2)
    pytester.makeini(INI)
    pytester.makepyfile(test_never_ends=NEVER_ENDS)
    result = pytester.runpytest_inprocess("-q")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["*webhook_dispatcher: a dispatcher did not drain at teardown (stuck: 1 deliveries*"]
    )
