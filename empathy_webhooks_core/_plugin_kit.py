"""Shapes several plugins share, so each plugin keeps only what its service does differently:
the chat-webhook base whose URL is the credential, the "Label: title" line, the template merge.
Plugins reach these through `empathy_webhooks_core.plugin`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import attrs

from ._findings import base_event_type
from ._formatting import event_title, first_text
from ._templating import merge_payload, render_template
from .default_plugins.http import default_verdict
from .events import Event
from .redaction import redact_text, redact_url, register_secrets
from .retry import parse_retry_after
from .webhooks import Webhook, check_url
from .wire import Outcome, Response, Verdict

__all__ = ["LABELS", "HttpAnswers", "SecretUrlWebhook", "apply_template", "labelled_title"]


def _check_webhook_url(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    check_url(value, "webhook_url")


@attrs.frozen(kw_only=True, eq=False)
class SecretUrlWebhook(Webhook):
    """A webhook whose URL is itself the credential (Slack, Discord, Teams incoming webhooks;
    anything addressed as `https://host/hooks/<token>`).

    `webhook_url` is where requests go; `url` is the same URL fit to show (its path and query
    masked), for logs and callbacks that print `webhook.url`. The core masks `webhook_url`
    whole wherever it could leave the process (`secret_url = True`).
    """

    kind: ClassVar[str] = "secret_url"
    secret_url: ClassVar[bool] = True

    webhook_url: str = attrs.field(validator=_check_webhook_url)

    @property
    def url(self) -> str:
        """The webhook URL fit to show: `https://hooks.slack.com/services/***`."""
        return redact_url(self.webhook_url, secret_path=True)


#: How an event type is named at the start of a one-line title, where the plain rule (its
#: words, capitalised: "bug_detected" -> "Bug detected") reads badly.
LABELS: Mapping[str, str] = {"performance_issue": "Performance"}


def labelled_title(event: Event) -> str:
    """One line naming the kind of finding, then what it is:
    `Performance: /api/users response time degraded`, `Bug detected: Null dereference`.
    Whitespace is folded; a title that already starts with the label is not labelled twice.
    Not cut: each service cuts to its own limit."""
    kind = base_event_type(event)
    label = LABELS.get(kind, kind.replace("_", " ").capitalize())
    text = first_text(event.data, "title", "summary")
    if text is None and kind == "performance_issue" and event.data.get("endpoint"):
        issue = first_text(event.data, "issue", "message") or "response time degraded"
        text = f"{event.data['endpoint']} {issue}"
    text = " ".join((text or event_title(event)).split())
    return text if text.lower().startswith(label.lower()) else f"{label}: {text}"


def apply_template(
    webhook: Webhook,
    event: Event,
    payload: Mapping[str, Any],
    *,
    text: Callable[[str], Mapping[str, Any]] | None = None,
    mapping: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None,
    escape: Callable[[str], str] | None = None,
) -> dict[str, Any]:
    """`payload` with the user's template for `event` (`Webhook.templates`) laid over it.

    A dict template (or a function's dict) is merged over the payload: nested dicts key by key,
    any other value replaces, None removes a key. A string template (or a function's string)
    goes to `text`, which says where this service puts it, as such a dict:
    `text=lambda s: {"text": s}`. `mapping`, when given, may reshape a dict template before
    it is merged (Teams puts a bare Adaptive Card in its envelope). `escape`, for a service
    that reads text as markup, is applied to each event value a string template puts in its
    text (`{data[title]}`), not to the template's own text. With no template, `payload` comes
    back as a dict unchanged.

    Raises `TypeError`, naming the event type, for what the plugin cannot use (a string when
    it takes none, a list, a number): the delivery then fails saying so, rather than sending
    the default message as if the template were not there.
    """
    override = render_template(webhook, event, escape=escape)
    if override is None:
        return dict(payload)
    if isinstance(override, str) and text is not None:
        override = text(override)
    if not isinstance(override, Mapping):
        takes = "a dict or a string" if text is not None else "a dict"
        raise TypeError(
            f"the {webhook.kind} template for {event.event_type!r} gave "
            f"{type(override).__name__}, but {webhook.kind} takes {takes}"
        )
    return merge_payload(payload, mapping(override) if mapping is not None else override)


@attrs.frozen(kw_only=True)
class HttpAnswers:
    """How a service's HTTP answers usually read, for a plugin's `classify_response` to extend
    with its service's quirks rather than copy:

    - 2xx: delivered, with `success_details(response)`;
    - 429: retried after `retry_after(response)`, the whole webhook paused (the service says
      "not now", whatever the retry policy lists);
    - any 5xx, or a status in the webhook's `retry_on_status` (408): retried, `Retry-After`
      honoured; a 503 not listed there but with a `retry_after(response)` is read as a 429;
    - a status in `gone` (410; Discord adds 401 and 404): the webhook disabled until
      `enable_webhook(name)`, its queue kept;
    - 3xx: final (redirects are never followed), as `default_verdict` says;
    - anything else: final, with `describe(response)`.

    Every reason names `service` and the status: `Slack unavailable: maintenance (HTTP 503)`.
    A plugin subclasses it to say more (its error text, its `retry_after` in the body, the ids
    a success returns), and handles what this shape cannot say (an error inside a 200) before
    calling `classify`.
    """

    service: str
    gone: frozenset[int] = frozenset({410})

    def describe(self, response: Response) -> str:
        """The service's words for a failed answer: the start of its body, secrets masked."""
        return redact_text(response.excerpt(300)).strip() or "no error text"

    def retry_after(self, response: Response) -> float | None:
        """How long the service asks to wait: its `Retry-After` header."""
        return parse_retry_after(response.header("retry-after"))

    def success_details(self, response: Response) -> dict[str, str]:
        """What a 2xx answer tells about the delivery (a message id), for the verdict."""
        return {}

    def classify(self, webhook: Webhook, response: Response) -> Verdict:
        """The verdict for `response` by the rules above."""
        status = response.status
        if 200 <= status < 300:
            return Verdict(outcome=Outcome.SUCCESS, details=self.success_details(response))
        # A failure's reason quotes the answer, which may echo the webhook's own credential
        # (a chat service repeating its URL). The dispatcher registers it when the webhook
        # joins; a plugin calling this on its own must not depend on that having happened.
        register_secrets(webhook.secret_values())
        if status == 429:
            return Verdict(
                outcome=Outcome.RETRY,
                reason=f"rate limited by {self.service} (HTTP 429)",
                retry_after=self.retry_after(response),
                pause_webhook=True,
            )
        listed = status in webhook.retry_policy.retry_on_status
        if status == 503 and not listed:
            # Not listed, but with Retry-After: "not now", as `default_verdict` reads it (a
            # rate limit); a retry list without 503 must not dead-letter a maintenance window.
            wait = self.retry_after(response)
            if wait is not None:
                return Verdict(
                    outcome=Outcome.RETRY,
                    reason=f"{self.service} unavailable: {self.describe(response)} (HTTP 503)",
                    retry_after=wait,
                    pause_webhook=True,
                )
        if listed or status >= 500:
            # Every 5xx of a hosted service is its trouble, not the message's: a Cloudflare
            # 520-524 in front of Discord was final, the alert dead-lettered on its first
            # attempt as "refused the message" (the services' plugins that classify on their
            # own retry every 5xx too).
            return Verdict(
                outcome=Outcome.RETRY,
                reason=f"{self.service} unavailable: {self.describe(response)} (HTTP {status})",
                retry_after=self.retry_after(response),
            )
        if status in self.gone:
            return Verdict(
                outcome=Outcome.GONE,
                reason=f"{self.service} says the webhook is gone: {self.describe(response)} "
                f"(HTTP {status})",
            )
        if 300 <= status < 400:
            return default_verdict(webhook, response)
        return Verdict(
            outcome=Outcome.FAIL,
            reason=f"{self.service} refused the message: {self.describe(response)} (HTTP {status})",
        )
