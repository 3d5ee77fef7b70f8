"""The redaction contract: what counts as a secret, and how it is kept from every output.

One module decides, so every way out of the process (reprs, log lines, exception text, the
exception handed to `on_failure`, dead letters, CLI output, rendered requests, attempt
records) masks the same things the same way:

* **declared values**: every value a webhook declares secret (a field made with
  `secret_field()`, or `attrs.field(metadata={"secret": True})`; the URL of a webhook whose
  class says `secret_url = True`; its signing secrets), as `Webhook.secret_values()` lists
  them. A dispatcher registers them when it opens a webhook's lane (`register_secrets`), so
  later text anywhere in the process is masked; the CLI registers those of its configuration.
  Each value is masked in its raw, URL-encoded, JSON-escaped and base64 forms.
* **URL credentials**: userinfo (and the `Authorization: Basic` header an HTTP client derives
  from it), and the values of credential query parameters (`token`, `key`, `sig`, `code`...).
  URLs are shown without query or userinfo, and without the secret path of chat webhooks.
* **secret-named headers and keys** (`SECRET_NAME`): `Authorization`, `Proxy-Authorization`,
  `Cookie`, `Set-Cookie`, and any name containing `secret`, `token`, `password`, `api-key`
  (`apikey`, `api_key`), `signature`, `credential`, or ending in `-key` / `_key` (but the
  keys that group or order alerts: `dedup_key`, `aggregation_key`, `ordering_key`, ...).
* **values secret by where they came from**: a header value a configuration file took from the
  environment (`${NAME}`), whatever the header's name, when it may be a credential (12
  characters or more, or 8 with letters and digits; `declare_secret_values`).
* **echoes**: the above found again in text a receiver sent back: a registered value, a
  `Basic`/`Bearer` credential, a base64 blob that decodes to a registered value, a
  secret-named JSON member or header line, a credential query parameter.

Text built from a receiver's answer is also bounded (`bounded`, `EXCERPT_CHARS`): masked
first, then cut, so no part of a secret is left at the cut.
"""

from __future__ import annotations

import base64
import binascii
import collections
import contextlib
import functools
import html
import json
import re
import sys
import threading
import traceback
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit, urlunsplit

import attrs

__all__ = [
    "EXCERPT_CHARS",
    "MIN_SECRET_LENGTH",
    "REDACTED",
    "SECRET",
    "SECRET_NAME",
    "Redactor",
    "bounded",
    "declare_secret_values",
    "exported_name",
    "exported_names",
    "is_secret_field",
    "is_secret_name",
    "redact_headers",
    "redact_processor",
    "redact_text",
    "redact_url",
    "redact_value",
    "redacted_exception",
    "redacted_repr",
    "register_request_secrets",
    "register_secrets",
    "request_secret_values",
    "request_secrets_known",
    "secret_field",
    "secret_repr",
    "storable",
    "url_repr",
    "url_secrets",
    "webhook_redactor",
    "webhook_secret_values",
]

REDACTED = "***"

#: Text built from a receiver's answer (a reason, an excerpt, an exception's text) is cut to
#: this many characters, after masking.
EXCERPT_CHARS = 500
#: Shorter values cannot be masked without masking ordinary words; they are not registered.
MIN_SECRET_LENGTH = 4
#: The field metadata key that declares a credential: `attrs.field(metadata={SECRET: True})`.
SECRET = "secret"  # noqa: S105 - a key name, not a secret

#: Header names and keys whose values are credentials, whatever the value looks like.
SECRET_NAME = re.compile(
    r"secret|token|passw(?:or)?d|pass(?:phrase|code)|api[-_]?key|signature|credential"
    r"|authori[sz]ation|authentication|cookie|x-auth|(?:^|[-_])auth(?:[-_]|$)|(?:^|[-_])key$"
    r"|access[-_]?key|private[-_]?key|(?:^|[-_])(?:jwt|hmac)|(?:^|[-_])sign?$|webhook[-_]url",
    re.IGNORECASE,
)
#: Query parameters that carry credentials though their names are short or plain (Azure
#: Functions `code`, SAS `sig`, `key`, `auth`).
_SECRET_QUERY_KEYS = frozenset({"code", "sig", "key", "auth", "apikey", "access_token"})
#: Hosts whose URL path is itself the credential, with how many leading path segments are
#: kept when it is shown (`/services/***`, `/api/webhooks/***`; `/***` for a Telegram bot,
#: whose token is in the first segment).
_SECRET_PATHS = {
    "hooks.slack.com": 1,
    "discord.com": 2,
    "discordapp.com": 2,
    "logic.azure.com": 1,
    "powerplatform.com": 1,
    "webhook.office.com": 1,
    "api.telegram.org": 0,
    "hooks.zapier.com": 1,
    "maker.ifttt.com": 1,
}
_SECRET_PATH_HOSTS = tuple(_SECRET_PATHS)


def _secret_path_keep(host: str) -> int | None:
    """How many path segments of a URL on `host` may be shown, when its path is the
    credential; None for any other host. A host written as an absolute name (`hooks.slack.com.`,
    trailing dot) or in capitals is the same host."""
    host = host.rstrip(".").lower()
    for known, keep in _SECRET_PATHS.items():
        if host == known or host.endswith("." + known):
            return keep
    return None


