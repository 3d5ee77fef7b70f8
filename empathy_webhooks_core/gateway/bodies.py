"""Reading request bodies: JSON within the size limit, events checked field by field, every
mistake named by its JSON path (`$.events[3].empathy_level`) in one 422 answer."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from ..events import EVENT_FIELDS, Event
from .problems import Problem

__all__ = [
    "EVENT_FIELDS",
    "DuplicateKeyError",
    "build_event",
    "event_fields",
    "event_problem",
    "loads_unique",
    "parse_json",
    "read_json",
]

_OPTIONAL_STRINGS = ("user_id", "severity", "classification", "ordering_key")
_ITEM = re.compile(r"\['((?:[^'\\]|\\.)*)'\]|\[(\d+)\]")
#: How long the rest of a body may take once its headers came: a body trickled, or declared
#: longer than what is sent, would otherwise hold its request (and a stopping gateway's
#: grace period) for as long as the client likes.
BODY_SECONDS = 30.0


async def read_json(request: web.Request, limit: int) -> tuple[bytes, Any]:
    """The body's bytes and JSON. 413 past `limit` bytes (declared or read), 415 when it is not
    declared JSON, 422 when it does not parse."""
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    if request.content_type not in ("application/json", "application/problem+json"):
        raise Problem(
            415,
            "/problems/unsupported-media-type",
            f"send the body as application/json, not {request.content_type or 'nothing'}",
        )
    if request.content_length is not None and request.content.is_eof():
        # All of it came in with the headers (an event is small): taken from the buffer at
        # once, without `read()`'s loop of awaits for chunks already there.
        body = request.content.read_nowait()
    else:
        try:
            async with asyncio.timeout(BODY_SECONDS):
                body = await _read_rest(request, limit)
        except TimeoutError:
            raise Problem(
                408,
                "/problems/body-timeout",
                f"the body did not arrive within {BODY_SECONDS:g} seconds of its headers",
                headers={"Connection": "close"},
            ) from None
    if len(body) > limit:
        raise _too_large(limit)
    return body, parse_json(body)


def parse_json(body: bytes) -> Any:
    """The JSON of a request body, or a 422 saying why not. Only UTF-8 (RFC 8259 8.1; a
    leading byte order mark is ignored), and no object may hold a key twice: parsers
    disagree on which of two values counts (the first, the last, an error), so a proxy or
    a signature check that read one value must not see the gateway act on the other."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Problem(
            422,
            "/problems/invalid-json",
            f"the body is not UTF-8 (byte {exc.object[exc.start]:#04x} at offset "
            f"{exc.start}): send JSON encoded as UTF-8",
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        return loads_unique(text)
    except DuplicateKeyError as exc:
        message = f"the key {exc.key!r} appears more than once in this object; send it once"
        raise Problem(
            422,
            "/problems/invalid-body",
            f"{exc.path}: {message}",
            errors=[{"path": exc.path, "message": message}],
        ) from None
    except RecursionError:
        raise Problem(422, "/problems/invalid-json", "the body nests too deeply") from None
    except ValueError as exc:
        raise Problem(422, "/problems/invalid-json", f"the body is not JSON: {exc}") from None


class DuplicateKeyError(ValueError):
    """A JSON object holds a key twice: `key`, and `path` (`$.data.a`) the object's place."""

    def __init__(self, path: str, key: str) -> None:
        self.path = path
        self.key = key
        super().__init__(f"{path}: the key {key!r} appears more than once in this object")


def loads_unique(text: str) -> Any:
    """`json.loads(text)`, but an object that holds a key twice raises `DuplicateKeyError`
    (naming it) instead of keeping the last value: the gateway's bodies and the CLI's
    `--data` and `--events-file` read JSON the same way, so no event means one thing sent
    to one of them and another sent to the other. Raises `ValueError` for text that is not
    JSON, `RecursionError` for text nested too deeply."""
    try:
        return _decode(text)
    except _DuplicateKey:
        path, key = _first_duplicate(text)
        raise DuplicateKeyError(path, key) from None


class _DuplicateKey(ValueError):
    """Raised while decoding: an object holds a key twice."""


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        raise _DuplicateKey
    return found


# The C scanner builds the pairs and calls this per object: about a microsecond for an event
# (decoding the bytes first, as here, is faster than `json.loads(bytes)`, which pays for it).
_decode = json.JSONDecoder(object_pairs_hook=_unique).decode


