"""Webhook tables structured by the cattrs converter: every problem of every table in one
pass at its exact place, did-you-mean wherever a name can be mistyped, and no secret value
in any problem, the exception or the CLI's output."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar

import attrs
import pytest

from empathy_webhooks_core import Webhook, hookimpl, secret_field
from empathy_webhooks_core.config import ConfigError, parse_config
from empathy_webhooks_core.plugins import build_plugin_manager

from .test_cli import run, write

if TYPE_CHECKING:
    from decimal import Decimal

MARKER = "marker-secret-7f3a9c"
T = TypeVar("T")


def _token(_: Any, __: Any, value: Any) -> None:
    if not value.startswith("tok_"):
        # Echoes the value, as a careless plugin's validator might: the core must hide it.
        raise ValueError(f"token must start with 'tok_', got {value!r}")


@attrs.frozen(kw_only=True)
class VaultOptions:
    region: Literal["eu", "us"] = "eu"
    api_key: str = secret_field(default="none")


@attrs.frozen(kw_only=True, eq=False)
class VaultWebhook(Webhook):
    """A webhook type with secrets in every shape a table can hold them."""

    kind: ClassVar[str] = "vault"
    url: str
    token: str = secret_field(validator=_token)
    token_mode: Literal["header", "query"] = "header"
    options: VaultOptions = attrs.field(factory=VaultOptions)


@attrs.frozen(kw_only=True, eq=False)
class BoxWebhook(Webhook, Generic[T]):
    """A generic class, and an annotation only a type checker can resolve."""

    kind: ClassVar[str] = "box"
    url: str
    item: T | None = None
    amount: Decimal | None = None


class VaultPlugin:
    @hookimpl
    def webhook_types(self) -> dict[str, type[Webhook]]:
        return {"vault": VaultWebhook, "box": BoxWebhook}


@pytest.fixture
def pm():
    # The core's own types only: these tests must not depend on which plugins are installed.
    return build_plugin_manager(load_entry_points=False)


def problems(data: dict[str, Any], pm: Any, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, env=env or {}, plugin_manager=pm)
    return caught.value.problems


def test_problems_in_several_webhook_tables_come_together_with_their_paths(pm) -> None:
    data = {
        "webhooks": [
            {
                "type": "custom",
                "url": "https://example.com/a",
                "events": ["alert", 5],
                "retry_policy": {"max_retries": -1, "retry_on_status": [503, 700]},
            },
            {
                "type": "custom",
                "name": "b",
                "url": "ftp://example.com/b",
                "filter": {"severity": {"gte": "hgh"}, "data": {"x": {"in": "a"}}},
            },
            {
                "type": "custom",
                "name": "c",
                "url": "https://example.com/c",
                "fallback": {"type": "custom", "name": "d", "url": "nope", "max_pending": "many"},
            },
            {
                "type": "custom",
                "name": "e",
                "url": "https://example.com/e",
                "rate_limit": {"max_requests_per_minute": 0},
                "circuit_breaker": {"failure_rate": 2},
            },
        ]
    }
    assert problems(data, pm) == [
        "webhooks[0].events[1]: expected a string, got 5 (int)",
        "webhooks[0].retry_policy.max_retries: must be an integer from 0 to 100, got -1",
        "webhooks[0].retry_policy.retry_on_status: holds 700, not an HTTP status",
        "webhooks[1].url: must be an http:// or https:// URL with a host",
        "webhooks[1].filter.severity.gte: unknown severity 'hgh' (did you mean 'high'?); "
        "severities rank info, low, medium, high, critical",
        "webhooks[1].filter.data.x.in: expected a list, got a string",
        "webhooks[2].fallback.url: must be an http:// or https:// URL with a host",
        "webhooks[2].fallback.max_pending: expected an integer, got 'many'",
        "webhooks[3].rate_limit.max_requests_per_minute: must be a whole number above 0, got 0",
        "webhooks[3].circuit_breaker.failure_rate: must be a fraction above 0 and at most 1",
    ]


def test_did_you_mean_wherever_a_name_can_be_mistyped(pm) -> None:
    data = {
        "webhooks": [
            {
                "type": "custom",
                "url": "https://example.com/a",
                "evnts": ["alert"],
                "signature_scheme": "standard",
                "retry_policy": {"max_retrys": 1},
                "fallback": "bakup",
            },
            {"type": "custom", "name": "backup", "url": "https://example.com/b"},
            {
                "type": "custom",
                "name": "c",
                "url": "https://example.com/c",
                "fallback": {"type": "custm"},
            },
        ]
    }
    assert problems(data, pm) == [
        "webhooks[0]: unknown key 'evnts' (did you mean 'events'?)",
        "webhooks[0].signature_scheme: expected one of 'both', 'x-signature', "
        "'standard-webhooks', got 'standard' (did you mean 'standard-webhooks'?)",
        "webhooks[0].retry_policy: unknown key 'max_retrys' (did you mean 'max_retries'?)",
        "webhooks[2].fallback.type: unknown webhook type 'custm' (did you mean 'custom'?); "
        "installed types: custom",
        "webhooks[0].fallback: no webhook named 'bakup' (did you mean 'backup'?) "
        "(webhooks: backup)",
    ]


def test_a_secret_in_a_wrong_typed_or_refused_field_is_never_echoed(pm) -> None:
    pm.register(VaultPlugin())
    data = {
        "webhooks": [
            {"type": "vault", "url": "https://v.example/a", "token": [MARKER]},
            {
                "type": "vault",
                "name": "b",
                "url": "https://v.example/b",
                "token": MARKER,
                "token_mode": MARKER,
                "options": {"api_key": 4242424242, "region": "mars"},
            },
            {
                "type": "vault",
                "name": "c",
                "url": "https://v.example/c",
                "token": "tok_fine",
                "signing_secret": [MARKER, 7],
                "options": {"api_key": [MARKER]},
            },
        ]
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(data, env={}, plugin_manager=pm)
    assert caught.value.problems == [
        "webhooks[0].token: expected a string, got a list (value hidden)",
        "webhooks[1].token: must start with 'tok_', got ***",
        "webhooks[1].token_mode: expected one of 'header', 'query', got a string",
        "webhooks[1].options.api_key: expected a string, got an integer (value hidden)",
        "webhooks[1].options.region: expected one of 'eu', 'us', got 'mars'",
        "webhooks[2].signing_secret: expected a string or a list of strings, got a list",
        "webhooks[2].options.api_key: expected a string, got a list (value hidden)",
    ]
    error = caught.value
    shown = [str(error), repr(error), *map(str, error.args)]
    # Nothing the exception carries, chained ones included, holds the value either.
    linked: BaseException | None = error
    while linked is not None:
        shown.append(repr(linked))
        linked = linked.__cause__ or linked.__context__
    assert not [text for text in shown if MARKER in text or "4242424242" in text]


def test_the_cli_reports_each_problem_once_with_exit_status_2(tmp_path: Path) -> None:
    config = write(
        tmp_path / "webhooks.toml",
        f"""
