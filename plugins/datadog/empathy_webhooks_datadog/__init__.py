"""Datadog: events become Datadog events (v1 `/api/v1/events`), their numbers gauges
(`/api/v2/series`), and `send_metric` submits custom metrics in batches.

Keys travel only in Datadog's headers (`DD-API-KEY`, `DD-APPLICATION-KEY`), never in a URL,
and are kept out of reprs and logs.
"""

from __future__ import annotations

import warnings
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import attrs

from empathy_webhooks_core.plugin import (
    Event,
    Outcome,
    OutgoingRequest,
    Response,
    Sender,
    Verdict,
    Webhook,
    bounded,
    check_url,
    hookimpl,
    json_bytes,
    parse_retry_after,
    redact_text,
    redact_url,
    secret_field,
    state_for,
    truncate,
    url_repr,
)

from .format import (
    TEXT_LIMIT,
    alert_type,
    clean_tags,
    event_body,
    event_series,
    metric_name,
    tags_for,
    title,
    wrap_text,
)
from .metrics import (
    EVENT_MAX_AGE,
    METRIC_MAX_AGE,
    DatadogState,
    Queued,
    is_early,
    is_late,
    make_point,
    original_tag,
)
from .sites import SITES, api_base_url, site_domain

#: The plugin API this plugin is written for (docs/writing-plugins.md, section 7).
PLUGIN_API = "1.2"

__all__ = [
    "SITES",
    "DatadogState",
    "DatadogWebhook",
    "alert_type",
    "api_base_url",
    "event_body",
    "event_series",
    "metric_name",
    "site_domain",
    "tags_for",
    "title",
]

DEFAULT_EVENT_METRICS = (
    "avg_response_time",
    "p50_response_time",
    "p95_response_time",
    "p99_response_time",
    "response_time",
    "error_rate",
    "throughput",
)


def _key(name: str, required: bool) -> Any:
    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is None and not required:
            return
        if value is None:
            raise ValueError(f"{name} is required (got None: is its environment variable set?)")
        if not isinstance(value, str) or not value.strip() or "\n" in value or "\r" in value:
            raise ValueError(f"{name} must be a non-empty single-line string")

    return check


def _site(value: str) -> str:
    return site_domain(value)


def _base_url(value: str | None) -> str | None:
    return None if value is None else check_url(value, "base_url").rstrip("/")


def _endpoint(base: str, path: str) -> str:
    """`path` at the end of `base`'s path, before its query (a relay's `?token=`): appended
    to the whole address it landed in the query, every event posted to the wrong path."""
    parts = urlsplit(base)
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + path, parts.query, ""))


