"""The console in a real browser (Debian's Chromium driven by Playwright): log in, watch
deliveries arrive live, read an event's attempts, replay a dead letter, enable a webhook,
and see hostile event data shown as text.

One Chromium per test session (each test connects to it and gets its own context); the
gateway and its receiver run on a loop in a thread (`_console_kit.Served`), so the
synchronous Playwright API never blocks them. Every test saves screenshots in its tmp_path
(and, with EMPATHY_WEBHOOKS_SCREENSHOTS=<folder>, there too: `make console-screenshots`
refreshes docs/images/console/ so), and fails if the page logged a console error.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from empathy_webhooks_core.testing import ReceivedRequest, Receiver, Reply

from ._console_kit import Served, console_config
from ._gateway_kit import TOKENS

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")
expect = sync_api.expect


@pytest.fixture(scope="session")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One Chromium for the test session (per xdist worker); yields its DevTools address.

    Playwright connects to it for each test only (`browser`): a synchronous Playwright kept
    open for the session would hold an event loop in the main thread, and every async test
    the worker runs after it would fail to start its own."""
    if not os.path.exists(CHROMIUM):
        reason = f"no Chromium at {CHROMIUM} (make install adds it with apt-get as root)"
        if os.environ.get("EMPATHY_WEBHOOKS_REQUIRE_BROWSER"):
            pytest.fail(reason)
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("chromium")
    log = folder / "chromium.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                CHROMIUM,
                *ARGS,
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                f"--user-data-dir={folder / 'profile'}",
                "about:blank",
            ],
            stdout=sink,
            stderr=sink,
        )
    try:
        found = None
        for _ in range(600):  # it says where it listens within a few seconds
            found = re.search(rb"DevTools listening on (ws://\S+)", log.read_bytes())
            if found is not None or process.poll() is not None:
                break
            time.sleep(0.05)
        assert found is not None, log.read_text(errors="replace")
        yield found.group(1).decode()
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def browser(chromium: str) -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        connected = playwright.chromium.connect_over_cdp(chromium)
        try:
            yield connected
        finally:
            connected.close()


class Tab:
    """A page in a fresh context that records console errors and takes screenshots."""

    def __init__(self, browser: Any, folder: Path, **context: Any) -> None:
        self.context = browser.new_context(
            viewport={"width": 1280, "height": 900}, timezone_id="Europe/Paris", **context
        )
        self.page = self.context.new_page()
        self.folder = folder
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        self.page.on("dialog", self._dialog)

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def shot(self, name: str) -> None:
        path = self.folder / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        docs = os.environ.get("EMPATHY_WEBHOOKS_SCREENSHOTS")
        if docs:
            Path(docs).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, Path(docs) / path.name)

    def log_in(self, url: str, token: str) -> None:
        page = self.page
        page.goto(f"{url}/login")
        page.get_by_label("Gateway token").fill(token)
        page.get_by_role("button", name="Log in").click()
        expect(page).to_have_url(f"{url}/")

    def leave(self) -> None:
        """Leave the console before its gateway stops: the page's event stream closes
        cleanly, instead of logging its reconnection refused by a gateway going away."""
        self.page.goto("about:blank")

    def close(self) -> None:
        self.leave()
        self.context.close()
        assert self.errors == [], self.errors


def emit(url: str, body: dict[str, Any]) -> str:
    request = urllib.request.Request(
        f"{url}/v1/events",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {TOKENS['writer']}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request) as answer:
        return str(json.load(answer)["event_id"])


def settled(url: str, event_id: str, *, deadline: float = 15.0) -> None:
    """Wait until every delivery of `event_id` has its final state on record (delivered, or
    failed with its dead letter, or disabled): a page shows what is there when it loads, and
    the gateway delivers a burst's events a moment after answering."""
    request = urllib.request.Request(
        f"{url}/v1/events/{event_id}",
        headers={"Authorization": f"Bearer {TOKENS['reader']}"},
    )
    give_up = time.monotonic() + deadline
    while True:
        with urllib.request.urlopen(request) as answer:
            deliveries = json.load(answer)["deliveries"]
        if deliveries and all(
            d["status"] in ("delivered", "disabled")
            or (d["status"] == "failed" and d["dead_letter_id"])
            for d in deliveries
        ):
            return
        assert time.monotonic() < give_up, f"not settled within {deadline} s: {deliveries}"
        time.sleep(0.05)


@pytest.fixture
def tab(browser: Any, tmp_path: Path) -> Iterator[Tab]:
    opened = Tab(browser, tmp_path)
    try:
        yield opened
    finally:
        opened.close()


