"""Slack incoming webhooks: each event as a Block Kit message.

The webhook URL is the credential (no header auth): the class declares it so
(`secret_url = True`), and the core masks it in `repr`, logs, errors and CLI output.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

import attrs

from empathy_webhooks_core.plugin import (
    Event,
    HttpAnswers,
    Outcome,
    OutgoingRequest,
    Response,
    SecretUrlWebhook,
    Verdict,
    Webhook,
    hookimpl,
    redact_text,
    service_for_url,
)

from .format import build_message, escape_mrkdwn, fit_message

#: The plugin API this plugin is written for (docs/writing-plugins.md, section 7).
PLUGIN_API = "1.2"

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


@attrs.frozen(kw_only=True, eq=False)
class SlackWebhook(SecretUrlWebhook):
    """A Slack incoming webhook.

    `channel`, `username`, `icon_emoji` and `icon_url` are sent when set, but only legacy
    custom-integration webhooks honour them; a Slack app's webhook always posts to the
    channel and with the name and icon chosen when it was installed.

    >>> SlackWebhook(webhook_url="https://hooks.slack.com/services/T0/B0/abcdefghijkl").url
    'https://hooks.slack.com/services/***'
    """

    kind: ClassVar[str] = "slack"

    channel: str | None = None
    username: str | None = None
    icon_emoji: str | None = None
    icon_url: str | None = None


def _request(webhook: SlackWebhook, event: Event) -> OutgoingRequest:
    return OutgoingRequest.json(webhook.webhook_url, build_message(webhook, event))


@hookimpl
def webhook_types() -> dict[str, type[Webhook]]:
    return {"slack": SlackWebhook}


@hookimpl
def webhook_for_url(url: str, options: Mapping[str, Any]) -> SlackWebhook | None:
    """A generic webhook pointed at a slack URL is sent as SlackWebhook sends it."""
    if service_for_url(url) != "slack":
        return None
    return SlackWebhook(webhook_url=url, **options)


@hookimpl
def format_payload(webhook: SlackWebhook, event: Event) -> OutgoingRequest:
    return _request(webhook, event)


def _error_code(text: str) -> str | None:
    """Slack's error string in an answer's body: a known one anywhere in it, else the body
    when it is a single error-like word."""
    for word in re.findall(r"[a-z][a-z0-9_]+", text):
        if word in DEAD_DESTINATION_ERRORS or word in MESSAGE_ERRORS:
            return word
    stripped = text.strip()
    return stripped if _ERROR_WORD.fullmatch(stripped) and stripped != "ok" else None


def _is_slack_error(code: str) -> bool:
    """Whether a word in a 2xx answer is one of Slack's error strings: a known one, or one of
    their shape (`snake_case`: every error Slack documents has an underscore). A relay or a
    Slack-compatible service that says `success`, `accepted` or `queued` has delivered."""
    return code in DEAD_DESTINATION_ERRORS or code in MESSAGE_ERRORS or "_" in code


#: How much of a 2xx answer that is not Slack's is shown in the reason.
NOT_SLACK_EXCERPT_CHARS = 200


def _acknowledges(response: Response) -> bool:
    """Whether a 2xx body reads as the message taken: Slack's `ok`, nothing at all (a relay's
    204), one plain word (a Slack-compatible service's `success`, `accepted`, `queued`), or
    JSON (Slack's API convention, `{"ok": true}`, which its workflow triggers follow). Error
    words and `{"ok": false}` are read before this. Anything else (a proxy's or an SSO login
    page) is not Slack's answer, and nothing says the message arrived."""
    text = response.text().strip()
    if not text or _ERROR_WORD.fullmatch(text.lower()):
        return True
    return text[:1] in "{[" and response.json() is not None


class _SlackAnswers(HttpAnswers):
    def describe(self, response: Response) -> str:
        code = _error_code(response.text())
        return code or redact_text(response.excerpt(200)).strip() or "no error text"


_ANSWERS = _SlackAnswers(service="Slack")


def classify(webhook: Webhook, response: Response) -> Verdict:
    """What Slack's answer means: the core's usual reading (`HttpAnswers`: 2xx delivered, 429
    retried after `Retry-After` with the webhook paused, the retry policy's statuses retried,
    others final), plus Slack's error strings: one in a 200 answer is a final failure, and one
    that means the destination is gone (`channel_is_archived`, `no_service`, ...) disables
    the webhook instead of failing the message. A 2xx whose body is not Slack's answer (see
    `_acknowledges`: an HTML login page) is not delivered: retried, then dead-lettered with
    an excerpt of what came back."""
    if 200 <= response.status < 300 and response.body.lstrip()[:1] == b"{":
        # Slack's API convention, which its workflow triggers on hooks.slack.com follow: HTTP
        # 200 and `{"ok": false, "error": "..."}` (any error word, known here or not).
        body = response.json()
        if isinstance(body, dict) and body.get("ok") is False:
            error = body.get("error")
            said = error if isinstance(error, str) and error.strip() else '"ok": false'
            return Verdict(outcome=Outcome.FAIL, reason=f"Slack refused the message: {said}")
    text = response.text()
    code = _error_code(text)
    if 200 <= response.status < 300 and code is not None and _is_slack_error(code):
        return Verdict(outcome=Outcome.FAIL, reason=f"Slack refused the message: {code}")
    if 200 <= response.status < 300 and not _acknowledges(response):
        # Retried, as a proxy's page may be passing (a login expiring, a captive portal),
        # then dead-lettered with what came back; counted delivered, the alert was lost.
        excerpt = redact_text(response.excerpt(NOT_SLACK_EXCERPT_CHARS)).strip()
        return Verdict(
            outcome=Outcome.RETRY,
            reason=f"HTTP {response.status} without Slack's answer (`ok`): a proxy's or a "
            f"login page? It said: {excerpt}",
        )
    verdict = _ANSWERS.classify(webhook, response)
    if verdict.outcome in (Outcome.FAIL, Outcome.GONE) and code in DEAD_DESTINATION_ERRORS:
        return Verdict(
            outcome=Outcome.GONE,
            reason=f"Slack says the destination is gone: {code} (HTTP {response.status})",
        )
    return verdict


@hookimpl
def classify_response(
    webhook: SlackWebhook, request: OutgoingRequest, response: Response
) -> Verdict:
    return classify(webhook, response)
