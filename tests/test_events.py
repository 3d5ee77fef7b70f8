"""The event model: ids, timestamps, levels, JSON-safe data, the envelope."""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime, timedelta, timezone
from enum import IntEnum
from typing import Any

import pytest

from empathy_webhooks_core import Event, EventDataError, EventType, __version__
from empathy_webhooks_core.events import new_event_id


def test_the_ten_reference_event_types_are_named_constants() -> None:
    assert [t.value for t in EventType] == [
        "prediction",
        "alert",
        "bug_detected",
        "security_vulnerability",
        "performance_issue",
        "code_review_complete",
        "test_failure",
        "deployment_risk",
        "compliance_violation",
        "pattern_discovered",
    ]
    assert Event(event_type=EventType.PREDICTION).event_type == "prediction"


@pytest.mark.parametrize("name", ["error", "completion", "phi_access", "my.custom-event"])
def test_any_other_non_empty_name_is_accepted(name: str) -> None:
    assert Event(event_type=name).event_type == name


@pytest.mark.parametrize("name", ["", "   ", None, 3])
def test_empty_or_non_string_event_type_is_refused(name: object) -> None:
    with pytest.raises(ValueError, match="event_type must be a non-empty string"):
        Event(event_type=name)  # type: ignore[arg-type]


def test_event_ids_are_evt_plus_22_url_safe_chars_and_unique() -> None:
    ids = {Event(event_type="alert").event_id for _ in range(2000)}
    assert len(ids) == 2000
    for event_id in ids:
        assert re.fullmatch(r"evt_[A-Za-z0-9_-]{22}", event_id)


def test_event_ids_sort_by_when_they_were_made() -> None:
    """The SQLite store indexes its history by event id: ids made later sort after (as text,
    in any collation that compares bytes), so a new record goes at the index's end instead
    of a random place in it (3 times the cost with 300,000 records kept)."""
    from empathy_webhooks_core.events import _stamp_text

    earlier = [new_event_id() for _ in range(500)]
    time.sleep(0.002)
    later = [new_event_id() for _ in range(500)]
    assert max(earlier) < min(later)
    assert len(set(earlier + later)) == 1000
    moments = [0, 1, 63, 64, 1_764_633_600_000, 64**8 - 2, 64**8 - 1]
    assert [_stamp_text(ms) for ms in moments] == sorted(_stamp_text(ms) for ms in moments)
    assert len({_stamp_text(ms) for ms in moments}) == len(moments)
    # A clock before 1970 or past the year 10889 gives the first or last stamp, not an error.
    assert _stamp_text(-5) == _stamp_text(0) and _stamp_text(64**9) == _stamp_text(64**8 - 1)


def test_timestamp_is_aware_utc_and_z_on_the_wire() -> None:
    moment = datetime(2025, 11, 25, 15, 30, 0, 123456, tzinfo=timezone(timedelta(hours=1)))
    event = Event(event_type="prediction", timestamp=moment)
    assert event.timestamp.tzinfo is UTC
    assert event.to_envelope()["timestamp"] == "2025-11-25T14:30:00.123Z"


def test_naive_timestamp_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Event(event_type="alert", timestamp=datetime(2025, 1, 1))


@pytest.mark.parametrize("level", [0, 6, 4.0, True, "4"])
def test_empathy_level_must_be_1_to_5(level: object) -> None:
    with pytest.raises(ValueError, match="empathy_level must be an integer from 1 to 5"):
        Event(event_type="prediction", empathy_level=level)  # type: ignore[arg-type]


def test_non_json_data_is_refused_naming_the_key() -> None:
    with pytest.raises(EventDataError) as caught:
        Event(event_type="alert", data={"context": {"when": datetime.now(UTC)}})
    assert str(caught.value).startswith("data['context']['when'] is not JSON-serialisable")
    with pytest.raises(EventDataError, match=r"data\['items'\]\[1\] is not JSON-serialisable: set"):
        Event(event_type="alert", data={"items": [1, {2}]})
    with pytest.raises(EventDataError, match=r"data\['ratio'\] is nan"):
        Event(event_type="alert", data={"ratio": float("nan")})
    with pytest.raises(
        EventDataError, match=r"data\['title'\] holds text that is not valid Unicode"
    ):
        Event(event_type="alert", data={"title": "bad \ud800 half"})
    with pytest.raises(EventDataError, match="key 1 of type int"):
        Event(event_type="alert", data={1: "x"})  # type: ignore[dict-item]


