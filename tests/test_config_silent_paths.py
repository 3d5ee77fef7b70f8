"""Configuration a user wrote that was accepted and did something else: found by an audit of
stop 37, each reproduced through the real loader and, where it decides what is sent, a real
dispatcher posting to a loopback receiver.

- A key written after `[webhooks.headers]`, `[webhooks.templates]` or `[webhooks.filter.data]`
  belongs to that table in TOML: `signing_secret` became a header (the secret sent in clear,
  the requests unsigned), a template, or a condition that no event passed.
- A filter's `gte = "${MIN_CONFIDENCE}"` (always text) compared numbers with text: nothing
  passed. `event_type = ["security_*"]` was compared as it is: nothing passed.
  `severity = ["high", "critical"]` missed what the plugins rank high (an "error", a security
  finding without a severity), which `gte = "high"` lets through.
- `events = ["ALERT"]` matched nothing, without a warning.
- An email webhook with a signing secret was shown as signed; no mail is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from empathy_webhooks_core import WebhookDispatcher
from empathy_webhooks_core.config import ConfigError, load_config, parse_config
from empathy_webhooks_core.plugins import build_plugin_manager
from empathy_webhooks_core.testing import Receiver

from ._cli_kit import run

SECRET = "topsecret-4af9c2"


@pytest.fixture
def pm() -> Any:
    return build_plugin_manager(load_entry_points=False)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "webhooks.toml"
    path.write_text(text, encoding="utf-8")
    return path


# -- keys TOML puts in the table above them ---------------------------------------------------

SWALLOWED = """
[[webhooks]]
name = "ops"
url = "https://example.com/ops"
[webhooks.headers]
X-Team = "ops"

signing_secret = "${WEBHOOK_SECRET}"
fallback = "backup"

[[webhooks]]
name = "backup"
url = "https://example.com/backup"
[webhooks.templates]
alert = "Alert: {data[title]}"

retry_policy = { max_retries = 10 }

[[webhooks]]
name = "eu"
url = "https://example.com/eu"
[webhooks.filter.data]
region = "eu"

signing_secret = "${WEBHOOK_SECRET}"
"""


def test_a_setting_written_below_a_sub_table_is_refused_by_name_and_place(
    tmp_path: Path, pm: Any
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, SWALLOWED), plugin_manager=pm, env={"WEBHOOK_SECRET": SECRET})
    said = caught.value.problems
    places = [line.split(":", 1)[0] for line in said]
    assert places == [
        "webhooks[0].headers.signing_secret",
        "webhooks[0].headers.fallback",
        "webhooks[1].templates.retry_policy",
        "webhooks[2].filter.data.signing_secret",
    ]
    assert "write signing_secret above the [webhooks.headers] header" in said[0]
    assert not any(SECRET in line for line in said)


def test_validate_refuses_the_file_and_never_shows_the_secret(tmp_path: Path) -> None:
    path = _write(tmp_path, SWALLOWED)
    result = run("-c", str(path), "validate", env={"WEBHOOK_SECRET": SECRET})
    assert result.code == 2
    assert "'signing_secret' is a setting of the webhook, not part of headers" in result.err
    assert SECRET not in result.out + result.err


def test_a_data_field_named_like_a_setting_the_webhook_also_has_is_a_filter(pm: Any) -> None:
    """`url` under filter.data beside the webhook's own url: a data field, as written."""
    config = parse_config(
        {
            "webhooks": [
                {
                    "name": "h",
                    "url": "https://example.com/h",
                    "filter": {"data": {"url": "https://status.example.com"}},
                }
            ]
        },
        plugin_manager=pm,
        env={},
    )
    assert str(config.webhooks[0].filter) == "data.url == 'https://status.example.com'"


# -- filters that passed nothing --------------------------------------------------------------


async def _delivered(receiver: Receiver, config_text: str, tmp_path: Path, pm: Any, events: Any):
    """The (event_type, data) emitted that reached the receiver, through a real dispatcher."""
    text = config_text.replace("URL", receiver.url("/h"))
    config = load_config(
        _write(tmp_path, text), plugin_manager=pm, env={"MIN_CONFIDENCE": "0.8", "CODE": "503"}
    )
    async with WebhookDispatcher(webhooks=list(config.webhooks), plugin_manager=pm) as sender:
        for event_type, data, severity in events:
            await sender.emit(event_type, data, severity=severity)
    return sorted(
        (request.json()["event_type"], request.json()["data"].get("n"))
        for request in receiver.requests
    )


async def test_a_threshold_from_the_environment_compares_as_a_number(
    receiver: Receiver, tmp_path: Path, pm: Any
) -> None:
    text = """
[[webhooks]]
name = "h"
url = "URL"
filter = { data = { confidence = { gte = "${MIN_CONFIDENCE}" }, code = "${CODE}" } }
"""
    events = [
        ("prediction", {"n": 1, "confidence": 0.95, "code": 503}, None),
        ("prediction", {"n": 2, "confidence": 0.5, "code": 503}, None),
        ("prediction", {"n": 3, "confidence": 0.9, "code": 500}, None),
        ("prediction", {"n": 4, "confidence": 0.9, "code": "503"}, None),
    ]
    assert await _delivered(receiver, text, tmp_path, pm, events) == [
        ("prediction", 1),
        ("prediction", 4),
    ]


