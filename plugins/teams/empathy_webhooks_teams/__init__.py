"""Microsoft Teams through Workflows (Power Automate) webhooks: each event as an Adaptive Card.

Office 365 connector webhooks are retired; a Workflows "When a Teams webhook request is
received" trigger takes their place and answers 202. The legacy connectors' answers (200 with
`1`, or 200 with "Webhook message delivery failed ...") are still understood. The URL (its
`sig`) is the credential (`secret_url = True`): the core masks it in `repr`, logs, errors and
CLI output.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

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
    parse_retry_after,
    redact_text,
    service_for_url,
)

from .format import (
    MESSAGE_LIMIT_BYTES,
    STYLES,
    TRUNCATED,
    build_message,
    card_message,
    escape_markdown,
    fit_message,
)

#: The plugin API this plugin is written for (docs/writing-plugins.md, section 7).
PLUGIN_API = "1.2"

__all__ = [
    "MAX_MENTIONS",
    "MESSAGE_LIMIT_BYTES",
    "STYLES",
    "TRUNCATED",
    "TeamsWebhook",
    "build_message",
    "card_message",
    "classify",
    "escape_markdown",
    "fit_message",
]

_LEGACY_FAILURE = "webhook message delivery failed"
_LEGACY_STATUS = re.compile(r"HTTP error (\d{3})", re.IGNORECASE)


#: Mentions per message at most: each costs room in the 28 KB, and a card pinging more people
#: than this is a broadcast better sent to a channel.
MAX_MENTIONS = 20
# The domain holds a dot after its first character and before its last. Matched at its first
# such dot: `[^...]+\.[^...]+` tried every dot of `a@a.a.a.… ` in turn, reading on to the end
# each time (quadratic: 7 s for a 40,000-character value).
_UPN = re.compile(r"[^\s<>@\\]+@[^\s<>@\\][^\s<>@\\.]*\.[^\s<>@\\]+")
_OBJECT_ID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def _mention_users(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    users = tuple(value)
    for user in users:
        if not isinstance(user, str) or not (_UPN.fullmatch(user) or _OBJECT_ID.fullmatch(user)):
            raise ValueError(
                "mention_users must list user principal names (adele@contoso.com) or Microsoft "
                f"Entra object ids (87d349ed-44d7-43e1-9a83-5f2406dee5bd), got {user!r}"
            )
    if len(users) > MAX_MENTIONS:
        raise ValueError(f"mention_users may name at most {MAX_MENTIONS} users, got {len(users)}")
    return tuple(dict.fromkeys(users))


def _max_bytes(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 4000 <= value <= 28_000:
        raise ValueError(f"max_message_bytes must be from 4000 to 28000, got {value!r}")


@attrs.frozen(kw_only=True, eq=False)
class TeamsWebhook(SecretUrlWebhook):
    """A Teams Workflows webhook (or a legacy connector URL, until they stop working).

    >>> TeamsWebhook(webhook_url="https://prod-1.westus.logic.azure.com/workflows/abc/x?sig=s3cr3tsig").url
    'https://prod-1.westus.logic.azure.com/workflows/***?***'
    """

    kind: ClassVar[str] = "teams"

    #: Teams refuses about 28 KB; legacy connectors were seen failing above ~21 KB.
    max_message_bytes: int = attrs.field(default=MESSAGE_LIMIT_BYTES, validator=_max_bytes)
    #: Users every message pings (`<at>` mentions): user principal names or Microsoft Entra
    #: object ids. Text in events never pings anyone; only these do.
    mention_users: tuple[str, ...] = attrs.field(default=(), converter=_mention_users)


def _request(webhook: TeamsWebhook, event: Event) -> OutgoingRequest:
    return OutgoingRequest.json(webhook.webhook_url, build_message(webhook, event))


@hookimpl
def webhook_types() -> dict[str, type[Webhook]]:
    return {"teams": TeamsWebhook}


@hookimpl
def webhook_for_url(url: str, options: Mapping[str, Any]) -> TeamsWebhook | None:
    """A generic webhook pointed at a teams URL is sent as TeamsWebhook sends it."""
    if service_for_url(url) != "teams":
        return None
    return TeamsWebhook(webhook_url=url, **options)


@hookimpl
def format_payload(webhook: TeamsWebhook, event: Event) -> OutgoingRequest:
    return _request(webhook, event)


def _describe(response: Response) -> str:
    """Power Automate's `{"error": {"code", "message"}}`, else the body's start."""
    body = response.json()
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and (error.get("code") or error.get("message")):
        text = ": ".join(str(error[k]) for k in ("code", "message") if error.get(k))
        return redact_text(text[:300])
    return redact_text(response.excerpt(300)).strip() or "no error text"


def _retry(status: int, reason: str, response: Response) -> Verdict:
    return Verdict(
        outcome=Outcome.RETRY,
        reason=reason,
        retry_after=parse_retry_after(response.header("retry-after")),
        pause_webhook=status == 429,
    )


#: Hosts of Workflows (Power Automate) URLs, whose answers a flow's author may shape.
_WORKFLOW_HOSTS = (".logic.azure.com", ".powerautomate.com", ".powerplatform.com")


def _workflow(webhook: Webhook) -> bool:
    host = (urlsplit(getattr(webhook, "url", "") or "").hostname or "").lower()
    return host.endswith(_WORKFLOW_HOSTS)


class _TeamsAnswers(HttpAnswers):
    def describe(self, response: Response) -> str:
        return _describe(response)


_ANSWERS = _TeamsAnswers(service="Teams")


def classify(webhook: Webhook, response: Response) -> Verdict:
    """What Teams' answer means. 202 (Workflows) or 200 `1` (legacy) delivered; a legacy
    200 "Webhook message delivery failed ... HTTP error N" is that error (429 and 5xx retried,
    others final); any other 200 without a number, from a connector, is retried; 429
    retried after `Retry-After`, the webhook paused; 5xx and 408 retried; 404 (the workflow
    or connector deleted) disables the webhook; 413 and other 4xx final."""
    status = response.status
    if 200 <= status < 300:
        text = response.text()
        if _LEGACY_FAILURE not in text.lower():
            if status == 200 and not text.strip().isdigit() and not _workflow(webhook):
                # Microsoft: a connector "returns 200 for what they think are retry-able. The
                # response can be considered successful only if it returns a number in the
                # response, else it is a failure even if status is 200" (msteams-docs#9698,
                # where a 200 carried a token service's 401). Counted delivered, the alert
                # was lost without a word. A workflow's own Response action may answer 200
                # with any text: its answer is taken as it is.
                return _retry(
                    status,
                    "Teams answered 200 without the message number that means delivered "
                    f"(a connector's failure, retried): {_describe(response)}",
                    response,
                )
            return Verdict(outcome=Outcome.SUCCESS)
        found = _LEGACY_STATUS.search(text)
        inner = int(found.group(1)) if found else None
        reason = f"Teams could not deliver the message: {_describe(response)}"
        if inner == 429 or (inner is not None and inner >= 500):
            return _retry(inner, reason, response)
        return Verdict(outcome=Outcome.FAIL, reason=reason)
    if status not in webhook.retry_policy.retry_on_status:
        if status == 404:
            return Verdict(
                outcome=Outcome.GONE,
                reason=f"Teams says the webhook is gone (deleted or turned off) (HTTP {status})",
            )
        if status == 413:
            return Verdict(outcome=Outcome.FAIL, reason="Teams refused the message as too large")
    return _ANSWERS.classify(webhook, response)


@hookimpl
def classify_response(
    webhook: TeamsWebhook, request: OutgoingRequest, response: Response
) -> Verdict:
    return classify(webhook, response)
