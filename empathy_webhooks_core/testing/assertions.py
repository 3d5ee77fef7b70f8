"""Assertions about what a webhook sent, with failure messages that show what did arrive."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .receiver import ReceivedRequest, Receiver

__all__ = [
    "assert_header",
    "assert_sent_count",
    "assert_sent_json",
    "sent_json",
]


def _describe(receiver: Receiver) -> str:
    if not receiver.requests:
        return "nothing arrived"
    lines = [f"{len(receiver.requests)} request(s) arrived:"]
    for index, request in enumerate(receiver.requests):
        body = request.body[:200].decode("utf-8", errors="replace")
        lines.append(f"  [{index}] {request.method} {request.path} -> {request.answered}: {body!r}")
    return "\n".join(lines)


def _pick(receiver: Receiver, index: int) -> ReceivedRequest:
    try:
        return receiver.requests[index]
    except IndexError:
        raise AssertionError(f"no request at index {index}; {_describe(receiver)}") from None


def assert_sent_count(receiver: Receiver, expected: int, *, delivered: bool = False) -> None:
    """Exactly `expected` requests arrived (or, with `delivered=True`, were answered 2xx)."""
    actual = len(receiver.delivered if delivered else receiver.requests)
    if actual != expected:
        what = "delivered" if delivered else "arrived"
        raise AssertionError(f"expected {expected} {what}, got {actual}; {_describe(receiver)}")


def sent_json(receiver: Receiver, index: int = -1) -> Any:
    """The JSON body of one received request (the last by default)."""
    request = _pick(receiver, index)
    try:
        return request.json()
    except ValueError:
        raise AssertionError(
            f"request [{index}] is not JSON: {request.body[:200]!r}; {_describe(receiver)}"
        ) from None


def _subset_mismatch(expected: Any, actual: Any, where: str) -> str | None:
    if isinstance(expected, Mapping) and isinstance(actual, Mapping):
        for key, value in expected.items():
            if key not in actual:
                return f"{where}: missing key {key!r}"
            found = _subset_mismatch(value, actual[key], f"{where}[{key!r}]")
            if found:
                return found
        return None
    if expected != actual:
        return f"{where}: expected {expected!r}, got {actual!r}"
    return None


def assert_sent_json(
    receiver: Receiver, expected: Any, *, index: int = -1, partial: bool = False
) -> Any:
    """The request at `index` (the last by default) carried exactly `expected` as JSON.

    With `partial=True`, `expected` need only be a subset: every key it names (at any depth
    of nested objects) must be there with that value; other keys are ignored. Returns the body.
    """
    body = sent_json(receiver, index)
    if partial:
        mismatch = _subset_mismatch(expected, body, "body")
        if mismatch:
            raise AssertionError(f"{mismatch}\nsent: {json.dumps(body, ensure_ascii=False)}")
    elif body != expected:
        raise AssertionError(
            "sent JSON differs\n"
            f"expected: {json.dumps(expected, ensure_ascii=False, sort_keys=True)}\n"
            f"sent:     {json.dumps(body, ensure_ascii=False, sort_keys=True)}"
        )
    return body


def assert_header(receiver: Receiver, name: str, expected: str | None, *, index: int = -1) -> None:
    """The request at `index` carried header `name` with value `expected` (None: absent)."""
    actual = _pick(receiver, index).header(name)
    if actual != expected:
        raise AssertionError(f"header {name!r}: expected {expected!r}, got {actual!r}")
