"""Keeping secrets out of logs, reprs and error text.

Secrets are known two ways: by value (every webhook registers its credentials with
`register_secret` when a dispatcher starts) and by shape (header and field names that hold
credentials, the secret path of Slack and Discord webhook URLs).
"""

from __future__ import annotations

import re
import threading
import weakref
from collections.abc import Iterable, MutableMapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["REDACTED", "redact_processor", "redact_text", "redact_url", "register_secrets"]

REDACTED = "***"

_SECRET_KEYS = re.compile(
    r"(secret|token|password|passwd|api[_-]?key|app[_-]?key|authorization|signature|routing[_-]?key|credential)",
    re.IGNORECASE,
)
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
_owners: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()

MIN_SECRET_LENGTH = 4


def register_secrets(values: Iterable[str]) -> None:
    """Remember secret values so every later log line and error text masks them."""
    global _pattern
    with _lock:
        before = len(_secrets)
        _secrets.update(v for v in values if isinstance(v, str) and len(v) >= MIN_SECRET_LENGTH)
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
    netloc = host + (f":{parts.port}" if parts.port else "")
    query = REDACTED if parts.query else ""
    return urlunsplit((parts.scheme, netloc, path, query, ""))


def redact_text(text: str) -> str:
    """`text` with every registered secret and every secret-bearing URL masked."""
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    if "://" in text:
        text = _URL.sub(lambda m: redact_url(m.group(0)), text)
    return text


def _redact_value(key: str | None, value: Any) -> Any:
    if key is not None and _SECRET_KEYS.search(key) and isinstance(value, str | bytes):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact_value(None, v) for v in value)
    if isinstance(value, BaseException):
        return redact_text(f"{type(value).__name__}: {value}")
    return value


def redact_processor(logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> Any:
    """structlog processor: masks secrets in every value of the event dict."""
    for key in list(event_dict):
        if key == "exc_info":
            continue
        event_dict[key] = _redact_value(key if key != "event" else None, event_dict[key])
    return event_dict
