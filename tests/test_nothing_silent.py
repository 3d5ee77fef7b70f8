"""Issue 15, the core's part: every way an alert could be lost, merged or left waiting is
refused at once or made loud. Each test reproduces what used to happen silently."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import math
import os
import subprocess
import sys
import types
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
import attrs
import pytest

from empathy_webhooks_core import (
    BreakerPolicy,
    ConfigError,
    CustomWebhook,
    DeliveryError,
    Event,
    EventDataError,
    PluginContractError,
    QueueFull,
    RateLimit,
    RetryPolicy,
    ThreadedDispatcher,
    UnknownWebhookError,
    Verdict,
    Webhook,
    WebhookDispatcher,
    WebhookMonitor,
    hookimpl,
)
from empathy_webhooks_core.config import load_config, parse_config
from empathy_webhooks_core.events import MAX_SAFE_INTEGER
from empathy_webhooks_core.plugins import Hooks, build_plugin_manager, get_plugin_manager
from empathy_webhooks_core.stores import Delivery, MemoryStore
from empathy_webhooks_core.testing import ReceivedRequest, Receiver, Reply
from empathy_webhooks_core.wire import Outcome, OutgoingRequest, Response

CLI = str(Path(sys.executable).parent / "empathy-webhooks")


def nested(levels: int) -> dict[str, Any]:
    """A dict `levels` deep (the outer dict is level 1), built without recursion."""
    root: dict[str, Any] = {}
    inner = root
    for _ in range(levels - 1):
        inner["a"] = {}
        inner = inner["a"]
    inner["leaf"] = "bottom"
    return root


class Gate:
    """A receiver handler that holds every answer until released."""

    def __init__(self) -> None:
        self.open = asyncio.Event()

    async def __call__(self, request: ReceivedRequest) -> Reply:
        await self.open.wait()
        return Reply()


# -- 3. event data has a nesting limit, checked at emit -----------------------------------------


async def test_data_nested_past_the_limit_is_refused_at_emit_naming_the_path(
    receiver: Receiver,
) -> None:
    async with WebhookDispatcher(webhooks=[CustomWebhook(url=receiver.url())]) as dispatcher:
        await dispatcher.emit("alert", {"context": nested(63)})  # 64 levels with `data`
        with pytest.raises(EventDataError) as refused:
            await dispatcher.emit("alert", {"context": nested(64)})
        assert "is nested 65 levels deep; event data may nest at most 64 levels" in str(
            refused.value
        )
        assert str(refused.value).startswith("data['context']['a']['a']")
        # Far deeper than Python's recursion limit: the same error, never a RecursionError.
        with pytest.raises(EventDataError, match="nested 65 levels deep"):
            await dispatcher.emit("alert", nested(100_000))
        with pytest.raises(EventDataError, match="metadata"):
            await dispatcher.emit("alert", {}, metadata=nested(65))
    assert len(receiver.requests) == 1  # only the event within the limit


async def test_self_referencing_data_is_refused_at_emit(receiver: Receiver) -> None:
    loop: dict[str, Any] = {"name": "db-1"}
    loop["parent"] = {"children": [loop]}
    shared = {"region": "eu"}
    async with WebhookDispatcher(webhooks=[CustomWebhook(url=receiver.url())]) as dispatcher:
        with pytest.raises(EventDataError) as refused:
            await dispatcher.emit("alert", {"host": loop})
        assert str(refused.value).startswith(
            "data['host']['parent']['children'][0] refers back to a dict or list that contains it"
        )
        await dispatcher.emit("alert", {"a": shared, "b": shared})  # shared is not a cycle
    assert [r.json()["data"] for r in receiver.requests] == [
        {"a": {"region": "eu"}, "b": {"region": "eu"}}
    ]


def test_the_nesting_limit_is_configurable_within_bounds() -> None:
    for bad in (0, 257, 64.0, True):
        with pytest.raises(ValueError, match="max_data_depth must be a whole number from 1 to 256"):
            WebhookDispatcher(max_data_depth=bad)


async def test_a_dispatcher_limit_applies_to_prebuilt_events(receiver: Receiver) -> None:
    webhook = CustomWebhook(url=receiver.url())
    async with WebhookDispatcher(webhooks=[webhook], max_data_depth=4) as dispatcher:
        with pytest.raises(EventDataError, match="nested 5 levels deep; .* at most 4 levels"):
            await dispatcher.emit("alert", nested(5))
        with pytest.raises(EventDataError, match="at most 4 levels"):
            await dispatcher.emit_event(Event(event_type="alert", data=nested(5)))
        await dispatcher.emit("alert", nested(4))
    async with WebhookDispatcher(webhooks=[webhook], max_data_depth=100) as dispatcher:
        await dispatcher.emit("alert", nested(100))
    assert len(receiver.delivered) == 2


RESUME = """
import asyncio, json, sys
from empathy_webhooks_core import CustomWebhook, WebhookDispatcher

async def main():
    hook = CustomWebhook(name="deep", url=sys.argv[2], retry_policy={"max_retries": 0})
    async with WebhookDispatcher(webhooks=[hook], store=sys.argv[1]) as dispatcher:
        pass
    print(json.dumps(dispatcher.get_webhook_stats("deep")))