def test_overview_live_deliveries_and_an_events_attempts(tab: Tab, tmp_path: Path) -> None:
    def answer(request: ReceivedRequest) -> Reply:
        if request.json()["data"].get("fail"):
            return Reply(status=500, body="upstream down: try later")
        return Reply(status=200, body="ok")

    def make(receiver: Receiver) -> Path:
        receiver.handler = answer
        return console_config(tmp_path, receiver.url())

    page = tab.page
    with Served(make) as served:
        page.goto(f"{served.url}/login")
        tab.shot("login")
        tab.log_in(served.url, TOKENS["admin"])
        expect(page.get_by_role("heading", name="Webhooks")).to_be_visible()
        row = page.locator("table.webhooks tbody tr")
        expect(row).to_have_count(1)
        expect(row.get_by_role("rowheader")).to_have_text("hook")
        expect(row.locator("td[data-label=Type]")).to_have_text("custom")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to content"

        page.get_by_role("link", name="Deliveries").click()
        expect(page.locator(".empty-row")).to_contain_text("No deliveries match")
        page.evaluate("window.stillTheSamePage = true")
        ok_1 = emit(served.url, {"event_type": "deploy", "data": {"n": 1}})
        failing = emit(served.url, {"event_type": "alert", "data": {"fail": True}})
        ok_2 = emit(served.url, {"event_type": "deploy", "data": {"n": 2}})
        rows = page.locator("#delivery-rows tr[data-delivery]")
        expect(rows).to_have_count(3)
        expect(rows.locator(".status-delivered")).to_have_count(2)
        expect(rows.locator(".status-failed")).to_have_count(1)
        assert page.evaluate("window.stillTheSamePage") is True  # live, not reloaded
        shown = rows.locator("td[data-label=Event] a").all_inner_texts()
        assert set(shown) == {ok_1, ok_2, failing}
        expect(page.locator("#live-status")).to_contain_text("update(s) since the page loaded")
        first_time = rows.first.locator("time")
        expect(first_time).to_have_class("local")  # in the viewer's zone, UTC on hover
        assert first_time.get_attribute("title").endswith(" UTC")
        assert first_time.get_attribute("datetime").endswith("Z")
        tab.shot("deliveries")

        page.get_by_role("link", name=failing).click()
        expect(page.get_by_role("heading", name=f"Event {failing}")).to_be_visible()
        attempt = page.locator("li.attempt")
        expect(attempt).to_have_count(1)
        expect(attempt).to_contain_text("Attempt 1")
        expect(attempt.locator(".answer")).to_have_text("HTTP 500")
        expect(attempt).to_contain_text("— retry (no attempt left)")
        for summary in attempt.locator("summary").all():
            summary.click()
        expect(attempt.locator("pre.excerpt")).to_have_text("upstream down: try later")
        expect(attempt.locator("table.headers")).to_contain_text(failing)  # X-Empathy-Event-Id
        expect(page.locator("pre.json")).to_contain_text('"fail": true')
        tab.shot("event")

        page.set_viewport_size({"width": 375, "height": 812})
        for path, name in (("/", "overview-375"), ("/deliveries", "deliveries-375")):
            page.goto(f"{served.url}{path}")
            sideways = page.evaluate(
                "[document.documentElement, ...document.querySelectorAll('.scroll')]"
                ".filter(box => box.scrollWidth > box.clientWidth).length"
            )
            assert sideways == 0, f"{path} scrolls sideways at 375 px"
            tab.shot(name)
        page.set_viewport_size({"width": 1280, "height": 900})
        page.goto(f"{served.url}/")
        expect(page.locator("svg.chart")).to_have_count(1)
        expect(page.locator(".chart-text")).to_have_text("3 deliveries, 1 failed")
        tab.shot("overview")
        tab.leave()


HOOK = re.compile(r"^hook\b")
GONE = re.compile(r"^gone\b")


