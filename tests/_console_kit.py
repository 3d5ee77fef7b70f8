"""What the console's tests share: logging in over HTTP (cookie jar, CSRF tokens read from
the page) and a gateway with its receiver served from a thread, for the browser tests,
whose synchronous Playwright API must not block the loop the gateway runs on."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from empathy_webhooks_core.config import load_config
from empathy_webhooks_core.gateway import Gateway, running
from empathy_webhooks_core.testing import Receiver

from ._gateway_kit import TOKENS, config_text, write_config

T = TypeVar("T")

#: The security headers every console answer carries.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


def browser_session() -> aiohttp.ClientSession:
    # unsafe=True: keep cookies for an IP address (127.0.0.1), as a browser does.
    return aiohttp.ClientSession(
        cookie_jar=aiohttp.CookieJar(unsafe=True),
        connector=aiohttp.TCPConnector(force_close=True),
    )


async def log_in(session: aiohttp.ClientSession, url: str, token: str) -> tuple[int, str]:
    """Log in as the form does; the status of the answer (303 when it worked) and its body."""
    async with session.get(f"{url}/login") as page:
        form_csrf = csrf_of(await page.text())
    async with session.post(
        f"{url}/login",
        data={"csrf": form_csrf, "token": token, "next": "/"},
        allow_redirects=False,
    ) as answer:
        return answer.status, await answer.text()


async def page_csrf(session: aiohttp.ClientSession, url: str, path: str = "/") -> str:
    async with session.get(f"{url}{path}") as page:
        assert page.status == 200, await page.text()
        return csrf_of(await page.text())


def console_config(tmp_path: Path, hook_url: str, *, extra: str = "", **options: Any) -> Path:
    """Reader, writer and admin tokens (`_gateway_kit.TOKENS`), a `hook` webhook, SQLite."""
    text = config_text(hook_url, store=f"sqlite:///{tmp_path / 'outbox.db'}", **options)
    return write_config(tmp_path, text + extra)


class Served:
    """A receiver and a gateway (console included) on a loop in a thread of their own."""

    def __init__(self, make_config: Callable[[Receiver], Path]) -> None:
        self._make_config = make_config
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._stop: asyncio.Event | None = None
        self._done: Any = None
        self.url = ""
        self.receiver: Receiver
        self.gateway: Gateway

    def call(self, work: Awaitable[T], timeout: float = 30) -> T:
        """Run a coroutine on the gateway's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout)  # type: ignore[arg-type]

    def __enter__(self) -> Served:
        self._thread.start()
        started = threading.Event()

        async def serve() -> None:
            self._stop = asyncio.Event()
            async with Receiver() as receiver:
                self.receiver = receiver
                path = self._make_config(receiver)
                self.gateway = Gateway.from_config(load_config(path))
                async with running(self.gateway) as url:
                    self.url = url
                    started.set()
                    await self._stop.wait()

        self._done = asyncio.run_coroutine_threadsafe(serve(), self.loop)
        if not started.wait(30):
            self._done.result(1)  # raises what went wrong
            raise RuntimeError("the gateway did not start")
        return self

    def __exit__(self, *exc_info: object) -> None:
        async def stop() -> None:
            assert self._stop is not None
            self._stop.set()

        try:
            self.call(stop())
            self._done.result(30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name]}"}