asyncio.run(main())
"""


@pytest.mark.parametrize("depth", [64, 256])
async def test_an_event_at_the_limit_is_stored_and_delivered_by_a_fresh_default_process(
    tmp_path: Path, depth: int
) -> None:
    store = f"sqlite:///{tmp_path}/outbox.db"
    async with Receiver() as receiver:
        # The first process is told "not now" (a rate limit of an hour), so the delivery is
        # still pending in the file when it stops.
        receiver.respond(status=429, headers={"Retry-After": "3600"})
        hook = CustomWebhook(name="deep", url=receiver.url(), retry_policy={"max_retries": 0})
        dispatcher = WebhookDispatcher(webhooks=[hook], store=store, max_data_depth=depth)
        event = await dispatcher.emit("alert", nested(depth))
        await receiver.wait_for(1)
        await dispatcher.close(drain=False)
        receiver.respond(status=200)
        # A fresh process with default settings resumes it from the file and delivers it.
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            RESUME,
            store,
            receiver.url(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        assert json.loads(out)["delivered_count"] == 1
        [first, second] = receiver.requests
        assert second.answered == 200
        assert second.body == first.body == event.envelope_bytes()


# -- 5. a missing signing secret is an error ---------------------------------------------------


def test_sign_payload_with_an_unset_secret_is_refused_at_construction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("WEBHOOK_SECRET", raising=False)
    # The reference's own snippet, with the variable unset.
    with pytest.raises(ValueError, match=r"is its environment variable set\?"):
        CustomWebhook(
            url="https://service.example/webhook",
            signing_secret=os.getenv("WEBHOOK_SECRET"),
            sign_payload=True,
        )
    with pytest.raises(ValueError, match=r"sign_payload is True, so signing_secret is required"):
        CustomWebhook(url="https://service.example/webhook", sign_payload=True)
    # Without sign_payload too: None is what an unset variable gives, never "unsigned".
    with pytest.raises(ValueError, match=r"signing_secret is required when given \(got None"):
        CustomWebhook(url="https://service.example/webhook", signing_secret=None)
    # Leaving the secret out still means unsigned; a secret still means signed.
    assert not CustomWebhook(url="https://service.example/webhook").signs
    signed = CustomWebhook(url="https://x.example/", signing_secret="s3cret", sign_payload=True)
    assert signed.signs and attrs.evolve(signed, name="copy").signs


def test_a_config_file_secret_that_is_unset_or_missing_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "webhooks.toml"
    path.write_text(
        '[[webhooks]]\ntype = "custom"\nurl = "https://x.example/"\n'
        'signing_secret = "${WEBHOOK_SECRET}"\n\n'
        '[[webhooks]]\ntype = "custom"\nname = "b"\nurl = "https://x.example/"\n'
        "sign_payload = true\n"
    )
    with pytest.raises(ConfigError) as refused:
        load_config(path, env={}, plugin_manager=build_plugin_manager(load_entry_points=False))
    assert refused.value.problems == [
        "webhooks[0].signing_secret: environment variable WEBHOOK_SECRET is not set",
        "webhooks[1].sign_payload: is True, so signing_secret is required (got none: is its "
        "environment variable set?); requests would otherwise go out unsigned",
    ]


# -- 6. numbers are finite and bounded ---------------------------------------------------------

NOT_FINITE = [math.nan, math.inf, -math.inf]


def _float_fields(cls: type) -> list[str]:
    return [
        field.name
        for field in attrs.fields(cls)
        if field.init and "float" in str(field.type) and not field.name.startswith("_")
    ]


def _every_float_option() -> list[tuple[type, str]]:
    classes: list[type] = [RetryPolicy, RateLimit, BreakerPolicy]
    classes += list(Hooks(get_plugin_manager()).webhook_types().values())
    return [(cls, name) for cls in classes for name in _float_fields(cls)]


def test_the_float_options_are_the_ones_we_know() -> None:
    """A new float option must join the NaN test below (and use `bounds.bounded`)."""
    found = {f"{cls.__name__}.{name}" for cls, name in _every_float_option()}
    assert {
        "RetryPolicy.backoff_multiplier",
        "RetryPolicy.initial_delay_seconds",
        "RetryPolicy.max_delay_seconds",
        "RetryPolicy.jitter",
        "RetryPolicy.timeout_seconds",
        "RetryPolicy.max_retry_after_seconds",
        "RetryPolicy.max_rate_limit_wait_seconds",
        "BreakerPolicy.failure_rate",
        "BreakerPolicy.window_seconds",
        "BreakerPolicy.open_seconds",
    } <= found


@pytest.mark.parametrize("value", NOT_FINITE, ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize(
    ("cls", "name"),
    _every_float_option(),
    ids=lambda item: item if isinstance(item, str) else item.__name__,
)
def test_every_float_option_refuses_nan_and_infinities(cls: type, name: str, value: float) -> None:
    if issubclass(cls, Webhook):
        with pytest.raises(ValueError, match=name):
            _webhook_with(cls, **{name: value})
    else:
        with pytest.raises(ValueError, match=name):
            cls(**{name: value})


def _webhook_with(cls: type, **options: Any) -> Any:
    """A plugin's webhook with every required field filled plausibly, plus `options`."""
    required = {
        "url": "https://x.example/hook",
        "webhook_url": "https://x.example/hook",
        "api_key": "k" * 32,
        "routing_key": "r" * 32,
        "token": "t" * 20,
        "repository": "octo/repo",
        "project": "EMP",
        "email": "bot@example.com",
        "api_token": "t" * 20,
        "sender": "bot@example.com",
        "recipients": ["ops@example.com"],
        "host": "127.0.0.1",
        "port": 25,
    }
    fields = {f.alias or f.name: f for f in attrs.fields(cls) if f.init}
    kwargs = {
        key: value
        for key, value in required.items()
        if key in fields and fields[key].default is attrs.NOTHING
    }
    return cls(**kwargs, **options)


