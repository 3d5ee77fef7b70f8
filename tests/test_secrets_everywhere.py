"""Secrets never leave: for every first-party plugin, the ntfy example, the generic target and a
third-party style plugin, each credential is a unique marker string; a receiver echoes every
request header, the URL and the body back in a 400 answer (the SMTP server echoes the
credentials in its refusal); then every marker, raw, URL-encoded and base64 (and the base64 of
each `user:password` pair a client sends as `Basic`), is searched for in:

- log lines at DEBUG, through the standard library and through structlog (configured by the
  application, and `capture_logs`);
- `repr` of every webhook, `str`/`repr` of the `DeliveryError` and of its `last_exception`
  (args and formatted traceback included) as `on_failure` received them;
- dead letters and attempt history (response excerpts, request headers) of each store: memory,
  SQLite (the file's bytes, WAL included) and Redis (every value under the test's key prefix);
- the CLI's output of `validate`, `render`, `send --json`, `dead-letters list`, `stats`,
  `deliveries` and `deliveries show` (plain and `--json`).
- the gateway (`empathy-webhooks serve`, a token of its own given through the environment):
  every answer of its API, `/metrics` and `/openapi.json` included, and its log lines.

Zero hits.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import logging
import secrets
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import attrs
import pytest
import structlog
from structlog.testing import capture_logs

from empathy_webhooks_core import (
    DeliveryError,
    Event,
    OutgoingRequest,
    Webhook,
    WebhookDispatcher,
    hookimpl,
    secret_field,
)
from empathy_webhooks_core.config import load_config
from empathy_webhooks_core.plugins import get_plugin_manager
from empathy_webhooks_core.redaction import isolated_registry
from empathy_webhooks_core.testing import ReceivedRequest, Receiver, Reply

# -- a third-party style plugin, declared the documented way --------------------------------


@attrs.frozen(kw_only=True, eq=False)
class AcmeChatWebhook(Webhook):
    """A chat webhook whose URL is the credential, plus an API token sent in a header."""

    kind: ClassVar[str] = "acme_chat"
    secret_url: ClassVar[bool] = True

    webhook_url: str = attrs.field()
    api_token: str = secret_field()


class AcmeChatPlugin:
    @hookimpl
    def webhook_types(self) -> dict[str, type[Webhook]]:
        return {"acme_chat": AcmeChatWebhook}

    @hookimpl
    def format_payload(self, webhook: AcmeChatWebhook, event: Event) -> OutgoingRequest:
        return OutgoingRequest.json(
            webhook.webhook_url,
            {"text": event.event_type},
            headers={"X-Acme-Token": webhook.api_token},
        )


# -- the markers ----------------------------------------------------------------------------


class Markers:
    """One unique string per credential, and the environment that puts them in the file."""

    NAMES = (
        "SLACK",
        "DISCORD",
        "TEAMS_ID",
        "TEAMS_SIG",
        "JIRA",
        "GITHUB",
        "DD_API",
        "DD_APP",
        "PAGERDUTY",
        "GRAFANA",
        "SMTP_USER",
        "SMTP_PASSWORD",
        "NTFY_TOPIC",
        "NTFY_TOKEN",
        "URL_PASSWORD",
        "URL_TOKEN",
        "BEARER",
        "HOOK_SECRET",
        "API_KEY",
        "API_TOKEN",
        "PASSWORD_HEADER",
        "COOKIE",
        "SIGNING",
        "ACME_URL",
        "ACME_TOKEN",
        "GATEWAY_TOKEN",
    )

    def __init__(self) -> None:
        self.values = {
            name: f"mk{name.lower().replace('_', '')}{secrets.token_hex(8)}" for name in self.NAMES
        }
        # A PagerDuty routing key is refused at construction unless 32 letters and digits.
        self.values["PAGERDUTY"] = f"mkpagerduty{secrets.token_hex(16)}"[:32]

    def __getitem__(self, name: str) -> str:
        return self.values[name]

    def needles(self) -> dict[str, str]:
        """What must never be found: every marker in each form, and the `Basic` pairs."""
        found: dict[str, str] = {}
        for name, value in self.values.items():
            raw = value.encode()
            found[name] = value
            found[f"{name} (URL-encoded)"] = quote(value, safe="")
            found[f"{name} (base64)"] = base64.b64encode(raw).decode().rstrip("=")
            found[f"{name} (base64url)"] = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        pairs = {
            "URL userinfo as Basic": f"ops:{self['URL_PASSWORD']}",
            "Jira email:token as Basic": f"bot@acme.example:{self['JIRA']}",
            "SMTP AUTH PLAIN": f"\0{self['SMTP_USER']}\0{self['SMTP_PASSWORD']}",
        }
        for label, pair in pairs.items():
            found[label] = base64.b64encode(pair.encode()).decode().rstrip("=")
        return found

    def leaks(self, places: dict[str, str]) -> list[str]:
        return [
            f"{label} in {where}"
            for label, needle in self.needles().items()
            for where, text in places.items()
            if needle in text
        ]


CONFIG = """\
store = "{store}"