[[webhooks]]
type = "custom"
url = "https://example.com/a"
headers = {{ Authorization = "Bearer ${{TOKEN}}" }}
max_concurrency = "{MARKER}"

[[webhooks]]
type = "custom"
name = "b"
url = "https://example.com/b"
signing_secret = 31415926535
retry_policy = {{ jitter = 5, max_retrys = 1 }}
""",
    )
    result = run("validate", "-c", str(config), env={"TOKEN": MARKER})
    assert result.code == 2
    assert "Traceback" not in result.err and MARKER not in result.err
    assert result.err.splitlines() == [
        f"{config}: 4 problem(s)",
        # The same text as a variable's value: hidden wherever it appears.
        "webhooks[0].max_concurrency: expected an integer, got ***",
        "webhooks[1].signing_secret: expected a string or a list of strings, got an integer",
        "webhooks[1].retry_policy.jitter: must be a fraction from 0 to 1, got 5.0",
        "webhooks[1].retry_policy: unknown key 'max_retrys' (did you mean 'max_retries'?)",
    ]


def test_a_plugin_class_cattrs_cannot_type_still_loads_from_a_table(pm) -> None:
    pm.register(VaultPlugin())
    table = {"type": "box", "url": "https://b.example/", "item": [1], "amount": "1.5"}
    (box,) = parse_config({"webhooks": [table]}, env={}, plugin_manager=pm).webhooks
    assert isinstance(box, BoxWebhook)
    assert (box.item, box.amount) == ([1], "1.5")  # the class's own checks judge them
    assert problems({"webhooks": [{**table, "itme": 1}]}, pm) == [
        "webhooks[0]: unknown key 'itme' (did you mean 'item'?)"
    ]


def test_readings_in_threads_keep_their_secrets_apart(pm) -> None:
    # The structuring hooks are shared by the process; what one reading remembers as secret
    # (to hide) must stay with it, even while another thread reads another configuration.
    pm.register(VaultPlugin())
    parse_config(  # generate the hooks before the threads race
        {"webhooks": [{"type": "vault", "url": "https://v.example/", "token": "tok_x"}]},
        env={},
        plugin_manager=pm,
    )

    def read(marker: str) -> list[str]:
        lines = []
        for index in range(20):
            table = {"type": "vault", "url": "https://v.example/", "token": f"{marker}-{index}"}
            lines += problems({"webhooks": [table]}, pm)
        return lines

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(read, ["first-secret", "second-secret"]))
    for lines in results:
        assert lines == ["webhooks[0].token: must start with 'tok_', got ***"] * 20