def test_replay_a_dead_letter_and_enable_a_gone_webhook(tab: Tab, tmp_path: Path) -> None:
    fixed = {"hook": False, "gone": False}

    def answer(request: ReceivedRequest) -> Reply:
        if request.path == "/gone" and not fixed["gone"]:
            return Reply(status=410, body="this endpoint is gone")
        if request.path == "/hook" and not fixed["hook"]:
            return Reply(status=503, body="maintenance")
        return Reply(status=200)

    def make(receiver: Receiver) -> Path:
        receiver.handler = answer
        gone = (
            '\n[[webhooks]]\ntype = "custom"\nname = "gone"\n'
            f'url = "{receiver.url("/gone")}"\nretry_policy = {{ max_retries = 0 }}\n'
        )
        return console_config(tmp_path, receiver.url(), extra=gone)

    page = tab.page
    with Served(make) as served:
        tab.log_in(served.url, TOKENS["admin"])
        event_id = emit(served.url, {"event_type": "alert", "data": {"disk": "95%"}})
        settled(served.url, event_id)
        page.goto(f"{served.url}/deliveries?webhook=hook&status=failed")
        expect(page.locator("#delivery-rows .status-failed")).to_have_count(1)
        page.goto(f"{served.url}/dead-letters")
        hook = page.locator("section.webhook-letters", has=page.get_by_role("heading", name=HOOK))
        expect(hook.locator("tbody tr")).to_have_count(1)
        expect(hook.locator("td.reason")).to_contain_text("503")
        gone = page.locator("section.webhook-letters", has=page.get_by_role("heading", name=GONE))
        expect(gone.get_by_role("button", name="Enable gone")).to_be_visible()
        tab.shot("dead-letters")

        fixed["hook"] = True
        expect(hook.get_by_role("button", name="Replay all for hook")).to_be_visible()
        hook.get_by_role("button", name=re.compile(r"^Replay dl_")).click()
        expect(page.locator(".notice-ok")).to_contain_text("Replayed dl_")
        expect(hook).to_have_count(0)
        page.goto(f"{served.url}/deliveries?webhook=hook")
        expect(page.locator("#delivery-rows .status-delivered")).to_have_count(1)
        page.goto(f"{served.url}/events/{event_id}")
        hook_deliveries = page.locator(
            "article.delivery", has=page.get_by_role("heading", name=HOOK)
        )
        expect(hook_deliveries).to_have_count(2)  # the dead letter's, and its replay's
        expect(hook_deliveries.locator(".status-failed")).to_have_count(1)
        expect(hook_deliveries.locator(".status-delivered")).to_have_count(1)

        fixed["gone"] = True  # the service is back where it was
        page.goto(f"{served.url}/dead-letters")
        page.get_by_role("button", name="Enable gone").click()
        expect(page.locator(".notice-ok")).to_contain_text("Enabled gone")
        expect(page.get_by_role("button", name="Enable gone")).to_have_count(0)
        tab.shot("dead-letters-after")
        page.goto(f"{served.url}/deliveries?webhook=gone")
        expect(page.locator("#delivery-rows .status-delivered")).to_have_count(1)
        page.goto(f"{served.url}/")
        gone_row = page.locator("table.webhooks tbody tr", has_text="gone")
        expect(gone_row.locator("td[data-label=State]")).to_have_text("enabled")
        assert served.gateway.dispatcher.get_webhook_stats("gone")["disabled"] is False
        tab.leave()


HOSTILE = {
    "script": "<script>window.hacked = 'script'</script>",
    "image": '"><img src=x onerror="window.hacked = \'img\'">',
    "link": "javascript:window.hacked='link'",
    "anchor": "<a href=\"javascript:window.hacked='anchor'\">click me</a>",
}


def test_hostile_event_data_is_shown_as_text(tab: Tab, tmp_path: Path) -> None:
    def make(receiver: Receiver) -> Path:
        receiver.respond(500, "<script>window.hacked='answer'</script><img src=x onerror=alert(1)>")
        return console_config(tmp_path, receiver.url())

    page = tab.page
    with Served(make) as served:
        tab.log_in(served.url, TOKENS["reader"])
        page.goto(f"{served.url}/deliveries")
        event_id = emit(served.url, {"event_type": "alert", "data": HOSTILE})
        expect(page.locator("#delivery-rows .status-failed")).to_have_count(1)
        page.get_by_role("link", name=event_id).click()
        for summary in page.locator("summary").all():
            summary.click()
        envelope = page.locator("pre.json")
        for value in HOSTILE.values():
            expect(envelope).to_contain_text(json.dumps(value)[1:-1])
        expect(page.locator("pre.excerpt")).to_contain_text("<script>window.hacked='answer'")
        tab.shot("hostile-event")
        for path in ("/", "/deliveries", "/dead-letters"):
            page.goto(f"{served.url}{path}")
        page.goto(f"{served.url}/events/{event_id}")
        assert page.evaluate("typeof window.hacked") == "undefined"
        assert tab.dialogs == []
        assert page.locator("img").count() == 0
        assert page.locator("script:not([src])").count() == 0
        assert page.locator("a[href^='javascript']").count() == 0
        hrefs = page.locator("a[href]").evaluate_all(
            "links => links.map(a => a.getAttribute('href'))"
        )
        assert all(href.startswith(("/", "#")) for href in hrefs), hrefs
        tab.leave()