def test_nan_in_a_policy_given_as_a_dict_names_its_place() -> None:
    with pytest.raises(ConfigError, match="timeout_seconds must be a finite number above 0"):
        CustomWebhook(url="https://x.example/", retry_policy={"timeout_seconds": math.nan})
    with pytest.raises(ConfigError, match="max_retry_after_seconds must be a finite number"):
        CustomWebhook(url="https://x.example/", retry_policy={"max_retry_after_seconds": math.nan})


def test_waits_limits_and_concurrency_have_upper_bounds() -> None:
    url = "https://x.example/"
    with pytest.raises(
        ValueError, match="max_concurrency must be a whole number above 0 and at most"
    ):
        CustomWebhook(url=url, max_concurrency=1_000_000)
    with pytest.raises(ValueError, match="max_rate_limit_wait_seconds .* from 0 to 86400"):
        RetryPolicy(max_rate_limit_wait_seconds=1e9)
    with pytest.raises(ValueError, match="max_retry_after_seconds .* from 0 to 86400"):
        RetryPolicy(max_retry_after_seconds=1e9)
    with pytest.raises(ValueError, match="at most 86400"):
        BreakerPolicy(open_seconds=1e9)
    with pytest.raises(ValueError, match="backoff_multiplier .* at most 10"):
        RetryPolicy(backoff_multiplier=1e300)
    with pytest.raises(ValueError, match="max_pending must be a whole number above 0 and at most"):
        CustomWebhook(url=url, max_pending=10**9)
    with pytest.raises(ValueError, match="max_payload_bytes .* at most"):
        CustomWebhook(url=url, max_payload_bytes=10**12)
    with pytest.raises(ValueError, match="max_connections"):
        WebhookDispatcher(max_connections=10**7)
    # The widest legal policy computes every wait without overflowing.
    widest = RetryPolicy(max_retries=100, backoff_multiplier=10, initial_delay_seconds=86_400)
    assert widest.delay(100) == widest.max_delay_seconds


def test_store_and_plugin_float_options_refuse_nan() -> None:
    from empathy_webhooks_core.stores.sqlite import open_sqlite_store

    for value in ("nan", "inf", "-1"):
        with pytest.raises(ValueError, match="retention must be a finite number of 0 or more"):
            open_sqlite_store(f"sqlite:///x.db?retention={value}")
    datadog = pytest.importorskip("empathy_webhooks_datadog")
    with pytest.raises(ValueError, match="metrics_flush_interval must be a finite number"):
        datadog.DatadogWebhook(api_key="k" * 32, metrics_flush_interval=math.nan)
    redis_store = pytest.importorskip("empathy_webhooks_redis.store")
    for option in ("visibility_timeout", "consumer_expiry"):
        with pytest.raises(ValueError, match=f"{option} must be a finite number above 0"):
            redis_store.RedisStore("redis://127.0.0.1:6379/0", **{option: math.nan})
        with pytest.raises(ValueError, match=f"{option} must be a finite number above 0"):
            redis_store.open_redis_store(f"redis://127.0.0.1:6379/0?{option}=nan")


async def test_a_plugin_retry_after_of_nan_does_not_remove_the_wait() -> None:
    policy = RetryPolicy(initial_delay_seconds=2, max_retry_after_seconds=300)
    assert policy.wait_before_retry(1, math.nan) == 2
    assert policy.wait_before_retry(1, math.inf) == 300
    assert policy.rate_limit_wait(1, math.inf) == 3600


# -- 7. a 429 is always a rate limit -----------------------------------------------------------

REFERENCE_RETRY = {"max_retries": 5, "initial_delay_seconds": 0.001, "timeout_seconds": 30}


async def test_a_429_is_a_rate_limit_whatever_retry_on_status_says(receiver: Receiver) -> None:
    receiver.queue(Reply(status=429, headers={"Retry-After": "0"}), Reply(status=200))
    errors: list[DeliveryError] = []
    webhook = CustomWebhook(
        url=receiver.url(),
        # The reference's own list, which does not name 429.
        retry_policy={**REFERENCE_RETRY, "retry_on_status": [500, 502, 503, 504]},
        on_failure=lambda w, e, err: errors.append(err),
    )
    async with WebhookDispatcher(webhooks=[webhook]) as dispatcher:
        await dispatcher.emit("alert", {"message": "disk full"})
    assert [r.answered for r in receiver.requests] == [429, 200]
    assert errors == []


