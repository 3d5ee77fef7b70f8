"""Configuration, the CLI and secrets: gaps found by an adversarial audit.

Each test is what a user sees (the lines on stderr, the exit status, the bytes a command
prints), run through the CLI as the console script runs it; `listen` runs as a real process
and is sent real requests over loopback."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import aiohttp
import pytest

from ._cli_kit import CLI, Result, environ, listen, run

SLACK_ONLY = {"EMPATHY_WEBHOOKS_LOAD_PLUGINS": "slack"}


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- configuration: one clear line per problem, exit 2 ---------------------------------------


def test_an_unset_variable_in_serve_is_reported_once(tmp_path: Path) -> None:
    # The empty string left where the variable was is not judged again: no second line
    # saying the port is not an integer or the token is too short.
    config = write(
        tmp_path / "webhooks.toml",
        """
[serve]
port = "${GATEWAY_PORT}"

[[serve.tokens]]
name = "ops"
token = "${GATEWAY_TOKEN}"
scopes = ["admin"]
""",
    )
    result = run("validate", "-c", str(config))
    assert result.code == 2
    assert result.err.splitlines() == [
        f"{config}: 2 problem(s)",
        "serve.port: environment variable GATEWAY_PORT is not set",
        "serve.tokens[0].token: environment variable GATEWAY_TOKEN is not set",
    ]


def test_a_secret_named_header_of_the_wrong_type_is_not_echoed(tmp_path: Path) -> None:
    config = write(
        tmp_path / "webhooks.toml",
        """
[[webhooks]]
type = "custom"
url = "https://example.com/hook"
headers = { "X-Api-Key" = 31415926535, "Authorization" = 27182818284, "X-Trace" = 5 }
""",
    )
    for argv in (["validate"], ["render", "alert"], ["send", "alert"]):
        result = run(*argv, "-c", str(config))
        assert result.code == 2, result
        assert result.err.splitlines() == [
            f"{config}: 3 problem(s)",
            "webhooks[0].headers['X-Api-Key']: expected a string, got an integer (value hidden)",
            "webhooks[0].headers['Authorization']: expected a string, got an integer "
            "(value hidden)",
            "webhooks[0].headers['X-Trace']: expected a string, got 5 (int)",
        ]
        assert "31415926535" not in result.err and "27182818284" not in result.err
    as_json = run("validate", "--json", "-c", str(config)).out
    assert "31415926535" not in as_json and "27182818284" not in as_json


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://exa mple.com/hook", "must not have a space in its host"),
        ("http://127.0.0.1:99999/hook", "must have a port from 1 to 65535"),
        ("http://127.0.0.1:0/hook", "must have a port from 1 to 65535"),
        ("http://127.0.0.1:80a/hook", "must have a port from 1 to 65535"),
        (
            "http://127.0.0.1:8080/hook\r\nX-Injected: 1",
            "must not contain control characters (a line break, a tab)",
        ),
        ("https://example.com/ho\tok", "must not contain control characters (a line break, a tab)"),
        ("http://[::1/hook", "must be an http:// or https:// URL with a host"),
    ],
)
def test_a_url_that_can_never_be_sent_is_a_config_error(
    tmp_path: Path, url: str, message: str
) -> None:
    # Before: `validate` said "valid" (or printed urllib's "Invalid IPv6 URL"), and every
    # delivery then failed (InvalidUrlClientError, a DNS error for "exa mple.com").
    config = tmp_path / "webhooks.toml"
    config.write_text(
        "[[webhooks]]\ntype = 'custom'\nurl = " + json.dumps(url) + "\n", encoding="utf-8"
    )
    result = run("validate", "-c", str(config))
    assert result.code == 2, result
    assert result.err.splitlines() == [f"{config}: 1 problem(s)", f"webhooks[0].url: {message}"]


def test_a_broken_slack_url_is_refused_without_showing_it(tmp_path: Path) -> None:
    secret = "SLACKTOKENb7e0c1d2"
    config = write(
        tmp_path / "webhooks.toml",
        f"""