class _Pairs(list):  # type: ignore[type-arg]
    """An object as its pairs, in order, duplicates kept (for `_first_duplicate`)."""


def _first_duplicate(text: str) -> tuple[str, str]:
    """The JSON path of the first key found twice in one object, and the key: the body is
    decoded again keeping every pair (only for a body refused for it), and walked without
    recursion, so a deep body costs no stack."""
    decoded = json.JSONDecoder(object_pairs_hook=_Pairs).decode(text)
    stack: list[tuple[Any, str]] = [(decoded, "$")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, _Pairs):
            seen: set[str] = set()
            for key, _ in value:
                if key in seen:
                    return f"{path}.{key}", key
                seen.add(key)
            stack.extend((item, f"{path}.{key}") for key, item in reversed(value))
        elif isinstance(value, list):
            stack.extend((item, f"{path}[{i}]") for i, item in reversed(list(enumerate(value))))
    return "$", ""  # not reached: the first decoding found one


async def _read_rest(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None:
        # Declared within the limit: one read (aiohttp stops at its own limit, the same one).
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise _too_large(limit) from None
    chunks = bytearray()
    async for chunk in request.content.iter_chunked(65536):
        chunks += chunk
        if len(chunks) > limit:
            raise _too_large(limit)
    return bytes(chunks)


def _too_large(limit: int) -> Problem:
    return Problem(
        413, "/problems/too-large", f"the body is larger than this gateway takes ({limit} bytes)"
    )


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def event_fields(body: Any, path: str, errors: list[dict[str, str]]) -> dict[str, Any] | None:
    """The keyword arguments of `emit` from one event object, or None after adding what is
    wrong with it to `errors`."""
    if not isinstance(body, Mapping):
        errors.append({"path": path, "message": f"expected an object, got {_kind(body)}"})
        return None
    before = len(errors)
    for key in body:
        if key not in EVENT_FIELDS:
            errors.append(
                {
                    "path": f"{path}.{key}",
                    "message": f"unknown field (known: {', '.join(EVENT_FIELDS)})",
                }
            )
    event_type = body.get("event_type")
    if "event_type" not in body:
        errors.append({"path": f"{path}.event_type", "message": "required"})
    elif not isinstance(event_type, str) or not event_type.strip():
        errors.append({"path": f"{path}.event_type", "message": "expected a non-empty string"})
    for key in ("data", "metadata"):
        value = body.get(key)
        if value is not None and not isinstance(value, Mapping):
            errors.append(
                {"path": f"{path}.{key}", "message": f"expected an object, got {_kind(value)}"}
            )
    for key in _OPTIONAL_STRINGS:
        value = body.get(key)
        if value is not None and not isinstance(value, str):
            errors.append(
                {"path": f"{path}.{key}", "message": f"expected a string, got {_kind(value)}"}
            )
    level = body.get("empathy_level")
    if level is not None and (
        isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= 5
    ):
        errors.append(
            {"path": f"{path}.empathy_level", "message": "expected an integer from 1 to 5"}
        )
    if len(errors) > before:
        return None
    return {key: body[key] for key in EVENT_FIELDS if key in body}


def build_event(fields: dict[str, Any], path: str, errors: list[dict[str, str]]) -> Event | None:
    """The event, or None after adding why it cannot be built (data that cannot travel,
    nesting too deep, a control character in the type) to `errors`."""
    try:
        return Event(**fields)
    except (TypeError, ValueError) as exc:
        errors.append(event_problem(exc, path))
        return None


def event_problem(exc: BaseException, path: str) -> dict[str, str]:
    """`{path, message}` for an error the event raised: its message starts with the place
    (`data['a'][0] is ...`), turned into a JSON path (`$.data.a[0]`)."""
    message = str(exc)
    for field in (
        "metadata",
        "data",
        "event_type",
        "empathy_level",
        "ordering_key",
        "user_id",
        "severity",
        "classification",
    ):
        if message.startswith(field):
            rest = message[len(field) :]
            where = f"{path}.{field}"
            while True:
                found = _ITEM.match(rest)
                if found is None:
                    break
                key, index = found.groups()
                where += f"[{index}]" if index is not None else f".{key}"
                rest = rest[found.end() :]
            return {"path": where, "message": message}
    return {"path": path, "message": message}
