"""What the Python API says when a webhook is made: settings that look like a mistake are
warned about (and kept), an `on_failure` that could never be called is refused.

Before: `CustomWebhook(url=..., events=["predicton"])` and `rate_limit={}` were accepted without a
word (the configuration file warned about both), and `on_failure=lambda error: ...` was accepted
and failed only when a delivery finally failed, losing that failure's callback.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from empathy_webhooks_core import CustomWebhook, WebhookDispatcher
from empathy_webhooks_core.config import parse_config
from empathy_webhooks_core.ratelimit import RateLimit
from empathy_webhooks_core.testing import Receiver, Reply


def said(make: Any) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make()
    return [w for w in caught if issubclass(w.category, UserWarning)]


# -- events close to a framework event type -------------------------------------------------


async def test_an_event_name_close_to_a_framework_type_is_warned_and_kept(
    receiver: Receiver,
) -> None:
    with pytest.warns(UserWarning) as caught:
        webhook = CustomWebhook(name="typo", url=receiver.url(), events=["predicton"])
    [warning] = caught
    assert str(warning.message) == (
        "webhook 'typo' events: 'predicton' is not an event type the framework sends (did you "
        "mean 'prediction'?); it is kept (any name may be emitted)"
    )
    assert warning.filename == __file__  # it points at the line that made the webhook
    async with WebhookDispatcher(webhooks=[webhook]) as dispatcher:
        await dispatcher.emit("predicton", {"kept": True})
    assert [r.json()["event_type"] for r in receiver.delivered] == ["predicton"]


def test_a_wrong_case_is_warned_too() -> None:
    [warning] = said(lambda: CustomWebhook(url="https://example.com/a", events=["Alert"]))
    assert "names are matched exactly, case included (did you mean 'alert'?)" in str(
        warning.message
    )


def test_names_of_ones_own_and_patterns_are_not_warned() -> None:
    events = ["alert", "my_own_event", "security_*", "test", "security", "*"]
    assert said(lambda: CustomWebhook(url="https://example.com/a", events=events)) == []


# -- a rate limit that limits nothing ---------------------------------------------------------


@pytest.mark.parametrize(
    "rate_limit", [{}, {"strategy": "fixed_window"}, RateLimit(strategy="sliding_window")]
)
def test_a_rate_limit_with_no_limit_is_warned(rate_limit: Any) -> None:
    [warning] = said(
        lambda: CustomWebhook(name="rl", url="https://example.com/a", rate_limit=rate_limit)
    )
    assert str(warning.message) == (
        "webhook 'rl' rate_limit: no limit given (max_requests_per_second, "
        "max_requests_per_minute or max_requests_per_hour): nothing is limited"
    )
    assert warning.filename == __file__


def test_a_rate_limit_with_a_limit_is_not_warned() -> None:
    limit = {"max_requests_per_minute": 3}
    assert said(lambda: CustomWebhook(url="https://example.com/a", rate_limit=limit)) == []


def test_a_configuration_file_says_each_once_with_its_path() -> None:
    table = {"url": "https://example.com/a", "events": ["alrt"], "rate_limit": {}}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = parse_config({"webhooks": [table]}, env={})
    assert [w for w in caught if issubclass(w.category, UserWarning)] == []
    assert [w.split(":")[0] for w in config.warnings] == [
        "webhooks[0].rate_limit",
        "webhooks[0].events",
    ]


# -- on_failure that cannot take (webhook, event, error) ---------------------------------------


def _one_argument(error: Exception, token: str = "stop38-default-secret") -> None:
    raise AssertionError("never called")


@pytest.mark.parametrize(
    ("callback", "shown"),
    [
        (lambda error: None, "<lambda>(error)"),
        (lambda webhook, event: None, "<lambda>(webhook, event)"),
        (lambda webhook, event, error, extra: None, "<lambda>(webhook, event, error, extra)"),
        (_one_argument, "_one_argument(error, token=...)"),
    ],
)
def test_an_on_failure_that_cannot_take_three_arguments_is_refused(
    callback: Any, shown: str
) -> None:
    with pytest.raises(TypeError) as raised:
        CustomWebhook(url="https://example.com/a", on_failure=callback)
    assert str(raised.value) == (
        f"on_failure is called as on_failure(webhook, event, error), but {shown} cannot take "
        "those three arguments"
    )
    assert "stop38-default-secret" not in str(raised.value)


class _Pager:
    def __call__(self, webhook: Any, event: Any, error: Any) -> None:
        pass


@pytest.mark.parametrize(
    "callback",
    [
        lambda webhook, event, error: None,
        lambda *args: None,
        lambda webhook, event, error, extra=None: None,
        _Pager(),
        print,  # a builtin whose signature cannot be read: given the benefit of the doubt
    ],
)
def test_an_on_failure_that_can_take_them_is_accepted(callback: Any) -> None:
    assert CustomWebhook(url="https://example.com/a", on_failure=callback).on_failure is callback


async def test_an_accepted_async_on_failure_is_called_with_the_three(receiver: Receiver) -> None:
    called: list[tuple[str, str, str]] = []

    async def on_failure(webhook: Any, event: Any, error: Any) -> None:
        called.append((webhook.name, event.event_type, type(error).__name__))

    receiver.queue(Reply(status=400))
    webhook = CustomWebhook(name="cb", url=receiver.url(), on_failure=on_failure)
    async with WebhookDispatcher(webhooks=[webhook]) as dispatcher:
        await dispatcher.emit("alert", {"x": 1})
    assert called == [("cb", "alert", "DeliveryError")]