_URL = re.compile(r"https?://[^\s\"'<>\\]+")
#: One `name=value` auth parameter (Digest's `response="..."`, AWS's `Signature=...`).
_AUTH_PARAM = r"""[A-Za-z][\w-]*\s*=\s*(?:"(?:[^"\\\n]|\\.)*"|[^\s,"]+)"""
#: A credential after an HTTP auth scheme (an echoed `Authorization` header in any format):
#: a token (`Bearer abc`, `SharedKey account:sig=`) or a list of auth parameters (Digest,
#: AWS Signature V4, OAuth 1.0, `Token token="..."`), each masked whole.
_AUTH_SCHEME = re.compile(
    r"\b(Basic|Bearer|Token|Bot|Digest|SSWS|GenieKey|Splunk|Negotiate|NTLM|Kerberos|ApiKey"
    r"|Api-Key|SharedKey|SharedKeyLite|SharedAccessSignature|OAuth|Hawk|HOBA|Mutual"
    r"|AWS4-HMAC-SHA256)(\s+)"
    rf"((?:{_AUTH_PARAM})(?:\s*,\s*{_AUTH_PARAM})*|[A-Za-z0-9._~+/:-]{{6,}}=*)",
    re.IGNORECASE,
)
_AUTH_SCHEME_NAMES = frozenset(
    name.lower() for name in _AUTH_SCHEME.pattern.split("(", 2)[1].split(")")[0].split("|")
)
#: A secret-named member of a JSON object or Python dict in text: `"X-Api-Key": "value"`.
# The value's two alternatives never match the same character (a backslash only as the start
# of an escape): with overlapping ones, an answer full of escapes (JSON with "\n" in it) made
# the match backtrack exponentially, and masking 16 KiB of it took a minute.
_QUOTED_MEMBER = re.compile(
    r"""(["'])([^"'\n]{1,80}?)\1(\s*[:=]\s*)(["'])((?:\\.|(?!\4)[^\\])*)\4"""
)
#: A secret-named header line in text (`X-Webhook-Secret: value`, one per line), with the
#: lines its value is folded onto (obs-fold: continuation lines that start with a space).
_HEADER_LINE = re.compile(
    r"(?m)^([ \t]*[A-Za-z0-9_-]{1,80}[ \t]*:[ \t]*)"
    r"((?:\S[^\r\n]*)?(?:\r?\n[ \t]+[^\r\n]*)*)(?=\r?$)"
)
#: A secret-named, header-shaped name and its value inside a line of prose or logfmt (`sent
#: X-Api-Key: v`, `api_token=v`, `db_password="v w"`): the value is masked up to where it ends.
_INLINE_SECRET = re.compile(
    r"""(?<![\w.-])([A-Za-z][\w-]{0,79})([ \t]*[:=][ \t]*)"""
    r"""("(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|[^\s,;&"'<>()\[\]{}]+)"""
)
#: A URL of a host whose path is the credential, as `_URL` does not see it: written without
#: its scheme (`hooks.slack.com/services/...`), with its slashes escaped (JSON's `\/`) or
#: percent-encoded (a URL inside another's query: `%2F`).
_PATH_SEPARATOR = r"(?:/|\\/|%2[Ff])"
_SECRET_PATH_TEXT = re.compile(
    r"(?:(?<![A-Za-z0-9-])|(?<=%2F)|(?<=%2f))("
    + "|".join(re.escape(host) for host in _SECRET_PATHS)
    + r")\.?(?::\d+)?("
    + _PATH_SEPARATOR
    + r"""[^\s"'<>?#&|]*)""",
    re.IGNORECASE,
)
_SEPARATOR_SPLIT = re.compile(f"({_PATH_SEPARATOR})")
#: Credentials recognisable by their shape alone: Slack tokens (`xoxb-...`), GitHub tokens
#: (`ghp_...`, `github_pat_...`), AWS access key ids, JSON Web Tokens.
_KNOWN_TOKEN = re.compile(
    r"\b(?:xox[abposre]-[A-Za-z0-9-]{10,}|xapp-[A-Za-z0-9-]{10,}|gh[pousr]_[A-Za-z0-9]{30,}"
    r"|github_pat_[A-Za-z0-9_]{30,}|A[KS]IA[0-9A-Z]{16}"
    r"|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})"
)
#: Where `_KNOWN_TOKEN` may match, and the run a JWT's first part reads to (see `_mask_tokens`).
_KNOWN_TOKEN_AT = re.compile(r"\b(?=xox[abposre]-|xapp-|gh[pousr]_|github_pat_|A[KS]IA|eyJ)")
_TOKEN_RUN = re.compile(r"[A-Za-z0-9_-]*")
#: A credential query parameter in text that is not a whole URL (`/hook?token=...`).
_QUERY_PARAM = re.compile(r"([?&;])([A-Za-z0-9_.-]{1,64})=([^&#\s\"'<>]+)")
#: Runs that may be base64 (or base64url) of something holding a secret.
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]{8,}={0,2}")


def is_secret_name(name: Any) -> bool:
    """Whether a header name or key holds a credential (see `SECRET_NAME`)."""
    return isinstance(name, str) and _secret_name(name)


# Every log line asks this of each of its keys, and every recorded attempt of each header: a
# handful of names asked again and again (the gateway's access line: six keys per request).
# Bounded, as header names come from the services we call.
@functools.lru_cache(maxsize=4096)
def _secret_name(name: str) -> bool:
    return bool(SECRET_NAME.search(name)) and name.lower().replace("-", "_") not in _NOT_SECRET