def _tags(value: Sequence[str] | str | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(str(tag) for tag in value)


def _names(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(str(name) for name in value)


def _positive(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"{attribute.name} must be a number above 0, got {value!r}")


@attrs.frozen(kw_only=True, eq=False)
class DatadogWebhook(Webhook):
    """Sends events to Datadog's event stream and numbers to its metrics.

    `site` is any Datadog site name (`US1`, `US3`, `US5`, `EU`, `AP1`, `AP2`, `UK1`, `US1-FED`
    / `gov`, or a domain such as `datadoghq.eu`); `base_url` overrides it (a proxy, a test
    server). Metrics submitted with `send_metric` are buffered and sent in batches.

    >>> DatadogWebhook(api_key="k" * 32, site="EU").api_url
    'https://api.datadoghq.eu'
    """

    kind: ClassVar[str] = "datadog"

    api_key: str = secret_field(validator=_key("api_key", True))
    app_key: str | None = secret_field(default=None, validator=_key("app_key", False))
    site: str = attrs.field(default="datadoghq.com", converter=_site)
    base_url: str | None = attrs.field(default=None, converter=_base_url, repr=url_repr)
    service: str | None = None
    host: str | None = None
    tags: tuple[str, ...] = attrs.field(default=(), converter=_tags)
    source_type_name: str = "empathy"
    metric_prefix: str = "empathy"
    event_metrics: tuple[str, ...] = attrs.field(default=DEFAULT_EVENT_METRICS, converter=_names)
    metrics_batch_size: int = attrs.field(default=500, validator=_positive)
    # NaN or infinity would stop metrics from ever being flushed on time.
    metrics_flush_interval: float = attrs.field(
        default=10.0, validator=bounded(above=0, at_most=3600)
    )
    metrics_max_buffer: int = attrs.field(default=100_000, validator=_positive)

    @property
    def api_url(self) -> str:
        return self.base_url or api_base_url(self.site)

    @property
    def events_url(self) -> str:
        return _endpoint(self.api_url, "/api/v1/events")

    @property
    def url(self) -> str:
        """Where events go (`/api/v1/events`; metrics go to `series_url`), fit to show: what
        the reference's `on_failure` example logs as `webhook.url`. The keys travel in
        headers, never here."""
        return redact_url(self.events_url)

    @property
    def series_url(self) -> str:
        return _endpoint(self.api_url, "/api/v2/series")

    def auth_headers(self) -> dict[str, str]:
        headers = {"DD-API-KEY": self.api_key, "Accept": "application/json"}
        if self.app_key:
            headers["DD-APPLICATION-KEY"] = self.app_key
        return headers

    def send_metric(
        self,
        metric: str,
        value: float,
        tags: Iterable[str] | str | None = None,
        timestamp: float | None = None,
        metric_type: str | int = "gauge",
        *,
        interval: int | None = None,
        host: str | None = None,
    ) -> Queued:
        """Queue one metric point; no `await` needed (awaiting the result is harmless).

        Points go to `/api/v2/series` in batches of up to 500 KB and `metrics_batch_size`
        points: as soon as that many are waiting, every `metrics_flush_interval` seconds, and
        on the dispatcher's `drain()` and close. Safe from any thread. `timestamp` defaults
        to now (POSIX seconds; Datadog keeps points up to 1 h old and 10 min ahead: a point
        outside that when it is sent goes out stamped now with an `original_timestamp:` tag,
        counted as late or early); `metric_type` is `gauge`, `count`, `rate` or `unspecified`.
        Raises `ValueError` for an invalid name or value. The webhook's stats
        (`get_webhook_stats`: `plugin.datadog.points_sent`, `points_dropped`, `points_late`)
        count what was sent, dropped and late.

        Outside a dispatcher's life: a point given before any dispatcher serves the webhook
        is kept and sent once one starts. Once the dispatcher serving the webhook has closed,
        a point is refused: `RuntimeError` (nothing queued, like `emit` on a closed
        dispatcher) and a `datadog_metric_refused` error log; starting a new dispatcher with
        the webhook makes it accept points again. Points still buffered when the interpreter
        exits (no dispatcher started, or one never closed) are logged as a
        `datadog_metrics_unsent` error with their count.
        """
        state = _state(self)
        point = make_point(
            metric,
            value,
            tags,
            timestamp,
            metric_type,
            interval,
            host or self.host,
            state.now(),
        )
        state.add(point)
        return Queued()

    def metrics_stats(self) -> dict[str, Any]:
        """Deprecated: read `get_webhook_stats(name)` (`plugin.datadog.points_sent`, ...).

        Points buffered, sent, dropped (after retries) and late, batches sent and failed, and
        the last batch error (no secrets), of the webhook's state (its last one, once closed).
        """
        warnings.warn(
            "DatadogWebhook.metrics_stats() is deprecated: the figures are in "
            "get_webhook_stats(name) as plugin.datadog.points_sent, points_dropped, ...",
            DeprecationWarning,
            stacklevel=2,
        )
        state = state_for(self, make=False)
        return (state if isinstance(state, DatadogState) else DatadogState(self)).stats()


def _state(webhook: DatadogWebhook) -> DatadogState:
    # The latest state, even one closed since: `state_for` would make a fresh one after a
    # close, which no dispatcher would ever send (the next one makes its own); a closed
    # state refuses the point instead.
    state = state_for(webhook, make=False)
    if state is None:
        state = state_for(webhook)
    if not isinstance(state, DatadogState):
        # The process's plugin manager has no datadog plugin (EMPATHY_WEBHOOKS_LOAD_PLUGINS
        # leaves it out) and no dispatcher made the state with its own.
        raise RuntimeError(
            "the datadog plugin is not loaded, so nothing can send this webhook's metrics: "
            "load it, or start a dispatcher with this webhook first"
        )
    return state


@hookimpl
def webhook_types() -> dict[str, type[Webhook]]:
    return {"datadog": DatadogWebhook}


@hookimpl
def format_payload(webhook: DatadogWebhook, event: Event) -> OutgoingRequest:
    body = event_body(webhook, event)
    series = event_series(webhook, event, tags_for(webhook, event))
    # The series body rides in `extras` (plain JSON) for `deliver`; a dry run shows it too.
    extras: dict[str, Any] = {"event_id": event.event_id}
    if series:
        extras["series"] = {"series": series}
    return OutgoingRequest.json(
        webhook.events_url, body, headers=webhook.auth_headers(), extras=extras
    )


@hookimpl
def webhook_state(webhook: DatadogWebhook) -> DatadogState:
    return DatadogState(webhook)


@hookimpl
def webhook_stats(webhook: Webhook, state: Any) -> Mapping[str, Any] | None:
    return state.stats() if isinstance(state, DatadogState) else None


@hookimpl
def deliver(
    webhook: DatadogWebhook,
    request: OutgoingRequest,
    session: aiohttp.ClientSession,
    state: Any,
) -> Awaitable[Response] | None:
    if not isinstance(state, DatadogState):  # no state made (a plugin manager without us)
        state = DatadogState(webhook)
    return _deliver(webhook, request, session, state)


def _late_event(request: OutgoingRequest, now: float) -> OutgoingRequest | None:
    """The event request stamped `now` if Datadog would drop it as too old, its time kept in
    the text (first, so no truncation cuts it) and a tag; None when it is on time."""
    body = request.json_body()
    happened = body.get("date_happened") if isinstance(body, dict) else None
    if isinstance(happened, bool) or not isinstance(happened, int | float):
        return None
    if not is_late(happened, now, EVENT_MAX_AGE):
        return None
    tag = original_tag(happened)
    note = (
        f"Sent late: this happened at {tag.split(':', 1)[1]}, older than Datadog accepts "
        "for an event (18 hours), so it is stamped with the time it was sent."
    )
    text = str(body.get("text") or "")
    if text.startswith("%%%") and text.endswith("%%%"):
        inner = text.removeprefix("%%%").removesuffix("%%%").strip()
        body["text"] = wrap_text(f"{note}\n\n{inner}")
    else:
        body["text"] = truncate(f"{note}\n\n{text}".strip(), TEXT_LIMIT)
    body["date_happened"] = int(now)
    tags = body.get("tags") if isinstance(body.get("tags"), list) else []
    body["tags"] = clean_tags([*tags[:99], tag])
    return attrs.evolve(request, body=json_bytes(body))


def _late_series(payload: Mapping[str, Any], now: float) -> tuple[dict[str, Any], int, int]:
    """The event's gauges with every point Datadog would drop (too old, or too far ahead)
    stamped `now` and tagged with its time; and how many were late and early."""
    series = []
    late = early = 0
    for entry in payload.get("series", []):
        kept, moved = [], []
        for point in entry["points"]:
            old = is_late(point["timestamp"], now, METRIC_MAX_AGE)
            if not old and not is_early(point["timestamp"], now):
                kept.append(point)
                continue
            late, early = (late + 1, early) if old else (late, early + 1)
            tags = clean_tags([*entry.get("tags", [])[:99], original_tag(point["timestamp"])])
            moved.append({**entry, "points": [{**point, "timestamp": int(now)}], "tags": tags})
        if kept:
            series.append({**entry, "points": kept})
        series.extend(moved)
    return {"series": series}, late, early


async def _deliver(
    webhook: DatadogWebhook,
    request: OutgoingRequest,
    session: aiohttp.ClientSession,
    state: DatadogState,
) -> Response:
    """Post the event, then its gauges. Gauges overwrite by timestamp, so resending them is
    harmless; the event is not, so once accepted a retry skips it and sends only the gauges.
    Either, too old for Datadog by now (a retry after an outage, a replayed dead letter), is
    stamped with the time it is sent, its own time kept, and counted as late."""
    sender = Sender(webhook, session)
    now = state.now()
    event_id = str(request.extras.get("event_id"))
    answer: Response | None = None
    if not state.event_posted(event_id):
        late = _late_event(request, now)
        answer = await sender.send(late or request)
        if not 200 <= answer.status < 300:
            return answer
        if late is not None:
            state.events_late += 1
        state.note_accepted_errors(accepted_errors(answer), "event", event_id=event_id)
        if not request.extras.get("series"):
            return answer
        state.mark_posted(event_id)
    payload, late_points, early_points = _late_series(request.extras["series"], now)
    series = OutgoingRequest.json(webhook.series_url, payload, headers=webhook.auth_headers())
    metrics_answer = await sender.send(series)
    if 200 <= metrics_answer.status < 300:
        state.forget_posted(event_id)
        state.points_late += late_points
        state.points_early += early_points
        if answer is not None:
            # The delivery's answer is the event's: the gauges' errors would be lost there.
            state.note_accepted_errors(
                accepted_errors(metrics_answer), "event metrics", event_id=event_id
            )
        return answer or metrics_answer
    return metrics_answer.at_step("series")


def _errors(response: Response) -> str:
    body = response.json()
    if isinstance(body, dict) and isinstance(body.get("errors"), list) and body["errors"]:
        return "; ".join(str(error) for error in body["errors"])
    return response.excerpt(300)


#: How much of the errors Datadog listed in an accepted (2xx) answer is kept.
ACCEPTED_ERRORS_CHARS = 300


def accepted_errors(response: Response) -> str | None:
    """The errors Datadog listed in a 2xx answer (`{"errors": ["..."]}`: the intake accepted
    the payload but not all of it, the `IntakePayloadAccepted` schema's "non-fatal errors"),
    masked and cut; None when there are none (`{"errors": []}`, the usual answer)."""
    if not 200 <= response.status < 300:
        return None
    body = response.json()
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list) or not errors:
        return None
    text = redact_text("; ".join(" ".join(str(error).split()) for error in errors))
    return truncate(text, ACCEPTED_ERRORS_CHARS) or "errors listed without text"


def classify(webhook: Webhook, response: Response, what: str = "event") -> Verdict:
    """Datadog's answers: 2xx accepted; 408, 429 (honouring `X-RateLimit-Reset`) and 5xx
    retried; 400 / 403 / 413 and the rest final, with Datadog's `errors`."""
    status = response.status
    if 200 <= status < 300:
        details: dict[str, str] = {}
        body = response.json()
        event = body.get("event") if isinstance(body, dict) else None
        if isinstance(event, dict) and event.get("id") is not None:
            details["datadog_event_id"] = str(event["id"])
        # Accepted, but Datadog says some of it was not taken: kept where it can be seen
        # (the delivery's details; the state logs and counts it), never a silent success.
        errors = accepted_errors(response)
        if errors is not None:
            details["datadog_errors"] = errors
        return Verdict(outcome=Outcome.SUCCESS, details=details)
    if status == 429:
        retry_after = parse_retry_after(
            response.header("x-ratelimit-reset") or response.header("retry-after")
        )
        return Verdict(
            outcome=Outcome.RETRY,
            reason=f"{what}: rate limited by Datadog (HTTP 429)",
            retry_after=retry_after,
            pause_webhook=True,
        )
    if status == 408 or status >= 500 or status in webhook.retry_policy.retry_on_status:
        return Verdict(outcome=Outcome.RETRY, reason=f"{what}: HTTP {status} from Datadog")
    hint = " (check the API key and site)" if status == 403 else ""
    return Verdict(
        outcome=Outcome.FAIL, reason=f"{what} rejected (HTTP {status}){hint}: {_errors(response)}"
    )


@hookimpl
def classify_response(
    webhook: DatadogWebhook, request: OutgoingRequest, response: Response
) -> Verdict:
    if response.step == "series":
        return classify(webhook, response, what="event accepted, but its metrics")
    return classify(webhook, response)


@hookimpl
def flush(webhook: DatadogWebhook, state: Any) -> Awaitable[None] | None:
    if not isinstance(state, DatadogState):
        return None
    return state.flush()
