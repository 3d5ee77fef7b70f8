"""Every first-party webhook has a `url` (issue 15, item 11), and no URL it holds shows a
credential in its repr. The reference-style `on_failure` reading `webhook.url` on a real
failing delivery is in the conformance suite every plugin runs
(`test_the_reference_failure_callback_reads_webhook_url`)."""

from __future__ import annotations

from typing import Any

import pytest
from empathy_webhooks_datadog import DatadogWebhook
from empathy_webhooks_github import GitHubWebhook
from empathy_webhooks_grafana import GrafanaWebhook
from empathy_webhooks_jira import JiraWebhook
from empathy_webhooks_pagerduty import PagerDutyWebhook

PASSWORD = "pr0xy-passw0rd-77"
TOKEN = "query-t0ken-88"
BASE = f"https://relay:{PASSWORD}@relay.example.com/x?token={TOKEN}"

WEBHOOKS: dict[str, Any] = {
    "pagerduty": lambda: PagerDutyWebhook(api_key="k" * 32, events_url=BASE),
    "datadog": lambda: DatadogWebhook(api_key="k" * 32, base_url=BASE),
    "github": lambda: GitHubWebhook(token="ghp_x", repository="a/b", api_url=BASE),
    "grafana": lambda: GrafanaWebhook(url=BASE, api_key="glsa_x"),
    "jira": lambda: JiraWebhook(url=BASE, email="bot@acme.io", api_token="t0ken", project="EMP"),
}


@pytest.mark.parametrize("kind", sorted(WEBHOOKS))
def test_urls_in_reprs_show_no_credential(kind: str) -> None:
    shown = repr(WEBHOOKS[kind]())
    assert "relay.example.com" in shown
    assert PASSWORD not in shown and TOKEN not in shown


@pytest.mark.parametrize("kind", ["pagerduty", "datadog", "github"])
def test_url_is_where_it_posts_fit_to_show(kind: str) -> None:
    url = WEBHOOKS[kind]().url
    assert url.startswith("https://relay.example.com/x")
    assert PASSWORD not in url and TOKEN not in url


def test_default_urls() -> None:
    assert PagerDutyWebhook(api_key="k" * 32).url == "https://events.pagerduty.com/v2/enqueue"
    assert (
        DatadogWebhook(api_key="k" * 32, site="EU").url == "https://api.datadoghq.eu/api/v1/events"
    )
    assert GitHubWebhook(token="t", repository="a/b").url == "https://api.github.com/repos/a/b"
