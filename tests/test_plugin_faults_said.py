"""A third party's plugin that fails in ways the first audits did not try: found by an audit
of stop 37, each through a real dispatcher and a loopback receiver.

- A hook raising a `BaseException` that is not an `Exception` (GeneratorExit, a vendor SDK's
  abort class) ended the worker without a word: nothing logged, counted or dead-lettered,
  the lane a worker short for good (with `max_concurrency=1`, no delivery ever again).
- A `delivery_context` failing inside `emit_events` left a reservation: `drain()` waited for
  ever, `close()` reported a loss that was not one.
- A wrapper on `webhook_for_url` stopped the per-plugin guard: one plugin's bug stopped the
  dispatcher's construction with the raw (credential) URL in the error.
- Wrappers on the other hooks are never run, and nothing said so.
- A `webhook_stats` mapping whose items() raised made `get_webhook_stats()` and `close()`
  raise.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from empathy_webhooks_core import CustomWebhook, Event, WebhookDispatcher
from empathy_webhooks_core.plugins import build_plugin_manager, hookimpl
from empathy_webhooks_core.testing import Receiver

SLACK = "https://hooks.slack.com/services/T000/B000/SECRETTOKEN123456"


def lines(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if f"'{name}'" in r.getMessage()]


class PluginAbort(BaseException):
    """What a vendor SDK or a test framework raises: not an Exception."""


async def test_a_base_exception_from_a_hook_is_a_dead_letter_not_a_dead_worker(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="empathy_webhooks")

    class AbortsOnce:
        calls = 0

        @hookimpl
        def before_attempt(self, webhook: Any, event: Any, delivery_id: Any) -> Any:
            AbortsOnce.calls += 1
            if AbortsOnce.calls == 1:
                raise PluginAbort("vendor SDK aborted")
            return None

    pm = build_plugin_manager(load_entry_points=False)
    pm.register(AbortsOnce())
    webhook = CustomWebhook(name="w", url=receiver.url("/w"), max_concurrency=1)
    async with WebhookDispatcher(webhooks=[webhook], plugin_manager=pm) as dispatcher:
        for n in range(3):
            await dispatcher.emit("alert", {"n": n})
        await dispatcher.drain(timeout=10)
        stats = dispatcher.get_webhook_stats("w")
        [letter] = await dispatcher.dead_letters()
    assert (stats["delivered_count"], stats["failed_count"], stats["queued"]) == (2, 1, 0)
    assert "PluginAbort raised within: vendor SDK aborted" in letter.error["reason"]
    assert lines(caplog, "worker_error")


async def test_a_failing_delivery_context_in_a_batch_leaves_nothing_reserved(
    receiver: Receiver,
) -> None:
    class Broken(Mapping[str, str]):
        def __getitem__(self, key: str) -> str:
            raise RuntimeError("getitem broken")

        def __iter__(self) -> Iterator[str]:
            raise RuntimeError("iter broken")

        def __len__(self) -> int:
            return 1

    class Context:
        calls = 0

        @hookimpl
        def delivery_context(self, webhook: Any, event: Any) -> Any:
            Context.calls += 1
            return Broken() if Context.calls == 2 else None

    pm = build_plugin_manager(load_entry_points=False)
    pm.register(Context())
    webhook = CustomWebhook(name="w", url=receiver.url("/w"))
    async with WebhookDispatcher(webhooks=[webhook], plugin_manager=pm) as dispatcher:
        events = [Event(event_type="alert", data={"n": n}) for n in range(2)]
        with pytest.raises(RuntimeError, match="iter broken"):
            await dispatcher.emit_events(events)
        assert dispatcher.get_webhook_stats("w")["queued"] == 0
        await dispatcher.emit_events([Event(event_type="alert", data={"n": 9})])
        await dispatcher.drain(timeout=10)
    assert [r.json()["data"]["n"] for r in receiver.requests] == [9]


async def test_a_wrapped_webhook_for_url_chain_that_raises_is_passed_over_masked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="empathy_webhooks")

    class Timing:
        @hookimpl(wrapper=True)
        def webhook_for_url(self, url: str, options: Any) -> Any:
            return (yield)

    class Crashy:
        @hookimpl
        def webhook_for_url(self, url: str, options: Any) -> Any:
            raise RuntimeError(f"cannot parse {url}")

    pm = build_plugin_manager(load_entry_points=False)
    pm.register(Crashy())
    pm.register(Timing())
    webhook = CustomWebhook(name="w", url=SLACK)
    dispatcher = WebhookDispatcher(webhooks=[webhook], plugin_manager=pm)
    await dispatcher.close()
    [line] = lines(caplog, "plugin_hook_failed")
    assert "SECRETTOKEN123456" not in caplog.text
    assert "passed over" in line


async def test_wrappers_on_broadcast_hooks_are_said_to_be_never_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="empathy_webhooks")

    class Wraps:
        @hookimpl(wrapper=True)
        def on_success(self, webhook: Any, event: Any, result: Any) -> Any:
            return (yield)

    pm = build_plugin_manager(load_entry_points=False)
    pm.register(Wraps(), name="wraps")
    async with WebhookDispatcher(
        webhooks=[CustomWebhook(name="w", url="https://example.com/w")], plugin_manager=pm
    ):
        pass
    said = lines(caplog, "plugin_hooks_never_called")
    assert any("'wraps' implements on_success as hook wrappers" in line for line in said), said


async def test_a_webhook_stats_mapping_that_raises_is_left_out_not_raised(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="empathy_webhooks")

    class Broken(Mapping[str, int]):
        def __getitem__(self, key: str) -> int:
            raise RuntimeError("getitem broken")

        def __iter__(self) -> Iterator[str]:
            raise RuntimeError("iter broken")

        def __len__(self) -> int:
            return 1

    class Stats:
        @hookimpl
        def webhook_stats(self, webhook: Any, state: Any) -> Any:
            return Broken()

    pm = build_plugin_manager(load_entry_points=False)
    pm.register(Stats())
    webhook = CustomWebhook(name="w", url=receiver.url("/w"))
    async with WebhookDispatcher(webhooks=[webhook], plugin_manager=pm) as dispatcher:
        await dispatcher.emit("alert", {})
        await dispatcher.drain(timeout=10)
        assert dispatcher.get_webhook_stats("w")["delivered_count"] == 1
    assert lines(caplog, "plugin_hook_failed")
