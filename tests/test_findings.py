"""Finding keys and lifecycle actions: the one rule every plugin keys incidents, tickets and
comments by (PagerDuty, Datadog, Jira, GitHub)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from empathy_webhooks_core import Event, Webhook
from empathy_webhooks_core._findings import (
    EXPLICIT_KEY_FIELDS,
    IDENTITY_FIELDS,
    NAME_FIELDS,
    PLACE_FIELDS,
    TEXT_FIELDS,
    finding_basis,
    finding_key,
    lifecycle_action,
)
from empathy_webhooks_core._templating import merge_payload, render_template
from empathy_webhooks_core.events import MAX_SAFE_INTEGER


def test_trigger_and_resolve_of_one_finding_share_a_key() -> None:
    trigger = Event(
        event_type="performance_issue",
        data={"endpoint": "/api/users", "avg_response_time": 850},
        severity="high",
    )
    resolve = Event(
        event_type="performance_issue_resolved",
        data={"endpoint": "/api/users", "avg_response_time": 120},
    )
    other = Event(event_type="performance_issue", data={"endpoint": "/api/orders"})
    assert finding_key(trigger) == finding_key(resolve) != finding_key(other)
    assert finding_key(trigger).startswith("empathy:performance_issue:")
    assert (lifecycle_action(trigger), lifecycle_action(resolve)) == ("trigger", "resolve")


def test_explicit_keys_and_status_words() -> None:
    event = Event(event_type="alert", data={"dedup_key": "srv01/HTTP", "status": "Acknowledged"})
    assert finding_key(event) == "srv01/HTTP"
    assert lifecycle_action(event) == "acknowledge"
    long = Event(event_type="alert", data={"incident_key": "k" * 300})
    assert len(finding_key(long, max_length=100)) == 100
    assert finding_key(long, max_length=100) != finding_key(
        Event(event_type="alert"), max_length=100
    )


def test_templates_render_and_merge() -> None:
    webhook = Webhook(templates={"alert": "{event_type}: {data[x]}", "*": lambda e: {"a": 1}})
    assert render_template(webhook, Event(event_type="alert", data={"x": 5})) == "alert: 5"
    assert render_template(webhook, Event(event_type="other")) == {"a": 1}
    assert merge_payload({"a": {"b": 1, "c": 2}, "d": 3}, {"a": {"b": 9}, "d": None}) == {
        "a": {"b": 9, "c": 2}
    }


# -- two different alerts never share a key (issue 15, item 4) ---------------------------------

_SETTINGS = settings(max_examples=100, deadline=None, derandomize=True, database=None)
#: Data that describes an alert's state: never part of its key.
_NOISE_FIELDS = ("value", "threshold", "count", "percent", "severity", "observed_at")
_scalar = st.one_of(
    st.text(min_size=1, max_size=30),
    # JSON's exact integers: emit refuses larger ones.
    st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER),
    st.booleans(),
)
_noise = st.dictionaries(st.sampled_from(_NOISE_FIELDS), _scalar, max_size=4)
_texts = st.dictionaries(st.sampled_from(TEXT_FIELDS), st.text(min_size=1, max_size=60), min_size=1)
_kinds = st.sampled_from(["alert", "performance_issue", "bug_detected", "test_failure"])


def _event(kind: str, *parts: dict[str, object], **fields: object) -> Event:
    data: dict[str, object] = {}
    for part in parts:
        data.update(part)
    return Event(event_type=kind, data=data, **fields)  # type: ignore[arg-type]


def test_the_issue_example_disk_full_and_cpu_are_two_incidents() -> None:
    disk = Event(event_type="alert", data={"message": "Disk full on db-1"}, severity="critical")
    cpu = Event(event_type="alert", data={"message": "CPU at 100% on web-3"}, severity="critical")
    assert finding_key(disk) != finding_key(cpu)
    assert finding_key(disk, max_length=100) != finding_key(cpu, max_length=100)
    # The same words again are the same alert: a repeat does not page twice.
    again = Event(event_type="alert", data={"message": "Disk full on db-1"}, severity="critical")
    assert finding_key(disk) == finding_key(again)


@_SETTINGS
@given(kind=_kinds, a=_texts, b=_texts, noise_a=_noise, noise_b=_noise)
def test_alerts_differing_in_their_text_never_share_a_key(
    kind: str,
    a: dict[str, str],
    b: dict[str, str],
    noise_a: dict[str, object],
    noise_b: dict[str, object],
) -> None:
    """No identifying field: the text is what tells alerts apart."""
    first, second = _event(kind, noise_a, a), _event(kind, noise_b, b)
    same = finding_key(first) == finding_key(second)
    assert same == (a == b)
    assert finding_basis(first).source == "text"


@_SETTINGS
@given(kind=_kinds, noise=_noise, max_length=st.integers(min_value=40, max_value=255))
def test_alerts_with_nothing_to_tell_them_apart_are_each_their_own(
    kind: str, noise: dict[str, object], max_length: int
) -> None:
    first, second = _event(kind, noise), _event(kind, noise)
    assert finding_basis(first).source == "event_id"
    assert finding_key(first, max_length=max_length) != finding_key(second, max_length=max_length)


_identity = st.dictionaries(st.sampled_from(IDENTITY_FIELDS), _scalar, min_size=1, max_size=4)


_named_identity = st.builds(
    lambda name, place: {**place, **name},
    st.dictionaries(st.sampled_from(NAME_FIELDS), _scalar, min_size=1, max_size=2),
    st.dictionaries(st.sampled_from(PLACE_FIELDS), _scalar, max_size=2),
)


@_SETTINGS
@given(
    kind=_kinds,
    identity=_named_identity,
    trigger_text=st.dictionaries(st.sampled_from(TEXT_FIELDS), st.text(min_size=1), max_size=2),
    resolve_text=st.dictionaries(st.sampled_from(TEXT_FIELDS), st.text(min_size=1), max_size=2),
    noise_t=_noise,
    noise_r=_noise,
    by_type=st.booleans(),
    max_length=st.integers(min_value=40, max_value=255),
)
def test_a_trigger_and_its_resolve_sharing_naming_fields_share_a_key(
    kind: str,
    identity: dict[str, object],
    trigger_text: dict[str, str],
    resolve_text: dict[str, str],
    noise_t: dict[str, object],
    noise_r: dict[str, object],
    by_type: bool,
    max_length: int,
) -> None:
    trigger = _event(kind, noise_t, trigger_text, identity)
    if by_type:
        resolve = _event(f"{kind}_resolved", noise_r, resolve_text, identity)
    else:
        resolve = _event(kind, noise_r, resolve_text, identity, {"status": "resolved"})
    assert lifecycle_action(resolve) == "resolve"
    assert finding_key(trigger, max_length=max_length) == finding_key(
        resolve, max_length=max_length
    )
    assert len(finding_key(trigger, max_length=max_length)) <= max_length


@_SETTINGS
@given(
    kind=_kinds,
    field=st.sampled_from(EXPLICIT_KEY_FIELDS),
    key=st.text(min_size=1, max_size=400).filter(str.strip),
    trigger_data=st.dictionaries(st.sampled_from(TEXT_FIELDS + IDENTITY_FIELDS), _scalar),
    resolve_data=st.dictionaries(st.sampled_from(TEXT_FIELDS + IDENTITY_FIELDS), _scalar),
)
def test_an_explicit_key_pairs_a_trigger_and_its_resolve_whatever_else_differs(
    kind: str,
    field: str,
    key: str,
    trigger_data: dict[str, object],
    resolve_data: dict[str, object],
) -> None:
    trigger = _event(kind, trigger_data, {field: key})
    resolve = _event(kind, resolve_data, {field: key, "status": "resolved"})
    assert finding_key(trigger) == finding_key(resolve)
    assert len(finding_key(trigger, max_length=100)) <= 100


@_SETTINGS
@given(kind=_kinds, a=_identity, b=_identity, texts=_texts)
def test_different_identifying_fields_never_share_a_key(
    kind: str, a: dict[str, object], b: dict[str, object], texts: dict[str, str]
) -> None:
    first, second = _event(kind, texts, a), _event(kind, texts, b)
    same = finding_key(first) == finding_key(second)
    assert same == (a == b)


@_SETTINGS
@given(
    kind=_kinds,
    place=st.dictionaries(st.sampled_from(PLACE_FIELDS), _scalar, min_size=1, max_size=3),
    a=_texts,
    b=_texts,
)
def test_two_findings_in_one_place_are_told_apart_by_their_text(
    kind: str, place: dict[str, object], a: dict[str, str], b: dict[str, str]
) -> None:
    """A place alone does not name a finding: "Disk full" and "CPU at 100%" on db-1 are two
    incidents, two bugs in `auth.py` two tickets."""
    first, second = _event(kind, place, a), _event(kind, place, b)
    same = finding_key(first) == finding_key(second)
    assert same == (a == b)


@_SETTINGS
@given(
    kind=_kinds,
    place=st.dictionaries(st.sampled_from(PLACE_FIELDS), _scalar, max_size=3),
    name=st.dictionaries(st.sampled_from(NAME_FIELDS), _scalar, min_size=1, max_size=2),
    a=_texts,
    b=_texts,
)
def test_a_named_finding_reported_in_other_words_is_one_finding(
    kind: str,
    place: dict[str, object],
    name: dict[str, object],
    a: dict[str, str],
    b: dict[str, str],
) -> None:
    first, second = _event(kind, place, name, a), _event(kind, place, name, b)
    assert finding_key(first) == finding_key(second)


def test_long_explicit_keys_are_shortened_without_merging() -> None:
    a = Event(event_type="alert", data={"dedup_key": "x" * 300 + "a"})
    b = Event(event_type="alert", data={"dedup_key": "x" * 300 + "b"})
    assert finding_key(a) != finding_key(b)
    assert len(finding_key(a)) == len(finding_key(b)) == 255


def test_keys_of_findings_named_by_their_fields_are_unchanged_by_the_text_rule() -> None:
    """Open incidents keep their keys across the upgrade: the identity hash is as before."""
    event = Event(event_type="performance_issue", data={"endpoint": "/api/users"})
    assert finding_key(event) == "empathy:performance_issue:b4346ff45c2586a7135256c85b12eb4a"


@_SETTINGS
@given(
    kind=_kinds,
    place=st.dictionaries(st.sampled_from(PLACE_FIELDS), _scalar, min_size=1, max_size=3),
    text=_texts,
    noise_t=_noise,
    noise_r=_noise,
)
def test_with_places_only_a_resolve_saying_what_its_trigger_said_shares_its_key(
    kind: str,
    place: dict[str, object],
    text: dict[str, str],
    noise_t: dict[str, object],
    noise_r: dict[str, object],
) -> None:
    trigger = _event(kind, noise_t, place, text)
    resolve = _event(kind, noise_r, place, text, {"status": "resolved"})
    assert finding_key(trigger) == finding_key(resolve)


def test_two_alerts_on_one_host_are_two_incidents() -> None:
    disk = Event(event_type="alert", data={"host": "db-1", "message": "Disk full"})
    cpu = Event(event_type="alert", data={"host": "db-1", "message": "CPU at 100%"})
    assert finding_key(disk) != finding_key(cpu)


def test_which_bases_name_an_alert() -> None:
    def names(data: dict[str, object]) -> bool:
        return finding_basis(Event(event_type="alert", data=data)).names_the_alert

    assert names({"dedup_key": "k"})
    assert names({"check": "disk"})
    assert names({"host": "db-1", "message": "Disk full"})
    assert names({"message": "Disk full"})
    assert not names({"host": "db-1"})
    assert not names({"value": 3})
