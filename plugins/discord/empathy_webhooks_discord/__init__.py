"""Discord webhooks: each event as an embed coloured by its severity.

Posts with `?wait=true`, so Discord answers 200 with the message (or an error) instead of a
204 that hides failures. Pings nobody unless `allowed_mentions` says so. The webhook URL is
the credential (`secret_url = True`): the core masks it in `repr`, logs, errors and CLI output.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import attrs

from empathy_webhooks_core.plugin import (
    Event,
    HttpAnswers,
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

from .format import COLORS, build_message, escape_markdown, fit_message, neutralize_mentions

#: The plugin API this plugin is written for (docs/writing-plugins.md, section 7).
PLUGIN_API = "1.2"

__all__ = [
    "COLORS",
    "NO_MENTIONS",
    "DiscordWebhook",
    "build_message",
    "classify",
    "escape_markdown",
    "fit_message",
    "neutralize_mentions",
]

#: Discord's "ping nobody": the default `allowed_mentions`.
NO_MENTIONS: Mapping[str, Any] = {"parse": []}


def _check_username(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= 80:
        raise ValueError("username must be 1 to 80 characters")
    if "clyde" in value.lower() or "discord" in value.lower():
        raise ValueError("username may not contain 'clyde' or 'discord' (Discord refuses it)")


def _mentions(value: Any) -> Mapping[str, Any]:
    if value is None:
        return dict(NO_MENTIONS)
    if not isinstance(value, Mapping):
        raise TypeError('allowed_mentions must be a dict like {"parse": []} or {"roles": [...]}')
    mentions = dict(value)
    parse = mentions.get("parse", [])
    for kind in ("users", "roles"):
        if kind in parse and mentions.get(kind):
            # Discord answers 400 to both for one type.
            raise ValueError(f"allowed_mentions cannot both parse {kind!r} and list {kind}")
    return mentions


def _thread_id(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value)
    if not text.isdigit():
        raise ValueError("thread_id must be a Discord snowflake (digits)")
    return text


# Discord's Slack- and GitHub-compatible endpoints: `.../webhooks/{id}/{token}/slack`.
_OTHER_FORMAT = re.compile(r"/webhooks/[^/]+/[^/]+/(slack|github)/?\Z", re.IGNORECASE)
_OTHER_FORMATS = {
    "slack": "Discord's Slack-compatible endpoint takes Slack's message format, not the embeds "
    "DiscordWebhook sends; use SlackWebhook with this URL, or drop /slack",
    "github": "Discord's GitHub-compatible endpoint takes GitHub's events only, not the embeds "
    "DiscordWebhook sends; drop /github",
}


def _other_format(url: str) -> str | None:
    """`slack` or `github` when `url` is one of Discord's endpoints for another format."""
    match = _OTHER_FORMAT.search(urlsplit(url).path)
    return match[1].lower() if match else None


@attrs.frozen(kw_only=True, eq=False)
class DiscordWebhook(SecretUrlWebhook):
    """A Discord channel webhook.

    `allowed_mentions` defaults to `{"parse": []}`: no message pings anyone. To ping a role
    on every message, set `content="<@&ROLE_ID>"` and `allowed_mentions={"roles": ["ROLE_ID"]}`.
    Event text never pings: it goes in embeds, and mentions in it are made inert.

    >>> DiscordWebhook(webhook_url="https://discord.com/api/webhooks/1/abcdefghijkl").url
    'https://discord.com/api/webhooks/***'
    """

    kind: ClassVar[str] = "discord"

    username: str | None = attrs.field(default=None, validator=_check_username)
    avatar_url: str | None = None
    #: Post into this thread of the channel (Discord unarchives it).
    thread_id: str | None = attrs.field(default=None, converter=_thread_id)
    #: Fixed text sent with every message (a role mention, say). Not from event data.
    content: str | None = None
    allowed_mentions: Mapping[str, Any] | None = attrs.field(default=None)
    mentions: Mapping[str, Any] = attrs.field(init=False, repr=False)

    @mentions.default
    def _default_mentions(self) -> Mapping[str, Any]:
        return _mentions(self.allowed_mentions)

    def __attrs_post_init__(self) -> None:
        # Those endpoints never read the embeds sent here. The URL is the credential: the
        # message names the endpoint only.
        other = _other_format(self.webhook_url)
        if other is not None:
            raise ValueError(
                f"webhook_url ends in /{other}: {_OTHER_FORMATS[other]} to post Discord's own "
                "message"
            )

    @property
    def execute_url(self) -> str:
        """Where messages are posted: the webhook URL with `wait=true` (and `thread_id`)
        added to whatever query it already has."""
        parts = urlsplit(self.webhook_url)
        query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("wait", "thread_id")]
        query.append(("wait", "true"))
        if self.thread_id:
            query.append(("thread_id", self.thread_id))
        return urlunsplit(parts._replace(query=urlencode(query)))


