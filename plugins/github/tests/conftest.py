"""A loopback GitHub REST API: issue comments (list, create, update) and dispatches, with
GitHub's status codes, error bodies and rate-limit answers, built on the core `Receiver`."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from empathy_webhooks_core.testing import ReceivedRequest, Receiver, Reply

TOKEN = "ghp_FAKEfakeFAKEfake0123456789abcdefABCD"
REPO = "Smart-AI-Memory/empathy"
DOCS = "https://docs.github.com/rest"


def _error(status: int, message: str, **extra: Any) -> Reply:
    return Reply(
        status=status,
        body={"message": message, "documentation_url": DOCS, "status": str(status), **extra},
        headers={"Content-Type": "application/json; charset=utf-8"},
    )


def _validation(field: str, message: str, resource: str = "IssueComment") -> Reply:
    return _error(
        422,
        "Validation Failed",
        errors=[{"resource": resource, "code": "custom", "field": field, "message": message}],
    )


class FakeGitHub:
    """One repository with open PRs 1-500, a workflow `ci.yml` with input `event`."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self.comments: dict[int, dict[str, Any]] = {}
        self.dispatches: list[dict[str, Any]] = []
        self.workflow_runs: list[dict[str, Any]] = []
        self.next_id = 1_000
        self.per_page_cap = 100
        #: Kinds of rate-limit answers to give next: "primary", "secondary", "429".
        self.limits: list[str] = []
        receiver.handler = self.handle

    def url(self) -> str:
        return self.receiver.url("")

    def on(self, pr: int) -> list[dict[str, Any]]:
        return [c for c in self.comments.values() if c["issue"] == pr]

    def add_comment(self, pr: int, body: str, login: str = "someone") -> dict[str, Any]:
        self.next_id += 1
        comment = {"id": self.next_id, "issue": pr, "body": body, "user": {"login": login}}
        self.comments[self.next_id] = comment
        return comment

    def _json(self, comment: dict[str, Any]) -> dict[str, Any]:
        base = self.receiver.url("")
        return {
            "id": comment["id"],
            "node_id": f"IC_{comment['id']}",
            "url": f"{base}/repos/{REPO}/issues/comments/{comment['id']}",
            "html_url": f"https://github.com/{REPO}/pull/{comment['issue']}"
            f"#issuecomment-{comment['id']}",
            "body": comment["body"],
            "user": comment["user"],
        }

    def _rate_limited(self) -> Reply | None:
        if not self.limits:
            return None
        kind = self.limits.pop(0)
        if kind == "primary":
            reset = int(time.time()) + 120
            return Reply(
                status=403,
                body={
                    "message": "API rate limit exceeded for user ID 1.",
                    "documentation_url": DOCS,
                },
                headers={
                    "x-ratelimit-limit": "5000",
                    "x-ratelimit-remaining": "0",
                    "x-ratelimit-used": "5000",
                    "x-ratelimit-reset": str(reset),
                    "x-ratelimit-resource": "core",
                },
            )
        if kind == "secondary":
            return Reply(
                status=403,
                body={
                    "message": "You have exceeded a secondary rate limit. Please wait a few "
                    "minutes before you try again.",
                    "documentation_url": DOCS,
                },
                headers={"retry-after": "30", "x-ratelimit-remaining": "4990"},
            )
        return Reply(status=429, body={"message": "Too many requests"}, headers={})

    def handle(self, request: ReceivedRequest) -> Reply:
        if request.header("Authorization") not in (f"Bearer {TOKEN}", f"token {TOKEN}"):
            return _error(401, "Bad credentials")
        if not request.header("User-Agent"):
            return _error(403, "Request forbidden by administrative rules.")
        limited = self._rate_limited()
        if limited is not None:
            return limited
        path, method = request.path, request.method
        prefix = f"/repos/{REPO}"
        if not path.startswith(prefix + "/"):
            return _error(404, "Not Found")
        rest = path[len(prefix) :]
        if m := re.fullmatch(r"/issues/(\d+)/comments", rest):
            pr = int(m.group(1))
            if not 1 <= pr <= 500:
                return _error(404, "Not Found")
            if method == "GET":
                return self.list(request, pr)
            if method == "POST":
                return self.create(request, pr)
        if (m := re.fullmatch(r"/issues/comments/(\d+)", rest)) and method == "PATCH":
            return self.update(request, int(m.group(1)))
        if rest == "/dispatches" and method == "POST":
            return self.repository_dispatch(request)
        if (m := re.fullmatch(r"/actions/workflows/([^/]+)/dispatches", rest)) and method == "POST":
            return self.workflow_dispatch(request, m.group(1))
        return _error(404, "Not Found")

    def list(self, request: ReceivedRequest, pr: int) -> Reply:
        per_page = min(int(request.query.get("per_page", 30)), self.per_page_cap)
        page = int(request.query.get("page", 1))
        comments = sorted(self.on(pr), key=lambda c: c["id"])
        chunk = comments[(page - 1) * per_page : page * per_page]
        headers = {}
        if page * per_page < len(comments):
            nxt = self.receiver.url(
                f"/repositories/1/issues/{pr}/comments?per_page={per_page}&page={page + 1}"
            )
            # GitHub's next links use /repositories/<id>/...: route them to the same handler.
            nxt = nxt.replace("/repositories/1/", f"/repos/{REPO}/")
            headers["Link"] = f'<{nxt}>; rel="next"'
        return Reply(status=200, body=[self._json(c) for c in chunk], headers=headers)

    def _body_problem(self, request: ReceivedRequest) -> Reply | None:
        body = request.json().get("body")
        if not isinstance(body, str) or not body.strip():
            return _validation("body", "body cannot be blank")
        if len(body) > 65536:
            return _validation("body", "body is too long (maximum is 65536 characters)")
        return None

    def create(self, request: ReceivedRequest, pr: int) -> Reply:
        problem = self._body_problem(request)
        if problem:
            return problem
        comment = self.add_comment(pr, request.json()["body"], login="empathy-bot")
        return Reply(status=201, body=self._json(comment))

    def update(self, request: ReceivedRequest, comment_id: int) -> Reply:
        comment = self.comments.get(comment_id)
        if comment is None:
            return _error(404, "Not Found")
        problem = self._body_problem(request)
        if problem:
            return problem
        comment["body"] = request.json()["body"]
        return Reply(status=200, body=self._json(comment))

    def repository_dispatch(self, request: ReceivedRequest) -> Reply:
        body = request.json()
        event_type = body.get("event_type")
        if not isinstance(event_type, str) or not 1 <= len(event_type) <= 100:
            return _validation("event_type", "event_type is invalid", resource="Repository")
        payload = body.get("client_payload", {})
        if len(payload) > 10:
            return _error(
                422, f"No more than 10 properties are allowed; {len(payload)} were supplied."
            )
        self.dispatches.append(body)
        return Reply(status=204)

    def workflow_dispatch(self, request: ReceivedRequest, workflow: str) -> Reply:
        if workflow not in ("ci.yml", "42"):
            return _error(404, "Not Found")
        body = request.json()
        if not body.get("ref"):
            return _validation("ref", "ref is required", resource="Workflow")
        unexpected = sorted(set(body.get("inputs", {})) - {"event"})
        if unexpected:
            return _error(422, f"Unexpected inputs provided: {unexpected}")
        self.workflow_runs.append(body)
        return Reply(status=204)


@pytest.fixture
async def github() -> AsyncIterator[FakeGitHub]:
    async with Receiver() as receiver:
        yield FakeGitHub(receiver)
