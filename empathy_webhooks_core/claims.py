"""URLs that name their service: a generic webhook pointed at Slack is sent as Slack expects.

The reference's Quick Start gives `WebhookConfig(url="https://hooks.slack.com/...")` and
promises a Slack message; Slack refuses the generic envelope (400 `invalid_payload`). So a
plain `CustomWebhook` / `WebhookConfig` whose URL names a service is offered to the plugins
(`webhook_for_url`), and the plugin of that service turns it into its own webhook, keeping the
user's name, events, filter, retry policy and every other common setting. When no installed
plugin claims such a URL, the webhook is sent as it is (the user asked for that URL) and one
warning says which plugin to install. `raw=True` (config: `type = "custom"`) opts out.

The table below is what the core knows of the first-party plugins' URLs: plugins use
`service_for_url` to recognise their own, and the core to name the plugin to install.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import attrs

from ._log import get_logger
from .webhooks import CustomWebhook, Webhook, WebhookConfig

if TYPE_CHECKING:
    from .plugins import Hooks

__all__ = ["SERVICE_URLS", "ServiceURL", "claim", "common_options", "service_for_url"]

log = get_logger()


@attrs.frozen
class ServiceURL:
    """The URLs of one service: hosts (a leading `*.` matches any subdomain) and, when the
    host alone does not say it, the path's start, or the whole path (`path_pattern`, a
    regular expression, case ignored) when its end names another endpoint."""

    plugin: str
    hosts: tuple[str, ...]
    path_prefixes: tuple[str, ...] = ("/",)
    path_pattern: str | None = None

    def matches(self, host: str, path: str) -> bool:
        for pattern in self.hosts:
            if pattern.startswith("*."):
                hit = host.endswith(pattern[1:]) and host != pattern[2:]
            else:
                hit = host == pattern
            if hit:
                if self.path_pattern is not None:
                    return re.fullmatch(self.path_pattern, path, re.IGNORECASE) is not None
                return path.startswith(self.path_prefixes)
        return False


_DISCORD_HOSTS = ("discord.com", "discordapp.com", "ptb.discord.com", "canary.discord.com")
# A Discord webhook is `/api[/v9|/v10]/webhooks/{id}/{token}`. With `/slack` after it, the
# endpoint reads Slack's message format, with `/github` GitHub's events: neither reads the
# embeds the Discord plugin sends.
_DISCORD_WEBHOOK = r"/api(?:/v(?:9|10))?/webhooks/[^/]+/[^/]+"


SERVICE_URLS: tuple[ServiceURL, ...] = (
    ServiceURL("slack", ("hooks.slack.com", "hooks.slack-gov.com")),
    ServiceURL(
        "teams",
        (
            # Teams Workflows (Power Automate / Logic Apps HTTP triggers)...
            "*.logic.azure.com",
            "*.powerautomate.com",
            "*.powerplatform.com",
            # ...and the retired Office 365 connectors, while they still answer.
            "*.webhook.office.com",
        ),
    ),
    ServiceURL("teams", ("outlook.office.com", "outlook.office365.com"), ("/webhook",)),
    ServiceURL("discord", _DISCORD_HOSTS, path_pattern=_DISCORD_WEBHOOK + "/?"),
    # Discord's Slack-compatible endpoint reads Slack's message (its `text` at least).
    ServiceURL("slack", _DISCORD_HOSTS, path_pattern=_DISCORD_WEBHOOK + "/slack/?"),
    ServiceURL("pagerduty", ("events.pagerduty.com", "events.eu.pagerduty.com")),
)

#: Endpoints that read a format no first-party plugin writes, what reads them, and what to do
#: instead. The generic envelope would be misread or dropped there, so a generic webhook
#: posting to one is refused when it is first used, unless a plugin claims the URL or
#: `raw=True` says to send the envelope anyway.
_UNWRITTEN_FORMATS: tuple[tuple[ServiceURL, str, str], ...] = (
    (
        ServiceURL("discord", _DISCORD_HOSTS, path_pattern=_DISCORD_WEBHOOK + "/github/?"),
        "Discord's GitHub-compatible endpoint (`/github`), which reads GitHub's events only",
        "Drop `/github` from the URL to post a Discord message (the discord plugin formats it)",
    ),
)


def service_for_url(url: str) -> str | None:
    """The plugin whose service `url` names (`"slack"` for `https://hooks.slack.com/...`),
    or None. Only https URLs name a service (a test's `http://127.0.0.1` never does). A URL
    names the service whose format it reads: Discord's Slack-compatible endpoint is Slack's.

    >>> service_for_url("https://hooks.slack.com/services/T0/B0/x")
    'slack'
    >>> service_for_url("https://discord.com/api/webhooks/1/x/slack")
    'slack'
    >>> service_for_url("https://example.com/hook") is None
    True
    """
    where = _host_and_path(url)
    if where is not None:
        for service in SERVICE_URLS:
            if service.matches(*where):
                return service.plugin
    return None


def _unwritten_format(url: str) -> tuple[str, str] | None:
    """What reads `url` and what to do instead, when it is one of `_UNWRITTEN_FORMATS`."""
    where = _host_and_path(url)
    if where is not None:
        for service, reads, instead in _UNWRITTEN_FORMATS:
            if service.matches(*where):
                return reads, instead
    return None


def _host_and_path(url: str) -> tuple[str, str] | None:
    """The host (lower case, no trailing dot) and path of an https URL, else None."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    host = (parts.hostname or "").lower().rstrip(".")
    if parts.scheme != "https" or not host:
        return None
    return host, parts.path or "/"


def common_options(webhook: Webhook) -> dict[str, Any]:
    """The settings every webhook has (name, events, filter, retry policy, ...), as keyword
    arguments for another webhook class: what a claiming plugin builds its webhook from."""

    options: dict[str, Any] = {}
    for field in attrs.fields(Webhook):
        if not field.init:
            continue
        value = getattr(webhook, field.name)
        if field.name == "signing_secret" and not value:
            continue  # left out means unsigned; an empty tuple would be refused as None
        options[field.alias or field.name] = value
    return options


def _ignored(webhook: Any) -> list[str]:
    """The generic webhook's own settings a service's webhook does not send."""
    ignored = []
    if getattr(webhook, "method", "POST") != "POST":
        ignored.append(f"method {webhook.method}")
    extra = [
        name
        for name, value in getattr(webhook, "headers", {}).items()
        if not (name.lower() == "content-type" and value.lower().startswith("application/json"))
    ]
    if extra:
        ignored.append("headers " + ", ".join(sorted(extra)))
    return ignored


def claim(hooks: Hooks, webhook: Webhook, cache: weakref.WeakKeyDictionary[Any, Any]) -> Webhook:
    """`webhook` as the plugin of its URL's service would send it, or `webhook` itself."""

    if type(webhook) not in (CustomWebhook, WebhookConfig) or webhook.raw:  # type: ignore[attr-defined]
        return webhook
    found = cache.get(webhook)
    if found is not None:
        return found  # type: ignore[no-any-return]
    url: str = webhook.url  # type: ignore[attr-defined]
    claimed = hooks.webhook_for_url(url, common_options(webhook))
    unwritten = _unwritten_format(url) if claimed is None else None
    if unwritten is not None:
        # No URL in the text: for these services it is the credential.
        reads, instead = unwritten
        raise ValueError(
            f"webhook {webhook.name!r} posts to {reads}, a format no loaded plugin writes: "
            f"the generic envelope would be misread or dropped. {instead}, or pass raw=True "
            '(in a config file: type = "custom") to send the envelope anyway'
        )
    if claimed is None:
        claimed = webhook
        service = service_for_url(url)
        if service is not None:
            # Sent as asked (the generic envelope), which the service will most likely
            # refuse: say so once, with what to install.
            hint = getattr(hooks.pm, "install_hint", None)
            log.warning(
                "webhook_url_names_a_service_without_its_plugin",
                webhook=webhook.name,
                plugin=service,
                error=(
                    f"webhook {webhook.name!r} posts to a {service} URL, but no loaded plugin "
                    f"formats {service} messages, so it is sent the generic envelope, which "
                    f"{service} refuses; install the plugin: "
                    f"{hint(service) if hint else f'pip install empathy-webhooks-{service}'} "
                    "(or pass raw=True to send the envelope on purpose)"
                ),
            )
    else:
        ignored = _ignored(webhook)
        if ignored:
            log.warning(
                "claimed_webhook_ignores_settings",
                webhook=webhook.name,
                plugin=claimed.kind,
                error=(
                    f"webhook {webhook.name!r} is sent as a {claimed.kind} message; its "
                    f"{' and '.join(ignored)} are not used (pass raw=True to send the "
                    "generic request as configured)"
                ),
            )
    cache[webhook] = claimed
    return claimed


def check_claimed(claimed: Any, plugin: str, options: Mapping[str, Any]) -> None:
    """Refuse a claiming plugin's answer that is not a webhook keeping the user's name."""

    if not isinstance(claimed, Webhook):
        raise TypeError(f"returned a {type(claimed).__name__}, not a Webhook")
    if claimed.name != options.get("name"):
        raise ValueError(f"returned a webhook named {claimed.name!r}, not {options.get('name')!r}")
