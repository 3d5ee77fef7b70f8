"""Audit of what users rely on to know what happened and to verify what they receive: the
receiving helpers, `ThreadedDispatcher` at its edges (its own thread, close under load,
interpreter exit), and the figures a scraper reads while deliveries run."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import ClientSession, web

from empathy_webhooks_core import CustomWebhook, ThreadedDispatcher, WebhookDispatcher
from empathy_webhooks_core.monitor import StatsRecorder, WebhookMonitor, combine
from empathy_webhooks_core.receiving import verification_middleware, verified_handler
from empathy_webhooks_core.signing import standard_signature, x_signature
from empathy_webhooks_core.testing import Receiver, Reply

# -- receiving ----------------------------------------------------------------------------------


@pytest.mark.parametrize("tolerance", [float("nan"), float("inf"), -1.0, "300"])
def test_the_receiving_helpers_refuse_a_tolerance_that_is_not_a_finite_number(
    tolerance: Any,
) -> None:
    # NaN compared false both ways: a year-old captured request verified (no replay check).
    with pytest.raises(ValueError, match="tolerance"):
        verified_handler("s3cret", lambda request, event: None, tolerance=tolerance)
    with pytest.raises(ValueError, match="tolerance"):
        verification_middleware("s3cret", tolerance=tolerance)


@pytest.mark.parametrize(
    "secret", [[""], ["", ""], ("",), "whsec_", "whsec_!!!!", ["whsec_%%%", ""], [None]]
)
def test_the_receiving_helpers_refuse_secrets_that_can_verify_nothing(secret: Any) -> None:
    # Accepted before: every request was refused with 401 and the reason only at debug level.
    for build in (
        lambda: verified_handler(secret, lambda request, event: None),
        lambda: verification_middleware(secret),
    ):
        with pytest.raises(ValueError, match="secret") as caught:
            build()
        assert "!!!!" not in str(caught.value) and "%%%" not in str(caught.value)


@pytest.fixture
async def app_url() -> AsyncIterator[Callable[[str], str]]:
    async def on_event(request: web.Request, event: Any) -> dict[str, Any]:
        return {"seen": event["event_id"]}

    secret = "whsec_" + base64.b64encode(b"r" * 24).decode()
    app = web.Application()
    app.router.add_post("/hook", verified_handler([secret, "old-secret"], on_event))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield lambda path: f"http://127.0.0.1:{port}{path}"
    finally:
        await runner.cleanup()


async def test_a_replayed_or_re_encoded_request_is_refused_by_the_aiohttp_helper(
    app_url: Callable[[str], str],
) -> None:
    secret = "whsec_" + base64.b64encode(b"r" * 24).decode()
    body = json.dumps({"event_id": "evt_1"}).encode()
    now = int(time.time())

    def standard(stamp: int, data: bytes = body) -> dict[str, str]:
        return {
            "webhook-id": "evt_1",
            "webhook-timestamp": str(stamp),
            "webhook-signature": standard_signature("evt_1", stamp, data, secret),
        }

    cases = [
        (standard(now), body, 200),
        # Rotation on the sender: one stale entry, one good one.
        (
            standard(now) | {"webhook-signature": "v1,AAAA " + standard(now)["webhook-signature"]},
            body,
            200,
        ),
        (standard(now - 301), body, 401),
        (standard(now + 301), body, 401),
        ({**standard(now), "webhook-timestamp": "nan"}, body, 401),
        ({**standard(now), "webhook-timestamp": "1e3"}, body, 401),
        ({**standard(now), "webhook-timestamp": "9" * 40}, body, 401),
        # The same JSON, re-encoded with other whitespace.
        (standard(now), json.dumps({"event_id": "evt_1"}, indent=1).encode(), 401),
        (
            {"webhook-id": "evt_1", "webhook-timestamp": str(now), "webhook-signature": ""},
            body,
            401,
        ),
        ({"X-Signature": ""}, body, 401),
        # X-Signature alone: no timestamp, so refused by default (replayable forever).
        ({"X-Signature": x_signature(body, "old-secret")}, body, 401),
    ]
    async with ClientSession() as session:
        for headers, data, expected in cases:
            async with session.post(app_url("/hook"), data=data, headers=headers) as answer:
                assert answer.status == expected, headers
                text = await answer.text()
                assert secret not in text and "old-secret" not in text


# -- ThreadedDispatcher -------------------------------------------------------------------------


def _finishes(work: Callable[[], Any], seconds: float) -> list[Any]:
    """Run `work` in a thread; fail (rather than hang the run) if it has not returned."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(work())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still waiting after {seconds} s: a deadlock"
    return outcome


