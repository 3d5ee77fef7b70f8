"""Sample events: the reference's examples, one per event type. `empathy-webhooks test`,
`render` (without `--data`) and the demo send these."""

from __future__ import annotations

from typing import Any

from ..events import Event, EventType

__all__ = ["DEMO_EVENTS", "SAMPLES", "sample_event"]

#: Keyword arguments of `Event` for each event type the reference names.
SAMPLES: dict[str, dict[str, Any]] = {
    EventType.PREDICTION: {
        "user_id": "developer_123",
        "empathy_level": 4,
        "data": {
            "prediction": "Auth deployment may conflict with user-service v2.1",
            "confidence": 0.87,
            "recommendation": "Deploy auth behind feature flag",
            "context": {"service": "authentication", "environment": "production"},
        },
        "metadata": {"model": "claude-sonnet-4.5"},
    },
    EventType.BUG_DETECTED: {
        "user_id": "code_reviewer",
        "severity": "high",
        "data": {
            "title": "SQL injection in auth.py:45",
            "vulnerability": "SQL injection",
            "file": "auth.py",
            "line": 45,
            "issue": "User input concatenated directly into SQL query",
            "fix": 'Use parameterized queries: cursor.execute("SELECT * FROM users WHERE id = %s",'
            " (user_id,))",
            "labels": ["security", "sql-injection"],
        },
    },
    EventType.SECURITY_VULNERABILITY: {
        "user_id": "code_reviewer",
        "severity": "critical",
        "data": {
            "vulnerability": "Hard-coded credential",
            "file": "config/settings.py",
            "line": 12,
            "issue": "An API token is committed to the repository",
            "fix": "Read the token from the environment and rotate it",
        },
    },
    EventType.PERFORMANCE_ISSUE: {
        "user_id": "performance_agent",
        "severity": "warning",
        "data": {
            "title": "/api/users response time degraded",
            "endpoint": "/api/users",
            "service": "api",
            "metrics": {
                "avg_response_time": 845.0,
                "p95_response_time": 2310.0,
                "error_rate": 0.02,
            },
        },
    },
    EventType.CODE_REVIEW_COMPLETE: {
        "user_id": "code_reviewer",
        "data": {
            "pr": 123,
            "pr_number": 123,
            "repository": "Smart-AI-Memory/empathy",
            "looks_good": ["Clean code structure", "Comprehensive test coverage"],
            "suggestions": [
                {"line": 45, "text": "Consider using context manager for file handling"},
                {"line": 78, "text": "N+1 query detected, use select_related()"},
            ],
            "security": ["No security issues detected"],
            "confidence": 0.92,
        },
    },
    EventType.ALERT: {
        "user_id": "monitoring_agent",
        "severity": "high",
        "data": {
            "title": "Error rate above 5% on checkout-service",
            "message": "5.4% of checkout requests failed in the last 10 minutes",
            "service": "checkout-service",
            "environment": "production",
        },
    },
    EventType.TEST_FAILURE: {
        "user_id": "ci_agent",
        "severity": "medium",
        "data": {
            "title": "test_login_with_expired_token failed",
            "file": "tests/test_auth.py",
            "line": 88,
            "message": "AssertionError: expected 401, got 500",
        },
    },
    EventType.DEPLOYMENT_RISK: {
        "user_id": "developer_123",
        "empathy_level": 4,
        "severity": "medium",
        "data": {
            "title": "Schema migration locks the orders table",
            "recommendation": "Run the migration in batches outside peak hours",
            "environment": "production",
        },
    },
    EventType.COMPLIANCE_VIOLATION: {
        "user_id": "compliance_agent",
        "severity": "high",
        "classification": "SENSITIVE",
        "data": {
            "title": "PHI written to application logs",
            "regulation": "HIPAA",
            "file": "services/patients.py",
            "line": 210,
        },
    },
    EventType.PATTERN_DISCOVERED: {
        "user_id": "developer_123",
        "empathy_level": 3,
        "data": {
            "title": "Retries without backoff in three services",
            "confidence": 0.8,
        },
    },
}

#: The demo's events, in order: the reference's examples.
DEMO_EVENTS: tuple[str, ...] = (
    EventType.PREDICTION,
    EventType.BUG_DETECTED,
    EventType.PERFORMANCE_ISSUE,
    EventType.CODE_REVIEW_COMPLETE,
    EventType.ALERT,
)


def sample_event(event_type: str) -> Event:
    """A fresh sample event of `event_type` (a generic one for a type of your own)."""
    kwargs = SAMPLES.get(event_type)
    if kwargs is None:
        kwargs = {"data": {"title": f"Sample {event_type} event", "sample": True}}
    return Event(event_type=event_type, **kwargs)
