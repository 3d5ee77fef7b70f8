"""Configuration files: webhooks.toml into webhooks, with every error at its exact place."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from empathy_webhooks_core import CustomWebhook, WebhookDispatcher
from empathy_webhooks_core.config import (
    ConfigError,
    compile_filter,
    expand_env,
    load_config,
    parse_config,
)
from empathy_webhooks_core.events import Event
from empathy_webhooks_core.plugins import build_plugin_manager
from empathy_webhooks_core.testing import Receiver

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "webhooks.toml"


@pytest.fixture
def pm():
    # Only the core's own types: these tests must not depend on which plugins are installed.
    return build_plugin_manager(load_entry_points=False)


def problems(data, pm, env=None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, env=env or {}, plugin_manager=pm)
    return caught.value.problems


def test_a_custom_webhook_with_every_option(pm) -> None:
    config = parse_config(
        {
            "store": "sqlite:///outbox.db",
            "webhooks": [
                {
                    "type": "custom",
                    "name": "audit",
                    "url": "https://example.com/hook",
                    "events": ["prediction", "alert"],
                    "headers": {"Authorization": "Bearer ${TOKEN}"},
                    "signing_secret": "${SECRET}",
                    "retry_policy": {"max_retries": 5, "retry_on_status": [503]},
                    "rate_limit": {"max_requests_per_minute": 60},
                    "circuit_breaker": False,
                    "templates": {"prediction": {"source": "config"}},
                }
            ],
        },
        env={"TOKEN": "tok-123", "SECRET": "s3cret"},
        plugin_manager=pm,
    )
    assert config.store == "sqlite:///outbox.db"
    (webhook,) = config.webhooks
    assert isinstance(webhook, CustomWebhook)
    assert webhook.name == "audit"
    assert webhook.events == ("prediction", "alert")
    assert webhook.headers == {"Authorization": "Bearer tok-123"}
    assert webhook.signing_secret == ("s3cret",)
    assert webhook.retry_policy.max_retries == 5
    assert webhook.retry_policy.retry_on_status == frozenset({503})
    assert webhook.rate_limit is not None and webhook.rate_limit.max_requests_per_minute == 60
    assert webhook.circuit_breaker.enabled is False
    assert config.webhook("audit") is webhook


def test_name_defaults_to_the_type(pm) -> None:
    config = parse_config(
        {"webhooks": [{"type": "custom", "url": "https://example.com/x"}]}, plugin_manager=pm
    )
    assert config.webhooks[0].name == "custom_webhook"


def test_every_problem_is_reported_at_its_place(pm) -> None:
    data = {
        "stroe": "memory",
        "webhooks": [
            {"type": "custom", "url": "https://example.com/a"},
            {"type": "custom", "name": "b", "url": "ftp://example.com/b"},
            {
                "type": "custom",
                "name": "c",
                "url": "https://example.com/c",
                "retry_policy": {"max_retries": "three", "jitter": 5, "max_retrys": 1},
                "rate_limit": {"strategy": "sliding"},
                "evnts": ["alert"],
                "max_concurrency": 0,
            },
            {"type": "slak"},
            {"webhook_url": "https://example.com/e"},  # a bare `url` is a custom webhook
        ],
    }
    assert problems(data, pm) == [
        "unknown top-level key 'stroe' (did you mean 'store'?)",
        "webhooks[1].url: must be an http:// or https:// URL with a host",
        "webhooks[2].retry_policy.max_retries: expected an integer, got 'three'",
        "webhooks[2].retry_policy.jitter: must be a fraction from 0 to 1, got 5.0",
        "webhooks[2].retry_policy: unknown key 'max_retrys' (did you mean 'max_retries'?)",
        "webhooks[2].rate_limit.strategy: expected one of 'sliding_window', 'fixed_window', "
        "got 'sliding' (did you mean 'sliding_window'?)",
        "webhooks[2]: unknown key 'evnts' (did you mean 'events'?)",
        "webhooks[2].max_concurrency: must be a whole number above 0 and at most 1000, got 0",
        "webhooks[3].type: unknown webhook type 'slak' (did you mean 'slack'?); installed "
        "types: custom ('slack' is a plugin's type: pip install empathy-webhooks-slack)",
        "webhooks[4].type: required key is missing (installed types: custom)",
    ]


def test_missing_required_option(pm) -> None:
    assert problems({"webhooks": [{"type": "custom"}]}, pm) == [
        "webhooks[0].url: required key is missing"
    ]


def test_a_missing_variable_is_named_and_nothing_else_is_judged(pm) -> None:
    data = {
        "webhooks": [
            {"type": "custom", "url": "${HOOK_URL}", "signing_secret": "${SECRET}"},
        ]
    }
    assert problems(data, pm, env={"SECRET": "topsecret"}) == [
        "webhooks[0].url: environment variable HOOK_URL is not set"
    ]


def test_errors_never_show_a_secret(pm) -> None:
    data = {
        "webhooks": [
            {
                "type": "custom",
                "name": "${NAME}",
                "url": "https://example.com/x",
                "headers": {"X-Api-Key": "${KEY}", "Bad": 5},
                "signing_secret": 123456789,
            },
            {"type": "custom", "url": "https://example.com/y", "signing_secret": ""},
        ]
    }
    lines = problems(data, pm, env={"NAME": "  ", "KEY": "key-material-42"})
    text = "\n".join(lines)
    assert "123456789" not in text and "key-material-42" not in text
    assert "webhooks[0].signing_secret: expected a string or a list of strings, got an integer" in (
        lines
    )


def test_a_secret_of_the_wrong_type_is_not_echoed() -> None:
    pytest.importorskip("empathy_webhooks_pagerduty")
    pm = build_plugin_manager()
    lines = problems({"webhooks": [{"type": "pagerduty", "api_key": 424242424242}]}, pm)
    assert lines == [
        "webhooks[0].api_key: expected a string, got an integer (value hidden)",
    ]


def test_env_expansion_rules() -> None:
    env = {"A": "alpha", "EMPTY": ""}
    assert expand_env("x-${A}-y", env) == "x-alpha-y"
    assert expand_env("$${A} and $HOME", env) == "${A} and $HOME"
    assert expand_env("${MISSING:-fallback}", env) == "fallback"
    assert expand_env("${EMPTY:-fallback}", env) == "fallback"
    assert expand_env({"k": ["${A}", 3, {"${A}": "${A}"}]}, env) == {
        "k": ["alpha", 3, {"${A}": "alpha"}]
    }
    with pytest.raises(ConfigError) as caught:
        expand_env({"a": {"b": "${NOPE}"}}, env)
    assert caught.value.problems == ["a.b: environment variable NOPE is not set"]


def test_duplicate_names_fallbacks_and_callables(pm) -> None:
    data = {
        "webhooks": [
            {"type": "custom", "url": "https://example.com/a", "fallback": "bakup"},
            {"type": "custom", "url": "https://example.com/b", "name": "backup"},
            {"type": "custom", "url": "https://example.com/c"},
            {"type": "custom", "url": "https://example.com/d", "name": "d", "on_failure": "x"},
        ]
    }
    assert problems(data, pm) == [
        "webhooks[2].name: 'custom_webhook' is already the name of webhooks[0]; "
        "give each webhook a distinct name",
        "webhooks[3].on_failure: takes a Python function and cannot be set in a "
        "configuration file; failed deliveries are kept as dead letters "
        "(`empathy-webhooks dead-letters`)",
        "webhooks[0].fallback: no webhook named 'bakup' (did you mean 'backup'?) "
        "(webhooks: custom_webhook, backup)",
    ]


def test_a_fallback_table_becomes_a_webhook(pm) -> None:
    config = parse_config(
        {
            "webhooks": [
                {
                    "type": "custom",
                    "url": "https://example.com/a",
                    "fallback": {"type": "custom", "name": "spare", "url": "https://b.example"},
                }
            ]
        },
        plugin_manager=pm,
    )
    fallback = config.webhooks[0].fallback
    assert isinstance(fallback, CustomWebhook) and fallback.name == "spare"


def test_toml_syntax_and_missing_files(tmp_path: Path, pm) -> None:
    bad = tmp_path / "webhooks.toml"
    bad.write_text('[[webhooks]]\ntype = "custom\n')
    with pytest.raises(ConfigError) as caught:
        load_config(bad, plugin_manager=pm)
    assert caught.value.problems[0].startswith(f"{bad}: not valid TOML:")
    assert "line 2" in caught.value.problems[0]
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.toml", plugin_manager=pm)
    assert caught.value.problems == [f"{tmp_path / 'nope.toml'}: no such configuration file"]
    single = tmp_path / "single.toml"
    single.write_text('[webhooks]\ntype = "custom"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(single, plugin_manager=pm)
    assert caught.value.problems == [
        "webhooks: expected a list of tables: write [[webhooks]], not [webhooks]"
    ]


# -- declarative filters ---------------------------------------------------------------------


def ev(**kwargs) -> Event:
    return Event(event_type=kwargs.pop("event_type", "alert"), **kwargs)


@pytest.mark.parametrize(
    ("spec", "event", "expected"),
    [
        ({"severity": "high"}, ev(severity="high"), True),
        ({"severity": "high"}, ev(severity="HIGH"), True),
        ({"severity": "high"}, ev(severity="low"), False),
        ({"severity": "high"}, ev(), False),
        ({"severity": ["high", "critical"]}, ev(severity="critical"), True),
        ({"severity": ["high", "critical"]}, ev(severity="medium"), False),
        ({"severity": {"gte": "high"}}, ev(severity="critical"), True),
        ({"severity": {"gte": "high"}}, ev(severity="error"), True),
        ({"severity": {"gte": "high"}}, ev(severity="medium"), False),
        ({"severity": {"gte": "high"}}, ev(event_type="security_vulnerability"), True),
        ({"severity": {"lt": "medium"}}, ev(severity="info"), True),
        ({"classification": "SENSITIVE"}, ev(classification="SENSITIVE"), True),
        ({"classification": "SENSITIVE"}, ev(classification="PUBLIC"), False),
        ({"classification": "SENSITIVE"}, ev(), False),
        ({"empathy_level": {"gte": 4}}, ev(empathy_level=4), True),
        ({"empathy_level": {"gte": 4}}, ev(empathy_level=3), False),
        ({"empathy_level": {"gte": 4}}, ev(), False),
        ({"empathy_level": {"exists": False}}, ev(), True),
        ({"data": {"confidence": {"gte": 0.8}}}, ev(data={"confidence": 0.87}), True),
        ({"data": {"confidence": {"gte": 0.8}}}, ev(data={"confidence": 0.5}), False),
        ({"data": {"confidence": {"gte": 0.8}}}, ev(data={"confidence": "high"}), False),
        ({"data": {"confidence": {"gte": 0.8}}}, ev(data={}), False),
        (
            {"data": {"context.environment": "production"}},
            ev(data={"context": {"environment": "production"}}),
            True,
        ),
        ({"data": {"context.environment": {"ne": "staging"}}}, ev(data={}), True),
        ({"data": {"service": {"not_in": ["test"]}}}, ev(data={"service": "api"}), True),
        ({"data": {"tags": {"exists": True}}}, ev(data={"tags": ["a"]}), True),
        (
            {"metadata": {"model": "claude-sonnet-4.5"}},
            ev(metadata={"model": "claude-sonnet-4.5"}),
            True,
        ),
        ({"event_type": "alert", "severity": "high"}, ev(severity="high"), True),
        ({"event_type": "alert", "severity": "high"}, ev(event_type="x", severity="high"), False),
        (
            {"any": [{"severity": "high"}, {"classification": "SENSITIVE"}]},
            ev(classification="SENSITIVE"),
            True,
        ),
        (
            {"any": [{"severity": "high"}, {"classification": "SENSITIVE"}]},
            ev(severity="low"),
            False,
        ),
        ({}, ev(), True),
    ],
)
def test_filter_semantics(spec, event, expected) -> None:
    assert compile_filter(spec)(event) is expected


def test_filter_mistakes_are_reported_with_their_place() -> None:
    with pytest.raises(ConfigError) as caught:
        compile_filter(
            {
                "severty": "high",
                "severity": {"gte": "hgh", "between": 1},
                "data": {"confidence": {"gte": [1]}, "x": {"in": "a"}, "y": {"exists": 1}},
                "any": [{"classification": {}}, "nope"],
            },
            "webhooks[1].filter",
        )
    assert caught.value.problems == [
        "webhooks[1].filter: unknown filter key 'severty' (did you mean 'severity'?)",
        "webhooks[1].filter.severity.gte: unknown severity 'hgh' (did you mean 'high'?); "
        "severities rank info, low, medium, high, critical",
        "webhooks[1].filter.severity: unknown operator 'between'; operators: eq, ne, in, "
        "not_in, gt, gte, lt, lte, exists",
        "webhooks[1].filter.data.confidence.gte: expected a single value, got a list",
        "webhooks[1].filter.data.x.in: expected a list, got a string",
        "webhooks[1].filter.data.y.exists: expected true or false, got an integer",
        "webhooks[1].filter.any[0].classification: expected a value, a list or a table of "
        "operators (eq, ne, in, not_in, gt, gte, lt, lte, exists)",
        "webhooks[1].filter.any[1]: expected a table of conditions, got a string",
    ]


def test_filter_describes_itself() -> None:
    spec = {
        "severity": ["high", "critical"],
        "any": [{"classification": "SENSITIVE"}, {"data": {"confidence": {"gte": 0.8}}}],
    }
    assert str(compile_filter(spec)) == (
        "severity in ['high', 'critical'] and (classification == 'SENSITIVE' "
        "or data.confidence >= 0.8)"
    )


# -- end to end ------------------------------------------------------------------------------


async def test_from_config_routes_filters_and_signs(tmp_path: Path, monkeypatch) -> None:
    async with Receiver() as receiver:
        monkeypatch.setenv("HOOK_SECRET", "abc123")
        path = tmp_path / "webhooks.toml"
        path.write_text(
            f"""