def test_emit_from_an_on_failure_callback_raises_instead_of_deadlocking() -> None:
    seen: list[str] = []
    holder: list[ThreadedDispatcher] = []

    def on_failure(webhook: Any, event: Any, error: Any) -> None:
        try:
            holder[0].emit("followup", {})
        except RuntimeError as exc:
            seen.append(str(exc))
            raise

    webhook = CustomWebhook(
        name="audit-sync-callback",
        url="http://127.0.0.1:9/nothing-listens",
        retry_policy={"max_retries": 0},
        on_failure=on_failure,
    )

    def scenario() -> dict[str, Any]:
        with ThreadedDispatcher(webhooks=[webhook]) as dispatcher:
            holder.append(dispatcher)
            dispatcher.emit("alert", {})
            dispatcher.drain()
            return dispatcher.get_webhook_stats("audit-sync-callback")

    [stats] = _finishes(scenario, 20)
    assert isinstance(stats, dict), stats
    assert stats["failed_count"] == 1 and stats["callback_errors"] == 1
    [message] = seen
    assert "own thread" in message and "await" in message


def test_close_on_the_loop_thread_raises_instead_of_deadlocking() -> None:
    dispatcher = ThreadedDispatcher(webhooks=[CustomWebhook(url="http://127.0.0.1:9/")])
    try:
        future = asyncio.run_coroutine_threadsafe(_call_async(dispatcher.close), dispatcher._loop)
        [error] = _finishes(lambda: future.result(), 10)
        assert isinstance(error, RuntimeError) and "own thread" in str(error)
    finally:
        dispatcher.close()


async def _call_async(function: Callable[[], Any]) -> Any:
    return function()


