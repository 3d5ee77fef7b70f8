"""Email alerts over SMTP: the non-HTTP target, delivering through its own `deliver` hook.

`format_payload` renders the whole RFC 5322 message into an `OutgoingRequest` (method
``"SMTP"``, URL ``smtp://host:port``, body the message bytes), so dry runs show exactly what the
server will get. `deliver` sends those bytes with aiosmtplib and turns the server's answer into
a `Response` whose status is the SMTP reply code; `classify_response` reads it the SMTP way:
2xx delivered, 4xx retried, 5xx final (with the server's reply as the reason).

A server may accept some recipients and refuse others at RCPT. The message then went to those
it accepted: the recipients deferred (4xx) are retried alone, as an MTA does, the plugin's
per-webhook state (`EmailState`) remembering who has it; recipients refused for good (5xx)
make the delivery a final failure once nobody is deferred, whose reason names them.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import time
from collections.abc import Awaitable, Collection
from typing import Any, ClassVar, Literal

import aiohttp
import aiosmtplib
import attrs

from empathy_webhooks_core.plugin import (
    MIN_SECRET_LENGTH,
    REDACTED,
    BlockedAddressError,
    Event,
    Outcome,
    OutgoingRequest,
    Response,
    Verdict,
    Webhook,
    address_refusal,
    get_logger,
    hookimpl,
    redact_text,
    secret_field,
)

from .format import (
    EmailContent,
    build_message,
    content_for,
    default_content,
    message_bytes,
    message_id,
    subject_for,
)
from .state import EmailState, remembered_for

#: The plugin API this plugin is written for (docs/writing-plugins.md, section 7).
PLUGIN_API = "1.2"

__all__ = [
    "DEFAULT_PORTS",
    "EmailContent",
    "EmailDeliveryRefused",
    "EmailState",
    "EmailWebhook",
    "TlsMode",
    "build_message",
    "content_for",
    "default_content",
    "message_bytes",
    "message_id",
    "send_message",
    "subject_for",
]

TlsMode = Literal["tls", "starttls", "none"]

#: The port each TLS mode uses unless told otherwise: implicit TLS (RFC 8314), submission
#: with STARTTLS, and a plain relay.
DEFAULT_PORTS: dict[str, int] = {"tls": 465, "starttls": 587, "none": 25}


# ASCII only: internationalised addresses would need SMTPUTF8, which many relays lack (an
# IDN domain works in its punycode form).
_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"|\[[0-9A-Fa-f:.]+\])"
)
_HOST = re.compile(r"[A-Za-z0-9.-]+|\[?[0-9A-Fa-f:.]+\]?")

log = get_logger()


class EmailDeliveryRefused(Exception):
    """A failure no retry can fix (no TLS where TLS is required, an untrusted certificate, no
    usable authentication method). Its text never holds the password."""


def _address(field: str) -> Any:
    def check(value: Any) -> str:
        if not isinstance(value, str) or not _ADDRESS.fullmatch(value.strip()):
            raise ValueError(
                f"{field} must be a plain email address like alerts@example.com, got {value!r}"
            )
        return value.strip()

    return check


def _recipients(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [part for part in re.split(r"[,;]", value) if part.strip()]
    if value is None:
        value = []
    addresses = tuple(_address("each recipient")(item) for item in value)
    if not addresses:
        raise ValueError("recipients must list at least one email address")
    return addresses


def _sender(value: Any) -> str:
    return _address("sender")(value)  # type: ignore[no-any-return]


def _reply_to(value: Any) -> str | None:
    return None if value is None else _address("reply_to")(value)


def _host(value: Any) -> str:
    if value is None:
        raise ValueError("host (the SMTP server) is required (got None: is its variable set?)")
    if not isinstance(value, str) or not _HOST.fullmatch(value.strip()):
        raise ValueError(
            f"host must be a host name or IP address, without scheme or port, got {value!r}"
        )
    return value.strip().strip("[]")


def _tls_mode(value: Any) -> str:
    mode = str(value).lower()
    if mode not in DEFAULT_PORTS:
        raise ValueError(
            "tls_mode must be 'tls' (implicit TLS, port 465), 'starttls' (required STARTTLS, "
            f"port 587) or 'none' (plain, for a local relay), got {value!r}"
        )
    return mode


def _port(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise ValueError(f"port must be a whole number from 1 to 65535, got {value!r}")


def _optional_text(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{attribute.name} must be a string or None")


def _credential(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    _optional_text(instance, attribute, value)
    # An empty one is what `"${SMTP_PASSWORD}"` gives when the variable is set but empty:
    # with both empty the relay would be used without authentication, and nothing would say.
    if value is not None and not value.strip():
        raise ValueError(
            f"{attribute.name} is empty (is its environment variable set?); leave both "
            "username and password out for a relay without authentication"
        )


def _tls_context(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not isinstance(value, ssl.SSLContext):
        raise TypeError(f"tls_context must be an ssl.SSLContext, got {type(value).__name__}")


@attrs.frozen(kw_only=True, eq=False)
class EmailWebhook(Webhook):
    """Sends one multipart email (plain text and HTML) per event.

    TLS is verified against the system's trust store unless `tls_context` or `cert_bundle`
    (a CA file) says otherwise; `tls_mode="none"` is for a relay on a trusted network only.

    >>> EmailWebhook(
    ...     host="smtp.example.com", sender="alerts@example.com", recipients=["ops@example.com"]
    ... ).port
    587
    """

    kind: ClassVar[str] = "email"

    host: str = attrs.field(converter=_host)
    tls_mode: str = attrs.field(default="starttls", converter=_tls_mode)
    port: int = attrs.field(validator=_port)
    sender: str = attrs.field(converter=_sender)
    recipients: tuple[str, ...] = attrs.field(converter=_recipients)
    username: str | None = secret_field(default=None, validator=_credential)
    password: str | None = secret_field(default=None, validator=_credential)
    sender_name: str | None = attrs.field(default="Empathy Framework", validator=_optional_text)
    reply_to: str | None = attrs.field(default=None, converter=_reply_to)
    subject_prefix: str = attrs.field(default="[Empathy]", validator=_optional_text)
    tls_context: ssl.SSLContext | None = attrs.field(
        default=None, repr=False, validator=_tls_context
    )
    cert_bundle: str | None = attrs.field(default=None, validator=_optional_text)
    local_hostname: str | None = attrs.field(default=None, validator=_optional_text)
    #: Sending the password over a plain connection is refused unless this says otherwise.
    allow_insecure_auth: bool = False

    @port.default
    def _default_port(self) -> int:
        return DEFAULT_PORTS[self.tls_mode]

    def __attrs_post_init__(self) -> None:
        if self.signing_secret:
            # A signature covers an HTTP request's body; a mail carries none a reader could
            # check, so the secret did nothing while `validate` showed the webhook "signed".
            raise ValueError(
                "signing_secret does not apply to email: mail is not signed (the relay's "
                "login is username and password); leave signing_secret out"
            )
        if bool(self.username) != bool(self.password):
            raise ValueError("username and password go together: set both or neither")
        if self.username and self.tls_mode == "none" and not self.allow_insecure_auth:
            raise ValueError(
                "tls_mode='none' would send the password in clear text; use 'starttls' or "
                "'tls' (or allow_insecure_auth=True for a relay on a trusted network)"
            )

    @property
    def url(self) -> str:
        """Where mail goes, for listings and dry runs: `smtp://host:port`."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"smtp://{host}:{self.port}"

    def describe(self) -> str:
        count = len(self.recipients)
        return (
            f"{self.name} (email to {count} recipient{'s' if count != 1 else ''} "
            f"via {self.url}, tls={self.tls_mode})"
        )


