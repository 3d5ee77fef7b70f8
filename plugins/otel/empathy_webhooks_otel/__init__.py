"""OpenTelemetry for empathy-webhooks: a span per attempt, the emitter's trace context carried
to every attempt (across stores and processes) and on to the receiver, and delivery metrics.

Built on the core's hooks only (`delivery_context`, `before_attempt`, `after_attempt`,
`on_success`, `on_failure`, `dispatcher_started`, and `observing`, which leaves the attempt and
success hooks out while no SDK records), and on the OpenTelemetry *API* only: the
application installs and configures the SDK and its exporters. Without them every span and
instrument is a no-op and no header is added (the API propagates a context only when one is
valid).

Loaded through the entry point ``otel``, it uses the global tracer and meter providers. To
give it providers of its own, leave it out (``EMPATHY_WEBHOOKS_LOAD_PLUGINS``) and register
``OtelPlugin(tracer_provider=..., meter_provider=...)`` instead.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.environment_variables import (
    OTEL_PYTHON_METER_PROVIDER,
    OTEL_PYTHON_TRACER_PROVIDER,
)
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.metrics import _internal as metrics_api
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from empathy_webhooks_core.plugin import (
    DeliveryError,
    DeliveryResult,
    Event,
    Outcome,
    OutgoingRequest,
    Response,
    Verdict,
    Webhook,
    exported_names,
    hookimpl,
    redact_text,
    redact_url,
)

if TYPE_CHECKING:
    from empathy_webhooks_core.plugin import WebhookDispatcher

__all__ = [
    "ATTEMPT_DURATION",
    "DELIVERIES",
    "QUEUE_DEPTH",
    "OtelPlugin",
    "error_type",
]

__version__ = "0.1.0"
SCOPE = "empathy_webhooks_otel"

#: Deliveries that reached a final outcome, by `empathy.webhook` and `empathy.outcome`
#: (`delivered` or `failed`).
DELIVERIES = "empathy.webhooks.deliveries"
#: Time from request to answer (or error) of each attempt, in seconds, by `empathy.webhook`
#: and `empathy.outcome` (the verdict: success, retry, fail, gone, or cancelled).
ATTEMPT_DURATION = "empathy.webhooks.attempt.duration"
#: Deliveries waiting now (queued or waiting for a retry), by `empathy.webhook`.
QUEUE_DEPTH = "empathy.webhooks.queue.depth"

#: Histogram bounds in seconds: the SDK's default ones are made for milliseconds.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# W3C Trace Context only (traceparent, tracestate), never the global propagator's baggage:
# baggage may hold what the application means for itself, not for a third party's endpoint.
_PROPAGATOR = TraceContextTextMapPropagator()
#: The meter providers that record nothing: the no-op one, and the API's stand-in until an
#: SDK is set. The stand-in's class is private to opentelemetry-api: should a release rename
#: it, metrics go through whatever provider there is (as before this check), never an error.
_UNREAL_METER_PROVIDERS: tuple[type, ...] = (
    metrics.NoOpMeterProvider,
    *[t for t in [getattr(metrics_api, "_ProxyMeterProvider", None)] if isinstance(t, type)],
)
#: Shown (secret-free) URLs, and webhook names, remembered at most; past it the memory starts
#: over.
_URLS_KEPT = 1024


def error_type(
    error: BaseException | None, verdict: Verdict | None, response: Response | None
) -> str | None:
    """The semantic conventions' ``error.type`` of an attempt, or None when it succeeded:
    the exception's qualified class name, else the status code of an HTTP error answer, else
    the verdict's outcome (a 200 the plugin judged a failure), or ``cancelled``."""
    if error is not None:
        cls = type(error)
        original = getattr(error, "original_type", None)  # a RedactedError stands for it
        if original:
            return str(original)
        if cls.__module__ == "builtins":
            return cls.__qualname__
        return f"{cls.__module__}.{cls.__qualname__}"
    if verdict is None:
        return "cancelled"
    if verdict.outcome is Outcome.SUCCESS:
        return None
    if response is not None and response.status >= 400:
        return str(response.status)
    return verdict.outcome.value


