"""A header value from the environment that is a short word (`X-Env = "${STAGE}"` set to
`prod`) is not declared a credential: declared, it was masked in every line that held it,
the webhook's name (`***-alerts`) and the event's own text (`***uction deploy`) included.
A value that may be a credential still is (tests/test_stop38_env_header_secrets.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ._cli_kit import completed


def test_a_short_word_from_the_environment_is_not_masked_everywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "webhooks.toml"
    config.write_text(
        '[[webhooks]]\ntype = "custom"\nname = "prod-alerts"\n'
        'url = "https://service.example/hook"\n'
        'headers = { "X-Env" = "${STAGE}", "X-Routing" = "${ROUTING_KEY}" }\n'
    )
    monkeypatch.setenv("STAGE", "prod")
    monkeypatch.setenv("ROUTING_KEY", "rk-4f9a-77c1-secret")
    result = completed(
        "-c", str(config), "render", "alert", "--data", '{"msg": "production deploy"}'
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout + result.stderr
    # (The whole name is not asserted: the CLI runs in this process, whose registry holds
    # what earlier tests registered.)
    assert "X-Env: prod\n" in out and "production deploy" in out and "prod-" in out
    assert "rk-4f9a-77c1-secret" not in out
