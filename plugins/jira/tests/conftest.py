"""A loopback Jira Cloud, built on the core `Receiver` with a handler: create issue, JQL
search, user search, create metadata, comments and transitions, with the status codes and
error bodies Jira Cloud's REST API v3 documents (Data Center's v2 shapes where they differ)."""

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
ISSUE_TYPES = {"Bug": "10001", "Task": "10002", "Story": "10003"}
ALICE = {
    "accountId": "5b10ac8d82e05b22cc7d4ef5",
    "accountType": "atlassian",
    "emailAddress": "alice@acme.io",
    "displayName": "Alice Example",
    "active": True,
}
#: The fields a default project's create screen has (createmeta's `fieldId`s).
SCREEN = frozenset(
    {"project", "issuetype", "summary", "description", "priority", "labels", "assignee", "reporter"}
)
WORKFLOW = (("11", "To Do", "new"), ("21", "In Progress", "indeterminate"), ("31", "Done", "done"))
_ISSUE_PATH = re.compile(
    r"/rest/api/(?P<v>[23])/issue/(?P<key>[^/]+)/(?P<what>comment|transitions)"
)
_META_PATH = re.compile(
    r"/rest/api/(?P<v>[23])/issue/createmeta/(?P<project>[^/]+)/issuetypes(?:/(?P<type>[^/]+))?"
)
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
        #: Jira Cloud refuses Bearer API tokens (401); Data Center takes personal access tokens.
        self.cloud = True
        self.users: list[dict[str, Any]] = [dict(ALICE)]
        #: Fields on the create screen; any other field in a create is refused (400).
        self.screen: set[str] = set(SCREEN)
        #: createmeta answers 403 (no "Create issues" permission to read it) when False.
        self.createmeta_allowed = True
        #: createmeta pages at most this many items per answer (Cloud's default page: 50).
        self.page_size = 50
        self.workflow = list(WORKFLOW)
        #: The account lacks "Browse users and groups": the user search answers 403.
        self.browse_users = True
        #: Answer the next N transition POSTs with 503 (Jira busy), then transition.
        self.transition_unavailable = 0
        receiver.handler = self.handle

    def url(self) -> str:
        return self.receiver.url("")

    @property
    def creates(self) -> list[ReceivedRequest]:
        return [r for r in self.receiver.requests if r.path.endswith("/issue")]

    def calls(self) -> list[str]:
        """`METHOD path` of every request, in order (createmeta and searches shortened)."""
        return [f"{r.method} {r.path}" for r in self.receiver.requests]

    def issue(self, key: str) -> dict[str, Any]:
        return next(issue for issue in self.issues if issue["key"] == key)

    def close(self, key: str) -> None:
        for issue in self.issues:
            if issue["key"] == key:
                issue["status"] = "Done"

    def _authorized(self, request: ReceivedRequest) -> bool:
        auth = request.header("Authorization") or ""
        basic = "Basic " + base64.b64encode(f"{EMAIL}:{TOKEN}".encode()).decode()
        if self.cloud:
            return auth == basic  # Cloud: API tokens only as Basic email:token
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
        if route in (("GET", "/rest/api/3/user/search"), ("GET", "/rest/api/2/user/search")):
            return self.user_search(request)
        meta = _META_PATH.fullmatch(request.path)
        if meta and request.method == "GET":
            return self.createmeta(request, meta)
        on_issue = _ISSUE_PATH.fullmatch(request.path)
        if on_issue:
            issue = next((i for i in self.issues if on_issue["key"] in (i["key"], i["id"])), None)
            if issue is None:
                return Reply(
                    status=404,
                    body={
                        "errorMessages": [
                            "Issue does not exist or you do not have permission to see it."
                        ],
                        "errors": {},
                    },
                )
            if on_issue["what"] == "comment" and request.method == "POST":
                return self.comment(request, issue, v2=on_issue["v"] == "2")
            if on_issue["what"] == "transitions" and request.method == "GET":
                return self.transitions(issue)
            if on_issue["what"] == "transitions" and request.method == "POST":
                return self.transition(request, issue)
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
        elif len(summary.encode("utf-16-le")) // 2 > 255:  # Java's String.length()
            errors["summary"] = "Summary can't exceed 255 characters."
        elif "\n" in summary:
            errors["summary"] = "The summary is invalid because it contains newline characters."
        if fields.get("issuetype", {}).get("name") not in ISSUE_TYPES:
            errors["issuetype"] = "Specify a valid issue type"
        for name in fields:
            if name not in self.screen and name not in ("project", "issuetype"):
                errors[name] = (
                    f"Field '{name}' cannot be set. It is not on the appropriate screen, "
                    "or unknown."
                )
        owner = fields.get("assignee")
        if isinstance(owner, dict) and not v2:
            account = owner.get("accountId")
            if not any(user["accountId"] == account for user in self.users):
                errors["assignee"] = f"User '{account}' does not exist."
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
            "comments": [],
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

    def user_search(self, request: ReceivedRequest) -> Reply:
        if not self.browse_users:
            return Reply(
                status=403,
                body={
                    "errorMessages": ["You do not have permission to browse users and groups."],
                    "errors": {},
                },
            )
        query = (request.query.get("query") or request.query.get("username") or "").casefold()
        if not query:
            return Reply(
                status=400,
                body={"errorMessages": ["The query parameter 'query' is required."], "errors": {}},
            )
        found = []
        for user in self.users:
            words = [user.get("emailAddress") or "", *str(user["displayName"]).split()]
            if any(word.casefold().startswith(query) for word in words):
                shown = {k: v for k, v in user.items() if k != "hide_email"}
                if user.get("hide_email"):
                    shown.pop("emailAddress", None)  # profile visibility: email hidden
                found.append(shown)
        return Reply(status=200, body=found[: int(request.query.get("maxResults", 50))])

    def createmeta(self, request: ReceivedRequest, match: re.Match[str]) -> Reply:
        if not self.createmeta_allowed:
            return Reply(
                status=403,
                body={"errorMessages": ["You do not have permission to create issues."]},
            )
        if match["project"] != self.project:
            return Reply(
                status=404,
                body={
                    "errorMessages": [f"No project could be found with key '{match['project']}'."]
                },
            )
        v2 = match["v"] == "2"
        if match["type"] is None:
            items: list[dict[str, Any]] = [
                {"id": type_id, "name": name, "subtask": False}
                for name, type_id in ISSUE_TYPES.items()
            ]
            key = "issueTypes"
        else:
            if match["type"] not in ISSUE_TYPES.values():
                return Reply(
                    status=404,
                    body={"errorMessages": ["Issue type with id not found"], "errors": {}},
                )
            items = [
                {
                    "fieldId": name,
                    "key": name,
                    "name": name.capitalize(),
                    "required": name in ("project", "issuetype", "summary"),
                    "operations": ["set"],
                }
                for name in sorted(self.screen | {"project", "issuetype"})
            ]
            key = "fields"
        start = int(request.query.get("startAt", 0))
        size = min(int(request.query.get("maxResults", 50)), self.page_size)
        page = items[start : start + size]
        if v2:  # Data Center's page shape
            body = {"values": page, "startAt": start, "maxResults": size}
            body["isLast"] = start + size >= len(items)
            return Reply(status=200, body=body)
        return Reply(
            status=200,
            body={key: page, "startAt": start, "maxResults": size, "total": len(items)},
        )

    def comment(self, request: ReceivedRequest, issue: dict[str, Any], *, v2: bool) -> Reply:
        body = request.json().get("body")
        problems = (
            ([] if isinstance(body, str) and body else ["Comment body can not be empty!"])
            if v2
            else _adf_errors(body)
        )
        if problems:
            return Reply(status=400, body={"errorMessages": [], "errors": {"comment": problems[0]}})
        comment_id = str(10000 + sum(len(i["comments"]) for i in self.issues) + 1)
        issue["comments"].append(body)
        return Reply(status=201, body={"id": comment_id, "body": body})

    def transitions(self, issue: dict[str, Any]) -> Reply:
        available = [
            {
                "id": transition_id,
                "name": name,
                "to": {"name": name, "statusCategory": {"key": category}},
            }
            for transition_id, name, category in self.workflow
            if name != issue["status"]
        ]
        return Reply(status=200, body={"expand": "transitions", "transitions": available})

    def transition(self, request: ReceivedRequest, issue: dict[str, Any]) -> Reply:
        if self.transition_unavailable:
            self.transition_unavailable -= 1
            return Reply(status=503, body={"errorMessages": ["Service unavailable"]})
        wanted = str(request.json().get("transition", {}).get("id"))
        for transition_id, name, _ in self.workflow:
            if transition_id == wanted and name != issue["status"]:
                issue["status"] = name
                return Reply(status=204)
        return Reply(
            status=400,
            body={
                "errorMessages": [f"Transition id '{wanted}' is not valid for this issue."],
                "errors": {},
            },
        )


@pytest.fixture
async def jira() -> AsyncIterator[FakeJira]:
    async with Receiver() as receiver:
        yield FakeJira(receiver)
