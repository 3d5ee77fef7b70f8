"""Webhooks: where events go. The base every plugin's target extends, and the generic target."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import attrs

from ._bounds import bounded
from ._doubts import event_type_doubt, warn_doubt
from ._renderer import bound_renderer
from ._signing_keys import standard_key
from .breaker import BreakerPolicy
from .events import Event
from .ratelimit import RateLimit
from .redaction import (
    is_secret_field,
    is_secret_name,
    redact_text,
    secret_field,
    secret_repr,
    url_repr,
    webhook_redactor,
    webhook_secret_values,
)
from .retry import RetryPolicy
from .wire import OutgoingRequest, masked_headers

__all__ = [
    "DEFAULT_MAX_PENDING",
    "MAX_CONCURRENCY",
    "MAX_PENDING_LIMIT",
    "CustomWebhook",
    "SignatureScheme",
    "Webhook",
    "WebhookConfig",
    "check_url",
]

#: Workers per webhook at most: each is a task and a connection slot; a thousand already
#: exceeds any service's tolerance (a million took 13.7 s and 1.3 GB just to start).
MAX_CONCURRENCY = 1000
#: Deliveries one webhook may hold in memory (queued, in flight or waiting for a retry)
#: before `emit` refuses more for it with `QueueFull`: about 1 KB each, so 100 MB.
DEFAULT_MAX_PENDING = 100_000
#: The largest `max_pending` accepted (about 1 GB of queued deliveries).
MAX_PENDING_LIMIT = 1_000_000
#: The largest `max_payload_bytes` accepted; no service we know takes more than a few MB.
MAX_PAYLOAD_LIMIT = 64 * 1024 * 1024

# Given when `signing_secret` is left out; an explicit None is what an unset
# `os.getenv(...)` gives, and is refused.
_NO_SECRET: Any = object()

SignatureScheme = Literal["both", "x-signature", "standard-webhooks"]

#: What an `on_failure` callback looks like: `(webhook, event, error)`, plain or async.
FailureCallback = Callable[..., Any]


def _events(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    names = tuple(str(getattr(item, "value", item)) for item in value)
    if not names or any(not name.strip() for name in names):
        raise ValueError(f"events must list one or more event names or '*', got {value!r}")
    return names


def _doubtful_events(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    # Any name may be emitted, so one close to a framework type is kept, and said: a typo
    # would otherwise miss every event without a word.
    for name in value:
        doubt = event_type_doubt(name)
        if doubt and instance is not None:
            warn_doubt(
                f"webhook {instance.name!r} events: {doubt}; it is kept (any name may be emitted)"
            )


def _limits_something(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not value.windows() and instance is not None:
        warn_doubt(
            f"webhook {instance.name!r} rate_limit: no limit given (max_requests_per_second, "
            "max_requests_per_minute or max_requests_per_hour): nothing is limited"
        )


def _secrets(value: Any) -> tuple[str, ...]:
    if value is _NO_SECRET:
        return ()
    if value is None:
        raise ValueError(
            "signing_secret is required when given (got None: is its environment variable "
            "set?); leave signing_secret out for unsigned requests"
        )
    if isinstance(value, str | bytes):
        value = [value]
    secrets = tuple(s.decode() if isinstance(s, bytes) else s for s in value)
    if not secrets and value != ():
        # A rotation list whose variables are all unset (`[s for s in (new, old) if s]`):
        # as for None, an error, never an unsigned webhook. The empty tuple is what an
        # unsigned webhook holds, and `attrs.evolve` hands it back.
        raise ValueError(
            "signing_secret is an empty list (are its environment variables set?); "
            "leave signing_secret out for unsigned requests"
        )
    # Blank (only whitespace) is an unset variable padded by a template or a shell, not a
    # secret: anyone can compute its signatures, so it is refused like an empty one.
    if any(not isinstance(s, str) or not s.strip() for s in secrets):
        raise ValueError(
            "signing_secret must be a non-empty string (or a list of them), not blank: is its "
            "environment variable set?"
        )
    for secret in secrets:
        standard_key(secret)  # a whsec_ secret that is not base64 fails here, not per attempt
    return secrets


def _filter(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    _callable_or_none("filter")(instance, attribute, value)
    if value is not None and inspect.iscoroutinefunction(value):
        # Its coroutine is truthy, so every event would pass it (routing does not await).
        raise TypeError(
            "filter must be a plain function of the event returning a bool, not async def"
        )


def _callable_or_none(name: str) -> Any:
    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is not None and not callable(value):
            raise TypeError(f"{name} must be callable, got {type(value).__name__}")

    return check


def _on_failure(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    _callable_or_none("on_failure")(instance, attribute, value)
    if value is None:
        return
    try:
        signature = inspect.signature(value)
    except (TypeError, ValueError):
        return  # a builtin or C callable: nothing to read, so it is given the benefit
    try:
        signature.bind(None, None, None)
    except TypeError:
        # Found here, not when a delivery finally fails: then the failure, and the alert the
        # callback was for, would be lost to a TypeError. Names only: a default may be secret.
        takes = _shown(signature)
        name = getattr(value, "__qualname__", type(value).__name__)
        raise TypeError(
            f"on_failure is called as on_failure(webhook, event, error), but {name}{takes} "
            "cannot take those three arguments"
        ) from None


class _Default:
    def __repr__(self) -> str:
        return "..."


def _shown(signature: inspect.Signature) -> str:
    """`signature` as Python writes it, without annotations, and `...` for each default."""
    empty = inspect.Parameter.empty
    parameters = [
        p.replace(annotation=empty, default=empty if p.default is empty else _Default())
        for p in signature.parameters.values()
    ]
    return str(signature.replace(parameters=parameters, return_annotation=empty))


def _scheme(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value not in ("both", "x-signature", "standard-webhooks"):
        raise ValueError(
            f"signature_scheme must be 'both', 'x-signature' or 'standard-webhooks', got {value!r}"
        )


def _sign_payload(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not isinstance(value, bool):
        raise TypeError(f"sign_payload must be True, False or None, got {type(value).__name__}")
    # Runs once every field is set (attrs validates after assigning), so the secret is known;
    # without an instance (a config file's field-by-field check) the class call judges it.
    if value is True and instance is not None and not instance.signing_secret:
        raise ValueError(
            "sign_payload is True, so signing_secret is required (got none: is its "
            "environment variable set?); requests would otherwise go out unsigned"
        )


def _templates(value: Any) -> Mapping[str, Callable[[Event], Any]]:
    templates = dict(value or {})
    for key, template in templates.items():
        if not callable(template) and not isinstance(template, str | Mapping):
            raise TypeError(
                f"templates[{key!r}] must be a function of the event, a string or a dict"
            )
    return templates


def _retry_policy(value: Any) -> RetryPolicy:
    return RetryPolicy.coerce(value)


def _rate_limit(value: Any) -> RateLimit | None:
    return RateLimit.coerce(value)


def _breaker(value: Any) -> BreakerPolicy:
    return BreakerPolicy.coerce(value)


def check_url(value: Any, field: str = "url") -> str:
    """An http(s) URL with a host, or a `ValueError` that says what is wrong (never the URL's
    secret parts: Slack and Discord URLs are credentials)."""
    if value is None:
        raise ValueError(f"{field} is required (got None: is its environment variable set?)")
    if not isinstance(value, str):
        raise TypeError(f"{field} must be a string, got {type(value).__name__}")
    # urlsplit drops tabs and line breaks without a word, so the URL checked would not be
    # the URL sent; and a host with a space, or a port out of range, could never be sent:
    # each would be found by the first delivery, as a failure, instead of here.
    if any(ord(char) < 0x20 or char == "\x7f" for char in value):
        raise ValueError(f"{field} must not contain control characters (a line break, a tab)")
    try:
        parts = urlsplit(value)
    except ValueError:  # an unclosed `[` of an IPv6 address
        raise ValueError(f"{field} must be an http:// or https:// URL with a host") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{field} must be an http:// or https:// URL with a host")
    if any(char.isspace() for char in parts.netloc):
        raise ValueError(f"{field} must not have a space in its host")
    try:
        port = parts.port
    except ValueError:  # not a number, or beyond 65535 (the message would quote the URL)
        port = 0
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"{field} must have a port from 1 to 65535")
    return value


def _masking_repr(generated: Callable[[Any], str]) -> Callable[[Any], str]:
    """Wrap a webhook class's repr so it never shows a value the webhook declares secret,
    whatever each field's own `repr=` says."""
    if getattr(generated, "__masks_secrets__", False):
        return generated

    def __repr__(self: Any) -> str:
        text = generated(self)
        try:
            # A declared field left with the default repr: show it as `secret_field()` would
            # (a URL by its host), then mask whatever else holds a secret value.
            for field in attrs.fields(type(self)):
                value = getattr(self, field.name, None)
                if isinstance(value, str) and value and is_secret_field(field, type(self)):
                    text = text.replace(repr(value), secret_repr(value))
            return webhook_redactor(self).text(text)
        except Exception:  # a broken secret declaration must not break repr()
            return redact_text(text)

    __repr__.__masks_secrets__ = True  # type: ignore[attr-defined]
    return __repr__