@hookimpl
def webhook_types() -> dict[str, type[Webhook]]:
    return {"email": EmailWebhook}


@hookimpl
def format_payload(webhook: EmailWebhook, event: Event) -> OutgoingRequest:
    message = build_message(webhook, event)
    # Read back by `deliver`: the envelope is fixed at render time, like the bytes.
    extras: dict[str, Any] = {
        "sender": webhook.sender,
        "recipients": tuple(webhook.recipients),
        "message_id": str(message["Message-ID"]),
    }
    return OutgoingRequest(
        url=webhook.url,
        method="SMTP",
        headers={"Content-Type": "message/rfc822"},
        body=message_bytes(message),
        extras=extras,
    )


def _scrub(text: str, webhook: EmailWebhook) -> str:
    """A server's text with the webhook's credentials masked (servers have echoed them)."""
    for secret in webhook.secret_values():
        # Shorter values would mask ordinary words; the core redacts by the same rule.
        if len(secret) >= MIN_SECRET_LENGTH:
            text = text.replace(secret, REDACTED)
    return redact_text(text)


def _answer(
    webhook: EmailWebhook, code: int, text: str, stage: str, started: float, **details: Any
) -> Response:
    """The SMTP server's answer, as the `stage` that gave it (`auth`, `mail`, `rcpt`, `data`,
    ...), with what `classify_response` needs to know of the recipients (`_reach_details`)."""
    answer = Response(
        status=code,
        body=_scrub(text, webhook).encode("utf-8", "replace"),
        elapsed_ms=(time.perf_counter() - started) * 1000,
    )
    return answer.at_step(stage, **details)