#: Names ending in `_key` that name what groups or orders alerts, not a credential: masked,
#: they hid from a dry run and from logs the very values a user checks (two alerts merged or
#: apart). `routing_key`, `service_key`, `integration_key` stay secret.
_NOT_SECRET = frozenset(
    {
        "dedup_key",
        "aggregation_key",
        "incident_key",
        "ordering_key",
        "idempotency_key",
        "group_key",
        "partition_key",
        "sort_key",
    }
)


def _is_secret_query_key(key: str) -> bool:
    return is_secret_name(key) or key.lower() in _SECRET_QUERY_KEYS


def _b64_forms(value: str) -> set[str]:
    raw = value.encode("utf-8", "surrogatepass")
    return {
        base64.b64encode(raw).decode("ascii").rstrip("="),
        base64.urlsafe_b64encode(raw).decode("ascii").rstrip("="),
    }


#: A line of a multi-line secret that is masked on its own: long enough to be key material.
_SECRET_LINE_CHARS = 16


def _secret_lines(value: str) -> set[str]:
    if "\n" not in value and "\r" not in value:
        return set()
    return {
        line.strip()
        for line in value.splitlines()
        if len(line.strip()) >= _SECRET_LINE_CHARS and not line.strip().startswith("-----")
    }


def _forms(value: str) -> set[str]:
    """`value` as it appears in a URL, a JSON string, an HTML page and base64: every form a
    service's echo of the request was seen to carry it in. PHP's `json_encode` writes `/` as
    `\\/` (an AWS-style key echoed so was shown whole), Go's escapes `&`, `<` and `>` as
    `\\u0026`..., proxies' error pages escape HTML, and a value may be percent-encoded in
    lower case or twice."""
    in_json = json.dumps(value)[1:-1]
    in_url = quote(value, safe="")
    forms = {
        value,
        in_url,
        quote_plus(value, safe=""),
        in_json,
        in_json.replace("/", "\\/"),
        in_json.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e"),
        html.escape(value, quote=True),
        html.escape(value, quote=False),
        html.escape(value, quote=True).replace("&#x27;", "&#39;"),
        re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), in_url),
        quote(in_url, safe=""),
    }
    forms.update(f for f in _b64_forms(value) if len(f) >= MIN_SECRET_LENGTH + 2)
    return forms