@attrs.frozen(kw_only=True, eq=False)
class Webhook:
    """What every webhook has, whatever its target.

    Subclasses set `kind` (the entry-point name of their plugin, `"slack"`) and add their own
    fields. All fields are keyword-only, so subclasses may add required ones freely. Frozen:
    runtime state (queues, breaker, pause) lives in the dispatcher, so one webhook object can
    be shared by several dispatchers.

    Credentials are declared, never listed by hand: a field made with `secret_field()` (or
    `attrs.field(metadata={"secret": True})`) holds one, and `secret_url = True` on the class
    says the webhook's URL (its `url` or `webhook_url` field) is itself one, as a chat
    webhook's is. The core then masks them everywhere they could leave the process.
    """

    kind: ClassVar[str] = "webhook"
    #: True when the URL this webhook posts to is itself the credential (Slack, Discord,
    #: Teams webhooks): its `url` / `webhook_url` field is then masked whole, and its path
    #: hidden wherever the URL is shown (`https://hooks.example/***`).
    secret_url: ClassVar[bool] = False
    #: True when the service refuses a request with a header it does not know: then no
    #: plugin's header (`before_attempt`: a trace context's `traceparent`) is ever added to
    #: this webhook's requests, whatever `plugin_headers` says.
    rejects_unknown_headers: ClassVar[bool] = False

    name: str = attrs.field()
    events: tuple[str, ...] = attrs.field(
        default=("*",), converter=_events, validator=_doubtful_events
    )
    filter: Callable[[Event], bool] | None = attrs.field(default=None, validator=_filter)
    retry_policy: RetryPolicy = attrs.field(factory=RetryPolicy, converter=_retry_policy)
    rate_limit: RateLimit | None = attrs.field(
        default=None, converter=_rate_limit, validator=_limits_something
    )
    circuit_breaker: BreakerPolicy = attrs.field(factory=BreakerPolicy, converter=_breaker)
    on_failure: FailureCallback | None = attrs.field(default=None, validator=_on_failure)
    signing_secret: tuple[str, ...] = secret_field(
        default=_NO_SECRET, converter=_secrets, repr=False
    )
    sign_payload: bool | None = attrs.field(default=None, validator=_sign_payload)
    signature_scheme: SignatureScheme = attrs.field(default="both", validator=_scheme)
    fallback: Webhook | str | None = None
    max_concurrency: int = attrs.field(
        default=10, validator=bounded(above=0, at_most=MAX_CONCURRENCY, integer=True)
    )
    max_payload_bytes: int = attrs.field(
        default=512 * 1024, validator=bounded(above=0, at_most=MAX_PAYLOAD_LIMIT, integer=True)
    )
    max_pending: int = attrs.field(
        default=DEFAULT_MAX_PENDING,
        validator=bounded(above=0, at_most=MAX_PENDING_LIMIT, integer=True),
    )
    block_private_addresses: bool = False
    #: Let plugins add headers to each attempt (`before_attempt`: the otel plugin's W3C
    #: `traceparent`); False sends only the webhook's own headers and its signatures.
    plugin_headers: bool = True
    templates: Mapping[str, Any] = attrs.field(factory=dict, converter=_templates, repr=False)

    @name.default
    def _default_name(self) -> str:
        return f"{type(self).kind}_webhook"

    @name.validator
    def _check_name(self, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"name must be a non-empty string, got {value!r}")

    @property
    def signs(self) -> bool:
        """Whether attempts carry signatures: a secret is set and `sign_payload` is not False."""
        return bool(self.signing_secret) and self.sign_payload is not False

    def template_for(self, event: Event) -> Any | None:
        """The user's override for this event type (`"*"` for all), or None."""
        return self.templates.get(event.event_type, self.templates.get("*"))

    @classmethod
    def __attrs_init_subclass__(cls) -> None:
        # Every subclass's generated repr masks what the subclass declares secret.
        cls.__repr__ = _masking_repr(cls.__repr__)  # type: ignore[method-assign]

    def secret_values(self) -> list[str]:
        """Every credential this webhook holds, as its declarations say: signing secrets,
        `secret_field()`s, its URL when `secret_url` is True, secret-named `headers`, and
        credentials inside any URL (userinfo and its `Basic` form, credential query values).
        The core masks each of them wherever a value could leave the process.

        Overriding it to add values still works, but declaring fields is the documented way.
        """
        return webhook_secret_values(self)

    def render(
        self, event: Event | str, data: Mapping[str, Any] | None = None, **fields: Any
    ) -> OutgoingRequest:
        """What this webhook would send for `event` (an `Event`, or an event type with its
        data and fields): a dry run through the installed plugins; nothing is sent."""
        if isinstance(event, str):
            event = Event(event_type=event, data=data, **fields)
        # Rendering runs the plugins, above this module: the package binds who does it.
        return bound_renderer()(self, event)

    def describe(self) -> str:
        """A one-line description for listings; never includes secrets."""
        return f"{self.name} ({self.kind})"