def test_close_while_threads_emit_drains_what_was_accepted_and_no_emitter_hangs(
    receiver_url: str,
) -> None:
    name = "audit-sync-close"
    webhook = CustomWebhook(name=name, url=receiver_url, max_pending=100_000)
    dispatcher = ThreadedDispatcher(webhooks=[webhook])
    accepted = [0] * 8
    endings: list[BaseException] = []

    def emitter(slot: int) -> None:
        while True:
            try:
                dispatcher.emit("alert", {"slot": slot})
            except BaseException as exc:
                endings.append(exc)
                return
            accepted[slot] += 1

    threads = [threading.Thread(target=emitter, args=(n,), daemon=True) for n in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    # Before: emits kept being accepted while close drained (it never finished under a steady
    # stream), and emitters caught by the loop's stop waited forever.
    _finishes(dispatcher.close, 30)
    for thread in threads:
        thread.join(5)
        assert not thread.is_alive(), "an emitter waits forever on a stopped loop"
    assert len(endings) == 8
    assert all(isinstance(e, RuntimeError) and "closed" in str(e) for e in endings), endings
    stats = WebhookMonitor().get_webhook_stats(name)
    assert stats["delivered_count"] == sum(accepted) > 0
    assert stats["queued"] == stats["in_flight"] == 0


def test_a_build_that_fails_leaves_no_loop_thread_behind() -> None:
    before = {t.ident for t in threading.enumerate()}
    with pytest.raises(TypeError):
        ThreadedDispatcher(webhooks=[CustomWebhook(url="http://127.0.0.1:9/")], no_such_option=1)
    time.sleep(0.05)
    assert [t.name for t in threading.enumerate() if t.ident not in before] == []


_NEVER_CLOSED = """
import sys
from empathy_webhooks_core import CustomWebhook, ThreadedDispatcher

webhook = CustomWebhook(name="exit", url=sys.argv[1], retry_policy={"initial_delay_seconds": 0.5})
dispatcher = ThreadedDispatcher(webhooks=[webhook])
for n in range(3):
    dispatcher.emit("alert", {"n": n})
# No close(): the host simply returns.
"""


def test_an_interpreter_exit_without_close_still_delivers(receiver_url: str) -> None:
    # The first attempt's connection is dropped, so the retry, during the exit, opens a new
    # one to `localhost`: a name lookup, which needs an executor. Before, nothing was sent
    # and nothing said; the exit hook must also run while executors still take work.
    _received[0].queue(Reply(reset=True))
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(_NEVER_CLOSED),
            receiver_url.replace("127.0.0.1", "localhost"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert _received_count() == 4


_received: list[Any] = []


def _received_count() -> int:
    receiver = _received[0]
    deadline = time.monotonic() + 5
    while len(receiver.requests) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    return len(receiver.requests)


@pytest.fixture
def receiver_url() -> Any:
    """A receiver on its own loop in a thread, for the synchronous tests."""
    loop = asyncio.new_event_loop()
    receiver = Receiver()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(receiver.start(), loop).result(5)
    _received[:] = [receiver]
    yield receiver.url()
    asyncio.run_coroutine_threadsafe(receiver.stop(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    loop.close()


# -- figures read from another thread -----------------------------------------------------------


def test_stats_read_from_a_scrape_thread_while_attempts_are_answered() -> None:
    # prometheus_client's start_http_server scrapes from its own thread while the loop
    # records answers: "deque mutated during iteration" failed the whole scrape.
    recorder = StatsRecorder()
    for _ in range(2048):
        recorder.answer(1.0)
    stop = threading.Event()

    def answering() -> None:
        while not stop.is_set():
            recorder.answer(2.0)
            recorder.details[f"k{len(recorder.details) % 64}"] += 1

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    thread = threading.Thread(target=answering, daemon=True)
    thread.start()
    try:
        for _ in range(300):
            stats = combine([recorder], {})
            assert stats["p50_response_time_ms"] is not None
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(switch)


# -- Prometheus ---------------------------------------------------------------------------------

prometheus_client = pytest.importorskip("prometheus_client", reason="the prometheus extra")


async def test_a_webhook_named_with_its_secret_url_is_masked_in_the_scrape(
    receiver: Receiver,
) -> None:
    from empathy_webhooks_core.prometheus import register_collector

    secret_name = "https://hooks.slack.com/services/T0AUDIT/B0AUDIT/XOXAUDITSECRET"
    webhook = CustomWebhook(name=secret_name, url=receiver.url())
    async with WebhookDispatcher(webhooks=[webhook]) as dispatcher:
        await dispatcher.emit("alert", {})
        await dispatcher.drain()
        registry = prometheus_client.CollectorRegistry()
        register_collector(registry, dispatcher.monitor)
        text = prometheus_client.generate_latest(registry).decode()
    assert "XOXAUDITSECRET" not in text
    assert (
        'empathy_webhooks_delivered_total{webhook="https://hooks.slack.com/services/***"} 1.0'
        in (text.splitlines())
    )


async def test_plugin_figures_whose_names_meet_make_one_series(receiver: Receiver) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from empathy_webhooks_core import hookimpl
    from empathy_webhooks_core.plugins import build_plugin_manager
    from empathy_webhooks_core.prometheus import register_collector

    class Figures:
        @hookimpl
        def webhook_stats(self, webhook: Any, state: Any) -> dict[str, Any]:
            return {"sent-ok": 1, "sent_ok": 2}

    pm = build_plugin_manager(env={"EMPATHY_WEBHOOKS_LOAD_PLUGINS": ""}, extra_plugins=[Figures()])
    webhook = CustomWebhook(name="figures", url=receiver.url())
    async with WebhookDispatcher(webhooks=[webhook], plugin_manager=pm) as dispatcher:
        registry = prometheus_client.CollectorRegistry()
        register_collector(registry, dispatcher.monitor)
        text = prometheus_client.generate_latest(registry).decode()
    # Before: the same series twice, which Prometheus refuses as a duplicate sample.
    [family] = [f for f in text_string_to_metric_families(text) if f.name.endswith("_sent_ok")]
    assert [(s.labels, s.value) for s in family.samples] == [({"webhook": "figures"}, 1.0)]


@pytest.mark.parametrize(
    ("tolerance", "now_offset"),
    [(float("nan"), 0.0), (float("inf"), 0.0), (-1.0, 0.0), (300.0, float("nan"))],
)
def test_the_verifier_refuses_a_tolerance_or_clock_that_turns_replay_protection_off(
    tolerance: float, now_offset: float
) -> None:
    """A stale request verified with `tolerance=nan` or `inf` (or `now=nan`): NaN compares
    false both ways, so the age check passed."""
    from empathy_webhooks_core.signing import verify_request, verify_standard_webhook

    secret, body, stale = "s3cret-value", b'{"event_id": "evt_1"}', int(time.time()) - 100_000
    headers = {
        "webhook-id": "evt_1",
        "webhook-timestamp": str(stale),
        "webhook-signature": standard_signature("evt_1", stale, body, secret),
    }
    now = time.time() + now_offset
    assert not verify_standard_webhook(body, headers, secret, tolerance=tolerance, now=now)
    assert not verify_request(body, headers, secret, tolerance=tolerance, now=now)


async def test_the_middleware_takes_one_path_as_that_path_not_its_substrings() -> None:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(middlewares=[verification_middleware("s3cret-value", paths="/hook")])
    app.router.add_post("/hook", ok)
    app.router.add_post("/ho", ok)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with ClientSession() as session:
            async with session.post(f"http://127.0.0.1:{port}/hook", data=b"{}") as answer:
                assert answer.status == 401  # unsigned, on the path named
            async with session.post(f"http://127.0.0.1:{port}/ho", data=b"{}") as answer:
                assert answer.status == 200  # not named ("/ho" is only part of "/hook")
    finally:
        await runner.cleanup()