class Redactor:
    """A set of secret values and the masking of text, URLs, headers and values with them
    (plus everything masked by shape). `register_secrets` grows the process-wide one;
    `webhook_redactor` makes one for a single webhook."""

    def __init__(self, values: Iterable[Any] = (), *, transient_limit: int = 512) -> None:
        self._values: set[str] = set()
        self._plain: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        # Values seen in rendered requests: the most recent `transient_limit` of them, so a
        # plugin that puts a per-event value in a secret-named header cannot grow this forever.
        self._transient: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._transient_limit = transient_limit
        self._transient_pattern: re.Pattern[str] | None = None
        self._transient_dirty = False
        self._lock = threading.Lock()
        self.add(values)

    @staticmethod
    def _usable(values: Iterable[Any]) -> list[str]:
        found = []
        for value in values:
            if isinstance(value, bytes | bytearray):
                value = bytes(value).decode("utf-8", "replace")
            if isinstance(value, str) and len(value) >= MIN_SECRET_LENGTH:
                found.append(value)
        return found

    def add_transient(self, values: Iterable[Any]) -> None:
        """Remember values for a while (the most recent `transient_limit`): credentials a
        plugin put in a rendered request, needed to mask an echo of that request's answer."""
        changed = False
        with self._lock:
            for value in self._usable(values):
                if value in self._plain:
                    continue
                if value in self._transient:
                    self._transient.move_to_end(value)
                    continue
                self._transient[value] = None
                changed = True
                while len(self._transient) > self._transient_limit:
                    self._transient.popitem(last=False)
            if changed:
                # Compiled when next needed: text is masked far less often than requests are
                # rendered (on failures and log lines, not on every delivery).
                self._transient_dirty = True

    def _transient_compiled(self) -> re.Pattern[str] | None:
        if self._transient_dirty:
            with self._lock:
                if self._transient_dirty:
                    forms = {form for value in self._transient for form in _forms(value)}
                    ordered = sorted(forms, key=len, reverse=True)
                    self._transient_pattern = (
                        re.compile("|".join(re.escape(f) for f in ordered)) if ordered else None
                    )
                    self._transient_dirty = False
        return self._transient_pattern

    def add(self, values: Iterable[Any]) -> None:
        found: set[str] = set()
        plain: set[str] = set()
        for value in self._usable(values):
            plain.add(value)
            found.update(_forms(value))
            # A secret of several lines (a PEM private key) shows line by line in text that
            # wraps or re-indents it, or with other line endings: each line is masked too.
            found.update(_secret_lines(value))
        with self._lock:
            if found <= self._values:
                return
            self._values |= found
            self._plain |= plain
            ordered = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(s) for s in ordered))

    def __contains__(self, value: object) -> bool:
        return value in self._plain or value in self._transient

    def union(self, values: Iterable[Any]) -> Redactor:
        merged = Redactor([*self._plain, *self._transient])
        merged.add(values)
        return merged

    # -- text ------------------------------------------------------------------------------

    def _by_value(self, text: str) -> str:
        for pattern in (self._pattern, self._transient_compiled()):
            if pattern is not None:
                text = pattern.sub(REDACTED, text)
        return text

    def _base64_holding_secret(self, match: re.Match[str]) -> str:
        run = match.group(0)
        if REDACTED in run:
            return run
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                decoded = decode(run + "=" * (-len(run) % 4))
            except (binascii.Error, ValueError):
                continue
            text = decoded.decode("utf-8", "replace")
            for pattern in (self._pattern, self._transient_compiled()):
                if pattern is not None and pattern.search(text):
                    return REDACTED
        return run

    def text(self, text: str) -> str:
        """`text` with every known value and every credential-shaped part masked."""
        if not text:
            return text
        text = self._by_value(text)
        if self._pattern is not None or self._transient_compiled() is not None:
            text = _BASE64_RUN.sub(self._base64_holding_secret, text)
        return _by_shape(text)

    def url(self, url: str, *, secret_path: bool = False) -> str:
        """A URL fit to show (see `redact_url`), known values masked too."""
        return self._by_value(redact_url(url, secret_path=secret_path))

    def headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        """Headers fit to show: secret-named ones `***`, known values masked in the rest."""
        return {
            key: REDACTED if is_secret_name(key) else self.text(str(value))
            for key, value in headers.items()
        }

    def value(self, value: Any, key: str | None = None, depth: int = 0) -> Any:
        """A JSON-like value with secrets masked: strings, bytes, nested dicts and lists, and
        the keys of dicts (a dict keyed by webhook name or URL); values under secret-named
        keys entirely, whatever they hold (a dict, an object) but a number or a flag. Other
        objects become their masked repr. Never raises: an object whose repr fails shows as
        `<unprintable ...>`."""
        if value is None or isinstance(value, bool | int | float):
            return value
        if key is not None and is_secret_name(key):
            return REDACTED
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, bytes | bytearray):
            text = bytes(value).decode("utf-8", errors="replace")
            masked = self.text(text)
            return value if masked == text else masked
        if depth > 8:  # a pathological structure: show its (masked) text, do not recurse
            return self.text(_safe_text(repr, value))
        if isinstance(value, Mapping):
            return self._mapping(value, depth)
        if isinstance(value, list | tuple | set | frozenset):
            items = [self.value(v, None, depth + 1) for v in value]
            if isinstance(value, set | frozenset):
                return items
            try:
                return type(value)(items)
            except Exception:  # a named tuple, or a subclass whose constructor differs
                return tuple(items) if isinstance(value, tuple) else items
        if isinstance(value, BaseException):
            return self.text(f"{type(value).__name__}: {_safe_text(str, value)}")
        # Any other object reaches the output through its repr or str; mask that text now,
        # as we cannot know what a renderer further down will do with the object.
        try:
            text = repr(value)
        except Exception:  # the renderer would fail on it too: its stand-in goes instead
            return f"<unprintable {type(value).__name__}>"
        masked = self.text(text)
        return value if masked == text else masked

    def _mapping(self, value: Mapping[Any, Any], depth: int) -> dict[Any, Any]:
        masked: dict[Any, Any] = {}
        try:
            items = list(value.items())
        except Exception:
            return {"<unreadable>": self.text(_safe_text(repr, value))}
        for k, v in items:
            shown = self._key(k, depth)
            if shown in masked:
                # Two keys masked alike (two webhooks named by their Slack URLs): both kept.
                n = 2
                while f"{shown} #{n}" in masked:
                    n += 1
                shown = f"{shown} #{n}"
            masked[shown] = self.value(v, k if isinstance(k, str) else str(k), depth + 1)
        return masked

    def _key(self, key: Any, depth: int) -> Any:
        """A dict key fit to show: masked like any text (a webhook's name may be its URL)."""
        if key is None or isinstance(key, bool | int | float):
            return key
        if isinstance(key, str):
            return self.text(key)
        shown = self.value(key, None, depth + 1)
        try:
            hash(shown)
        except TypeError:  # a set or a list as masked: its text
            return self.text(_safe_text(repr, key))
        return shown


def _safe_text(render: Any, value: Any) -> str:
    """`repr(value)` or `str(value)`, or a stand-in when the object's own method raises: a
    log line or an error report must never fail on what it reports."""
    try:
        return str(render(value))
    except Exception:
        return f"<unprintable {type(value).__name__}>"


def _mask_member(match: re.Match[str]) -> str:
    if not is_secret_name(match.group(2)) or match.group(5) in ("", REDACTED):
        return match.group(0)
    opening, name, separator, quote_char = match.group(1, 2, 3, 4)
    return f"{opening}{name}{opening}{separator}{quote_char}{REDACTED}{quote_char}"


_BARE_SECRET_NAMES = frozenset(
    {"authorization", "cookie", "token", "secret", "password", "apikey", "signature"}
)


def _header_shaped_secret(name: str) -> bool:
    # Header-shaped names only (`X-Webhook-Secret`, `api_token`, `Authorization`), not a
    # word of prose or an error code (`DirectApiAuthorizationRequired: No sig`).
    shaped = "-" in name or "_" in name or name.lower() in _BARE_SECRET_NAMES
    return shaped and is_secret_name(name)


def _mask_header_line(match: re.Match[str]) -> str:
    name = match.group(1).split(":", 1)[0].strip()
    if not match.group(2).strip() or not _header_shaped_secret(name):
        return match.group(0)
    # A value folded onto the next line: the mask goes after a space on the name's line.
    return match.group(1) + ("" if match.group(1)[-1:].isspace() else " ") + REDACTED


