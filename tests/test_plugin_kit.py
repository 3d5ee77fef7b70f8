"""The shapes plugins share, from `empathy_webhooks_core.plugin`: the secret-URL webhook base,
the "Label: title" line, the template merge and the step a multi-step `deliver` reports."""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import pytest

from empathy_webhooks_core import Event, WebhookDispatcher, render_request
from empathy_webhooks_core.plugin import (
    HttpAnswers,
    Outcome,
    OutgoingRequest,
    Response,
    SecretUrlWebhook,
    Webhook,
    apply_template,
    hookimpl,
    labelled_title,
)
from empathy_webhooks_core.plugins import build_plugin_manager
from empathy_webhooks_core.testing import Receiver

TOKEN = "T0KEN-abcdef123456"


@attrs.frozen(kw_only=True, eq=False)
class ChatWebhook(SecretUrlWebhook):
    kind: ClassVar[str] = "kit_chat"

    channel: str | None = None


class ChatPlugin:
    """A chat plugin as small as the kit lets it be."""

    @hookimpl
    def webhook_types(self) -> dict[str, type[Webhook]]:
        return {"kit_chat": ChatWebhook}

    @hookimpl
    def format_payload(self, webhook: Webhook, event: Event) -> OutgoingRequest | None:
        if not isinstance(webhook, ChatWebhook):
            return None
        payload = {"text": labelled_title(event), "channel": webhook.channel}
        payload = apply_template(webhook, event, payload, text=lambda text: {"text": text})
        return OutgoingRequest.json(webhook.webhook_url, payload)


def plugin_manager() -> Any:
    return build_plugin_manager(load_entry_points=False, extra_plugins=[ChatPlugin()])


def test_a_secret_url_webhook_hides_its_url_everywhere_it_shows() -> None:
    webhook = ChatWebhook(webhook_url=f"https://chat.example.com/hooks/{TOKEN}", channel="ops")
    assert webhook.url == "https://chat.example.com/hooks/***"
    assert TOKEN not in repr(webhook)
    assert any(TOKEN in value for value in webhook.secret_values())
    with pytest.raises(ValueError, match="webhook_url") as caught:
        ChatWebhook(webhook_url=f"ftp://chat.example.com/hooks/{TOKEN}")
    assert TOKEN not in str(caught.value)


async def test_a_secret_url_webhook_posts_to_its_real_url() -> None:
    async with Receiver() as receiver:
        webhook = ChatWebhook(webhook_url=receiver.url(f"/hooks/{TOKEN}"))
        async with WebhookDispatcher([webhook], plugin_manager=plugin_manager()) as dispatcher:
            await dispatcher.emit("bug_detected", {"title": "Null dereference"})
        [request] = receiver.requests
        assert request.path == f"/hooks/{TOKEN}"
        assert request.json() == {"text": "Bug detected: Null dereference", "channel": None}


@pytest.mark.parametrize(
    ("event_type", "data", "title"),
    [
        (
            "performance_issue",
            {"endpoint": "/api/users"},
            "Performance: /api/users response time degraded",
        ),
        ("performance_issue", {"title": "Performance:  slow  cart"}, "Performance: slow cart"),
        ("bug_detected", {"title": "Null\ndereference"}, "Bug detected: Null dereference"),
        ("bug_detected", {"summary": "bug detected in cart"}, "bug detected in cart"),
    ],
)
def test_labelled_title(event_type: str, data: dict[str, Any], title: str) -> None:
    assert labelled_title(Event(event_type=event_type, data=data)) == title


def _rendered(templates: dict[str, Any]) -> Any:
    webhook = ChatWebhook(
        webhook_url="https://chat.example.com/hooks/x1234567", channel="ops", templates=templates
    )
    event = Event(event_type="bug_detected", data={"title": "boom", "file": "cart.py"})
    return render_request(webhook, event, plugin_manager=plugin_manager()).json_body()


def test_a_dict_template_is_merged_and_none_removes_a_key() -> None:
    assert _rendered({"*": {"channel": None, "extra": {"a": 1}}}) == {
        "text": "Bug detected: boom",
        "extra": {"a": 1},
    }


