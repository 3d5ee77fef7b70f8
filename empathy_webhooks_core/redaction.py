"""Keeping secrets out of logs, reprs and error text.

Secrets are known two ways: by value (every webhook registers its credentials with
`register_secrets` when a dispatcher starts) and by shape (header and field names that hold
credentials, the secret path of Slack and Discord webhook URLs).
"""

from __future__ import annotations

import json
import re
import sys
import threading
import traceback
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

__all__ = [
    "REDACTED",
    "redact_processor",
    "redact_text",
    "redact_url",
    "redacted_repr",
    "register_secrets",
    "url_repr",
    "url_secrets",
]

REDACTED = "***"

_SECRET_KEYS = re.compile(
    r"(secret|token|password|passwd|api[_-]?key|app[_-]?key|authorization|signature"
    r"|routing[_-]?key|credential|cookie|x-auth|private[_-]?key|access[_-]?key)",
    re.IGNORECASE,
)
#: Query parameters that carry credentials even though their names are short (Azure
#: Functions `code`, SAS `sig`, plain `key` / `auth`).
_SECRET_QUERY_KEYS = frozenset({"code", "sig", "key", "auth", "apikey", "access_token"})
#: Hosts whose URL path is itself the credential.
_SECRET_PATH_HOSTS = (
    "hooks.slack.com",
    "discord.com",
    "discordapp.com",
    "logic.azure.com",
    "powerplatform.com",
    "webhook.office.com",
)
_URL = re.compile(r"https?://[^\s\"'<>]+")

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None

MIN_SECRET_LENGTH = 4


def register_secrets(values: Iterable[str]) -> None:
    """Remember secret values so every later log line and error text masks them."""
    global _pattern
    found: set[str] = set()
    for value in values:
        if isinstance(value, str) and len(value) >= MIN_SECRET_LENGTH:
            # The same secret as it appears inside a URL or a JSON string (an echoed body).
            found.update({value, quote(value, safe=""), json.dumps(value)[1:-1]})
    with _lock:
        before = len(_secrets)
        _secrets.update(found)
        if len(_secrets) != before:
            ordered = sorted(_secrets, key=len, reverse=True)
            _pattern = re.compile("|".join(re.escape(s) for s in ordered))


def redact_url(url: str, *, secret_path: bool = False) -> str:
    """A URL fit to show: the query dropped, and the path masked for hosts whose path is the
    credential (Slack, Discord, Teams workflows). `secret_path=True` masks the path whatever
    the host (a webhook URL that is a credential, sent through a relay or a test server)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    host = parts.hostname or ""
    path = parts.path
    if any(host == h or host.endswith("." + h) for h in _SECRET_PATH_HOSTS):
        segments = path.split("/")
        keep = 3 if host.endswith(("discord.com", "discordapp.com")) else 2
        path = "/".join([*segments[:keep], REDACTED]) if len(segments) > keep else path
    elif secret_path and path.strip("/"):
        path = "/".join([*path.split("/")[:2], REDACTED])
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = (f"[{host}]" if ":" in host else host) + (f":{port}" if port else "")
    query = REDACTED if parts.query else ""
    return urlunsplit((parts.scheme, netloc, path, query, ""))


def url_secrets(url: Any) -> list[str]:
    """The credentials a URL carries, so they can be registered: a password in the user
    part, and the values of query parameters named like credentials (`token`, `key`, `sig`,
    `code`...). A URL whose path is the credential (Slack, Discord) is masked by shape."""
    if not isinstance(url, str):
        return []
    try:
        parts = urlsplit(url)
        found = [parts.password] if parts.password else []
        for key, value in parse_qsl(parts.query, keep_blank_values=False):
            if _SECRET_KEYS.search(key) or key.lower() in _SECRET_QUERY_KEYS:
                found.append(value)
    except ValueError:
        return []
    return [value for value in found if value]


def url_repr(url: Any) -> str:
    """An attrs `repr=` for URL fields: the URL as `redact_url` shows it."""
    return repr(redact_url(url)) if isinstance(url, str) else repr(url)


def redacted_repr(value: Any) -> str:
    """An attrs `repr=` for credential fields: says whether it is set, never what it is."""
    return repr(REDACTED) if value else repr(value)


def redact_text(text: str) -> str:
    """`text` with every registered secret and every secret-bearing URL masked."""
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    if "://" in text:
        text = _URL.sub(lambda m: redact_url(m.group(0)), text)
    return text


def _is_secret_key(key: str | None) -> bool:
    return key is not None and bool(_SECRET_KEYS.search(key))


def _redact_value(key: str | None, value: Any, depth: int = 0) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if _is_secret_key(key) and isinstance(value, str | bytes | bytearray | list | tuple):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, bytes | bytearray):
        text = bytes(value).decode("utf-8", errors="replace")
        redacted = redact_text(text)
        return value if redacted == text else redacted
    if depth > 8:  # a pathological structure: show its (masked) text, do not recurse
        return redact_text(repr(value))
    if isinstance(value, Mapping):
        return {k: _redact_value(str(k), v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_redact_value(None, v, depth + 1) for v in value]
        return items if isinstance(value, set | frozenset) else type(value)(items)
    if isinstance(value, BaseException):
        return redact_text(f"{type(value).__name__}: {value}")
    # Any other object reaches the output through its repr or str; mask that text now, as
    # we cannot know what a renderer further down will do with the object.
    text = repr(value)
    redacted = redact_text(text)
    return value if redacted == text else redacted


def _format_exception(exc_info: Any) -> str | None:
    if isinstance(exc_info, BaseException):
        exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
    elif exc_info is True or (exc_info and not isinstance(exc_info, tuple)):
        exc_info = sys.exc_info()
    if not isinstance(exc_info, tuple) or exc_info[0] is None:
        return None
    return "".join(traceback.format_exception(*exc_info)).rstrip("\n")


def redact_processor(logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> Any:
    """structlog processor: masks secrets in every value of the event dict.

    `exc_info` is rendered here into a masked `exception` string (what structlog's
    `format_exc_info` would produce), because a traceback formatted by a later processor or
    renderer would carry exception messages and locals past this processor unmasked.
    """
    if "exc_info" in event_dict:
        formatted = _format_exception(event_dict.pop("exc_info"))
        if formatted is not None:
            event_dict["exception"] = formatted
    for key in list(event_dict):
        event_dict[key] = _redact_value(key if key != "event" else None, event_dict[key])
    return event_dict