[[webhooks]]
type = "slack"
webhook_url = "https://hooks.slack.com:7000000/services/T0/B0/{secret}"
""",
    )
    result = run("validate", "-c", str(config), env=SLACK_ONLY)
    assert result.code == 2, result
    assert result.err.splitlines() == [
        f"{config}: 1 problem(s)",
        "webhooks[0].webhook_url: must have a port from 1 to 65535",
    ]
    assert secret not in result.err + result.out


def test_a_single_value_where_a_list_or_table_belongs_is_said_in_the_files_words(
    tmp_path: Path,
) -> None:
    # Before: "'int' object is not iterable" for each of them.
    config = write(
        tmp_path / "webhooks.toml",
        """
[[webhooks]]
type = "custom"
url = "https://example.com/hook"
events = 5
headers = 5
templates = 5
retry_policy = { retry_on_status = 503 }

[serve]
tokens = 5
""",
    )
    result = run("validate", "-c", str(config))
    assert result.code == 2
    assert result.err.splitlines() == [
        f"{config}: 5 problem(s)",
        "webhooks[0].events: expected a list, got an integer",
        "webhooks[0].headers: expected a table, got an integer",
        "webhooks[0].templates: expected a table, got an integer",
        "webhooks[0].retry_policy.retry_on_status: expected a list, got an integer",
        "serve.tokens: expected a list",
    ]


def test_a_limit_is_written_as_the_documentation_writes_it(tmp_path: Path) -> None:
    # Before: "at most 6.71089e+07" and "at most 1e+06".
    config = write(
        tmp_path / "webhooks.toml",
        """
[[webhooks]]
type = "custom"
url = "https://example.com/hook"
max_payload_bytes = 100000000
max_pending = 2000000
""",
    )
    result = run("validate", "-c", str(config))
    assert result.code == 2
    assert result.err.splitlines()[1:] == [
        "webhooks[0].max_payload_bytes: must be a whole number above 0 and at most 67108864, "
        "got 100000000",
        "webhooks[0].max_pending: must be a whole number above 0 and at most 1000000, got 2000000",
    ]


def test_empty_smtp_credentials_are_refused_not_dropped(tmp_path: Path) -> None:
    # Before: both variables set but empty gave a webhook that sent without authentication.
    config = write(
        tmp_path / "webhooks.toml",
        """