[[serve.tokens]]
name = "ops"
token = "${{GATEWAY_TOKEN}}"
scopes = ["admin"]

[[webhooks]]
type = "slack"
name = "slack"
webhook_url = "{base}/services/T0/B0/${{SLACK}}"
{common}

[[webhooks]]
type = "discord"
name = "discord"
webhook_url = "{base}/api/webhooks/1234/${{DISCORD}}"
{common}

[[webhooks]]
type = "teams"
name = "teams"
webhook_url = "{base}/workflows/${{TEAMS_ID}}/triggers/manual/paths/invoke?sig=${{TEAMS_SIG}}"
{common}

[[webhooks]]
type = "jira"
name = "jira"
url = "{base}"
email = "bot@acme.example"
api_token = "${{JIRA}}"
project = "EMP"
deduplicate = false
{common}

[[webhooks]]
type = "github"
name = "github"
api_url = "{base}"
token = "${{GITHUB}}"
repository = "acme/shop"
{common}

[[webhooks]]
type = "datadog"
name = "datadog"
base_url = "{base}"
api_key = "${{DD_API}}"
app_key = "${{DD_APP}}"
{common}

[[webhooks]]
type = "pagerduty"
name = "pagerduty"
events_url = "{base}/v2/enqueue"
api_key = "${{PAGERDUTY}}"
{common}

[[webhooks]]
type = "grafana"
name = "grafana"
url = "{base}"
api_key = "${{GRAFANA}}"
{common}

[[webhooks]]
type = "email"
name = "email"
host = "127.0.0.1"
port = {smtp_port}
tls_mode = "none"
allow_insecure_auth = true
sender = "alerts@acme.example"
recipients = ["oncall@acme.example"]
username = "${{SMTP_USER}}"
password = "${{SMTP_PASSWORD}}"
{common}

[[webhooks]]
type = "ntfy"
name = "ntfy"
server_url = "{base}"
topic = "${{NTFY_TOPIC}}"
token = "${{NTFY_TOKEN}}"
{common}

[[webhooks]]
type = "custom"
name = "custom"
url = "{userinfo_base}/hook?token=${{URL_TOKEN}}&format=json"
signing_secret = "${{SIGNING}}"
{common}

[webhooks.headers]
X-Webhook-Secret = "${{HOOK_SECRET}}"
X-Api-Key = "${{API_KEY}}"
Api-Token = "${{API_TOKEN}}"
X-Service-Password = "${{PASSWORD_HEADER}}"

[[webhooks]]
type = "custom"
name = "custom_bearer"
url = "{base}/bearer"
{common}

[webhooks.headers]
Authorization = "Bearer ${{BEARER}}"
Cookie = "session=${{COOKIE}}"

[[webhooks]]
type = "acme_chat"
name = "acme"
webhook_url = "{base}/acme/hooks/${{ACME_URL}}"
api_token = "${{ACME_TOKEN}}"
{common}
"""
COMMON = 'events = ["*"]\nretry_policy = { max_retries = 0, timeout_seconds = 10 }'
NAMES = (
    "slack",
    "discord",
    "teams",
    "jira",
    "github",
    "datadog",
    "pagerduty",
    "grafana",
    "email",
    "ntfy",
    "custom",
    "custom_bearer",
    "acme",
)
EVENT_TYPE = "code_review_complete"
EVENT_DATA = {"title": "Review of PR #42", "pr_number": 42, "issues_found": 3, "summary": "ok"}


def echo_everything(request: ReceivedRequest) -> Reply:
    """A 400 that repeats the request: every header (in the body and as headers), the path,
    the query and the body."""
    seen = {
        "path": request.path,
        "query": dict(request.query),
        "headers": dict(request.headers),
        "body": request.body.decode("utf-8", "replace"),
    }
    echoed = {
        f"X-Echo-{key}": value
        for key, value in request.headers.items()
        if key.lower() not in ("content-length", "content-type", "host", "transfer-encoding")
    }
    return Reply(status=400, body=json.dumps(seen), headers=echoed)


def redis_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture
def acme_plugin() -> Iterator[None]:
    """The third-party plugin, registered with the process's plugin manager (as an installed
    entry point would be) for the test's duration."""
    pm = get_plugin_manager()
    plugin = AcmeChatPlugin()
    pm.register(plugin, name="acme-chat-test")
    try:
        yield
    finally:
        pm.unregister(plugin)