def _request(webhook: DiscordWebhook, event: Event) -> OutgoingRequest:
    return OutgoingRequest.json(webhook.execute_url, build_message(webhook, event))


@hookimpl
def webhook_types() -> dict[str, type[Webhook]]:
    return {"discord": DiscordWebhook}


@hookimpl
def webhook_for_url(url: str, options: Mapping[str, Any]) -> DiscordWebhook | None:
    """A generic webhook pointed at a discord URL is sent as DiscordWebhook sends it."""
    if service_for_url(url) != "discord":
        return None
    return DiscordWebhook(webhook_url=url, **options)


@hookimpl
def format_payload(webhook: DiscordWebhook, event: Event) -> OutgoingRequest:
    return _request(webhook, event)


def _flatten(errors: Any, path: str = "") -> list[str]:
    """Discord's nested `errors` object as `embeds.0.title: Must be 256 or fewer in length.`"""
    if not isinstance(errors, Mapping):
        return []
    found: list[str] = []
    for key, value in errors.items():
        if key == "_errors" and isinstance(value, list):
            found.extend(
                f"{path}: {item.get('message')}" for item in value if isinstance(item, Mapping)
            )
        else:
            found.extend(_flatten(value, f"{path}.{key}" if path else str(key)))
    return found


def _describe(response: Response) -> str:
    body = response.json()
    if not isinstance(body, Mapping):
        return redact_text(response.excerpt(200)).strip() or "no error text"
    text = str(body.get("message") or "error")
    if body.get("code"):
        text += f" (code {body['code']})"
    details = _flatten(body.get("errors"))
    if details:
        text += ": " + "; ".join(details[:3])
    return redact_text(text[:500])


def _retry_after(response: Response) -> float | None:
    """Discord's JSON `retry_after` (fractional seconds), else the `Retry-After` header."""
    body = response.json()
    if isinstance(body, Mapping):
        value = body.get("retry_after")
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            return float(value)
    return parse_retry_after(response.header("retry-after"))


class _DiscordAnswers(HttpAnswers):
    def describe(self, response: Response) -> str:
        return _describe(response)

    def retry_after(self, response: Response) -> float | None:
        return _retry_after(response)

    def success_details(self, response: Response) -> dict[str, str]:
        body = response.json()
        message_id = body.get("id") if isinstance(body, Mapping) else None
        return {"message_id": str(message_id)} if message_id else {}


#: 404 and 401 (unknown webhook, invalid token) disable the webhook: retrying them gets the
#: sender restricted.
_ANSWERS = _DiscordAnswers(service="Discord", gone=frozenset({401, 404, 410}))


def classify(webhook: Webhook, response: Response) -> Verdict:
    """What Discord's answer means: the core's usual reading (`HttpAnswers`) with Discord's
    error text, the message id of a 2xx in the details, the body's fractional `retry_after`
    preferred to `Retry-After`, and 401 and 404 disabling the webhook."""
    return _ANSWERS.classify(webhook, response)


@hookimpl
def classify_response(
    webhook: DiscordWebhook, request: OutgoingRequest, response: Response
) -> Verdict:
    return classify(webhook, response)
