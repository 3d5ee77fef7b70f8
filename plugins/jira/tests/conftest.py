"""A loopback Jira Cloud: the create-issue and JQL-search endpoints, with Jira's own status
codes and error bodies, built on the core `Receiver` with a handler."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from empathy_webhooks_core.testing import ReceivedRequest, Receiver, Reply

EMAIL = "bot@acme.io"
TOKEN = "ATATT3xFfGF0-jira-api-token-123456"
PAT = "NjA1ODY3-datacenter-pat-abcdef"
PRIORITIES = {"Highest", "High", "Medium", "Low", "Lowest"}
ISSUE_TYPES = {"Bug", "Task", "Story"}
_MARK_FAMILIES = {"code": {"code", "link", "annotation"}}


def _adf_errors(doc: Any) -> list[str]:
    """What Jira (and the ADF schema) refuse in a description."""
    if not isinstance(doc, dict):
        return ["Operation value must be an Atlassian Document (see the Atlassian Document Format)"]
    if (
        doc.get("type") != "doc"
        or doc.get("version") != 1
        or not isinstance(doc.get("content"), list)
    ):
        return ["Operation value must be an Atlassian Document (see the Atlassian Document Format)"]
    errors: list[str] = []

    def walk(node: Any, parent: str) -> None:
        if not isinstance(node, dict) or "type" not in node:
            errors.append(f"invalid node under {parent}")
            return
        kind = node["type"]
        if kind == "text":
            if not isinstance(node.get("text"), str) or not node["text"]:
                errors.append("text nodes must not be empty")
            marks = {m.get("type") for m in node.get("marks", [])}
            if "code" in marks and not marks <= _MARK_FAMILIES["code"]:
                errors.append("the code mark cannot be combined with other marks")
            if parent == "codeBlock" and marks:
                errors.append("text in a codeBlock cannot have marks")
        elif kind in ("paragraph", "codeBlock"):
            for child in node.get("content", []):
                walk(child, kind)
        elif kind != "hardBreak":
            errors.append(f"unsupported node {kind!r}")

    for block in doc["content"]:
        walk(block, "doc")
    return errors


class FakeJira:
    """Issues kept in memory; answers like Jira Cloud's REST API v3."""

    def __init__(self, receiver: Receiver, project: str = "EMP") -> None:
        self.receiver = receiver
        self.project = project
        self.issues: list[dict[str, Any]] = []
        #: Seconds to stall after creating the next issue (the client times out; it exists).
        self.stall_next_create = 0.0
        #: Answer the next N requests with 429 and this Retry-After.
        self.rate_limited = 0
        receiver.handler = self.handle

    def url(self) -> str:
        return self.receiver.url("")

    @property
    def creates(self) -> list[ReceivedRequest]:
        return [r for r in self.receiver.requests if r.path.endswith("/issue")]

    def close(self, key: str) -> None:
        for issue in self.issues:
            if issue["key"] == key:
                issue["status"] = "Done"

    def _authorized(self, request: ReceivedRequest) -> bool:
        auth = request.header("Authorization") or ""
        basic = "Basic " + base64.b64encode(f"{EMAIL}:{TOKEN}".encode()).decode()
        return auth in (basic, f"Bearer {PAT}")

    def handle(self, request: ReceivedRequest) -> Reply:
        if not self._authorized(request):
            # What Jira Cloud answers to a wrong or missing token.
            return Reply(status=401, body="Client must be authenticated to access this resource.")
        if self.rate_limited:
            self.rate_limited -= 1
            return Reply(
                status=429,
                body={"errorMessages": ["Rate limit exceeded."]},
                headers={"Retry-After": "0", "RateLimit-Reason": "jira-burst-based"},
            )
        route = (request.method, request.path)
        if route == ("POST", "/rest/api/3/issue") or route == ("POST", "/rest/api/2/issue"):
            return self.create(request)
        if route in (("POST", "/rest/api/3/search/jql"), ("POST", "/rest/api/2/search")):
            return self.search(request)
        if request.path == "/rest/api/3/search":
            # Removed from Jira Cloud in favour of /search/jql.
            return Reply(
                status=410,
                body={
                    "errorMessages": [
                        "The requested API has been removed. Please migrate "
                        "to the /rest/api/3/search/jql API."
                    ]
                },
            )
        return Reply(status=404, body={"errorMessages": ["Not found"], "errors": {}})

    def create(self, request: ReceivedRequest) -> Reply:
        v2 = request.path.startswith("/rest/api/2/")
        fields = request.json().get("fields", {})
        errors: dict[str, str] = {}
        if fields.get("project", {}).get("key") != self.project:
            errors["project"] = "valid project is required"
        summary = fields.get("summary")
        if not summary:
            errors["summary"] = "You must specify a summary of the issue."
        elif len(summary) > 255:
            errors["summary"] = "Summary can't exceed 255 characters."
        elif "\n" in summary:
            errors["summary"] = "The summary is invalid because it contains newline characters."
        if fields.get("issuetype", {}).get("name") not in ISSUE_TYPES:
            errors["issuetype"] = "Specify a valid issue type"
        if "priority" in fields and fields["priority"].get("name") not in PRIORITIES:
            errors["priority"] = "Specify the Priority (name) in the string format"
        description = fields.get("description")
        if description is not None:
            if v2:
                if not isinstance(description, str):
                    errors["description"] = "Operation value must be a string"
            else:
                problems = _adf_errors(description)
                if problems:
                    errors["description"] = problems[0]
            if len(str(description)) > 32767:
                errors["description"] = (
                    "The entered text is too long. It exceeds the allowed limit of 32,767 "
                    "characters."
                )
        for label in fields.get("labels", []):
            if re.search(r"\s", label):
                errors["labels"] = f"The label '{label}' contains spaces which is invalid."
        if errors:
            return Reply(status=400, body={"errorMessages": [], "errors": errors})
        number = len(self.issues) + 1
        issue = {
            "id": str(10000 + number),
            "key": f"{self.project}-{number}",
            "fields": fields,
            "status": "To Do",
        }
        self.issues.append(issue)
        stall, self.stall_next_create = self.stall_next_create, 0.0
        base = self.receiver.url("")
        return Reply(
            status=201,
            body={
                "id": issue["id"],
                "key": issue["key"],
                "self": f"{base}/rest/api/3/issue/{issue['id']}",
            },
            delay=stall,
        )

    def search(self, request: ReceivedRequest) -> Reply:
        query = request.json()
        jql = query.get("jql", "")
        match = re.fullmatch(
            r'project = "(?P<project>[^"]+)" AND labels = "(?P<label>[^"]+)" AND '
            r"statusCategory != Done ORDER BY created ASC",
            jql,
        )
        if match is None:
            return Reply(
                status=400,
                body={
                    "errorMessages": [f"Error in the JQL Query: cannot parse {jql!r}"],
                    "errors": {},
                },
            )
        if match["project"] != self.project:
            return Reply(
                status=400,
                body={
                    "errorMessages": [
                        f"The value '{match['project']}' does not exist for the field 'project'."
                    ],
                    "errors": {},
                },
            )
        hits = [
            {
                "id": i["id"],
                "key": i["key"],
                "fields": {"summary": i["fields"]["summary"], "status": {"name": i["status"]}},
            }
            for i in self.issues
            if match["label"] in i["fields"].get("labels", []) and i["status"] != "Done"
        ]
        limit = int(query.get("maxResults", 50))
        return Reply(status=200, body={"issues": hits[:limit], "isLast": len(hits) <= limit})


@pytest.fixture
async def jira() -> AsyncIterator[FakeJira]:
    async with Receiver() as receiver:
        yield FakeJira(receiver)