@pytest.fixture
def fresh_structlog() -> Iterator[None]:
    structlog.reset_defaults()
    try:
        yield
    finally:
        structlog.reset_defaults()


@contextlib.asynccontextmanager
async def services(markers: Markers) -> AsyncIterator[tuple[Receiver, Any]]:
    from empathy_webhooks_email.testing import SMTPTestServer

    user, password = markers["SMTP_USER"], markers["SMTP_PASSWORD"]
    plain = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    refusal = (
        f"550 5.7.1 {user} {password} {plain} "
        f"{base64.b64encode(password.encode()).decode()} rejected"
    )
    async with (
        Receiver() as receiver,
        SMTPTestServer(credentials=(user, password), default_reply=refusal) as smtp,
    ):
        receiver.handler = echo_everything
        yield receiver, smtp


def write_config(folder: Path, receiver: Receiver, smtp: Any, store: str) -> Path:
    base = receiver.url("").rstrip("/")
    userinfo_base = base.replace("http://", "http://ops:${URL_PASSWORD}@")
    smtp_port = smtp.url.rsplit(":", 1)[1]
    path = folder / "webhooks.toml"
    path.write_text(
        CONFIG.format(
            store=store,
            base=base,
            userinfo_base=userinfo_base,
            smtp_port=smtp_port,
            common=COMMON,
        ),
        encoding="utf-8",
    )
    return path


async def deliver_all(
    config_path: Path, store: str | None, *, wait_for_callbacks: bool = False
) -> tuple[list[Webhook], list[DeliveryError], list[Any], bytes, str]:
    """Emit one event to every webhook of the file through a real dispatcher on `store`;
    return the webhooks, the errors `on_failure` got, the dead letters, for SQLite the
    store's file bytes (database and WAL) read before it closes, and the attempt history
    (JSON) the dispatcher reads back."""
    config = load_config(config_path, plugin_manager=get_plugin_manager())
    errors: list[DeliveryError] = []

    def on_failure(webhook: Webhook, event: Event, error: DeliveryError) -> None:
        errors.append(error)

    webhooks = [attrs.evolve(w, on_failure=on_failure) for w in config.webhooks]
    assert sorted(w.name for w in webhooks) == sorted(NAMES)
    store_bytes = b""
    async with WebhookDispatcher(webhooks, store=store, plugin_manager=get_plugin_manager()) as d:
        await d.emit(EVENT_TYPE, EVENT_DATA)
        if wait_for_callbacks:  # remote workers: the lanes learn of deliveries as they take them
            async with asyncio.timeout(60):
                while len(errors) < len(webhooks):  # noqa: ASYNC110 - callbacks land in a list
                    await asyncio.sleep(0.05)
        await d.drain(timeout=60)
        dead = await d.dead_letters()
        history = (await d.deliveries(limit=500)).items
        assert len(history) == len(webhooks) and all(r.attempts for r in history), history
        history_json = json.dumps([r.to_dict() for r in history], default=str)
        if store and store.startswith("sqlite:///"):
            database = Path(store.removeprefix("sqlite:///"))
            files = sorted(database.parent.glob(database.name + "*"))
            store_bytes = b"".join(path.read_bytes() for path in files)
    assert sorted(e.webhook_name for e in errors) == sorted(NAMES), [e.webhook_name for e in errors]
    return webhooks, errors, dead, store_bytes, history_json


def error_places(errors: list[DeliveryError]) -> dict[str, str]:
    import traceback

    places: dict[str, str] = {}
    for error in errors:
        name = error.webhook_name
        places[f"str(error) {name}"] = str(error)
        places[f"repr(error) {name}"] = repr(error)
        places[f"error.to_dict() {name}"] = json.dumps(error.to_dict())
        exc = error.last_exception
        if exc is not None:
            places[f"str(last_exception) {name}"] = str(exc)
            places[f"repr(last_exception) {name}"] = repr(exc)
            places[f"last_exception.args {name}"] = repr(exc.args)
            places[f"traceback {name}"] = "".join(traceback.format_exception(exc))
    return places


