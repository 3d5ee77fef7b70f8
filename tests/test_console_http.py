"""The console over plain HTTP: who gets in, which forms are refused, what every answer
carries, and that nothing secret or hostile is rendered as it came."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import aiohttp
import pytest

from empathy_webhooks_core.testing import Receiver

from ._console_kit import (
    SECURITY_HEADERS,
    auth,
    browser_session,
    console_config,
    csrf_of,
    log_in,
    page_csrf,
)
from ._gateway_kit import TOKENS, config_text, gateway_at, write_config


@pytest.fixture
def config(tmp_path: Path, receiver: Receiver) -> Path:
    return console_config(tmp_path, receiver.url())


async def _dead_letter(session: aiohttp.ClientSession, url: str, receiver: Receiver) -> str:
    """Emit one event the receiver refuses; the dead letter's id once it is there."""
    receiver.respond(500, b"down")
    async with session.post(
        f"{url}/v1/events", json={"event_type": "alert"}, headers=auth("writer")
    ) as answer:
        assert answer.status == 202
    await receiver.wait_for(1)
    for _ in range(200):
        async with session.get(f"{url}/v1/dead-letters", headers=auth("reader")) as answer:
            letters = (await answer.json())["dead_letters"]
        if letters:
            return str(letters[0]["dead_letter_id"])
        await asyncio.sleep(0.05)  # the worker writes it after the answer
    raise AssertionError("no dead letter")


async def test_without_a_session_pages_go_to_login_and_actions_get_401(config: Path) -> None:
    async with gateway_at(config) as (_, url), browser_session() as session:
        for path in ("/", "/deliveries", "/dead-letters", "/events/evt_x"):
            async with session.get(f"{url}{path}", allow_redirects=False) as answer:
                assert answer.status == 303
                assert answer.headers["Location"].startswith("/login?next=")
        async with session.get(f"{url}/deliveries/live") as answer:
            assert answer.status == 401
        for path in ("/dead-letters/dl_x/replay", "/dead-letters/replay", "/webhooks/hook/enable"):
            async with session.post(f"{url}{path}", data={"csrf": "x"}) as answer:
                assert answer.status == 401
                assert "log in again" in await answer.text()
        # A bearer token is no session: the console takes only its cookie.
        async with session.get(f"{url}/", headers=auth("admin"), allow_redirects=False) as a:
            assert a.status == 303


async def test_login_refuses_a_bad_token_without_echoing_it(config: Path) -> None:
    wrong = TOKENS["admin"][:-4] + "zzzz"
    async with gateway_at(config) as (_, url), browser_session() as session:
        status, body = await log_in(session, url, wrong)
        assert status == 401
        assert "That token is not valid." in body
        assert wrong not in body and wrong[:20] not in body
        status, body = await log_in(session, url, TOKENS["writer"])
        assert status == 403
        assert "The token &#39;writer&#39; cannot read" in body
        assert TOKENS["writer"] not in body
        # The login form's own CSRF token: a post without it is refused.
        async with session.post(f"{url}/login", data={"token": TOKENS["admin"]}) as answer:
            assert answer.status == 403
            assert "This form has expired" in await answer.text()
        async with session.get(f"{url}/", allow_redirects=False) as answer:
            assert answer.status == 303  # still logged out


async def test_the_session_cookie_is_httponly_and_strict(config: Path) -> None:
    async with gateway_at(config) as (_, url), browser_session() as session:
        async with session.get(f"{url}/login") as page:
            form_csrf = csrf_of(await page.text())
        async with session.post(
            f"{url}/login",
            data={"csrf": form_csrf, "token": TOKENS["reader"], "next": "//evil.example/"},
            allow_redirects=False,
        ) as answer:
            assert answer.status == 303
            assert answer.headers["Location"] == "/"  # never another site
            cookie = next(
                value
                for value in answer.headers.getall("Set-Cookie")
                if value.startswith("ew_console_session=")
            )
        attributes = {part.strip().lower() for part in cookie.split(";")}
        assert {"httponly", "samesite=strict", "path=/"} <= attributes
        assert "secure" not in attributes  # plain http on loopback; https sets it
        session_id = cookie.split(";")[0].split("=", 1)[1]
        assert len(session_id) >= 40
        assert TOKENS["reader"] not in cookie


