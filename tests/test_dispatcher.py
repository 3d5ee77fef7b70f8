"""The dispatcher against a real loopback receiver: bytes on the wire, routing, lifecycle."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from empathy_webhooks_core import (
    USER_AGENT,
    CustomWebhook,
    Event,
    EventDataError,
    ThreadedDispatcher,
    WebhookConfig,
    WebhookDispatcher,
    __version__,
)
from empathy_webhooks_core.testing import ReceivedRequest, Receiver, Reply

from .conftest import FAST


async def test_custom_webhook_sends_the_envelope_exactly(receiver: Receiver) -> None:
    webhook = CustomWebhook(
        url=receiver.url("/webhooks/empathy"),
        headers={"Authorization": "Bearer t0ken-value", "X-Team": "platform"},
    )
    async with WebhookDispatcher(webhooks=[webhook], framework_version="1.8.0") as dispatcher:
        event = await dispatcher.emit(
            "prediction",
            {"prediction": "Auth deployment may conflict", "confidence": 0.87},
            user_id="developer_123",
            empathy_level=4,
            metadata={"model": "claude-sonnet-4.5"},
        )
    [request] = receiver.requests
    assert request.method == "POST"
    assert request.path == "/webhooks/empathy"
    stamp = event.to_envelope()["timestamp"]
    assert (
        request.body
        == (
            '{"event_type":"prediction","event_id":"'
            + event.event_id
            + '","timestamp":"'
            + stamp
            + '","user_id":"developer_123","empathy_level":4,"data":{"prediction":"Auth deployment'
            ' may conflict","confidence":0.87},"metadata":{"framework_version":"1.8.0"'
            ',"model":"claude-sonnet-4.5"}}'
        ).encode()
    )
    assert request.header("Content-Type") == "application/json"
    assert request.header("User-Agent") == USER_AGENT
    assert USER_AGENT.startswith(f"empathy-webhooks/{__version__} ")
    assert request.header("X-Empathy-Event-Id") == event.event_id
    assert request.header("X-Empathy-Event-Type") == "prediction"
    assert request.header("Authorization") == "Bearer t0ken-value"
    assert request.header("X-Team") == "platform"
    assert request.header("X-Signature") is None  # no secret, no signature


async def test_event_id_header_is_the_same_on_every_attempt(receiver: Receiver) -> None:
    receiver.queue(Reply(status=503), Reply(status=500))
    webhook = CustomWebhook(url=receiver.url(), retry_policy=FAST)
    async with WebhookDispatcher(webhooks=[webhook]) as dispatcher:
        event = await dispatcher.emit("alert", {"message": "disk full"})
    assert [r.answered for r in receiver.requests] == [503, 500, 200]
    assert {r.header("X-Empathy-Event-Id") for r in receiver.requests} == {event.event_id}
    assert len({r.body for r in receiver.requests}) == 1


async def test_severity_and_classification_travel_when_set(receiver: Receiver) -> None:
    async with WebhookDispatcher(webhooks=[CustomWebhook(url=receiver.url())]) as dispatcher:
        await dispatcher.emit("compliance_violation", {}, severity="high", classification="PHI")
    body = receiver.requests[0].json()
    assert body["severity"] == "high"
    assert body["classification"] == "PHI"


async def test_routing_by_star_exact_names_globs_and_filters(receiver: Receiver) -> None:
    everything = CustomWebhook(name="all", url=receiver.url("/all"), events=["*"])
    exact = CustomWebhook(name="exact", url=receiver.url("/exact"), events=["prediction", "alert"])
    glob = CustomWebhook(name="glob", url=receiver.url("/glob"), events=["security_*"])
    high = CustomWebhook(
        name="high",
        url=receiver.url("/high"),
        events=["alert"],
        filter=lambda event: event.severity == "high",
    )
    sensitive = CustomWebhook(
        name="sensitive",
        url=receiver.url("/sensitive"),
        events=["compliance_violation", "phi_access"],
        filter=lambda event: event.classification == "SENSITIVE",
    )
    async with WebhookDispatcher(webhooks=[everything, exact, glob, high, sensitive]) as d:
        await d.emit("prediction", {})
        await d.emit("alert", {}, severity="low")
        await d.emit("alert", {}, severity="high")
        await d.emit("security_vulnerability", {})
        await d.emit("phi_access", {}, classification="SENSITIVE")
        await d.emit("phi_access", {}, classification="PUBLIC")
        await d.emit("test_failure", {})
    by_path: dict[str, list[str]] = {}
    for request in receiver.requests:
        by_path.setdefault(request.path, []).append(request.json()["event_type"])
    assert sorted(by_path["/all"]) == sorted(
        [
            "prediction",
            "alert",
            "alert",
            "security_vulnerability",
            "phi_access",
            "phi_access",
            "test_failure",
        ]
    )
    assert sorted(by_path["/exact"]) == ["alert", "alert", "prediction"]
    assert by_path["/glob"] == ["security_vulnerability"]
    assert by_path["/high"] == ["alert"]
    assert (
        receiver.requests[[r.path for r in receiver.requests].index("/high")].json()["severity"]
        == "high"
    )
    assert by_path["/sensitive"] == ["phi_access"]


async def test_a_raising_filter_skips_only_that_webhook(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: Event) -> bool:
        raise KeyError("severity")

    bad = CustomWebhook(name="bad", url=receiver.url("/bad"), filter=broken)
    good = CustomWebhook(name="good", url=receiver.url("/good"))
    caplog.set_level(logging.ERROR, logger="empathy_webhooks")
    async with WebhookDispatcher(webhooks=[bad, good]) as dispatcher:
        event = await dispatcher.emit("alert", {"message": "x"})
    assert [r.path for r in receiver.requests] == ["/good"]
    [record] = [r for r in caplog.records if "filter_failed" in r.getMessage()]
    assert "webhook='bad'" in record.getMessage()
    assert f"event_id='{event.event_id}'" in record.getMessage()
    assert "KeyError" in record.getMessage()


async def test_non_serialisable_data_is_refused_before_anything_is_queued(
    receiver: Receiver,
) -> None:
    async with WebhookDispatcher(webhooks=[CustomWebhook(url=receiver.url())]) as dispatcher:
        with pytest.raises(EventDataError, match=r"data\['obj'\] is not JSON-serialisable: object"):
            await dispatcher.emit("alert", {"obj": object()})
        assert dispatcher.get_webhook_stats("custom_webhook")["queued"] == 0
    assert receiver.requests == []


async def test_emit_returns_before_delivery_and_a_hanging_webhook_delays_no_other() -> None:
    release = asyncio.Event()

    async def hang(request: ReceivedRequest) -> Reply:
        await release.wait()
        return Reply(status=200)

    async with Receiver() as slow, Receiver() as fast:
        slow.handler = hang
        webhooks = [
            CustomWebhook(name="slow", url=slow.url()),
            CustomWebhook(name="fast", url=fast.url()),
        ]
        async with WebhookDispatcher(webhooks=webhooks) as dispatcher:
            for number in range(20):
                await dispatcher.emit("alert", {"n": number})
            # The slow endpoint holds every connection it got; the fast one is not held back.
            await fast.wait_for(20, delivered=True)
            assert dispatcher.get_webhook_stats("slow")["delivered_count"] == 0
            assert dispatcher.get_webhook_stats("fast")["delivered_count"] == 20
            release.set()
        assert len(slow.delivered) == 20


async def test_drain_waits_for_every_delivery_and_close_drains(receiver: Receiver) -> None:
    receiver.queue(*[Reply(status=500)] * 5)
    webhook = CustomWebhook(url=receiver.url(), retry_policy=FAST, circuit_breaker=False)
    dispatcher = WebhookDispatcher(webhooks=[webhook])
    for number in range(30):
        await dispatcher.emit("alert", {"n": number})
    await dispatcher.drain()
    assert len(receiver.delivered) == 30
    for number in range(10):
        await dispatcher.emit("alert", {"n": 100 + number})
    await dispatcher.close()
    assert len(receiver.delivered) == 40
    with pytest.raises(RuntimeError, match="closed"):
        await dispatcher.emit("alert", {})


async def test_drain_timeout_says_how_many_are_pending() -> None:
    release = asyncio.Event()

    async def hang(request: ReceivedRequest) -> Reply:
        await release.wait()
        return Reply()

    async with Receiver() as receiver:
        receiver.handler = hang
        dispatcher = WebhookDispatcher(webhooks=[CustomWebhook(url=receiver.url())])
        await dispatcher.emit("alert", {})
        await dispatcher.emit("alert", {})
        with pytest.raises(TimeoutError, match="2 deliveries still pending after 0.05 s"):
            await dispatcher.drain(timeout=0.05)
        release.set()
        await dispatcher.close()
        assert len(receiver.delivered) == 2


def test_names_default_to_kind_and_must_be_unique() -> None:
    assert CustomWebhook(url="https://a.example/h").name == "custom_webhook"
    assert WebhookConfig(url="https://a.example/h").name == "custom_webhook"
    with pytest.raises(ValueError, match="two webhooks are named 'custom_webhook'"):
        WebhookDispatcher(
            webhooks=[
                CustomWebhook(url="https://a.example/1"),
                WebhookConfig(url="https://a.example/2"),
            ]
        )


def test_bad_webhook_options_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="url is required .got None: is its environment variable"):
        CustomWebhook(url=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="url must be an http:// or https:// URL with a host"):
        CustomWebhook(url="ftp://files.example/x")
    with pytest.raises(ValueError, match="method must be POST, PUT or PATCH"):
        CustomWebhook(url="https://a.example", method="GET")
    with pytest.raises(ValueError, match="events must list one or more event names"):
        CustomWebhook(url="https://a.example", events=[])
    with pytest.raises(TypeError, match="filter must be callable"):
        CustomWebhook(url="https://a.example", filter="severity == high")  # type: ignore[arg-type]


def test_secrets_are_not_in_the_repr() -> None:
    webhook = CustomWebhook(
        url="https://a.example/h",
        headers={"Authorization": "Bearer abc123secret", "X-API-Key": "k3y-value"},
        signing_secret="whsec_s1gning",
    )
    text = repr(webhook)
    for secret in ("abc123secret", "k3y-value", "whsec_s1gning"):
        assert secret not in text
    assert "'Authorization': '***'" in text


async def test_an_unknown_webhook_type_is_a_clear_error() -> None:
    from empathy_webhooks_core import Webhook

    class Unregistered(Webhook):
        kind = "nowhere"

    with pytest.raises(LookupError, match="no loaded plugin provides it"):
        WebhookDispatcher(webhooks=[Unregistered()])


def test_a_synchronous_host_can_emit(receiver_thread: str) -> None:
    with ThreadedDispatcher(webhooks=[CustomWebhook(url=receiver_thread)]) as dispatcher:
        event = dispatcher.emit("prediction", {"prediction": "x"}, empathy_level=4)
        assert event.event_type == "prediction"
        dispatcher.drain()
        assert dispatcher.get_webhook_stats("custom_webhook")["delivered_count"] == 1


@pytest.fixture
def receiver_thread() -> object:
    """A receiver on its own loop in a thread, for the synchronous host test."""
    import threading

    loop = asyncio.new_event_loop()
    receiver = Receiver()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(receiver.start(), loop).result(5)
    yield receiver.url()
    asyncio.run_coroutine_threadsafe(receiver.stop(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    loop.close()
    assert [json.loads(r.body)["event_type"] for r in receiver.requests] == ["prediction"]


async def test_a_users_content_type_is_sent_once_whatever_its_case(receiver: Receiver) -> None:
    webhook = CustomWebhook(url=receiver.url(), headers={"content-type": "application/json"})
    async with WebhookDispatcher(webhooks=[webhook]) as dispatcher:
        await dispatcher.emit("alert", {})
    [request] = receiver.requests
    assert [v for k, v in request.raw_headers if k.lower() == "content-type"] == [
        "application/json"
    ]


def test_every_webhook_renders_a_dry_run_without_sending() -> None:
    webhook = CustomWebhook(url="https://a.example/hook", headers={"X-Team": "platform"})
    request = webhook.render("alert", {"message": "disk full"}, severity="high")
    assert request.url == "https://a.example/hook"
    assert request.headers["X-Team"] == "platform"
    body = request.json_body()
    assert (body["event_type"], body["data"], body["severity"]) == (
        "alert",
        {"message": "disk full"},
        "high",
    )
    event = Event(event_type="prediction", data={"p": 1})
    assert webhook.render(event).body == event.envelope_bytes()