def _reach_details(reached: Collection[str], everyone: Collection[str]) -> dict[str, int]:
    """An answer's details when some recipients have the message: how many, of how many."""
    return {"reached": len(reached), "recipients": len(everyone)} if reached else {}


def _refused(exc: aiosmtplib.SMTPRecipientsRefused) -> tuple[int, str]:
    """One reply for "every recipient refused": a transient one if any was transient (a later
    attempt may reach them all), else the first permanent one."""
    refusals = sorted(exc.recipients, key=lambda r: (not 400 <= r.code < 500, r.code))
    if not refusals:
        return 550, "every recipient refused"
    text = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in refusals)
    return refusals[0].code, text


async def _connect(webhook: EmailWebhook, timeout: float) -> socket.socket:
    """A TCP connection to the webhook's server, made here rather than by aiosmtplib so the
    addresses can be checked first: with `block_private_addresses` every address the host
    resolves to must be public (the addresses connected to are the ones checked, so DNS
    rebinding cannot slip a private one in)."""
    loop = asyncio.get_running_loop()
    where = webhook.url
    try:
        async with asyncio.timeout(timeout):
            infos = await loop.getaddrinfo(webhook.host, webhook.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConnectionError(f"{where}: cannot resolve {webhook.host} ({exc.strerror})") from None
    except TimeoutError:
        raise TimeoutError(f"{where}: resolving {webhook.host} took over {timeout:g} s") from None
    if webhook.block_private_addresses:
        for *_, sockaddr in infos:
            reason = address_refusal(str(sockaddr[0]))
            if reason is not None:
                raise BlockedAddressError(
                    f"{where}: {webhook.host} ({sockaddr[0]}) is a {reason}; refused because "
                    "block_private_addresses is set"
                )
    failure: OSError | None = None
    for family, kind, proto, _, sockaddr in infos:
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            async with asyncio.timeout(timeout):
                await loop.sock_connect(sock, sockaddr)
        except TimeoutError:
            sock.close()
            raise TimeoutError(f"{where}: no connection within {timeout:g} s") from None
        except OSError as exc:
            sock.close()
            failure = exc
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    reason = failure.strerror if failure is not None and failure.strerror else "no address"
    raise ConnectionError(f"{where}: cannot connect ({reason})")


async def send_message(
    webhook: EmailWebhook, request: OutgoingRequest, state: EmailState | None = None
) -> Response:
    """One SMTP attempt of `request` (what `format_payload` rendered) to the webhook's server.

    An answer from the server comes back as a `Response` whose status is its reply code.
    A lost connection raises `ConnectionError` and no answer in time `TimeoutError` (both
    retried by the core); what no retry can fix raises `EmailDeliveryRefused`.

    With `state`, a message an earlier attempt delivered to some of its recipients goes to the
    others only (the same bytes, To and Cc unchanged: only the envelope differs); without it,
    every attempt goes to every recipient.
    """
    started = time.perf_counter()
    everyone = tuple(str(address) for address in request.extras["recipients"])
    message = str(request.extras.get("message_id") or "")
    # One recipient has the message or not: nothing to remember, no memory read.
    if len(everyone) < 2 or not message:
        state = None
    reached = await state.reached(message, webhook.name) if state is not None else frozenset()
    remaining = [address for address in everyone if address not in reached]
    if not remaining:
        # An entry naming every recipient is never kept; this is a re-render with fewer
        # recipients (the webhook changed before a replay): none of them is owed a copy.
        if state is not None:
            await state.forget(message, webhook.name)
        return _answer(webhook, 250, "every recipient already has this message", "data", started)
    earlier = _reach_details(reached, everyone)
    where = webhook.url
    timeout = webhook.retry_policy.timeout_seconds
    # aiosmtplib owns the socket from here and closes it, whatever happens (closing it here
    # too would pull it from under a TLS shutdown still in progress).
    sock = await _connect(webhook, timeout)
    try:
        errors, reply = await aiosmtplib.send(
            request.body,
            sender=str(request.extras["sender"]),
            recipients=remaining,
            # The host name still names the server for TLS (SNI and certificate checks).
            hostname=webhook.host,
            sock=sock,
            username=webhook.username,
            password=webhook.password,
            local_hostname=webhook.local_hostname,
            use_tls=webhook.tls_mode == "tls",
            # Never None: aiosmtplib's default is opportunistic STARTTLS, which silently goes
            # on in plain text when the server (or someone in between) offers no STARTTLS.
            start_tls=webhook.tls_mode == "starttls",
            validate_certs=True,
            tls_context=webhook.tls_context,
            cert_bundle=webhook.cert_bundle,
            timeout=timeout,
        )
    except aiosmtplib.SMTPAuthenticationError as exc:
        return _answer(webhook, exc.code, exc.message, "auth", started, **earlier)
    except aiosmtplib.SMTPRecipientsRefused as exc:
        if reached:
            refusals = {r.recipient: (r.code, r.message) for r in exc.recipients}
            return await _partly_delivered(
                webhook, request, state, everyone, reached, refusals, started
            )
        code, text = _refused(exc)
        return _answer(webhook, code, text, "rcpt", started)
    except aiosmtplib.SMTPSenderRefused as exc:
        return _answer(webhook, exc.code, exc.message, "mail", started, **earlier)
    except aiosmtplib.SMTPRecipientRefused as exc:
        text = f"{exc.recipient}: {exc.message}"
        return _answer(webhook, exc.code, text, "rcpt", started, **earlier)
    except aiosmtplib.SMTPDataError as exc:
        return _answer(webhook, exc.code, exc.message, "data", started, **earlier)
    except aiosmtplib.SMTPHeloError as exc:
        return _answer(webhook, exc.code, exc.message, "helo", started, **earlier)
    except aiosmtplib.SMTPConnectResponseError as exc:
        return _answer(webhook, exc.code, exc.message, "connect", started, **earlier)
    except aiosmtplib.SMTPResponseException as exc:
        if exc.code < 100:
            # aiosmtplib's -1: a reply it could not read (too long, no reply code), not the
            # server's verdict on the message; retried like a broken connection.
            text = _scrub(" ".join(exc.message.split())[:300], webhook)
            raise ConnectionError(f"{where}: unreadable reply from the server ({text})") from None
        return _answer(webhook, exc.code, exc.message, "smtp", started, **earlier)
    except aiosmtplib.SMTPTimeoutError as exc:
        raise TimeoutError(f"no answer from {where} within {timeout:g} s") from exc
    except ssl.SSLCertVerificationError as exc:
        raise EmailDeliveryRefused(
            f"the TLS certificate of {where} is not trusted ({exc.verify_message}); "
            "pass tls_context or cert_bundle to trust its CA"
        ) from None
    except aiosmtplib.SMTPNotSupported as exc:
        # STARTTLS required but not offered: never fall back to plain text.
        raise EmailDeliveryRefused(f"{where}: {_scrub(exc.message, webhook)}") from None
    except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPConnectError) as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, ssl.SSLCertVerificationError):
            raise EmailDeliveryRefused(
                f"the TLS certificate of {where} is not trusted ({cause.verify_message}); "
                "pass tls_context or cert_bundle to trust its CA"
            ) from None
        raise ConnectionError(f"{where}: {_scrub(exc.message, webhook)}") from None
    except aiosmtplib.SMTPException as exc:
        # "No suitable authentication method found" and the like: configuration, not luck.
        raise EmailDeliveryRefused(f"{where}: {_scrub(exc.message, webhook)}") from None
    if errors:
        refusals = {address: (answer.code, answer.message) for address, answer in errors.items()}
        return await _partly_delivered(
            webhook, request, state, everyone, reached, refusals, started
        )
    if state is not None and reached:
        await state.forget(message, webhook.name)
        return _answer(
            webhook, 250, reply, "data", started, retried_recipients=", ".join(remaining)
        )
    return _answer(webhook, 250, reply, "data", started)


