"""Configuration files: `webhooks.toml` into webhook objects.

A file holds an optional `store` URL and one `[[webhooks]]` table per webhook::

    store = "sqlite:///outbox.db"

    [[webhooks]]
    type = "slack"                          # any installed plugin's webhook type
    name = "team_alerts"                    # optional; defaults to "<type>_webhook"
    webhook_url = "${SLACK_WEBHOOK_URL}"    # ${NAME} comes from the environment
    events = ["prediction", "alert"]
    filter = { severity = { gte = "high" }, data = { confidence = { gte = 0.8 } } }
    retry_policy = { max_retries = 5, initial_delay_seconds = 1 }
    rate_limit = { max_requests_per_minute = 60 }

A table may give just a `url` and no `type`: a generic webhook, which a URL that names a
service (`https://hooks.slack.com/...`) turns into that service's webhook when the service's
plugin is installed (one warning names the plugin to install when it is not). `type =
"custom"` sends the generic envelope whatever the URL names.

Every other key of a webhook table is a field of its type's class. Every problem is reported
at once, each with its exact place (`webhooks[2].retry_policy.max_retries: expected an
integer, got 'three'`); unknown keys and types get a did-you-mean. Error text never shows
a secret: values that came from the environment and values of credential fields are hidden.

Declarative filters (what the reference writes as `filter=lambda event: ...`): a table whose
keys are event fields (`event_type`, `severity`, `classification`, `user_id`,
`empathy_level`), `data` and `metadata` (tables of dotted paths into the event's data,
`"context.environment"`), and `any` (a list of filter tables, one of which must pass). All
conditions must pass. A condition is a value (equals), a list (one of), or a table of
operators: `eq`, `ne`, `in`, `not_in`, `gt`, `gte`, `lt`, `lte`, `exists`. For `severity`,
equality is case-insensitive and `gt`/`gte`/`lt`/`lte` compare ranks (info < low < medium <
high < critical) as the plugins read them, so `severity = { gte = "high" }` passes high and
critical events (and, without an explicit severity, security and compliance findings).
A value that is missing or of another kind fails a comparison instead of raising.
"""

from __future__ import annotations

from ..converter import ConfigError
from .env import expand_env
from .filters import EventFilter, compile_filter
from .loader import MAX_CONFIG_DEPTH, TOP_LEVEL_KEYS, Config, load_config, parse_config

__all__ = [
    "MAX_CONFIG_DEPTH",
    "TOP_LEVEL_KEYS",
    "Config",
    "ConfigError",
    "EventFilter",
    "compile_filter",
    "expand_env",
    "load_config",
    "parse_config",
]