async def test_a_503_with_retry_after_is_honoured_whatever_retry_on_status_says(
    receiver: Receiver,
) -> None:
    receiver.queue(
        Reply(status=503, headers={"Retry-After": "0"}),
        Reply(status=503),  # without Retry-After: the retry list decides (final here)
    )
    errors: list[DeliveryError] = []
    webhook = CustomWebhook(
        url=receiver.url(),
        retry_policy={**REFERENCE_RETRY, "retry_on_status": [500]},
        on_failure=lambda w, e, err: errors.append(err),
    )
    async with WebhookDispatcher(webhooks=[webhook]) as dispatcher:
        await dispatcher.emit("alert", {})
    assert [r.answered for r in receiver.requests] == [503, 503]
    [error] = errors
    assert error.reason == "rejected with HTTP 503"


async def test_rate_limit_answers_stay_within_their_caps(receiver: Receiver) -> None:
    receiver.respond(status=429, headers={"Retry-After": "0"})
    errors: list[DeliveryError] = []
    webhook = CustomWebhook(
        url=receiver.url(),
        retry_policy={
            **REFERENCE_RETRY,
            "retry_on_status": [500],
            "max_rate_limited_attempts": 2,
        },
        on_failure=lambda w, e, err: errors.append(err),
    )
    async with WebhookDispatcher(webhooks=[webhook]) as dispatcher:
        await dispatcher.emit("alert", {})
    [error] = errors
    assert (error.status, error.attempts) == (429, 3)


# -- 8. bounded memory and back-pressure -------------------------------------------------------


async def test_a_full_webhook_refuses_loudly_and_the_others_still_get_the_event() -> None:
    gate = Gate()
    async with Receiver() as slow_receiver, Receiver() as fast_receiver:
        slow_receiver.handler = gate
        slow = CustomWebhook(name="slow", url=slow_receiver.url(), max_pending=3, max_concurrency=1)
        fast = CustomWebhook(name="fast", url=fast_receiver.url(), max_pending=3)
        async with WebhookDispatcher(webhooks=[slow, fast]) as dispatcher:
            for n in range(3):
                await dispatcher.emit("alert", {"n": n})
                await fast_receiver.wait_for(n + 1, delivered=True)
            with pytest.raises(QueueFull) as refused:
                await dispatcher.emit("alert", {"n": 3})
            error = refused.value
            assert str(error) == (
                f"queue full: event {error.event.event_id} (alert) refused for webhook 'slow' "
                "(max_pending=3), which already holds that many pending deliveries; "
                "queued for 'fast'"
            )
            assert (error.refused, error.queued, error.limits) == (["slow"], ["fast"], {"slow": 3})
            stats = dispatcher.get_webhook_stats("slow")
            assert (stats["max_pending"], stats["refused"], stats["queued"]) == (3, 1, 2)
            assert dispatcher.get_webhook_stats("fast")["refused"] == 0
            gate.open.set()
            await dispatcher.drain()
            # Retried for the refused webhook only: nobody gets it twice.
            assert await dispatcher.emit_event(error.event, webhooks=error.refused) == ["slow"]
        slow_ns = [r.json()["data"]["n"] for r in slow_receiver.delivered]
        fast_ns = [r.json()["data"]["n"] for r in fast_receiver.delivered]
        assert (sorted(slow_ns), sorted(fast_ns)) == ([0, 1, 2, 3], [0, 1, 2, 3])


@pytest.fixture(params=["memory", "sqlite"])
def local_store(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    """Each store shipped whose deliveries a dispatcher holds in its own lanes (with Redis,
    workers in other processes hold them, and `max_pending` does not apply to `emit`)."""
    return None if request.param == "memory" else f"sqlite:///{tmp_path / 'outbox.db'}"


async def test_max_pending_holds_for_emits_made_at_the_same_time(local_store: str | None) -> None:
    """100 emits at once to a webhook with max_pending 10 whose answers are held: 10 are
    accepted and 90 refused, whatever the store. A durable store's write takes a while (a
    group commit, a round trip), and each emit used to pass the check while none of the
    others was counted yet: SQLite accepted all 100."""
    gate = Gate()
    async with Receiver() as receiver:
        receiver.handler = gate
        hook = CustomWebhook(name="slow", url=receiver.url(), max_pending=10)
        async with WebhookDispatcher(webhooks=[hook], store=local_store) as dispatcher:
            results = await asyncio.gather(
                *(dispatcher.emit("alert", {"n": n}) for n in range(100)), return_exceptions=True
            )
            refused = [r for r in results if isinstance(r, QueueFull)]
            assert (len(refused), len(results) - len(refused)) == (90, 10)
            stats = dispatcher.get_webhook_stats("slow")
            assert (stats["refused"], stats["queued"] + stats["in_flight"]) == (90, 10)
            gate.open.set()
            await dispatcher.drain(timeout=30)
        assert len(receiver.delivered) == 10


class FailingWrites(MemoryStore):
    """A store whose writes fail: nothing is queued."""

    async def enqueue(self, deliveries: Sequence[Delivery]) -> None:
        await asyncio.sleep(0)
        raise OSError("disk full")


async def test_a_failed_write_counts_nothing_and_leaves_drain_free(receiver: Receiver) -> None:
    """What an emit counts against max_pending while its write is under way is given back
    when the write fails or is cancelled: later emits are not refused for it, and `drain`,
    already waiting, returns."""
    hook = CustomWebhook(name="h", url=receiver.url(), max_pending=1)
    async with WebhookDispatcher(webhooks=[hook], store=FailingWrites()) as dispatcher:
        draining = asyncio.create_task(dispatcher.drain(timeout=10))
        for _ in range(3):
            with pytest.raises(OSError, match="disk full"):
                await dispatcher.emit("alert", {})
        emitting = asyncio.create_task(dispatcher.emit("alert", {}))
        await asyncio.sleep(0)
        emitting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await emitting
        await draining
        assert dispatcher.get_webhook_stats("h")["refused"] == 0
        results = await dispatcher.emit_events([Event(event_type="alert", data={})])
        assert [type(r).__name__ for r in results] == ["OSError"]
        assert dispatcher.get_webhook_stats("h")["queued"] == 0


def test_the_threaded_dispatcher_pushes_back_the_same_way() -> None:
    gate_open = asyncio.Event()  # set from the dispatcher's loop

    async def hold(request: ReceivedRequest) -> Reply:
        await gate_open.wait()
        return Reply()

    async def serve(ready: Any, stop: asyncio.Event) -> None:
        async with Receiver() as receiver:
            receiver.handler = hold
            ready.append(receiver)
            await stop.wait()

    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    ready: list[Receiver] = []
    import threading

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(ready, stop),))
    thread.start()
    try:
        while not ready:
            thread.join(0.01)
        receiver = ready[0]
        webhook = CustomWebhook(name="held", url=receiver.url(), max_pending=2, max_concurrency=1)
        with ThreadedDispatcher(webhooks=[webhook]) as dispatcher:
            dispatcher.emit("alert", {"n": 0})
            dispatcher.emit("alert", {"n": 1})
            with pytest.raises(QueueFull, match="refused for webhook 'held' \\(max_pending=2\\)"):
                dispatcher.emit("alert", {"n": 2})
            assert dispatcher.get_webhook_stats("held")["refused"] == 1
            loop.call_soon_threadsafe(gate_open.set)
        assert len(receiver.delivered) == 2
    finally:
        loop.call_soon_threadsafe(gate_open.set)
        loop.call_soon_threadsafe(stop.set)
        thread.join()
        loop.close()