async def redis_values(url: str, prefix: str) -> str:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url.split("?")[0])
    texts: list[str] = []
    try:
        async for key in client.scan_iter(match=f"{prefix}*"):
            kind = (await client.type(key)).decode()
            if kind == "string":
                texts.append(repr(await client.get(key)))
            elif kind == "hash":
                texts.append(repr(await client.hgetall(key)))
            elif kind == "stream":
                texts.append(repr(await client.xrange(key)))
            elif kind == "zset":
                texts.append(repr(await client.zrange(key, 0, -1, withscores=True)))
            elif kind == "list":
                texts.append(repr(await client.lrange(key, 0, -1)))
            elif kind == "set":
                texts.append(repr(await client.smembers(key)))
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
    return "\n".join(texts)


async def gateway_answers(config_path: Path, token: str) -> dict[str, str]:
    """Every read route of the gateway after one event to every webhook (all fail: the
    receiver echoes), and a few errors, each answer's headers and body."""
    import aiohttp

    from empathy_webhooks_core.gateway import Gateway, running

    config = load_config(config_path, plugin_manager=get_plugin_manager())
    gateway = Gateway.from_config(config, plugin_manager=get_plugin_manager())
    answers: dict[str, str] = {}
    headers = {"Authorization": f"Bearer {token}"}
    async with running(gateway) as url, aiohttp.ClientSession() as session:

        async def call(method: str, path: str, **kwargs: Any) -> None:
            async with session.request(method, url + path, **kwargs) as response:
                answers[f"gateway {method} {path} {response.status}"] = (
                    repr(dict(response.headers)) + await response.text()
                )

        await call(
            "POST",
            "/v1/events",
            json={"event_type": EVENT_TYPE, "data": EVENT_DATA},
            headers=headers,
        )
        async with asyncio.timeout(60):
            while len(await gateway.dispatcher.dead_letters()) < len(NAMES):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        for path in ("/v1/webhooks", "/v1/dead-letters", "/metrics", "/openapi.json"):
            await call("GET", path, headers=headers)
        for name in NAMES:
            await call("GET", f"/v1/webhooks/{name}/stats", headers=headers)
        await call("GET", "/v1/webhooks", headers={"Authorization": f"Bearer {token}x"})
        await call("POST", "/v1/events", json={"event_type": "x", "data": [token]}, headers=headers)
    return answers


def run_cli(*argv: str) -> str:
    """The command as the console script runs it, in this process: stdout and stderr."""
    from empathy_webhooks_core import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.run(list(argv))
    return f"exit {code}\n{out.getvalue()}\n{err.getvalue()}"