async def test_forms_without_the_right_csrf_token_are_refused(
    config: Path, receiver: Receiver
) -> None:
    async with gateway_at(config) as (_, url), browser_session() as session:
        letter = await _dead_letter(session, url, receiver)
        status, _ = await log_in(session, url, TOKENS["admin"])
        assert status == 303
        csrf = await page_csrf(session, url, "/dead-letters")
        replay = f"{url}/dead-letters/{letter}/replay"
        for data, headers in (
            ({}, {}),
            ({"csrf": "not-the-token"}, {}),
            ({"csrf": csrf[:-1] + ("A" if csrf[-1] != "A" else "B")}, {}),
            ({"csrf": csrf}, {"Origin": "https://evil.example"}),
        ):
            async with session.post(replay, data=data, headers=headers) as answer:
                assert answer.status == 403
                assert "did not come from this console" in await answer.text()
        async with session.get(f"{url}/v1/dead-letters", headers=auth("reader")) as answer:
            assert (await answer.json())["total"] == 1  # nothing was replayed
        receiver.respond(200)
        async with session.post(replay, data={"csrf": csrf}, allow_redirects=False) as answer:
            assert answer.status == 303
        async with session.get(f"{url}/dead-letters") as page:
            text = await page.text()
            assert f"Replayed {letter}" in text
        await receiver.wait_for(1, delivered=True)


async def test_a_read_token_cannot_replay_or_enable(config: Path, receiver: Receiver) -> None:
    async with gateway_at(config) as (_, url), browser_session() as session:
        letter = await _dead_letter(session, url, receiver)
        status, _ = await log_in(session, url, TOKENS["reader"])
        assert status == 303
        csrf = await page_csrf(session, url, "/dead-letters")
        async with session.get(f"{url}/dead-letters") as page:
            text = await page.text()
            assert letter in text
            assert "Replay all" not in text  # no button a read token cannot use
            assert "replaying needs an admin token" in text
        for path, data in (
            (f"/dead-letters/{letter}/replay", {"csrf": csrf}),
            ("/dead-letters/replay", {"csrf": csrf, "webhook": "hook"}),
            ("/webhooks/hook/enable", {"csrf": csrf}),
        ):
            async with session.post(f"{url}{path}", data=data) as answer:
                assert answer.status == 403, path
                assert "needs the &#39;admin&#39; scope" in await answer.text()
        async with session.get(f"{url}/v1/dead-letters", headers=auth("reader")) as answer:
            assert (await answer.json())["total"] == 1


async def test_every_answer_carries_the_security_headers(config: Path, receiver: Receiver) -> None:
    async with gateway_at(config) as (_, url), browser_session() as session:
        async with session.post(
            f"{url}/v1/events", json={"event_type": "alert"}, headers=auth("writer")
        ) as answer:
            event_id = (await answer.json())["event_id"]
        await receiver.wait_for(1, delivered=True)
        paths = ["/login", "/static/console.js", "/static/console.css", "/"]
        for path in paths:
            async with session.get(f"{url}{path}", allow_redirects=False) as answer:
                for name, value in SECURITY_HEADERS.items():
                    assert answer.headers.get(name) == value, (path, name)
        await log_in(session, url, TOKENS["reader"])
        for path in ("/", "/deliveries", "/dead-letters", f"/events/{event_id}", "/events/nope"):
            async with session.get(f"{url}{path}") as answer:
                assert answer.status == (404 if path.endswith("nope") else 200), path
                assert answer.content_type == "text/html"
                for name, value in SECURITY_HEADERS.items():
                    assert answer.headers.get(name) == value, (path, name)
                assert answer.headers["Cache-Control"] == "no-store"
                text = await answer.text()
                assert "<script>" not in text and " style=" not in text  # nothing inline
        async with session.get(f"{url}/static/console.js") as answer:
            assert answer.content_type == "text/javascript"
        async with session.get(f"{url}/static/..%2Fviews.py") as answer:
            assert answer.status == 404


async def test_no_token_configured_means_no_console(tmp_path: Path, receiver: Receiver) -> None:
    path = write_config(tmp_path, config_text(receiver.url(), tokens={}))
    async with gateway_at(path) as (_, url), browser_session() as session:
        async with session.get(f"{url}/login") as page:
            assert "No token is configured" in await page.text()
        status, _ = await log_in(session, url, "anything-at-all-goes-here")
        assert status == 403
        async with session.get(f"{url}/", allow_redirects=False) as answer:
            assert answer.status == 303


