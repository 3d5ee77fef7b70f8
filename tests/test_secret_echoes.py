"""Secrets a service echoes back in another form, and credential headers under plain-looking
names: found by an audit of stop 37, through a real dispatcher and a loopback receiver that
echoes what it got, as some services do in their error answers.

- PHP's `json_encode` writes `/` as `\\/`: an AWS-style key echoed so was kept whole in the
  dead letter and the delivery history. So were `&`, `<` and `>` in Go's `\\u0026` form and
  in an HTML error page (`&amp;`).
- `X-Passphrase`, `CB-ACCESS-SIGN`, `X-Jwt`, `Authentication`, `accessKey` headers were not
  taken for credentials: their values were stored and shown in clear.
"""

from __future__ import annotations

import html
import json
from typing import Any

import pytest

from empathy_webhooks_core import CustomWebhook, WebhookDispatcher
from empathy_webhooks_core.redaction import is_secret_name
from empathy_webhooks_core.testing import Receiver, Reply

SLASHED = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYZq7KEY"
AMPERSAND = "Zq7k3y&s3cr3t!x9<q>"


def _php(value: str) -> str:
    return json.dumps({"m": f"invalid key {value}"}).replace("/", "\\/")


def _go(value: str) -> str:
    # Go's encoding/json escapes all three.
    text = json.dumps({"m": f"invalid key {value}"})
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


@pytest.mark.parametrize(
    ("secret", "echo"),
    [
        (SLASHED, _php),
        (AMPERSAND, _go),
        (AMPERSAND, lambda value: f"<p>invalid key {html.escape(value)}</p>"),
        (AMPERSAND, lambda value: f"<p>invalid key {html.escape(value, quote=False)}</p>"),
    ],
)
async def test_an_echoed_key_in_another_escaping_is_masked_in_what_is_kept(
    receiver: Receiver, secret: str, echo: Any
) -> None:
    receiver.handler = lambda request: Reply(status=400, body=echo(request.header("X-Api-Key")))
    webhook = CustomWebhook(
        name="h",
        url=receiver.url("/h"),
        headers={"X-Api-Key": secret},
        retry_policy={"max_retries": 0},
    )
    async with WebhookDispatcher(webhooks=[webhook]) as dispatcher:
        event = await dispatcher.emit("alert", {"n": 1})
        await dispatcher.drain()
        [letter] = await dispatcher.dead_letters()
        page = await dispatcher.deliveries(event_id=event.event_id)
    kept = json.dumps(letter.error) + repr(page.items)
    assert "invalid key ***" in kept
    for form in (secret, echo(secret)[20:40], html.escape(secret), secret.replace("/", "\\/")):
        assert form not in kept, form


@pytest.mark.parametrize(
    "name",
    [
        "X-Passphrase",
        "CB-ACCESS-PASSPHRASE",
        "CB-ACCESS-SIGN",
        "Authentication",
        "accessKey",
        "privatekey",
        "X-Jwt",
        "passcode",
        "X-Sig",
        "X-Hmac",
    ],
)
async def test_a_credential_header_under_a_plain_looking_name_is_never_kept_in_clear(
    receiver: Receiver, name: str
) -> None:
    value = "passZq7phrase02-" + name
    receiver.handler = lambda request: Reply(status=400, body=f"echo: {request.header(name)}")
    webhook = CustomWebhook(
        name="h", url=receiver.url("/h"), headers={name: value}, retry_policy={"max_retries": 0}
    )
    async with WebhookDispatcher(webhooks=[webhook]) as dispatcher:
        event = await dispatcher.emit("alert", {"n": 1})
        await dispatcher.drain()
        [record] = (await dispatcher.deliveries(event_id=event.event_id)).items
        [letter] = await dispatcher.dead_letters()
    assert record.attempts[0].request_headers[name] == "***"
    assert value not in repr(record) + json.dumps(letter.error)
    assert [r.header(name) for r in receiver.requests] == [value]  # sent as given


@pytest.mark.parametrize(
    "plain", ["Content-Type", "X-Team", "User-Agent", "X-Signed-At", "sign_payload", "design"]
)
def test_plain_names_stay_plain(plain: str) -> None:
    assert not is_secret_name(plain)


def test_a_gateway_problem_never_quotes_a_registered_secret_back() -> None:
    from empathy_webhooks_core.gateway.problems import Problem
    from empathy_webhooks_core.redaction import register_secrets

    token = "tok-Zq7k3yS3cr3tValue"
    register_secrets([token])
    problem = Problem(404, "/problems/not-found", f"no webhook named {token!r}")
    body = problem.body(instance=f"/v1/webhooks/{token}/stats")
    assert token not in json.dumps(body)
    assert body["instance"] == "/v1/webhooks/***/stats"


def test_every_public_name_imports() -> None:
    """`from empathy_webhooks_core import *` failed: BlockedAddressError named a module
    (`netguard`) that is `_netguard`, so the name itself could not be imported either."""
    import empathy_webhooks_core

    namespace: dict[str, Any] = {}
    exec("from empathy_webhooks_core import *", namespace)
    assert set(empathy_webhooks_core.__all__) <= set(namespace)
    assert namespace["BlockedAddressError"].__name__ == "BlockedAddressError"
