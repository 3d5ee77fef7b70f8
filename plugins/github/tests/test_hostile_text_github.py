"""A hostile `Link` header from the API (or whatever answers in its place): the next page is
still found, in time linear in the header. The pattern once let each `<` read on to the
header's end, quadratic in its length (0.4 s for the 8 KiB a header line may hold, per page
of comments, on the event loop)."""

from __future__ import annotations

from typing import Any

import attrs
import empathy_webhooks_github as plugin
import pytest
from empathy_webhooks_github import _NEXT_LINK, GitHubWebhook

from empathy_webhooks_core import WebhookDispatcher
from empathy_webhooks_core.plugins import build_plugin_manager
from empathy_webhooks_core.testing import ReceivedRequest, Reply

TOKEN = "ghp_FAKEfakeFAKEfake0123456789abcdefABCD"
REPO = "Smart-AI-Memory/empathy"
MARKER = "<!-- empathy-webhooks:review -->"


@pytest.mark.timeout(60)
def test_the_next_link_is_found_after_a_long_run_of_angle_brackets() -> None:
    # Minutes with the old pattern; a linear one reads this in milliseconds.
    header = "<" * 1_000_000 + '<https://api.github.com/x?page=2>; rel="next"'
    found = _NEXT_LINK.search(header)
    assert found is not None and found.group(1) == "https://api.github.com/x?page=2"
    assert _NEXT_LINK.search("<" * 1_000_000) is None
    assert _NEXT_LINK.search("<a>" + " " * 1_000_000 + "x") is None


def test_an_ordinary_link_header_reads_as_before() -> None:
    header = (
        '<https://api.github.com/repositories/1/issues/2/comments?page=1>; rel="prev", '
        '<https://api.github.com/repositories/1/issues/2/comments?page=3>; rel="next", '
        '<https://api.github.com/repositories/1/issues/2/comments?page=5>; rel="last"'
    )
    found = _NEXT_LINK.search(header)
    assert found is not None
    assert found.group(1) == "https://api.github.com/repositories/1/issues/2/comments?page=3"


@pytest.mark.timeout(60)
async def test_a_hostile_link_header_still_leads_to_the_next_page(github: Any) -> None:
    for n in range(100):
        github.add_comment(123, f"chatter {n}")
    github.add_comment(123, f"old review\n\n{MARKER}", login="empathy-bot")
    listed = github.list

    def hostile(request: ReceivedRequest, pr: int) -> Reply:
        reply: Reply = listed(request, pr)
        if "Link" in reply.headers:
            # As much junk before the link as a client reads of one header line (8 KiB).
            headers = {**reply.headers, "Link": "<" * 7000 + ", " + reply.headers["Link"]}
            reply = attrs.evolve(reply, headers=headers)
        return reply

    github.list = hostile
    hook = GitHubWebhook(
        token=TOKEN,
        repository=REPO,
        api_url=github.url(),
        retry_policy={"initial_delay_seconds": 0.001, "max_delay_seconds": 0.01},
    )
    manager = build_plugin_manager(load_entry_points=False, extra_plugins=[plugin])
    async with WebhookDispatcher(webhooks=[hook], plugin_manager=manager) as dispatcher:
        await dispatcher.emit("code_review_complete", {"pr": 123, "looks_good": ["fine"]})
    assert [(r.method, r.query.get("page")) for r in github.receiver.requests] == [
        ("GET", None),
        ("GET", "2"),
        ("PATCH", None),
    ]
    assert len(github.on(123)) == 101
    assert github.on(123)[-1]["body"].endswith(MARKER)