def _mask_inline(match: re.Match[str]) -> str:
    name, separator, value = match.group(1, 2, 3)
    if "-" not in name and "_" not in name:
        # A bare word is prose (`Authorization: only one can be sent`) or a field of an
        # object's repr (`token='...'`, which the conformance suite must see to tell a plugin
        # author of an undeclared credential); an echoed header line is `_HEADER_LINE`'s.
        return match.group(0)
    if value.strip("\"'") in ("", REDACTED) or not _header_shaped_secret(name):
        return match.group(0)
    if ":" in separator and value.lower() in _AUTH_SCHEME_NAMES:
        return match.group(0)  # `Authorization: Bearer ***`: its credential is masked already
    quote_char = value[0] if value[0] in "\"'" else ""
    inner = value[1:-1] if quote_char else value
    if inner.startswith(("http://", "https://")):
        # A URL under a secret name (`webhook_url=`) is the credential: its host is shown,
        # as `secret_repr` shows it, and the rest masked.
        masked = redact_url(inner, secret_path=True)
        return f"{name}{separator}{quote_char}{masked}{quote_char}"
    return f"{name}{separator}{quote_char}{REDACTED}{quote_char}"


def _mask_secret_path(match: re.Match[str]) -> str:
    keep = _secret_path_keep(match.group(1))
    pieces = _SEPARATOR_SPLIT.split(match.group(2))
    # [leading "", separator, segment, separator, segment, ...]: kept up to `keep` segments.
    cut = 2 * (keep or 0) + 1
    rest = pieces[cut + 1 :]
    if not any(rest[::2]) or rest[::2] == [REDACTED]:
        return match.group(0)
    head = match.group(0)[: len(match.group(0)) - len(match.group(2))]
    return head + "".join(pieces[: cut + 1]) + REDACTED


def _mask_auth(match: re.Match[str]) -> str:
    credential = match.group(3)
    # "Bearer tokens are..." is prose; a credential has a digit or a symbol, or is long.
    if not (re.search(r"[0-9+/=_.~-]", credential) or len(credential) >= 20):
        return match.group(0)
    return f"{match.group(1)}{match.group(2)}{REDACTED}"


def _mask_query(match: re.Match[str]) -> str:
    if not _is_secret_query_key(unquote(match.group(2))) or match.group(3) == REDACTED:
        return match.group(0)
    return f"{match.group(1)}{match.group(2)}={REDACTED}"


#: Words one of which a text holds when a pass below can mask anything in it: a pass whose
#: words are all absent is skipped (a substring search costs far less than a regex scan of an
#: answer's 64 KiB, and most texts hold no credential).
_AUTH_WORDS = tuple(sorted(_AUTH_SCHEME_NAMES))
_SECRET_NAME_WORDS = (
    "secret", "token", "passw", "key", "signature", "credential", "authorization", "cookie",
    "auth", "webhook",
)  # fmt: skip
_KNOWN_TOKEN_STARTS = ("xox", "xapp-", "gh", "github_pat_", "AKIA", "ASIA", "eyJ")


def _words(words: Iterable[str]) -> Callable[[str], re.Match[str] | None]:
    """A search for any of `words` (one pass in C: `any()` over the words cost several times
    a short answer's whole masking, and every attempt's answer is masked)."""
    return re.compile("|".join(re.escape(word) for word in words)).search


_has_auth_word = _words(_AUTH_WORDS)
_has_secret_name_word = _words(_SECRET_NAME_WORDS)
_has_secret_path_host = _words(_SECRET_PATH_HOSTS)
_has_known_token_start = _words(_KNOWN_TOKEN_STARTS)


def _by_shape(text: str) -> str:
    lowered = text.lower()
    if _has_auth_word(lowered):
        text = _AUTH_SCHEME.sub(_mask_auth, text)
    if '"' in text or "'" in text:
        text = _QUOTED_MEMBER.sub(_mask_member, text)
    named = _has_secret_name_word(lowered) is not None
    if named and ":" in text:
        text = _HEADER_LINE.sub(_mask_header_line, text)
    if "=" in text:
        text = _QUERY_PARAM.sub(_mask_query, text)
    if named and (":" in text or "=" in text):
        text = _INLINE_SECRET.sub(_mask_inline, text)
    if "://" in text:
        text = _URL.sub(lambda m: redact_url(m.group(0)), text)
    if _has_secret_path_host(lowered):
        text = _SECRET_PATH_TEXT.sub(_mask_secret_path, text)
    if _has_known_token_start(text):
        text = _mask_tokens(text)
    return text


def _mask_tokens(text: str) -> str:
    """`_KNOWN_TOKEN.sub(REDACTED, text)`, in time linear in the text.

    The sub alone tried a JWT at each `eyJ` of a run like `eyJ-eyJ-…` and read on to the run's
    end looking for the dot after the first part: time quadratic in the run (1.7 s for
    64 KiB, and the gateway masks event data this way when an event is read). The first part
    ends where the run does, so once a JWT fails in a run, every later start in it fails
    too: those are skipped. Matching is on the text as given, as `sub` does."""
    pieces: list[str] = []
    copied = 0  # the text before this is in `pieces`
    no_jwt_before = 0
    for start in _KNOWN_TOKEN_AT.finditer(text):
        at = start.start()
        if at < copied:
            continue
        jwt = text.startswith("eyJ", at)
        if jwt and at < no_jwt_before:
            continue
        found = _KNOWN_TOKEN.match(text, at)
        if found is None:
            if jwt:
                no_jwt_before = _TOKEN_RUN.match(text, at).end()  # type: ignore[union-attr]
            continue
        pieces += (text[copied:at], REDACTED)
        copied = found.end()
    if not pieces:
        return text
    pieces.append(text[copied:])
    return "".join(pieces)


