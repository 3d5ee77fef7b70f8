"""Every built-in webhook type, configured against a host that is never reached (for tests
that only render), one of each kind of request its plugin makes."""

from __future__ import annotations

from empathy_webhooks_datadog import DatadogWebhook
from empathy_webhooks_discord import DiscordWebhook
from empathy_webhooks_email import EmailWebhook
from empathy_webhooks_github import GitHubWebhook
from empathy_webhooks_grafana import GrafanaWebhook
from empathy_webhooks_jira import JiraWebhook
from empathy_webhooks_pagerduty import PagerDutyWebhook
from empathy_webhooks_slack import SlackWebhook
from empathy_webhooks_teams import TeamsWebhook

from empathy_webhooks_core import CustomWebhook
from empathy_webhooks_core.webhooks import Webhook

BASE = "https://hooks.example.com"


def builtin_webhooks() -> list[Webhook]:
    github = {"token": "ghp_shapes", "repository": "acme/shop", "api_url": BASE, "events": ["*"]}
    jira = {"url": BASE, "email": "bot@acme.io", "api_token": "tok", "project": "EMP"}
    return [
        SlackWebhook(name="slack", webhook_url=f"{BASE}/services/T0/B0/xoxbShapes0123"),
        TeamsWebhook(
            name="teams", webhook_url=f"{BASE}/workflows/abc/triggers/manual/paths/invoke?sig=s"
        ),
        DiscordWebhook(name="discord", webhook_url=f"{BASE}/api/webhooks/1122334455/TOKENabc"),
        JiraWebhook(name="jira", events=["*"], **jira),
        JiraWebhook(name="jira_v2", events=["*"], api_version=2, **jira),
        GitHubWebhook(name="github", comment_events=["*"], dispatch_events=[], **github),
        GitHubWebhook(name="github_dispatch", comment_events=[], dispatch_events=["*"], **github),
        GitHubWebhook(
            name="github_workflow",
            comment_events=[],
            dispatch_events=["*"],
            workflow="ci.yml",
            **github,
        ),
        DatadogWebhook(name="datadog", api_key="a" * 32, app_key="b" * 40, base_url=BASE),
        PagerDutyWebhook(name="pagerduty", api_key="r" * 32, events_url=BASE),
        GrafanaWebhook(name="grafana", url=BASE, api_key="tok", dashboard_uid="abc", panel_id=2),
        EmailWebhook(
            name="email",
            host="127.0.0.1",
            port=25,
            tls_mode="none",
            sender="alerts@empathy.example",
            recipients=["oncall@example.com"],
        ),
        CustomWebhook(name="custom", url=BASE),
    ]