async def test_secrets_and_hostile_data_are_never_rendered_as_given(
    tmp_path: Path, receiver: Receiver
) -> None:
    signing = "whsec-console-marker-7f3a9c"
    bearer = "hdr-console-marker-51be02"
    path = console_config(
        tmp_path,
        receiver.url(),
        webhook=f'signing_secret = "{signing}"\nheaders = {{ Authorization = "Bearer {bearer}" }}',
    )
    hostile = '"><img src=x onerror=alert(1)><script>alert(2)</script>'
    receiver.respond(500, f"echo {bearer} {hostile}")
    async with gateway_at(path) as (_, url), browser_session() as session:
        async with session.post(
            f"{url}/v1/events",
            json={"event_type": "alert", "data": {"note": hostile}},
            headers=auth("writer"),
        ) as answer:
            event_id = (await answer.json())["event_id"]
        await receiver.wait_for(1)
        await log_in(session, url, TOKENS["reader"])
        for _ in range(100):
            async with session.get(f"{url}/events/{event_id}") as page:
                text = await page.text()
            if "Attempt 1" in text:
                break
            await asyncio.sleep(0.05)
        assert "Attempt 1" in text
        for secret in (signing, bearer, hashlib.sha256(signing.encode()).hexdigest()):
            assert secret not in text
        assert "<img" not in text and "<script>alert" not in text
        assert "&lt;img src=x onerror=alert(1)&gt;" in text
        for page_path in ("/", "/deliveries", "/dead-letters"):
            async with session.get(f"{url}{page_path}") as page:
                body = await page.text()
                assert signing not in body and bearer not in body
                assert receiver.url() not in body  # webhook URLs are not shown at all


async def test_the_console_command_serves_on_loopback_with_a_token_for_the_run(
    tmp_path: Path, receiver: Receiver
) -> None:
    import os
    import re
    import signal
    import sys

    path = console_config(tmp_path, receiver.url())
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from empathy_webhooks_core.cli import main; main()",
        "console",
        "--config",
        str(path),
        "--port",
        "0",
        "--no-browser",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    try:
        lines = [(await asyncio.wait_for(proc.stdout.readline(), 60)).decode() for _ in range(2)]
        found = re.search(r"^console: (http://127\.0\.0\.1:\d+)/login#token=(\S+)$", lines[1])
        assert found is not None, lines
        url, token = found.groups()
        async with browser_session() as session:
            status, _ = await log_in(session, url, token)
            assert status == 303
            async with session.get(f"{url}/") as page:
                assert "console" in await page.text()  # logged in as the run's token
            # The configuration's own tokens still work; the API wants the run's token too.
            async with session.get(f"{url}/v1/webhooks", headers=auth("reader")) as answer:
                assert answer.status == 200
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert token not in err.decode()  # the log never shows it


async def test_over_https_the_session_cookie_is_secure(tmp_path: Path, receiver: Receiver) -> None:
    import ssl

    import trustme
    from aiohttp import web

    from empathy_webhooks_core.config import load_config
    from empathy_webhooks_core.gateway import Gateway, build_app

    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    gateway = Gateway.from_config(load_config(console_config(tmp_path, receiver.url())))
    runner = web.AppRunner(build_app(gateway), handle_signals=False, shutdown_timeout=2)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context)
        await site.start()
        url = f"https://127.0.0.1:{runner.addresses[0][1]}"
        connector = aiohttp.TCPConnector(ssl=client_context, force_close=True)
        async with aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True), connector=connector
        ) as session:
            async with session.get(f"{url}/login") as page:
                form_csrf = csrf_of(await page.text())
                assert "secure" in page.headers["Set-Cookie"].lower()
            async with session.post(
                f"{url}/login",
                data={"csrf": form_csrf, "token": TOKENS["reader"]},
                allow_redirects=False,
            ) as answer:
                assert answer.status == 303
                cookie = next(
                    value
                    for value in answer.headers.getall("Set-Cookie")
                    if value.startswith("ew_console_session=")
                )
        attributes = {part.strip().lower() for part in cookie.split(";")}
        assert {"secure", "httponly", "samesite=strict"} <= attributes
    finally:
        await runner.cleanup()
        await gateway.stop_delivering(1)
