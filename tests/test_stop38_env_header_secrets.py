"""A header value a configuration file takes from the environment (`X-Routing =
"${ROUTING_KEY}"`) is a credential whatever the header is called: it goes on the wire as
written, and everywhere request headers are shown or kept (attempt records, dead letters,
`render`, `validate`, logs, a receiver's echo) it is masked, as `X-Api-Key`'s value is. It
was masked only under credential-looking names (`X-Team-Token`), and kept in clear under
`X-Api`, `X-Routing` or `X-Tenant`."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from urllib.parse import quote

import pytest

from empathy_webhooks_core import WebhookDispatcher
from empathy_webhooks_core.config import load_config
from empathy_webhooks_core.redaction import isolated_registry
from empathy_webhooks_core.testing import Receiver, Reply

from ._cli_kit import run

ROUTING = "routing-stop38-7f3a9c11"
API = "api-stop38-c0ffee42"
TENANT = "tenant-stop38-b16b00b5"
ENV = {"ROUTING_KEY": ROUTING, "API_VALUE": API, "TENANT_KEY": TENANT}


def _forms(value: str) -> list[str]:
    return [value, quote(value, safe=""), base64.b64encode(value.encode()).decode()]


def _leaks(text: str) -> list[str]:
    return [form for value in ENV.values() for form in _forms(value) if form in text]


def _config(tmp_path: Path, ok_url: str, failing_url: str) -> Path:
    path = tmp_path / "webhooks.toml"
    path.write_text(
        f"""
[[webhooks]]
type = "custom"
name = "ops"
url = "{ok_url}"
headers = {{ X-Routing = "${{ROUTING_KEY}}", X-Api = "${{API_VALUE}}", X-Plain = "visible" }}

[[webhooks]]
type = "custom"
name = "tenant"
url = "{failing_url}"
retry_policy = {{ max_retries = 0 }}
headers = {{ X-Tenant = "tenant=${{TENANT_KEY}}" }}
"""
    )
    return path


async def test_env_header_values_are_masked_in_history_dead_letters_and_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="empathy_webhooks")
    with isolated_registry():
        async with Receiver() as ok, Receiver() as failing:
            # A hostile receiver echoes what it was sent.
            failing.respond(status=500, body=f"unknown X-Tenant: tenant={TENANT}")
            config = load_config(_config(tmp_path, ok.url(), failing.url()), env=ENV)
            async with WebhookDispatcher(webhooks=list(config.webhooks)) as dispatcher:
                event = await dispatcher.emit("alert", {"message": "db down"})
                await dispatcher.drain()
                records = (await dispatcher.deliveries(event_id=event.event_id)).items
                letters = await dispatcher.dead_letters()
            # On the wire, as written.
            [sent] = ok.requests
            assert (sent.header("X-Routing"), sent.header("X-Api")) == (ROUTING, API)
            assert failing.requests[0].header("X-Tenant") == f"tenant={TENANT}"
        stored = {r.webhook: r.attempts[0].request_headers for r in records}
        assert stored["ops"]["X-Routing"] == "***"
        assert stored["ops"]["X-Api"] == "***"
        assert stored["ops"]["X-Plain"] == "visible"  # from the file: not a secret
        assert stored["tenant"]["X-Tenant"] == "tenant=***"
        [letter] = letters
        shown = json.dumps([r.to_dict() for r in records]) + json.dumps(letter.error)
        shown += repr(letter) + repr(config) + "\n".join(r.getMessage() for r in caplog.records)
        assert _leaks(shown) == []
        assert "unknown X-Tenant: tenant=***" in json.dumps(letter.error)


async def test_render_and_validate_show_a_mask_for_env_header_values(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.queue(Reply(status=200))
    path = _config(tmp_path, receiver.url(), receiver.url("/other"))
    with isolated_registry():
        rendered = run("render", "alert", "-c", str(path), env=ENV)
        validated = run("validate", "-c", str(path), env=ENV)
        as_json = run("validate", "--json", "-c", str(path), env=ENV)
    assert rendered.code == 0, rendered.err
    assert "X-Routing: ***" in rendered.out and "X-Api: ***" in rendered.out
    assert "X-Tenant: tenant=***" in rendered.out
    assert "X-Plain: visible" in rendered.out
    assert validated.code == as_json.code == 0
    for result in (rendered, validated, as_json):
        assert _leaks(result.out + result.err) == []