# -- the process-wide registry ---------------------------------------------------------------

_registry = Redactor()


@contextlib.contextmanager
def isolated_registry() -> Iterator[Redactor]:
    """For tests: an empty registry until the block ends (then the process's one again), so
    a check that a value is masked cannot pass because another test registered it."""
    global _registry
    saved, _registry = _registry, Redactor()
    try:
        yield _registry
    finally:
        _registry = saved


def register_secrets(values: Iterable[Any]) -> None:
    """Remember secret values so every later log line, error and output masks them (in raw,
    URL-encoded, JSON-escaped and base64 forms). Values shorter than `MIN_SECRET_LENGTH`
    are ignored."""
    _registry.add(values)


def register_request_secrets(values: Iterable[Any]) -> None:
    """Remember credentials found in a rendered request for a while (the most recent 512), so
    an echo of them in the answer is masked without the registry growing with every event."""
    _registry.add_transient(values)


def request_secrets_known() -> bool:
    """Whether any credential `register_request_secrets` gave is remembered now (without
    one, no request carried any: a record may be masked later, when read)."""
    return bool(_registry._transient)


def redact_text(text: str) -> str:
    """`text` with every registered secret and everything credential-shaped masked."""
    return _registry.text(text)


def exported_name(name: str) -> str:
    """A webhook's name as metrics and traces export it: masked when it is written as a URL
    (a webhook named after its Slack URL would publish the URL's secret path), and whatever
    in it has the shape of a credential (a URL without its scheme, `token=...`, a Slack
    token); a plain name that shares a word with some registered secret is never mangled
    (`ops-***`)."""
    return redact_text(name) if "://" in name else _by_shape(name)


def exported_names(
    names: Iterable[str], shown: Callable[[str], str] = exported_name
) -> dict[str, str]:
    """Each webhook name as metrics and traces export it (`shown`, `exported_name` unless
    said), and distinct. Two names masked alike (two webhooks named by their Slack URLs:
    `https://hooks.slack.com/services/***` both) would merge two webhooks' series, and
    Prometheus keeps one of two series with the same labels: each gets ` #1`, ` #2` in the
    order of the names, so no figure is lost and no secret is shown."""
    exported = {name: shown(name) for name in names}
    by_shown: dict[str, list[str]] = {}
    for name, label in exported.items():
        by_shown.setdefault(label, []).append(name)
    taken = set(exported.values())
    for label, alike in by_shown.items():
        if len(alike) < 2:
            continue
        for number, name in enumerate(sorted(alike), 1):
            candidate = f"{label} #{number}"
            while candidate in taken:
                candidate += "'"
            taken.add(candidate)
            exported[name] = candidate
    return exported


def redact_value(value: Any, key: str | None = None) -> Any:
    """A JSON-like value (a dict for `--json` output, a dead letter) with secrets masked."""
    return _registry.value(value, key)


def bounded(text: Any, limit: int = EXCERPT_CHARS) -> str:
    """Text built from a receiver's answer, fit to keep: masked, then cut to `limit`
    characters (masking first, so no part of a secret is left at the cut)."""
    text = str(text)
    # A bound on the work too: 64 KiB is what the HTTP delivery reads of a body.
    text = storable(redact_text(text[: 64 * 1024]))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def storable(text: str) -> str:
    """`text` with what UTF-8 cannot encode (lone surrogates: an answer's header bytes decoded
    with `surrogateescape`, a plugin's careless decode) replaced by `?`: a store writing it
    as text would otherwise fail the whole write, the attempt's record with it."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


# -- URLs ------------------------------------------------------------------------------------


def redact_url(url: str, *, secret_path: bool = False) -> str:
    """A URL fit to show: no userinfo, the query masked, and the path masked for hosts whose
    path is the credential (Slack, Discord, Teams workflows). `secret_path=True` masks the
    path whatever the host (a webhook whose URL is a credential, sent through a relay or a
    test server)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    host = parts.hostname or ""
    path = parts.path
    keep = _secret_path_keep(host)
    if keep is not None:
        # `keep` segments after the leading empty one ("/services/T/B/X" -> "/services/***").
        segments = path.split("/")
        shown = keep + 1
        if len(segments) > shown and any(segments[shown:]):
            path = "/".join([*segments[:shown], REDACTED])
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
    """The credentials a URL carries: the password of its userinfo (raw and decoded), the
    `user:password` pair and its base64 (what an HTTP client sends as `Authorization: Basic`),
    and the values of credential query parameters (`token`, `key`, `sig`, `code`...)."""
    if not isinstance(url, str):
        return []
    try:
        parts = urlsplit(url)
        found: list[str] = []
        if parts.password:
            user, password = unquote(parts.username or ""), unquote(parts.password)
            pair = f"{user}:{password}"
            found += [parts.password, password, pair]
            found.append(base64.b64encode(pair.encode("latin-1", "replace")).decode("ascii"))
            found.append(base64.b64encode(pair.encode("utf-8")).decode("ascii"))
        for key, value in parse_qsl(parts.query, keep_blank_values=False):
            if _is_secret_query_key(key):
                found += [value, quote(value, safe="")]
    except ValueError:
        return []
    return [value for value in dict.fromkeys(found) if value]