Webhook.__repr__ = _masking_repr(Webhook.__repr__)  # type: ignore[method-assign]

# RFC 9110 token characters: what a header name may be made of.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _headers(value: Mapping[str, str] | None) -> Mapping[str, str]:
    headers = dict(value or {})
    for key, item in headers.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise TypeError(f"headers must map strings to strings; {key!r} does not")
        if not _TOKEN.fullmatch(key):
            # Never the value: it may be a credential.
            raise ValueError(
                f"header name {key!r} is not a valid HTTP header name "
                "(letters, digits and !#$%&'*+-.^_`|~ only; no spaces or line breaks)"
            )
        if any(char in item for char in "\r\n\0"):
            raise ValueError(f"header {key!r} has a line break or NUL in its value")
        if is_secret_name(key) and _no_credential(item):
            # `"Bearer ${TOKEN}"` with the variable empty, or f"Bearer {os.getenv('TOKEN')}"
            # with it unset: every request would go out unauthenticated, refused or worse.
            raise ValueError(
                f"header {key!r} holds no credential (is its environment variable set?)"
            )
    return headers


#: Authorization schemes: a header holding one of these words alone holds no credential.
_AUTH_SCHEMES = frozenset({"basic", "bearer", "bot", "digest", "token", "apikey", "key"})