def test_a_string_template_goes_where_the_plugin_says() -> None:
    assert _rendered({"bug_detected": "{data[file]} broke"}) == {
        "text": "cart.py broke",
        "channel": "ops",
    }


def test_a_template_the_plugin_cannot_use_fails_loudly() -> None:
    with pytest.raises(TypeError) as caught:
        _rendered({"*": lambda event: ["not", "a", "dict"]})
    assert str(caught.value) == (
        "the kit_chat template for 'bug_detected' gave list, but kit_chat takes a dict or a string"
    )
    webhook = ChatWebhook(
        webhook_url="https://chat.example.com/hooks/x1234567", templates={"*": "t"}
    )
    event = Event(event_type="bug_detected", data={})
    with pytest.raises(TypeError, match="gave str, but kit_chat takes a dict$"):
        apply_template(webhook, event, {"text": "x"})


def test_a_step_is_typed_on_the_response() -> None:
    answer = Response(status=404, body=b"{}", elapsed_ms=3.0)
    assert (answer.step, dict(answer.details)) == (None, {})
    stepped = answer.at_step("search", elapsed_ms=12.5, issue_key="OPS-1", url=None)
    assert (stepped.step, dict(stepped.details), stepped.elapsed_ms) == (
        "search",
        {"issue_key": "OPS-1"},
        12.5,
    )
    assert (stepped.status, stepped.body) == (404, b"{}")
    assert answer.at_step("create").elapsed_ms == 3.0


class KitAnswers(HttpAnswers):
    """A plugin's extension: its service's error text and the id a success returns."""

    def describe(self, response: Response) -> str:
        body = response.json()
        return str(body["error"]) if isinstance(body, dict) else super().describe(response)

    def success_details(self, response: Response) -> dict[str, str]:
        return {"message_id": str(response.json()["id"])}


ANSWERS = KitAnswers(service="Kit", gone=frozenset({404, 410}))
WEBHOOK = ChatWebhook(webhook_url="https://chat.example.com/hooks/x1234567")


@pytest.mark.parametrize(
    ("status", "headers", "body", "expected"),
    [
        (200, {}, b'{"id": 7}', (Outcome.SUCCESS, None, None, False, {"message_id": "7"})),
        (
            429,
            {"retry-after": "30"},
            b"",
            (Outcome.RETRY, "rate limited by Kit (HTTP 429)", 30.0, True, {}),
        ),
        (
            503,
            {"retry-after": "5"},
            b'{"error": "maintenance"}',
            (Outcome.RETRY, "Kit unavailable: maintenance (HTTP 503)", 5.0, False, {}),
        ),
        (
            404,
            {},
            b'{"error": "unknown hook"}',
            (
                Outcome.GONE,
                "Kit says the webhook is gone: unknown hook (HTTP 404)",
                None,
                False,
                {},
            ),
        ),
        (
            302,
            {"location": "https://elsewhere.example"},
            b"",
            (Outcome.FAIL, "redirect not followed (302)", None, False, {}),
        ),
        (
            400,
            {},
            b"bad <token=abc>",
            (Outcome.FAIL, "Kit refused the message: bad <token=abc> (HTTP 400)", None, False, {}),
        ),
    ],
)
def test_the_usual_reading_of_http_answers_extended_by_a_plugin(
    status: int, headers: dict[str, str], body: bytes, expected: tuple[Any, ...]
) -> None:
    verdict = ANSWERS.classify(WEBHOOK, Response(status=status, headers=headers, body=body))
    assert (
        verdict.outcome,
        verdict.reason,
        verdict.retry_after,
        verdict.pause_webhook,
        dict(verdict.details),
    ) == expected


def test_the_default_answers_describe_the_body_with_secrets_masked() -> None:
    verdict = HttpAnswers(service="Kit").classify(
        WEBHOOK, Response(status=400, body=f"refused {WEBHOOK.webhook_url}".encode())
    )
    assert verdict.reason is not None
    assert "x1234567" not in verdict.reason
    assert verdict.reason.startswith("Kit refused the message: refused ")
    assert verdict.reason.endswith(" (HTTP 400)")