def _looks_like_token(part: str) -> bool:
    if len(part) >= 16:
        return True
    return len(part) >= 8 and any(c.isdigit() for c in part) and any(c.isalpha() for c in part)


def secret_url_values(url: Any) -> list[str]:
    """What to mask of a URL that is itself a credential (a chat webhook's): the whole URL
    (with and without its query), every token-like path segment, and every query value."""
    if not isinstance(url, str) or not url:
        return []
    found = [url, *url_secrets(url)]
    try:
        parts = urlsplit(url)
    except ValueError:
        return found
    found.append(urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")))
    found += [unquote(s) for s in parts.path.split("/") if _looks_like_token(unquote(s))]
    found += [v for _, v in parse_qsl(parts.query) if _looks_like_token(v) and "/" not in v]
    return list(dict.fromkeys(found))


def url_repr(url: Any) -> str:
    """An attrs `repr=` for URL fields: the URL as `redact_url` shows it."""
    return repr(redact_url(url)) if isinstance(url, str) else repr(url)


def redacted_repr(value: Any) -> str:
    """An attrs `repr=` for credential fields: says whether it is set, never what it is."""
    return repr(REDACTED) if value else repr(value)


def secret_repr(value: Any) -> str:
    """The repr `secret_field()` gives a credential: a URL shown with its host only (path
    and query masked), anything else as `'***'` when set."""
    if isinstance(value, str) and value.startswith(("http://", "https://")):
        return repr(redact_url(value, secret_path=True))
    return redacted_repr(value)


# -- declaring secrets -------------------------------------------------------------------------


def secret_field(**kwargs: Any) -> Any:
    """`attrs.field(**kwargs)` for a credential: declared secret in its metadata (so the
    core masks its value everywhere: reprs, logs, errors, dead letters, CLI output) and
    shown as `'***'` by `repr` (a URL: its host only).

    >>> import attrs
    >>> @attrs.frozen
    ... class Service:
    ...     token: str = secret_field()
    >>> Service(token="tk_live_123")
    Service(token='***')
    """
    metadata = {**kwargs.pop("metadata", {}), SECRET: True}
    kwargs.setdefault("repr", secret_repr)
    return attrs.field(metadata=metadata, **kwargs)


def is_secret_field(field: attrs.Attribute[Any], cls: type | None = None) -> bool:
    """Whether `field` holds a credential: declared with `secret_field()` (or the `secret`
    metadata), or a URL field (`url`, `webhook_url`) of a class whose `secret_url` is True."""
    if field.metadata.get(SECRET):
        return True
    return bool(cls is not None and getattr(cls, "secret_url", False)) and field.name in (
        "url",
        "webhook_url",
    )


def _strings(value: Any, depth: int = 0) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, bytes | bytearray):
        yield bytes(value).decode("utf-8", "replace")
    elif isinstance(value, Mapping) and depth < 3:
        for item in value.values():
            yield from _strings(item, depth + 1)
    elif isinstance(value, list | tuple | set | frozenset) and depth < 3:
        for item in value:
            yield from _strings(item, depth + 1)


def _credential_values(value: str) -> list[str]:
    """A secret and its credential part (`Bearer abc` -> also `abc`)."""
    scheme, _, credential = value.partition(" ")
    found = [value]
    if credential and scheme.isalpha():
        found.append(credential.strip())
        if scheme.lower() == "basic":
            try:
                found.append(base64.b64decode(credential.strip()).decode("utf-8"))
            except (binascii.Error, ValueError):
                pass
    return found


#: Values a webhook holds that are secret by where they came from rather than by a name or a
#: field (`declare_secret_values`); weak, so a webhook built and dropped leaves nothing.
_declared: weakref.WeakKeyDictionary[Any, tuple[str, ...]] = weakref.WeakKeyDictionary()


def declare_secret_values(webhook: Any, values: Iterable[Any]) -> None:
    """Count `values` among `webhook`'s credentials (`webhook_secret_values`, so
    `Webhook.secret_values()`) and register them at once. The configuration loader declares
    so the header values it took from the environment: `X-Routing = "${ROUTING_KEY}"` is a
    credential as surely as `X-Api-Key` is, but nothing in its name says so."""
    found = tuple(str(value) for value in values if value)
    if not found:
        return
    register_secrets(found)
    try:
        _declared[webhook] = tuple(dict.fromkeys((*_declared.get(webhook, ()), *found)))
    except TypeError:  # an object that cannot be weakly referenced: registered all the same
        pass


def _declared_values(webhook: Any) -> tuple[str, ...]:
    try:
        return _declared.get(webhook, ())
    except TypeError:
        return ()


def webhook_secret_values(webhook: Any) -> list[str]:
    """Every credential a webhook holds, by its declarations: `secret_field()`s (URLs among
    them with their token-like parts), its URL when its class says `secret_url = True`,
    values of secret-named headers in `headers` fields, credentials inside any URL field
    (userinfo, `user:password` and its base64, credential query values), and the values
    declared with `declare_secret_values`."""
    if not attrs.has(type(webhook)):
        return []
    cls = type(webhook)
    found: list[str] = list(_declared_values(webhook))
    for field in attrs.fields(cls):
        value = getattr(webhook, field.name, None)
        if value is None:
            continue
        if is_secret_field(field, cls):
            for item in _strings(value):
                if item.startswith(("http://", "https://")):
                    found += secret_url_values(item)
                else:
                    found += _credential_values(item)
            continue
        if field.name == "headers" or field.name.endswith("_headers"):
            if isinstance(value, Mapping):
                for key, item in value.items():
                    if is_secret_name(key) and isinstance(item, str):
                        found += _credential_values(item)
        elif isinstance(value, str) and value.startswith(("http://", "https://")):
            found += url_secrets(value)
    return [value for value in dict.fromkeys(found) if value]