async def test_no_marker_leaves_by_any_path(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    acme_plugin: None,
    fresh_structlog: None,
) -> None:
    markers = Markers()
    for name, value in markers.values.items():
        monkeypatch.setenv(name, value)
    places: dict[str, str] = {}
    async with services(markers) as (receiver, smtp):
        sqlite_store = f"sqlite:///{tmp_path / 'outbox.db'}"
        config = write_config(tmp_path, receiver, smtp, sqlite_store)

        # 1. Memory store, the standard library's logger at DEBUG.
        caplog.set_level(logging.DEBUG, logger="empathy_webhooks")
        with isolated_registry():
            webhooks, errors, dead, _, history = await deliver_all(config, None)
        places["stdlib log (memory store)"] = caplog.text
        places["reprs"] = "\n".join(repr(w) + str(w) for w in webhooks)
        places.update({f"{k} (memory)": v for k, v in error_places(errors).items()})
        places["dead letters (memory)"] = json.dumps([d.to_dict() for d in dead], default=str)
        places["attempt history (memory)"] = history
        assert any("delivery_attempt" in r.getMessage() for r in caplog.records)

        # 2. SQLite store, structlog configured by the application (JSON, tracebacks).
        out = io.StringIO()
        structlog.configure(
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(default=repr),
            ],
            logger_factory=structlog.PrintLoggerFactory(file=out),
        )
        with isolated_registry():
            _, errors, dead, store_bytes, history = await deliver_all(config, sqlite_store)
        structlog.reset_defaults()
        places["structlog JSON lines (SQLite store)"] = out.getvalue()
        places.update({f"{k} (SQLite)": v for k, v in error_places(errors).items()})
        places["dead letters (SQLite)"] = json.dumps([d.to_dict() for d in dead], default=str)
        places["attempt history (SQLite)"] = history
        sqlite_deliveries = [r["delivery_id"] for r in json.loads(history)]
        places["SQLite file and WAL bytes"] = store_bytes.decode("utf-8", "replace")
        assert "delivery_failed" in out.getvalue() and b"dead_letters" in store_bytes

        # 3. Redis store (workers in this process), structlog's capture_logs.
        if redis_answers():
            prefix = f"test:i16:{secrets.token_hex(4)}:"
            redis_store = f"redis://127.0.0.1:6379/0?prefix={prefix}&role=worker"
            with isolated_registry(), capture_logs() as entries:
                _, errors, dead, _, history = await deliver_all(
                    config, redis_store, wait_for_callbacks=True
                )
            places["structlog capture_logs (Redis store)"] = "\n".join(map(repr, entries))
            places.update({f"{k} (Redis)": v for k, v in error_places(errors).items()})
            places["dead letters (Redis)"] = json.dumps([d.to_dict() for d in dead], default=str)
            places["attempt history (Redis)"] = history
            places["Redis values under the prefix"] = await redis_values(redis_store, prefix)
            assert dead, "the Redis store kept no dead letter"
        else:  # pragma: no cover - CI runs Redis
            pytest.skip("no Redis on 127.0.0.1:6379")

        # 4. The gateway on the SQLite store: its answers and its log lines (request lines
        # name the token; the webhooks' credentials are in the dead letters it lists).
        caplog.clear()
        structlog.reset_defaults()  # capture_logs leaves structlog marked as configured
        with isolated_registry():
            places.update(await gateway_answers(config, markers["GATEWAY_TOKEN"]))
        places["gateway log lines"] = caplog.text
        assert "gateway_request" in caplog.text and "caller='ops'" in caplog.text

        # 5. The CLI, in this process as the console script runs it (each command its own
        # process would be: a fresh registry of secrets).
        event = [EVENT_TYPE, "--data", json.dumps(EVENT_DATA), "-c", str(config)]
        commands = {
            "validate": ["validate", "-c", str(config)],
            "validate --json": ["validate", "--json", "-c", str(config)],
            "render": ["--plain", "render", *event],
            "render --json": ["render", "--json", *event],
            "send --json": ["-vv", "send", "--json", *event],
            "send": ["--plain", "send", *event],
            "dead-letters list": ["--plain", "dead-letters", "list", "-c", str(config)],
            "dead-letters list --json": ["dead-letters", "list", "--json", "-c", str(config)],
            "stats": ["--plain", "stats", "-c", str(config)],
            "stats --json": ["stats", "--json", "-c", str(config)],
            "deliveries": ["--plain", "deliveries", "-c", str(config)],
            "deliveries --json": ["deliveries", "--json", "-c", str(config)],
        }
        for delivery_id in sqlite_deliveries:
            show = ["deliveries", "show", delivery_id, "-c", str(config)]
            commands[f"deliveries show {delivery_id}"] = ["--plain", *show]
            commands[f"deliveries show {delivery_id} --json"] = [*show, "--json"]
        for label, argv in commands.items():

            def one(argv: list[str] = argv) -> str:
                with isolated_registry():
                    return run_cli(*argv)

            places[f"CLI {label}"] = await asyncio.to_thread(one)

    # The services really did get every credential: the search would prove nothing otherwise.
    arrived = json.dumps(
        [[r.path, dict(r.query), dict(r.headers), r.text()] for r in receiver.requests]
    )
    for name in markers.NAMES:
        # (SMTP credentials go to the SMTP server; the others below arrive encoded or in a body)
        sent_otherwise = ("SIGNING", "URL_PASSWORD", "JIRA", "GATEWAY_TOKEN")
        if not name.startswith("SMTP") and name not in sent_otherwise:
            assert markers[name] in arrived, f"{name} never reached the receiver"
    assert base64.b64encode(f"ops:{markers['URL_PASSWORD']}".encode()).decode() in arrived
    assert base64.b64encode(f"bot@acme.example:{markers['JIRA']}".encode()).decode() in arrived
    assert "exit 1" in places["CLI send --json"], places["CLI send --json"][:500]
    assert "dead_letter_id" in places["CLI dead-letters list --json"]
    assert "response_excerpt" in places["CLI deliveries --json"]
    leaks = markers.leaks(places)
    assert leaks == [], "\n".join(leaks[:40])