def _no_credential(value: str) -> bool:
    words = value.split()
    if not words:
        return True
    if len(words) == 1 and words[0].lower() in _AUTH_SCHEMES:
        return True
    return words[-1] == "None"


def _one_authorization(url: str, headers: Mapping[str, str]) -> None:
    # Credentials in the URL become an Authorization header of their own: with one in
    # `headers` too, every attempt failed ("Cannot combine AUTHORIZATION header...").
    if urlsplit(url).username is None:
        return
    if any(name.lower() == "authorization" for name in headers):
        raise ValueError(
            "url has credentials (user:password@) and headers set Authorization: only one "
            "can be sent; keep one of them"
        )


def _method(value: str) -> str:
    method = str(value).upper()
    if method not in ("POST", "PUT", "PATCH"):
        raise ValueError(f"method must be POST, PUT or PATCH, got {value!r}")
    return method


@attrs.frozen(kw_only=True, eq=False)
class CustomWebhook(Webhook):
    """Any HTTP endpoint: the reference's envelope as JSON, optionally signed.

    A URL that names a service whose plugin is installed (`https://hooks.slack.com/...`) is
    sent as that plugin formats it, unless `raw=True`.

    >>> CustomWebhook(url="https://example.com/hook", events=["*"]).name
    'custom_webhook'
    """

    kind: ClassVar[str] = "custom"

    url: str = attrs.field(validator=lambda _, __, value: check_url(value), repr=url_repr)
    method: str = attrs.field(default="POST", converter=_method)
    headers: Mapping[str, str] = attrs.field(
        factory=dict,
        converter=_headers,
        validator=lambda instance, _, value: _one_authorization(instance.url, value),
        repr=lambda h: repr(masked_headers(h)),
    )
    #: Send the generic envelope even to a URL that names a service (`hooks.slack.com`).
    #: By default such a webhook is sent as that service's plugin formats it (see
    #: `empathy_webhooks_core.claims`); a config file's `type = "custom"` means raw.
    raw: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))


@attrs.frozen(kw_only=True, eq=False)
class WebhookConfig(CustomWebhook):
    """The reference's Quick Start name for a generic webhook; the same as `CustomWebhook`."""


def webhook_sequence(value: Sequence[Webhook] | Webhook | None) -> list[Webhook]:
    if value is None:
        return []
    if isinstance(value, Webhook):
        return [value]
    webhooks = list(value)
    for item in webhooks:
        if not isinstance(item, Webhook):
            raise TypeError(f"webhooks must be Webhook objects, got {type(item).__name__}")
    return webhooks