async def test_an_event_type_pattern_in_a_filter_matches_as_in_events(
    receiver: Receiver, tmp_path: Path, pm: Any
) -> None:
    text = """
[[webhooks]]
name = "h"
url = "URL"
filter = { event_type = ["security_*", "compliance_*"] }
"""
    events = [
        ("security_vulnerability", {"n": 1}, None),
        ("compliance_violation", {"n": 2}, None),
        ("prediction", {"n": 3}, None),
    ]
    assert await _delivered(receiver, text, tmp_path, pm, events) == [
        ("compliance_violation", 2),
        ("security_vulnerability", 1),
    ]


async def test_a_severity_list_passes_what_the_plugins_rank_so(
    receiver: Receiver, tmp_path: Path, pm: Any
) -> None:
    text = """
[[webhooks]]
name = "h"
url = "URL"
filter = { severity = ["high", "critical"] }
"""
    events = [
        ("security_vulnerability", {"n": 1}, None),  # ranked high by its type
        ("alert", {"n": 2}, "error"),  # ranked high
        ("alert", {"n": 3}, "High"),
        ("alert", {"n": 4}, "low"),
        ("prediction", {"n": 5}, None),  # ranked info
    ]
    assert await _delivered(receiver, text, tmp_path, pm, events) == [
        ("alert", 2),
        ("alert", 3),
        ("security_vulnerability", 1),
    ]


@pytest.mark.parametrize(
    ("names", "said"),
    [
        (["ALERT"], "names are matched exactly, case included (did you mean 'alert'?)"),
        (["prediction alert"], "holds white space: an event type is one name"),
    ],
)
def test_an_event_type_that_can_only_be_a_slip_is_a_warning(
    pm: Any, names: list[str], said: str
) -> None:
    config = parse_config(
        {"webhooks": [{"name": "h", "url": "https://example.com/h", "events": names}]},
        plugin_manager=pm,
        env={},
    )
    assert any(said in line for line in config.warnings), config.warnings


def test_validate_shows_no_secret_a_filter_compares_with(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
[[webhooks]]
name = "h"
url = "https://example.com/h"
filter = { data = { "auth.token" = "${TOKEN}" } }
""",
    )
    result = run("-c", str(path), "validate", env={"TOKEN": SECRET})
    assert result.code == 0, result.err
    assert "data.auth.token == ***" in result.out
    assert SECRET not in result.out + result.err


def test_an_email_webhook_refuses_a_signing_secret() -> None:
    email = pytest.importorskip("empathy_webhooks_email")
    with pytest.raises(ValueError, match="signing_secret does not apply to email"):
        email.EmailWebhook(
            name="mail",
            host="127.0.0.1",
            sender="a@example.com",
            recipients=["b@example.com"],
            signing_secret=SECRET,
        )


def test_a_variable_set_but_empty_outside_a_credential_is_a_warning(pm: Any) -> None:
    """`?token=${RELAY_TOKEN}` set to "": a URL every request of which the relay refuses."""
    config = parse_config(
        {"webhooks": [{"name": "h", "url": "https://relay.example.com/h?token=${RELAY_TOKEN}"}]},
        plugin_manager=pm,
        env={"RELAY_TOKEN": ""},
    )
    assert config.warnings == (
        "webhooks[0].url: environment variable RELAY_TOKEN is set but empty",
    )


def test_a_signing_secret_with_signing_turned_off_is_a_warning(pm: Any) -> None:
    config = parse_config(
        {
            "webhooks": [
                {
                    "name": "h",
                    "url": "https://example.com/h",
                    "signing_secret": "${S}",
                    "sign_payload": False,
                }
            ]
        },
        plugin_manager=pm,
        env={"S": SECRET},
    )
    assert config.warnings == (
        "webhooks[0].sign_payload: false: the signing_secret is set but no request is signed "
        "(leave sign_payload out to sign them)",
    )


def test_a_short_signing_secret_is_a_warning_that_does_not_show_it(pm: Any) -> None:
    config = parse_config(
        {"webhooks": [{"name": "h", "url": "https://example.com/h", "signing_secret": "${S}"}]},
        plugin_manager=pm,
        env={"S": "pa55w0rd"},
    )
    [warning] = config.warnings
    assert warning.startswith("webhooks[0].signing_secret: shorter than 16 characters")
    assert "pa55w0rd" not in warning


def test_a_plugins_mapping_field_is_free_form_whichever_way_it_is_annotated() -> None:
    """A third party's webhook class may annotate without `from __future__ import
    annotations`: its `Mapping[...]` field, a type and not a string, is checked too."""
    from collections.abc import Mapping

    import attrs

    from empathy_webhooks_core.config.webhook_tables import _free_form

    typed = attrs.make_class(
        "Typed",
        {
            "labels": attrs.field(type=Mapping[str, str], factory=dict),
            "plain": attrs.field(type=dict[str, int], factory=dict),
            "name": attrs.field(type=str, default=""),
        },
    )
    assert [_free_form(field) for field in attrs.fields(typed)] == [True, True, False]