async def test_resumed_deliveries_are_never_refused_by_max_pending(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/outbox.db"
    gate = Gate()
    async with Receiver() as receiver:
        receiver.handler = gate
        hook = CustomWebhook(name="h", url=receiver.url(), max_concurrency=1)
        dispatcher = WebhookDispatcher(webhooks=[hook], store=store)
        for n in range(5):
            await dispatcher.emit("alert", {"n": n})
        await receiver.wait_for(1)
        await dispatcher.close(drain=False)
        gate.open.set()
        # Restarted with a smaller bound than what is pending: all five resume and go out.
        small = attrs.evolve(hook, max_pending=2)
        async with WebhookDispatcher(webhooks=[small], store=store) as restarted:
            await restarted.drain()
            assert restarted.get_webhook_stats("h")["delivered_count"] == 5
            assert restarted.get_webhook_stats("h")["refused"] == 0


def test_max_pending_has_a_documented_default() -> None:
    assert CustomWebhook(url="https://x.example/").max_pending == 100_000
    docs = (Path(__file__).parents[1] / "docs" / "configuration.md").read_text()
    assert "| `max_pending` | 100000 |" in docs


# -- 9. plugins cannot make a delivery vanish --------------------------------------------------


class AsyncClassifier:
    """The bug the issue found: an `async def` where the core calls synchronously."""

    @hookimpl
    async def classify_response(
        self, webhook: Webhook, request: OutgoingRequest, response: Response
    ) -> Verdict:
        return Verdict(outcome=Outcome.SUCCESS)


def test_an_async_hook_is_refused_when_the_manager_is_built() -> None:
    with pytest.raises(PluginContractError) as refused:
        build_plugin_manager(load_entry_points=False, extra_plugins=[AsyncClassifier()])
    assert "its classify_response hook is `async def`, but the core calls classify_response " in (
        str(refused.value)
    )


def _fake_entry_point(name: str, plugin: Any) -> Any:
    return types.SimpleNamespace(name=name, dist=None, load=lambda: plugin)


async def test_an_installed_async_plugin_is_skipped_and_listed_by_name(
    monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    import importlib.metadata

    broken = _fake_entry_point("asyncy", AsyncClassifier())
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [broken])
    pm = build_plugin_manager(env={})
    [error] = pm.load_errors
    assert (error.name, error.error.split(":")[0]) == ("asyncy", "PluginContractError")
    assert "plugin 'asyncy': its classify_response hook is `async def`" in error.error
    assert not pm.has_plugin("asyncy")
    # The pipeline it would have taken over still works: a 500 is a failure, not a vanishing.
    receiver.queue(Reply(status=500))
    errors: list[DeliveryError] = []
    webhook = CustomWebhook(
        url=receiver.url(),
        retry_policy={"max_retries": 0},
        on_failure=lambda w, e, err: errors.append(err),
    )
    async with WebhookDispatcher(webhooks=[webhook], plugin_manager=pm) as dispatcher:
        await dispatcher.emit("alert", {})
        await dispatcher.drain()
        assert len(await dispatcher.dead_letters()) == 1
    assert [e.status for e in errors] == [500]
    with pytest.raises(PluginContractError, match="asyncy"):
        build_plugin_manager(env={}, strict=True)


def test_an_async_plugin_registered_later_is_refused_by_the_dispatcher() -> None:
    pm = build_plugin_manager(load_entry_points=False)
    pm.register(AsyncClassifier(), name="late")
    with pytest.raises(PluginContractError, match="plugin 'late': its classify_response hook"):
        WebhookDispatcher(plugin_manager=pm)


@attrs.frozen(kw_only=True, eq=False)
class WrongWebhook(CustomWebhook):
    kind: ClassVar[str] = "wrong"


class Wrong:
    """A plugin whose hooks return the wrong things for its own webhook (a `CustomWebhook`
    subclass: where it answers None, the custom plugin and the core's HTTP delivery do)."""

    def __init__(self, hook: str) -> None:
        self.hook = hook

    @hookimpl
    def webhook_types(self) -> dict[str, type[Webhook]]:
        return {"wrong": WrongWebhook}

    @hookimpl
    def format_payload(self, webhook: Webhook, event: Event) -> Any:
        return b"{}" if self.hook == "format_payload" else None

    @hookimpl
    def deliver(self, webhook: Webhook, request: OutgoingRequest, session: Any) -> Any:
        if self.hook == "deliver":
            return 200
        if self.hook == "deliver-answer":

            async def answer() -> Any:
                return {"status": 200}

            return answer()
        return None

    @hookimpl
    def classify_response(self, webhook: Webhook, request: Any, response: Response) -> Any:
        return "delivered" if self.hook == "classify_response" else None


@pytest.mark.parametrize(
    ("hook", "reason"),
    [
        ("format_payload", "format_payload returned a bytes, not an OutgoingRequest"),
        ("deliver", "deliver returned a int, not an awaitable"),
        ("deliver-answer", "deliver answered with a dict, not a Response"),
        ("classify_response", "classify_response returned a str, not a Verdict"),
    ],
)
async def test_a_wrong_hook_result_fails_the_delivery_loudly(
    receiver: Receiver, caplog: pytest.LogCaptureFixture, hook: str, reason: str
) -> None:
    caplog.set_level(logging.ERROR, logger="empathy_webhooks")
    pm = build_plugin_manager(load_entry_points=False)
    pm.register(Wrong(hook), name="wrong")
    errors: list[DeliveryError] = []
    webhook = WrongWebhook(url=receiver.url(), on_failure=lambda w, e, err: errors.append(err))
    async with WebhookDispatcher(webhooks=[webhook], plugin_manager=pm) as dispatcher:
        event = await dispatcher.emit("alert", {})
        await dispatcher.drain()
        [letter] = await dispatcher.dead_letters()
        assert dispatcher.get_webhook_stats("wrong_webhook")["failed_count"] == 1
    [error] = errors
    assert error.event_id == event.event_id and error.attempts == 1
    assert f"plugin 'wrong': {reason} (a plugin bug)" in error.reason
    assert letter.error["reason"] == error.reason
    assert any("plugin_contract_broken" in r.getMessage() for r in caplog.records)


@attrs.frozen(kw_only=True, eq=False)
class HangingWebhook(CustomWebhook):
    kind: ClassVar[str] = "hanging"


class NeverAnswers:
    @hookimpl
    def webhook_types(self) -> dict[str, type[Webhook]]:
        return {"hanging": HangingWebhook}

    @hookimpl
    def deliver(self, webhook: Webhook, request: OutgoingRequest, session: Any) -> Any:
        return asyncio.Event().wait()  # a plugin's send that hangs forever


async def test_a_deliver_that_never_returns_ends_as_a_retried_timeout() -> None:
    pm = build_plugin_manager(load_entry_points=False, extra_plugins=[NeverAnswers()])
    errors: list[DeliveryError] = []
    webhook = HangingWebhook(
        url="http://127.0.0.1:9/never",
        retry_policy={"max_retries": 1, "timeout_seconds": 0.05, "initial_delay_seconds": 0},
        on_failure=lambda w, e, err: errors.append(err),
        circuit_breaker=False,
    )
    async with WebhookDispatcher(webhooks=[webhook], plugin_manager=pm) as dispatcher:
        await dispatcher.emit("alert", {})
        await dispatcher.drain(timeout=30)
        assert len(await dispatcher.dead_letters()) == 1
    [error] = errors
    assert error.attempts == 2
    assert error.reason == "TimeoutError: no answer within 0.05 s; gave up after 2 attempts"


class BrokenLimiter:
    async def reserve(self) -> float:
        raise RuntimeError("limiter lost its connection")


class BrokenLimiterStore(MemoryStore):
    """A store whose shared rate limiter fails: an error no attempt ever sees."""

    def make_rate_limiter(self, webhook: Webhook, clock: Any) -> BrokenLimiter:
        return BrokenLimiter()


async def test_an_unexpected_worker_error_dead_letters_the_delivery_and_tells_on_failure(
    receiver: Receiver,
) -> None:
    errors: list[DeliveryError] = []
    webhook = CustomWebhook(
        url=receiver.url(),
        rate_limit={"max_requests_per_second": 5},
        on_failure=lambda w, e, err: errors.append(err),
    )
    async with WebhookDispatcher(webhooks=[webhook], store=BrokenLimiterStore()) as dispatcher:
        event = await dispatcher.emit("alert", {})
        await dispatcher.drain(timeout=30)
        [letter] = await dispatcher.dead_letters()
        stats = dispatcher.get_webhook_stats("custom_webhook")
    [error] = errors
    assert error.event_id == letter.event.event_id == event.event_id
    assert error.reason.startswith(
        "internal error: RuntimeError: limiter lost its connection (at test_nothing_silent.py:"
    )
    assert error.reason.endswith(" in reserve)")
    assert letter.error["reason"] == error.reason
    assert (stats["failed_count"], stats["dead_letters"], stats["queued"]) == (1, 1, 0)
    assert receiver.requests == []


class UnrecordingStore(MemoryStore):
    """A store that cannot record a delivery as delivered (its backend went away)."""

    async def mark_delivered(self, delivery: Delivery) -> None:
        raise ConnectionError("outbox unreachable")


async def test_a_delivery_the_store_cannot_mark_is_still_a_success_said_loudly(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """The service said yes: no dead letter, no on_failure (which told the team a delivered
    alert had failed, and a replay sent it twice), the success counted; the store's failure
    is logged with the delivery's ids."""
    failures: list[DeliveryError] = []
    webhook = CustomWebhook(url=receiver.url(), on_failure=lambda w, e, err: failures.append(err))
    async with WebhookDispatcher(webhooks=[webhook], store=UnrecordingStore()) as dispatcher:
        event = await dispatcher.emit("alert", {"service": "checkout"})
        await dispatcher.drain(timeout=30)
        letters = await dispatcher.dead_letters()
        stats = dispatcher.get_webhook_stats("custom_webhook")
    assert len(receiver.requests) == 1
    assert (letters, failures) == ([], [])
    assert (stats["delivered_count"], stats["failed_count"], stats["dead_letters"]) == (1, 0, 0)
    [line] = [r.getMessage() for r in caplog.records if "delivered_not_recorded" in r.getMessage()]
    assert event.event_id in line and "outbox unreachable" in line


def listener(name: str, seen: list[str], **order: bool) -> Any:
    class Listener:
        @hookimpl(**order)
        def on_failure(self, webhook: Webhook, event: Event, error: DeliveryError) -> None:
            seen.append(name)

    return Listener()


async def test_broadcast_hooks_run_in_pluggys_order(receiver: Receiver) -> None:
    seen: list[str] = []
    plugins = [
        listener("last", seen, trylast=True),
        listener("plain", seen),
        listener("first", seen, tryfirst=True),
        listener("plain-later", seen),
    ]
    pm = build_plugin_manager(load_entry_points=False, extra_plugins=plugins)
    receiver.respond(status=400)
    async with WebhookDispatcher(CustomWebhook(url=receiver.url()), plugin_manager=pm) as d:
        await d.emit("alert", {})
    # What pluggy itself does: tryfirst, plain ones (last registered first), trylast.
    assert seen == ["first", "plain-later", "plain", "last"]
    seen.clear()
    pm.hook.on_failure(webhook=None, event=None, error=None)
    assert seen == ["first", "plain-later", "plain", "last"]


# -- 11. a failure callback that raises is loud and counted ------------------------------------


async def test_a_raising_callback_is_logged_with_webhook_and_event_and_counted(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="empathy_webhooks")
    receiver.respond(status=400)

    def store_failed_webhook(webhook: Any, event: Event, error: DeliveryError) -> None:
        raise AttributeError("'GitHubWebhook' object has no attribute 'url'")

    webhook = CustomWebhook(name="cb", url=receiver.url(), on_failure=store_failed_webhook)
    async with WebhookDispatcher(webhooks=[webhook]) as dispatcher:
        event = await dispatcher.emit("alert", {})
        await dispatcher.drain()
        assert dispatcher.get_webhook_stats("cb")["callback_errors"] == 1
    [line] = [
        r.getMessage() for r in caplog.records if "on_failure_callback_failed" in r.getMessage()
    ]
    assert "webhook='cb'" in line and f"event_id='{event.event_id}'" in line
    assert "AttributeError" in line and "has no attribute 'url'" in line


# -- 12. stats outlive the dispatcher ----------------------------------------------------------


async def _deliver_once(url: str, name: str) -> None:
    async with WebhookDispatcher(webhooks=[CustomWebhook(name=name, url=url)]) as dispatcher:
        await dispatcher.emit("alert", {})


async def test_stats_outlive_the_dispatcher_until_a_new_one_takes_the_name(
    receiver: Receiver,
) -> None:
    await _deliver_once(receiver.url(), "outliving")
    gc.collect()  # the dispatcher is gone
    stats = WebhookMonitor().get_webhook_stats("outliving")
    assert (stats["delivered_count"], stats["attempts"], stats["queued"]) == (1, 1, 0)
    assert "outliving" in WebhookMonitor().webhook_names()
    # A new dispatcher taking the name starts its own figures.
    async with WebhookDispatcher(webhooks=[CustomWebhook(name="outliving", url=receiver.url())]):
        assert WebhookMonitor().get_webhook_stats("outliving")["delivered_count"] == 0


async def test_an_unknown_name_lists_the_known_ones(receiver: Receiver) -> None:
    await _deliver_once(receiver.url(), "known_one")
    with pytest.raises(UnknownWebhookError) as unknown:
        WebhookMonitor().get_webhook_stats("knwon_one")
    assert isinstance(unknown.value, KeyError)
    assert str(unknown.value).startswith("no webhook named 'knwon_one' (known: ")
    assert "known_one" in str(unknown.value)


# -- 15. bad input fails at emit, not at send time ---------------------------------------------


@pytest.mark.parametrize(
    "event_type", ["alert\r\nX-Injected: 1", "alert\n", "alert\x00", "alert" * 1000]
)
async def test_event_types_with_line_breaks_or_nul_are_refused_at_emit(
    receiver: Receiver, event_type: str
) -> None:
    async with WebhookDispatcher(webhooks=[CustomWebhook(url=receiver.url())]) as dispatcher:
        with pytest.raises(ValueError, match="event_type must be at most 1024 characters, without"):
            await dispatcher.emit(event_type, {})
    assert receiver.requests == []


async def test_integers_beyond_json_interoperability_are_refused_at_emit(
    receiver: Receiver,
) -> None:
    async with WebhookDispatcher(webhooks=[CustomWebhook(url=receiver.url())]) as dispatcher:
        for number in (2**53, -(2**53), 10**30, 10**5000):
            with pytest.raises(EventDataError, match=r"data\['n'\] is .*beyond ±\(2\^53 - 1\)"):
                await dispatcher.emit("alert", {"n": number})
        await dispatcher.emit("alert", {"n": MAX_SAFE_INTEGER, "m": -MAX_SAFE_INTEGER})
    [request] = receiver.requests
    assert request.json()["data"] == {"n": 9007199254740991, "m": -9007199254740991}


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"X-Team\r\nX-Injected": "1"}, "header name 'X-Team\\r\\nX-Injected' is not a valid"),
        ({"X Team": "1"}, "header name 'X Team' is not a valid"),
        ({"X-Team": "ops\r\nX-Injected: 1"}, "header 'X-Team' has a line break or NUL"),
        ({"X-Team": "ops\x00"}, "header 'X-Team' has a line break or NUL"),
    ],
)
def test_bad_header_names_and_values_are_refused_when_the_webhook_is_built(
    headers: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError) as refused:
        CustomWebhook(url="https://x.example/", headers=headers)
    assert str(refused.value).startswith(message)