async def _partly_delivered(
    webhook: EmailWebhook,
    request: OutgoingRequest,
    state: EmailState | None,
    everyone: tuple[str, ...],
    reached: frozenset[str],
    refusals: dict[str, tuple[int, str]],
    started: float,
) -> Response:
    """The answer when some recipients have the message (now or in an earlier attempt) and the
    server refused the others at RCPT: deferred (4xx), retried for them only, or refused
    (5xx), which is final once nobody is deferred any more."""
    reached = reached | {address for address in everyone if address not in refusals}
    deferred = {a: r for a, r in refusals.items() if 400 <= r[0] < 500}
    refused = {a: r for a, r in refusals.items() if a not in deferred}
    message = str(request.extras.get("message_id") or "")
    if state is not None:
        # Kept after a final failure too: a replay of the dead letter (the same Message-ID)
        # then goes only to those who never got it.
        await state.remember(message, reached, webhook.name)

    def said(group: dict[str, tuple[int, str]]) -> str:
        text = "; ".join(
            f"{address}: {code} {' '.join(reply.split())}"
            for address, (code, reply) in group.items()
        )
        return _scrub(text, webhook)

    first = next(iter(deferred.values() or refused.values()))
    shown_deferred, shown_refused = said(deferred), said(refused)
    # Said loudly either way: someone did not get an alert the others got.
    log.warning(
        "email_recipients_refused",
        webhook=webhook.name,
        message_id=message,
        reached=f"{len(reached)} of {len(everyone)}",
        deferred=shown_deferred[:1000] or None,
        refused=shown_refused[:1000] or None,
        then=(
            "the deferred recipients alone are tried again, while the retry policy allows"
            if deferred
            else "a final failure; not sent again to those who got it"
        ),
    )
    return _answer(
        webhook,
        first[0],
        "; ".join(text for text in (shown_deferred, shown_refused) if text),
        "rcpt",
        started,
        deferred=shown_deferred or None,
        refused=shown_refused or None,
        **_reach_details(reached, everyone),
    )


