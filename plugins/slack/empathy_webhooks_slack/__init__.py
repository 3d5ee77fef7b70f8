"""Slack incoming webhooks: each event as a Block Kit message.

The webhook URL is the credential (no header auth): the class declares it so
(`secret_url = True`), and the core masks it in `repr`, logs, errors and CLI output.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import attrs

from empathy_webhooks_core.plugin import (
    Event,
    Outcome,
    OutgoingRequest,
    Response,
    Verdict,
    Webhook,
    check_url,
    default_verdict,
    hookimpl,
    parse_retry_after,
    redact_text,
    redact_url,
)

from .format import build_message, escape_mrkdwn, fit_message

#: The plugin API this plugin is written for (docs/writing-plugins.md, section 7).
PLUGIN_API = "1.0"

__all__ = [
    "DEAD_DESTINATION_ERRORS",
    "SlackWebhook",
    "build_message",
    "classify",
    "escape_mrkdwn",
    "fit_message",
]

#: Slack's answers that mean this webhook's destination no longer takes messages: the
#: webhook is disabled (Outcome.GONE, its queue kept) until `dispatcher.enable_webhook(name)`.
DEAD_DESTINATION_ERRORS = frozenset(
    {
        "no_service",
        "no_service_id",
        "no_team",
        "team_disabled",
        "invalid_token",
        "no_active_hooks",
        "channel_not_found",
        "channel_is_archived",
        "action_prohibited",
    }
)
#: Other error strings of Slack's webhook documentation: the message itself was refused.
MESSAGE_ERRORS = frozenset(
    {
        "invalid_payload",
        "invalid_blocks",
        "invalid_blocks_format",
        "no_text",
        "too_many_attachments",
        "user_not_found",
        "posting_to_general_channel_denied",
        "rollup_error",
    }
)
_ERROR_WORD = re.compile(r"[a-z][a-z0-9_]{1,63}")


def _shown_url(url: str) -> str:
    return redact_url(url, secret_path=True)


def _check_webhook_url(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    check_url(value, "webhook_url")


@attrs.frozen(kw_only=True, eq=False)
class SlackWebhook(Webhook):
    """A Slack incoming webhook.

    `channel`, `username`, `icon_emoji` and `icon_url` are sent when set, but only legacy
    custom-integration webhooks honour them; a Slack app's webhook always posts to the
    channel and with the name and icon chosen when it was installed.

    >>> SlackWebhook(webhook_url="https://hooks.slack.com/services/T0/B0/abcdefghijkl").url
    'https://hooks.slack.com/services/***'
    """

    kind: ClassVar[str] = "slack"
    #: The webhook URL is the credential.
    secret_url: ClassVar[bool] = True

    webhook_url: str = attrs.field(validator=_check_webhook_url)
    channel: str | None = None
    username: str | None = None
    icon_emoji: str | None = None
    icon_url: str | None = None

    @property
    def url(self) -> str:
        """The webhook URL fit to show (its token masked), for callbacks that log
        `webhook.url` as the reference's `on_failure` example does."""
        return _shown_url(self.webhook_url)


def _request(webhook: SlackWebhook, event: Event) -> OutgoingRequest:
    return OutgoingRequest.json(webhook.webhook_url, build_message(webhook, event))


@hookimpl
def webhook_types() -> dict[str, type[Webhook]]:
    return {"slack": SlackWebhook}


@hookimpl
def format_payload(webhook: Webhook, event: Event) -> OutgoingRequest | None:
    if not isinstance(webhook, SlackWebhook):
        return None
    return _request(webhook, event)


def _error_code(text: str) -> str | None:
    """Slack's error string in an answer's body: a known one anywhere in it, else the body
    when it is a single error-like word."""
    for word in re.findall(r"[a-z][a-z0-9_]+", text):
        if word in DEAD_DESTINATION_ERRORS or word in MESSAGE_ERRORS:
            return word
    stripped = text.strip()
    return stripped if _ERROR_WORD.fullmatch(stripped) and stripped != "ok" else None


def classify(webhook: Webhook, response: Response) -> Verdict:
    """What Slack's answer means. 200 `ok` delivered; 429 retried after `Retry-After`, the
    whole webhook paused; statuses in the retry policy (5xx, 408) retried; an error string
    that means the destination is gone (`channel_is_archived`, `no_service`, ...) disables
    the webhook; any other error string (`invalid_blocks`, `no_text`, ...) is a final failure
    whose reason carries it."""
    status = response.status
    text = response.text()
    code = _error_code(text)
    what = code or redact_text(response.excerpt(200)).strip() or "no error text"
    if 200 <= status < 300:
        if code is not None and text.strip() != "ok":
            return Verdict(outcome=Outcome.FAIL, reason=f"Slack refused the message: {code}")
        return Verdict(outcome=Outcome.SUCCESS)
    if status == 429:
        return Verdict(
            outcome=Outcome.RETRY,
            reason="rate limited by Slack (HTTP 429)",
            retry_after=parse_retry_after(response.header("retry-after")),
            pause_webhook=True,
        )
    if status in webhook.retry_policy.retry_on_status:
        return Verdict(
            outcome=Outcome.RETRY,
            reason=f"Slack unavailable: {what} (HTTP {status})",
            retry_after=parse_retry_after(response.header("retry-after")),
        )
    if code in DEAD_DESTINATION_ERRORS:
        return Verdict(
            outcome=Outcome.GONE,
            reason=f"Slack says the destination is gone: {code} (HTTP {status})",
        )
    if 300 <= status < 400:
        return default_verdict(webhook, response)
    return Verdict(
        outcome=Outcome.FAIL, reason=f"Slack refused the message: {what} (HTTP {status})"
    )


@hookimpl
def classify_response(
    webhook: Webhook, request: OutgoingRequest, response: Response
) -> Verdict | None:
    if not isinstance(webhook, SlackWebhook):
        return None
    return classify(webhook, response)