[[webhooks]]
type = "email"
host = "smtp.example.com"
sender = "alerts@example.com"
recipients = ["ops@example.com"]
username = "${SMTP_USER}"
password = "${SMTP_PASSWORD}"
""",
    )
    env = {"EMPATHY_WEBHOOKS_LOAD_PLUGINS": "email", "SMTP_USER": "", "SMTP_PASSWORD": " "}
    result = run("validate", "-c", str(config), env=env)
    assert result.code == 2, result
    hint = (
        "is empty (is its environment variable set?); leave both username and password out "
        "for a relay without authentication"
    )
    assert result.err.splitlines() == [
        f"{config}: 2 problem(s)",
        f"webhooks[0].username: {hint}",
        f"webhooks[0].password: {hint}",
    ]


# -- command-line options: a usage error, never a traceback ----------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["listen", "--port", "99999"],
        ["listen", "--port", "-1"],
        ["listen", "--port", "0", "--status", "99"],
        ["listen", "--port", "0", "--status", "600"],
        ["listen", "--port", "0", "--count", "0"],
        ["serve", "--port", "70000"],
        ["console", "--no-browser", "--port", "-5"],
    ],
)
def test_out_of_range_numbers_on_the_command_line_are_usage_errors(
    tmp_path: Path, argv: list[str]
) -> None:
    config = write(tmp_path / "webhooks.toml", '[[webhooks]]\nurl = "https://example.com/x"\n')
    # A real process with a deadline: before the fix some of these started listening for good.
    try:
        done = subprocess.run(
            [CLI, *argv, *(["-c", str(config)] if argv[0] != "listen" else [])],
            capture_output=True,
            text=True,
            env=environ(None),
            timeout=30,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{argv} did not stop: it ran instead of refusing the option")
    result = Result(done.returncode, done.stdout, done.stderr)
    assert result.code == 2, result
    assert "Traceback" not in result.err
    option, value = argv[-2:]
    assert f"argument {option}: expected a whole number from " in result.err, result.err
    assert f"got {value!r}" in result.err


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "1e9"])
@pytest.mark.parametrize(
    "command", [["send", "alert"], ["test", "c"], ["dead-letters", "replay", "dl_x"]]
)
def test_a_timeout_must_be_a_finite_number_of_seconds(
    tmp_path: Path, command: list[str], value: str
) -> None:
    # Before: `send --timeout nan` waited for nothing and reported every delivery pending.
    config = write(
        tmp_path / "webhooks.toml",
        '[[webhooks]]\nname = "c"\nurl = "http://127.0.0.1:1/x"\n',
    )
    result = run(*command, f"--timeout={value}", "-c", str(config))
    assert result.code == 2, result
    assert "argument --timeout: " in result.err, result.err
    assert "0 to 86400" in result.err


# -- listen: what it prints ------------------------------------------------------------------


@pytest.mark.parametrize("args", [["--json"], ["--plain"]], ids=["json", "plain"])
async def test_listen_masks_secret_members_of_the_body_in_every_mode(args: list[str]) -> None:
    # Before: --plain showed "password": "***", --json the password itself.
    password, api_key = "bodypass5f1e9a0c77", "bodykey0c8d6e4b21"
    origin_password = "originpw3a9d0e11f2"
    body = {"event_type": "alert", "data": {"password": password, "api_key": api_key, "n": 7}}
    marks = (password, api_key, origin_password)
    for show in (False, True):
        proc, url = await listen(*args, "--headers", *(["--show-secrets"] if show else []))
        async with aiohttp.ClientSession() as session:
            await session.post(
                f"{url}hook",
                json=body,
                headers={"X-Origin": f"https://ops:{origin_password}@origin.example/"},
            )
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        text = out.decode()
        assert '\\"n\\":7' in text or '"n":7' in text, text
        assert "origin.example" in text, text
        if show:
            assert all(mark in text for mark in marks), text
        else:
            assert not any(mark in text for mark in marks), text


@pytest.mark.parametrize("value", ["", "Bearer ", "Bearer ${TOK}", "${TOK}"])
def test_a_secret_named_header_with_no_credential_is_refused(tmp_path: Path, value: str) -> None:
    # A variable set but empty: every request would have gone out unauthenticated.
    config = write(
        tmp_path / "webhooks.toml",
        f"""
[[webhooks]]
type = "custom"
url = "https://example.invalid/hook"
headers = {{ Authorization = "{value}" }}
""",
    )
    result = run("validate", "-c", str(config), env={"TOK": ""})
    assert result.code == 2, result
    assert "holds no credential (is its environment variable set?)" in result.err
    assert "Traceback" not in result.err


def test_a_header_credential_from_an_unset_getenv_is_refused_in_python() -> None:
    import os

    from empathy_webhooks_core import CustomWebhook

    with pytest.raises(ValueError, match="'X-Api-Key' holds no credential"):
        CustomWebhook(url="https://e.x/", headers={"X-Api-Key": str(os.getenv("NOT_SET_AT_ALL"))})
    with pytest.raises(ValueError, match="'Authorization' holds no credential"):
        CustomWebhook(url="https://e.x/", headers={"Authorization": "Bearer None"})
    kept = CustomWebhook(url="https://e.x/", headers={"Authorization": "Bearer t0k", "X-Note": ""})
    assert kept.headers["X-Note"] == ""


def test_credentials_in_the_url_and_an_authorization_header_are_refused(tmp_path: Path) -> None:
    # aiohttp refuses to send both: every attempt failed, found only at delivery time.
    config = write(
        tmp_path / "webhooks.toml",
        """
[[webhooks]]
type = "custom"
url = "https://ops:pw-m4rker@example.invalid/hook"
headers = { Authorization = "Bearer t0k-m4rker" }
""",
    )
    result = run("validate", "-c", str(config))
    assert result.code == 2, result
    assert "only one can be sent" in result.err
    assert "m4rker" not in result.err + result.out