[[webhooks]]
type = "custom"
name = "compliance"
url = "{receiver.url("/compliance")}"
events = ["compliance_violation"]
signing_secret = "${{HOOK_SECRET}}"
filter = {{ classification = "SENSITIVE" }}
retry_policy = {{ initial_delay_seconds = 0.01 }}
"""
        )
        dispatcher = WebhookDispatcher.from_config(path, plugin_manager=build_plugin_manager())
        async with dispatcher:
            await dispatcher.emit("compliance_violation", {"n": 1}, classification="PUBLIC")
            await dispatcher.emit("compliance_violation", {"n": 2}, classification="SENSITIVE")
            await dispatcher.emit("alert", {"n": 3}, classification="SENSITIVE")
        assert [r.json()["data"] for r in receiver.requests] == [{"n": 2}]
        request = receiver.requests[0]
        from empathy_webhooks_core.signing import x_signature

        assert request.header("X-Signature") == x_signature(request.body, "abc123")
        assert json.loads(request.body)["classification"] == "SENSITIVE"


def test_the_example_file_loads(monkeypatch) -> None:
    for name in ("slack", "jira", "datadog", "pagerduty"):
        pytest.importorskip(f"empathy_webhooks_{name}")
    env = {
        "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/secretpath",
        "JIRA_URL": "https://acme.atlassian.net",
        "JIRA_EMAIL": "bot@acme.example",
        "JIRA_API_TOKEN": "jira-token",
        "DATADOG_API_KEY": "dd-key",
        "DATADOG_APP_KEY": "dd-app",
        "PAGERDUTY_API_KEY": "pdroutingkey00000000000000000000",
        "API_TOKEN": "api-token",
        "WEBHOOK_SECRET": "whsec-ish",
    }
    config = load_config(EXAMPLE, env=env, plugin_manager=build_plugin_manager())
    assert [w.kind for w in config.webhooks] == [
        "slack",
        "jira",
        "datadog",
        "pagerduty",
        "custom",
        "custom",
    ]
    pagerduty = config.webhooks[3]
    assert pagerduty.filter is not None
    assert pagerduty.filter(Event(event_type="alert", severity="high"))
    assert not pagerduty.filter(Event(event_type="alert", severity="low"))
    audit = config.webhook("audit")
    assert audit.filter is not None
    assert audit.filter(Event(event_type="prediction", data={"confidence": 0.9}))
    assert not audit.filter(Event(event_type="prediction", data={"confidence": 0.2}))
    assert audit.rate_limit is not None and audit.rate_limit.max_requests_per_hour == 1000


def test_the_published_types_are_the_project_s_plugins_types() -> None:
    """The list an unknown type's message draws its install line from is true: each name is a
    type its `empathy-webhooks-<name>` distribution registers (installed in this workspace)."""
    from importlib.metadata import distribution

    from empathy_webhooks_core.config.webhook_tables import PUBLISHED_TYPES
    from empathy_webhooks_core.plugins import get_plugin_manager, hooks_for

    types = hooks_for(get_plugin_manager()).webhook_types()
    for name in PUBLISHED_TYPES:
        assert name in types
        assert distribution(f"empathy-webhooks-{name}").metadata["Name"]


def test_an_unknown_type_never_suggests_a_package_named_after_it(pm) -> None:
    [said] = problems({"webhooks": [{"type": "acme-pager", "url": "https://x.example/"}]}, pm)
    assert "pip install" not in said
    assert "install the package that provides it" in said and "empathy-webhooks-slack" in said