# -- 16. config errors exit 2; a failed start closes what it opened ----------------------------


def test_deeply_nested_toml_is_one_clear_line_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "webhooks.toml"
    depth = 3000
    path.write_text(
        '[[webhooks]]\ntype = "custom"\nurl = "https://x.example/"\n'
        f"templates = {{ alert = {'[' * depth}{']' * depth} }}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMPATHY_WEBHOOKS")}
    done = subprocess.run(
        [CLI, "validate", "--config", str(path)],
        capture_output=True,
        text=True,
        env={**env, "EMPATHY_WEBHOOKS_LOAD_PLUGINS": ""},
        timeout=60,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert f"{path}, line 4: nested more than 64 levels deep" in done.stderr
    assert len(done.stderr.splitlines()) <= 3


def test_deeply_nested_settings_given_as_a_dict_name_their_path() -> None:
    data = {"webhooks": [{"type": "custom", "url": "https://x.example/", "templates": nested(80)}]}
    with pytest.raises(ConfigError) as refused:
        parse_config(data, env={}, plugin_manager=build_plugin_manager(load_entry_points=False))
    [problem] = refused.value.problems
    assert problem.startswith("webhooks[0].templates.a.a.a")
    assert problem.endswith(": nested more than 64 levels deep")


class FailingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.closed = False

    async def open(self) -> Any:
        raise OSError("disk gone")

    async def close(self) -> None:
        self.closed = True


def _unclosed_sessions(record: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in record if "Unclosed client session" in str(w.message)]


async def test_a_failed_start_closes_the_session_and_store_it_opened() -> None:
    store = FailingStore()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        dispatcher = WebhookDispatcher(CustomWebhook(url="https://x.example/"), store=store)
        with pytest.raises(OSError, match="disk gone"):
            await dispatcher.emit("alert", {})
        assert store.closed
        del dispatcher
        gc.collect()
    assert _unclosed_sessions(record) == []


async def test_a_start_failing_after_the_workers_began_stops_them_and_can_be_retried(
    receiver: Receiver,
) -> None:
    hook = CustomWebhook(name="main", url=receiver.url(), fallback="no_such_webhook")
    dispatcher = WebhookDispatcher(webhooks=[hook])
    before = len(asyncio.all_tasks())
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with pytest.raises(ValueError, match="names fallback 'no_such_webhook'"):
            await dispatcher.start()
        assert len(asyncio.all_tasks()) == before  # no worker left running
        dispatcher.add_webhook(CustomWebhook(name="no_such_webhook", url=receiver.url()))
        async with dispatcher:
            await dispatcher.emit("alert", {})
        gc.collect()
    assert _unclosed_sessions(record) == []
    assert len(receiver.delivered) == 2  # both webhooks take every event


async def test_a_dispatcher_given_a_session_never_closes_it_on_a_failed_start() -> None:
    async with aiohttp.ClientSession() as session:
        dispatcher = WebhookDispatcher(
            CustomWebhook(url="https://x.example/"), store=FailingStore(), session=session
        )
        with pytest.raises(OSError, match="disk gone"):
            await dispatcher.start()
        assert not session.closed