class OtelPlugin:
    """The plugin: one instance per plugin manager. `tracer_provider` and `meter_provider`
    default to the global ones (looked up when used, so an SDK configured later counts)."""

    def __init__(self, *, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        self._tracer = trace.get_tracer(SCOPE, __version__, tracer_provider=tracer_provider)
        self._tracer_is_real = tracer_provider is not None
        # A provider named by the environment is made by the API when first asked for.
        self._provider_from_env = OTEL_PYTHON_TRACER_PROVIDER in os.environ
        meter = metrics.get_meter(SCOPE, __version__, meter_provider=meter_provider)
        self._meter_is_real = meter_provider is not None
        self._meter_from_env = OTEL_PYTHON_METER_PROVIDER in os.environ
        self._from_env = self._provider_from_env or self._meter_from_env
        self._deliveries = meter.create_counter(
            DELIVERIES, unit="{delivery}", description="Deliveries that reached a final outcome."
        )
        self._duration = meter.create_histogram(
            ATTEMPT_DURATION,
            unit="s",
            description="Duration of each delivery attempt.",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
        )
        meter.create_observable_gauge(
            QUEUE_DEPTH,
            callbacks=[self._queue_depth],
            unit="{delivery}",
            description="Deliveries waiting: queued or waiting for a retry.",
        )
        # Open spans between before_attempt and after_attempt (the core pairs them, always).
        self._spans: dict[tuple[str, int], Span] = {}
        self._dispatchers: weakref.WeakSet[WebhookDispatcher] = weakref.WeakSet()
        self._urls: dict[tuple[str, bool], tuple[str, str, int]] = {}
        self._names: dict[str, str] = {}

    # Optional: a core older than the `observing` hook loads the plugin and calls every hook.
    @hookimpl(optionalhook=True)
    def observing(self) -> bool:
        # Asked by the core before each attempt (for it and its success): with no SDK (spans no-ops,
        # instruments proxies that record nothing) the attempt and success hooks are left
        # out. Asked every time, so an SDK set later counts from the next attempt on; an
        # emitter's context still travels (the core watches every delivery that has one).
        if self._tracer_is_real or self._meter_is_real:
            return True
        if (
            getattr(trace, "_TRACER_PROVIDER", self) is None
            and getattr(metrics_api, "_METER_PROVIDER", self) is None
            and not self._from_env
        ):
            return False  # neither provider set yet: what `_tracing` and `_metering` say
        return self._tracing() or self._metering()

    # -- traces -------------------------------------------------------------------------------

    @hookimpl
    def delivery_context(self, webhook: Webhook, event: Event) -> Mapping[str, str] | None:
        # The emitter's current span, as W3C headers: strings any store keeps as they are.
        if not otel_context.get_current():
            # Nothing at all is current (no span, so no header): asked on every emit, one
            # lookup rather than the propagator's walk to an invalid span.
            return None
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier)
        return carrier or None

    @hookimpl
    def before_attempt(
        self,
        webhook: Webhook,
        event: Event,
        delivery_id: str,
        attempt: int,
        request: OutgoingRequest,
        context: Mapping[str, str],
    ) -> Mapping[str, str] | None:
        if not context and not self._tracing():
            # No SDK and no emitter's context to pass on: the span would be an invalid no-op
            # and no header would be added, so none is started. Asked on every attempt (one
            # lookup), so an SDK configured later is used from then on.
            return None
        # The emit's context as the parent, or none: never the worker task's own context,
        # which holds whatever span was current when the dispatcher started.
        parent = _PROPAGATOR.extract(context) if context else Context()
        name = self._shown_name(webhook.name)
        span = self._tracer.start_span(name, context=parent, kind=SpanKind.CLIENT)
        if span.is_recording():
            # Worked out only for a span that is kept: with no SDK (or not sampled) the
            # attempt pays for a no-op span and nothing more.
            url, host, port = self._shown_url(webhook, request)
            span.set_attributes(
                {
                    "http.request.method": request.method,
                    "url.full": url,
                    "server.address": host,
                    "server.port": port,
                    "empathy.webhook": name,
                    "empathy.webhook.type": webhook.kind,
                    "empathy.event.type": event.event_type,
                    "empathy.event.id": event.event_id,
                    "empathy.delivery.id": delivery_id,
                    "empathy.attempt": attempt,
                }
            )
            self._spans[(delivery_id, attempt)] = span
        elif not span.get_span_context().is_valid:
            return None
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
        return carrier or None

    def _tracing(self) -> bool:
        """Whether spans can be real: a tracer provider given to this plugin, or a global one
        the application set (until then the API hands out a proxy whose spans are no-ops)."""
        if self._tracer_is_real:
            return True
        if getattr(trace, "_TRACER_PROVIDER", self) is None and not self._provider_from_env:
            # None set yet (the API's own global: `get_tracer_provider` would read the
            # environment on every attempt to tell us so).
            return False
        provider = trace.get_tracer_provider()
        if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
            return False
        # The global provider is set once for the process: from now on it is real.
        self._tracer_is_real = True
        return True

    def _metering(self) -> bool:
        """Whether metrics can be real: a meter provider given to this plugin, or a global one
        the application set (until then the API's instruments are proxies that record
        nothing, and each attempt's measurement would be built for nothing)."""
        if self._meter_is_real:
            return True
        if getattr(metrics_api, "_METER_PROVIDER", self) is None and not self._meter_from_env:
            return False
        provider = metrics.get_meter_provider()
        if isinstance(provider, _UNREAL_METER_PROVIDERS):
            return False
        # The global provider is set once for the process (the API's proxies now forward
        # to it): from now on it is real.
        self._meter_is_real = True
        return True

    def _shown_name(self, name: str) -> str:
        """The webhook's name as exported, as the Prometheus collector shows it: the user
        chose it, and one written as the webhook's Slack URL must not publish the URL's
        secret path; two names masked alike get ` #1`, ` #2`, or their series would merge.
        Worked out for every webhook of the dispatchers seen (and the names asked about
        before: a fallback's), again when one is new."""
        shown = self._names.get(name)
        if shown is None:
            names = {name, *self._names} if len(self._names) < _URLS_KEPT else {name}
            for dispatcher in list(self._dispatchers):
                names.update(dispatcher.webhook_names())
            # Replaced whole: the queue-depth callback may read it from the SDK's thread.
            self._names = exported_names(names)
            shown = self._names[name]
        return shown

    def _shown_url(self, webhook: Webhook, request: OutgoingRequest) -> tuple[str, str, int]:
        """The URL without its secrets (userinfo, query values, a path that is a credential:
        the webhook's class says `secret_url`), its host and port; remembered, as every
        attempt to a webhook has the same URL."""
        key = (request.url, type(webhook).secret_url)
        shown = self._urls.get(key)
        if shown is None:
            if len(self._urls) >= _URLS_KEPT:
                self._urls.clear()
            url = redact_text(redact_url(key[0], secret_path=key[1]))
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
            shown = self._urls[key] = (url, parts.hostname or "", port)
        return shown

    @hookimpl
    def after_attempt(
        self,
        webhook: Webhook,
        event: Event,
        delivery_id: str,
        attempt: int,
        request: OutgoingRequest,
        context: Mapping[str, str],
        verdict: Verdict | None,
        response: Response | None,
        error: BaseException | None,
        duration_s: float,
    ) -> None:
        # Every argument of the spec, in its order, though three go unused: the core then
        # calls this directly rather than through an adapter that picks them (every attempt).
        # Each part only when it can be kept: with no SDK an attempt costs two checks.
        span = self._spans.pop((delivery_id, attempt), None) if self._spans else None
        outcome = verdict.outcome.value if verdict is not None else "cancelled"
        if self._meter_is_real or self._metering():
            # In the attempt span's context, so an exemplar names this attempt: the worker's
            # own context holds no span of this delivery.
            self._duration.record(
                duration_s,
                {"empathy.webhook": self._shown_name(webhook.name), "empathy.outcome": outcome},
                context=trace.set_span_in_context(span) if span is not None else None,
            )
        if span is None:
            return
        span.set_attribute("empathy.outcome", outcome)
        if response is not None:
            span.set_attribute("http.response.status_code", response.status)
        failure = error_type(error, verdict, response)
        if failure is not None:
            span.set_attribute("error.type", failure)
            if error is not None:
                # A redacted copy (the core's): masked text, no traceback.
                span.record_exception(error)
            reason = verdict.reason if verdict is not None else "the attempt was cancelled"
            span.set_status(Status(StatusCode.ERROR, redact_text(reason or failure)))
        span.end()

    # -- metrics ------------------------------------------------------------------------------

    @hookimpl
    def on_success(self, webhook: Webhook, event: Event, result: DeliveryResult) -> None:
        # The spec's arguments in order (`event` unused): called directly, after every delivery.
        if self._meter_is_real or self._metering():
            self._deliveries.add(
                1,
                {"empathy.webhook": self._shown_name(webhook.name), "empathy.outcome": "delivered"},
            )

    @hookimpl
    def on_failure(self, webhook: Webhook, error: DeliveryError) -> None:
        if self._meter_is_real or self._metering():
            self._deliveries.add(
                1, {"empathy.webhook": self._shown_name(webhook.name), "empathy.outcome": "failed"}
            )

    @hookimpl
    def dispatcher_started(self, dispatcher: WebhookDispatcher) -> None:
        self._dispatchers.add(dispatcher)
        self._names = {}  # its names may mask like another dispatcher's

    def _queue_depth(self, options: CallbackOptions) -> Iterable[Observation]:
        # Called by the SDK's reader, maybe from its own thread: reads counters only.
        depths: dict[str, int] = {}
        for dispatcher in list(self._dispatchers):
            for name in dispatcher.webhook_names():
                state = dispatcher.lane_state(name)
                if state is not None:
                    depths[name] = depths.get(name, 0) + state.queued
        return [
            Observation(depth, {"empathy.webhook": self._shown_name(name)})
            for name, depth in depths.items()
        ]


# The entry point registers this module: its hooks are those of one instance over the
# global providers, made when the plugin is loaded (never when the core is imported).
_plugin = OtelPlugin()
delivery_context = _plugin.delivery_context
before_attempt = _plugin.before_attempt
after_attempt = _plugin.after_attempt
on_success = _plugin.on_success
on_failure = _plugin.on_failure
dispatcher_started = _plugin.dispatcher_started
observing = _plugin.observing