def request_secret_values(request: Any) -> list[str]:
    """Credentials in a rendered request: values of its secret-named headers, and those of
    its URL (the whole URL and its token-like parts when it is marked a secret URL)."""
    found: list[str] = []
    for key, value in getattr(request, "headers", {}).items():
        if is_secret_name(key) and isinstance(value, str):
            found += _credential_values(value)
    url = getattr(request, "url", None)
    extras = getattr(request, "extras", {}) or {}
    if extras.get("secret_url"):
        found += secret_url_values(url)
    else:
        found += url_secrets(url)
    return [value for value in dict.fromkeys(found) if value]


def webhook_redactor(webhook: Any) -> Redactor:
    """A redactor for output about one webhook: the registered secrets and its own."""
    values = webhook.secret_values() if hasattr(webhook, "secret_values") else []
    return _registry.union(values)


def redact_headers(headers: Mapping[str, str], redactor: Redactor | None = None) -> dict[str, str]:
    """Headers fit for a log line, a repr or CLI output: secret-named ones `***`, registered
    values masked in the rest."""
    return (redactor or _registry).headers(headers)


# -- exceptions ----------------------------------------------------------------------------------

_MASKED_TYPES: dict[type, type[BaseException] | None] = {}
_MASKED_LOCK = threading.Lock()


class RedactedError(Exception):
    """Stands for an exception whose type could not be copied: `original_type` names it."""

    original_type: str = ""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __repr__(self) -> str:
        return f"{self.original_type or type(self).__name__}({str(self)!r})"


def _masked_str(self: BaseException) -> str:
    return str(self.args[0]) if self.args else ""


def _masked_repr(self: BaseException) -> str:
    return f"{type(self).__name__}({_masked_str(self)!r})"


def _masked_type(cls: type[BaseException]) -> type[BaseException] | None:
    """A subclass of `cls` whose text is its first argument, so `isinstance` checks still hold
    for the copy but no attribute of the original can reach its text."""
    with _MASKED_LOCK:
        if cls in _MASKED_TYPES:
            return _MASKED_TYPES[cls]
        try:
            masked: type[BaseException] | None = type(
                cls.__name__,
                (cls,),
                {
                    "__str__": _masked_str,
                    "__repr__": _masked_repr,
                    "__module__": cls.__module__,
                    "__qualname__": cls.__qualname__,
                    "__redacted__": True,
                },
            )
        except TypeError:  # a final type, or one whose layout cannot be extended
            masked = None
        _MASKED_TYPES[cls] = masked
        return masked


def _exception_text(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:  # a broken __str__ must not break the report
        text = ""
    return text or type(exc).__name__


def redacted_exception(
    exc: BaseException | None, *, limit: int = EXCERPT_CHARS, _depth: int = 0
) -> BaseException | None:
    """A copy of `exc` safe to hand to code we do not control (an `on_failure` callback).

    The copy is an instance of a subclass of `exc`'s type (so `isinstance` checks still
    work), its text is `exc`'s text masked and bounded, and that text is all its `str`,
    `repr`, `args` and formatted traceback can show: numbers and masked strings of the
    original's attributes are kept, other attributes (a request object with its URL and
    headers) are not, the traceback (whose frames' locals some formatters print) is dropped,
    and chained causes are copied the same way.
    """
    if exc is None:
        return None
    if getattr(type(exc), "__redacted__", False) or isinstance(exc, RedactedError):
        return exc
    text = bounded(f"{_exception_text(exc)}", limit)
    masked_cls = _masked_type(type(exc))
    clone: BaseException | None = None
    if masked_cls is not None:
        try:
            clone = masked_cls.__new__(masked_cls)
            clone.args = (text,)
        except Exception:
            clone = None
    if clone is None:
        fallback = RedactedError(text)
        fallback.original_type = type(exc).__name__
        clone = fallback
    for key, value in getattr(exc, "__dict__", {}).items():
        if key.startswith("__"):
            continue
        if isinstance(value, str):
            value = bounded(value, limit)
        elif not (value is None or isinstance(value, bool | int | float)):
            continue
        try:
            setattr(clone, key, value)
        except Exception:  # noqa: S112 - a read-only attribute: leave it out
            continue
    if isinstance(exc, OSError) and isinstance(clone, OSError):
        clone.errno = exc.errno
        clone.strerror = bounded(exc.strerror, limit) if exc.strerror else exc.strerror
        clone.filename = None
    notes = getattr(exc, "__notes__", None)
    if isinstance(notes, list):
        clone.__notes__ = [bounded(note, limit) for note in notes]
    if _depth < 5:
        if exc.__cause__ is not None:
            clone.__cause__ = redacted_exception(exc.__cause__, limit=limit, _depth=_depth + 1)
        if exc.__context__ is not None:
            clone.__context__ = redacted_exception(exc.__context__, limit=limit, _depth=_depth + 1)
        clone.__suppress_context__ = exc.__suppress_context__
    else:
        clone.__suppress_context__ = True
    clone.__traceback__ = None
    return clone


# -- logging ---------------------------------------------------------------------------------------


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
        event_dict[key] = _registry.value(event_dict[key], key if key != "event" else None)
    return event_dict