@hookimpl
def webhook_state(webhook: EmailWebhook) -> EmailState:
    return EmailState(remembered_for(webhook.retry_policy))


@hookimpl
def deliver(
    webhook: EmailWebhook, request: OutgoingRequest, session: aiohttp.ClientSession, state: Any
) -> Awaitable[Response]:
    return send_message(webhook, request, state if isinstance(state, EmailState) else None)


@hookimpl
def classify_response(
    webhook: EmailWebhook, request: OutgoingRequest, response: Response
) -> Verdict:
    code = response.status
    stage = (response.step or "smtp").upper()
    reply = " ".join(_scrub(response.text(), webhook).split()) or "no text"
    found = response.details
    got = (
        f"{found['reached']} of {found['recipients']} recipients got it"
        if found.get("reached")
        else ""
    )
    if 200 <= code < 300:
        details = {"smtp_reply": f"{code} {reply}"}
        message = request.extras.get("message_id")
        if message:
            details["message_id"] = str(message)
        if found.get("retried_recipients"):
            details["retried_recipients"] = str(found["retried_recipients"])
        return Verdict(outcome=Outcome.SUCCESS, details=details)
    deferred, refused = found.get("deferred"), found.get("refused")
    if got and (deferred or refused):
        # Who has it comes first: the reason is cut at 500 characters, the names may not fit.
        said = got + (f"; deferred {deferred}" if deferred else "")
        said += f"; refused {refused}" if refused else ""
        if deferred:
            return Verdict(outcome=Outcome.RETRY, reason=f"SMTP {code} at RCPT (transient): {said}")
        return Verdict(outcome=Outcome.FAIL, reason=f"SMTP {code} at RCPT: {said}")
    earlier = f"; {got} earlier" if got else ""
    if stage == "AUTH" and not 400 <= code < 500:
        # The server's text only: the password never enters a reason.
        return Verdict(
            outcome=Outcome.FAIL,
            reason=f"SMTP authentication refused ({code} {reply}); check username and password"
            + earlier,
        )
    if 400 <= code < 500:
        return Verdict(
            outcome=Outcome.RETRY, reason=f"SMTP {code} at {stage} (transient): {reply}{earlier}"
        )
    return Verdict(outcome=Outcome.FAIL, reason=f"SMTP {code} at {stage}: {reply}{earlier}")
