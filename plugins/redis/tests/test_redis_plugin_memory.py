"""Plugins' per-webhook memory in Redis (`RedisStore.key_value`): shared by every worker, so
Jira's duplicate guard holds across workers whose search has not caught up yet."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Callable
from typing import Any

from empathy_webhooks_jira import JiraWebhook
from empathy_webhooks_redis import open_redis_store

from empathy_webhooks_core import Event, WebhookDispatcher
from empathy_webhooks_core.testing import ReceivedRequest, Receiver, Reply
from empathy_webhooks_core.worker import run_worker

EMAIL = "bot@acme.io"
TOKEN = "ATATT3xFfGF0-jira-api-token-123456"


async def test_the_memory_is_shared_namespaced_and_expires(redis_url: str) -> None:
    one, two = open_redis_store(redis_url).for_worker(), open_redis_store(redis_url).for_worker()
    await one.open()
    await two.open()
    try:
        memory, other = one.key_value("jira:a:"), one.key_value("jira:b:")
        assert await memory.get("k") is None
        await memory.set("k", "v1", 60)
        assert await two.key_value("jira:a:").get("k") == "v1"  # another worker reads it
        assert await other.get("k") is None
        assert await two.key_value("jira:a:").add("k", "v2", 60) is False
        await memory.delete("k")
        assert await two.key_value("jira:a:").add("k", "v3", 60) is True
        assert await memory.get("k") == "v3"
        ttl = await one.redis.pttl(f"{one.prefix}kv:jira:a:k")
        assert 0 < ttl <= 60_000
    finally:
        await one.close()
        await two.close()


class LaggingJira:
    """Jira Cloud whose JQL index never catches up: a search finds an issue only when the
    request names it in `reconcileIssues` (what Atlassian documents for read-after-write)."""

    def __init__(self, receiver: Receiver) -> None:
        self.issues: list[dict[str, Any]] = []
        receiver.handler = self.handle

    def handle(self, request: ReceivedRequest) -> Reply:
        basic = "Basic " + base64.b64encode(f"{EMAIL}:{TOKEN}".encode()).decode()
        if request.header("Authorization") != basic:
            return Reply(status=401, body="Client must be authenticated to access this resource.")
        if request.path == "/rest/api/3/issue":
            number = len(self.issues) + 1
            fields = request.json()["fields"]
            self.issues.append({"id": str(10000 + number), "key": f"EMP-{number}", **fields})
            return Reply(status=201, body={"id": str(10000 + number), "key": f"EMP-{number}"})
        if request.path == "/rest/api/3/search/jql":
            query = request.json()
            label = re.search(r'labels = "([^"]+)"', query["jql"])
            named = {str(i) for i in query.get("reconcileIssues", [])}
            hits = [
                {"id": i["id"], "key": i["key"], "fields": {"summary": i["summary"]}}
                for i in self.issues
                if i["id"] in named and label and label[1] in i.get("labels", [])
            ]
            return Reply(status=200, body={"issues": hits, "isLast": True})
        return Reply(status=404, body={"errorMessages": ["Not found"], "errors": {}})


def finding() -> Event:
    return Event(
        event_type="bug_detected",
        data={"title": "SQL injection", "file": "auth.py", "line": 45},
    )


async def test_a_finding_ticketed_by_one_worker_is_found_by_the_next(redis_url: str) -> None:
    async with Receiver() as receiver:
        jira = LaggingJira(receiver)

        def hook() -> JiraWebhook:  # each worker builds its own, from the same configuration
            return JiraWebhook(
                url=receiver.url(""), email=EMAIL, api_token=TOKEN, project="EMP", name="jira"
            )

        async with WebhookDispatcher(webhooks=[hook()], store=redis_url) as producer:
            await producer.emit_event(finding())
        await run_worker_until(hook(), redis_url, lambda: len(jira.issues) == 1)
        assert [issue["key"] for issue in jira.issues] == ["EMP-1"]

        async with WebhookDispatcher(webhooks=[hook()], store=redis_url) as producer:
            await producer.emit_event(finding())
        # Another worker (its own webhook object, state and connection) delivers the repeat:
        # its search names the issue the first created, read from Redis, and finds it.
        searched = lambda: sum(r.path.endswith("/search/jql") for r in receiver.requests) == 2  # noqa: E731
        await run_worker_until(hook(), redis_url, searched)
        searches = [r.json() for r in receiver.requests if r.path.endswith("/search/jql")]
        assert "reconcileIssues" not in searches[0]
        assert searches[1]["reconcileIssues"] == [10001]
        assert [issue["key"] for issue in jira.issues] == ["EMP-1"]  # not ticketed twice


async def run_worker_until(webhook: JiraWebhook, url: str, done: Callable[[], bool]) -> None:
    """`run_worker` in this process until `done()` holds, then stopped (within 15 s)."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker([webhook], url, stop=stop, grace_seconds=1))
    try:
        async with asyncio.timeout(15):
            while not done():  # noqa: ASYNC110 - answers land in the receiver's list
                await asyncio.sleep(0.01)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