@pytest.mark.parametrize(
    "field", ["event_type", "user_id", "severity", "classification", "ordering_key"]
)
def test_text_that_cannot_be_encoded_is_refused_in_every_string_field(field: str) -> None:
    # A lone surrogate (what a bad decode leaves): accepted, it could never be stored or sent.
    fields: dict[str, Any] = {"event_type": "alert", field: "bad \ud800 half"}
    with pytest.raises(ValueError, match=f"^{field} holds text that is not valid Unicode"):
        Event(**fields)
    fields[field] = "José ✓"  # any real text is fine
    assert getattr(Event(**fields), field) == "José ✓"


def test_data_is_copied_so_later_mutation_changes_nothing() -> None:
    data = {"items": [1, 2], "nested": {"a": 1}}
    event = Event(event_type="alert", data=data)
    data["items"].append(3)  # type: ignore[attr-defined]
    data["nested"]["a"] = 2  # type: ignore[index]
    assert event.data == {"items": [1, 2], "nested": {"a": 1}}


def test_metadata_keeps_extras_and_a_given_framework_version() -> None:
    # By default the installed Empathy Framework's version, else nothing (never this
    # library's own version): tests/test_framework_version.py.
    event = Event(event_type="prediction", metadata={"model": "claude-sonnet-4.5"})
    assert event.metadata["model"] == "claude-sonnet-4.5"
    assert event.metadata.get("framework_version") != __version__
    assert Event(event_type="x", metadata={"framework_version": "1.8.0"}).metadata == {
        "framework_version": "1.8.0"
    }


def test_envelope_is_the_reference_payload_key_for_key() -> None:
    event = Event(
        event_type="prediction",
        event_id="evt_abc123",
        timestamp=datetime(2025, 11, 25, 14, 30, tzinfo=UTC),
        user_id="developer_123",
        empathy_level=4,
        data={"prediction": "Auth deployment may conflict with user-service v2.1"},
        metadata={"framework_version": "1.8.0", "model": "claude-sonnet-4.5"},
    )
    assert list(event.to_envelope()) == [
        "event_type",
        "event_id",
        "timestamp",
        "user_id",
        "empathy_level",
        "data",
        "metadata",
    ]
    routed = Event(event_type="alert", severity="high", classification="SENSITIVE")
    assert routed.to_envelope()["severity"] == "high"
    assert routed.to_envelope()["classification"] == "SENSITIVE"


def test_envelope_round_trips() -> None:
    event = Event(
        event_type="alert", data={"x": [1, "ü"]}, severity="high", ordering_key="pr-1", user_id="u"
    )
    assert Event.from_envelope(__import__("json").loads(event.to_json())) == event


def test_events_are_frozen() -> None:
    event = Event(event_type="alert")
    with pytest.raises(AttributeError):
        event.event_type = "other"  # type: ignore[misc]


def test_an_int_subclass_level_passes_and_other_fields_are_checked_in_order() -> None:
    class Level(IntEnum):
        HIGH = 4

    assert Event(event_type="alert", empathy_level=Level.HIGH).empathy_level == 4
    # The first problem in field order is the one raised, whichever path checked it.
    with pytest.raises(TypeError, match="user_id must be a string or None, got int"):
        Event(event_type="alert", user_id=3, severity=4)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="severity must be a string or None, got int"):
        Event(event_type="alert", empathy_level=2, severity=4)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="event_id must be a non-empty string"):
        Event(event_type="alert", event_id=None, user_id=3)  # type: ignore[arg-type]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_never_hands_out_the_parents_event_ids() -> None:
    new_event_id()  # the parent now holds a batch of ids made ahead
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        try:
            os.write(write_end, " ".join(new_event_id() for _ in range(100)).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        child = set(pipe.read().decode().split())
    os.waitpid(pid, 0)
    parent = {new_event_id() for _ in range(100)}
    assert len(child) == 100
    assert not parent & child


def test_a_stored_envelope_the_store_vouches_for_is_sent_as_it_was_stored() -> None:
    """`decode_event(..., envelope_bytes=True)`: the decoded event sends the stored bytes
    themselves (no second encoding); without the mark, or with an ordering key (whose stored
    text carries the key), it encodes again, and the bytes are what the original would send."""
    from empathy_webhooks_core.plugin.store import decode_event

    original = Event(event_type="alert", data={"text": "Überlast ✓", "ratio": 0.1 + 0.2})
    stored = original.to_json().encode("utf-8")
    vouched = decode_event(stored, envelope_bytes=True)
    assert vouched.envelope_bytes() is stored
    plain = decode_event(stored)
    assert plain.envelope_bytes() == stored and plain.envelope_bytes() is not stored

    keyed = Event(event_type="alert", data={"n": 1}, ordering_key="db-1")
    text = keyed.to_json()
    decoded = decode_event(text, envelope_bytes=True)
    assert b"ordering_key" not in decoded.envelope_bytes()
    assert decoded.envelope_bytes() == keyed.envelope_bytes()
