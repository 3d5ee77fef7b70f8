"""Hook specifications: what a plugin may implement. The docstrings are the plugin author's manual.

A plugin is a module (or object) whose functions carry ``@hookimpl`` from
``empathy_webhooks_core`` and whose distribution declares an entry point in the group
``empathy_webhooks``::

    [project.entry-points.empathy_webhooks]
    ntfy = "empathy_webhooks_ntfy"

Hooks are called synchronously (pluggy has no async support). Where a hook needs I/O it returns
an awaitable and the core awaits it; see `deliver`. An `async def` implementation of any hook
but `flush` is refused when the plugin manager is built. A hook that raises, or returns the
wrong type, never stops the pipeline: the core logs it and treats the delivery as failed (or
skips that plugin's listener). An installed plugin that fails to import, implements a function
marked ``@hookimpl`` that is not a hook (a misspelt name), or whose `webhook_types` raises or
answers something else than a mapping of classes, is skipped at start-up and reported with its
name (``empathy-webhooks plugins``); the other plugins load.

Per-type hooks (`format_payload`, `deliver`, `classify_response`, `flush`) are routed by
owner: the core calls the implementation of the plugin whose `webhook_types` registered the
webhook's class (a subclass goes to the owner of its nearest registered ancestor; then to the
owners of further registered ancestors), then the core's default (the HTTP `deliver` and
`classify_response`); the first answer other than None wins. No other plugin is asked, so an
implementation needs no ``isinstance`` guard: it only ever sees its own webhooks. The route is
resolved once per webhook class. A plugin that implements a per-type hook but registers no
webhook type is never called for it (a warning at start-up says so). The other hooks are
broadcast: every plugin's implementation is called.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import aiohttp

    from .dispatcher import WebhookDispatcher
    from .events import Event
    from .webhooks import Webhook
    from .wire import DeliveryError, DeliveryResult, OutgoingRequest, Response, Verdict

hookspec = pluggy.HookspecMarker("empathy_webhooks")


@hookspec
def webhook_types() -> Mapping[str, type[Webhook]] | None:
    """Name the webhook classes this plugin provides.

    Called once when the plugin manager is built. The names are what configuration files use
    (``type = "slack"``) and what ``empathy-webhooks plugins`` lists; by convention the name
    equals the plugin's entry-point name and the class's ``kind``.

    :return: a mapping of type name to a `Webhook` subclass, or
        None. The plugin that registers a class owns it: the core calls that plugin's
        per-type hooks for its webhooks (and for subclasses no other plugin registers). Two
        plugins claiming the same name, or the same class, is an error at start-up naming
        both.
    """


@hookspec(firstresult=True)
def webhook_for_url(url: str, options: Mapping[str, Any]) -> Webhook | None:
    """Claim a generic webhook's URL that names your service.

    Called once per webhook object when a plain `CustomWebhook` or `WebhookConfig` (not
    ``raw=True``; in a config file, a table with a ``url`` and no ``type``) joins a
    dispatcher or is rendered: the reference's Quick Start points ``WebhookConfig(url=
    "https://hooks.slack.com/...")`` at Slack and expects a Slack message. The user's object
    keeps working (``dispatcher.render(it, event)``); what is sent is your webhook's request.
    When no plugin claims a URL that ``service_for_url`` knows, the core sends the generic
    envelope and logs one warning naming the plugin to install.

    :param url: the webhook's URL, as the user gave it (a credential for most chat
        services: never log it).
    :param options: keyword arguments for your webhook class: every setting all webhooks
        share (``name``, ``events``, ``filter``, ``retry_policy``, ``rate_limit``,
        ``templates``, ...), taken from the user's webhook. Keep them all, the name first
        (statistics, dead letters and fallbacks refer to it).
    :return: your webhook built from `url` and `options` (``SlackWebhook(webhook_url=url,
        **options)``), or None when the URL is not your service's
        (``empathy_webhooks_core.service_for_url(url)`` recognises the first-party
        services). First non-None result wins. Raise ``ValueError`` saying what is missing
        when the URL is yours but cannot be used as given (a PagerDuty URL carries no
        routing key). Any other exception is your bug: it is logged with your plugin's name
        (the URL masked) and your plugin is passed over for that URL.
    """


@hookspec(firstresult=True)
def format_payload(webhook: Webhook, event: Event) -> OutgoingRequest | None:
    """Turn an event into the request a webhook sends.

    Called once per delivery, before the first attempt; every retry sends the same request
    (re-signed). Must be synchronous, pure and quick: no I/O, no clock reads beyond the event's
    own timestamp. That makes dry runs (``dispatcher.render``) free and output testable.
    Per-type: only the plugin that registered the webhook's type is asked (see above).

    :param webhook: the webhook the event is routed to: always an instance of a class your
        plugin registered (or of a subclass of one), never another plugin's.
    :param event: the frozen `Event`. Its ``data`` and ``metadata`` are your own copy: a
        change you make to them shows in your request only, never in another webhook's.
    :return: an `OutgoingRequest` with the exact body bytes (None hands the webhook to the
        owner of its next registered ancestor class, if any). Honour
        ``webhook.template_for(event)`` so users can override the message without subclassing.
        Respect every size limit of your service by truncating, never by producing a request
        the service rejects.
    """


@hookspec(firstresult=True)
def deliver(
    webhook: Webhook, request: OutgoingRequest, session: aiohttp.ClientSession, state: Any
) -> Awaitable[Response] | None:
    """Send one attempt of a request and return the service's answer.

    Per-type: the core asks the plugin that registered the webhook's type, then falls back to
    its own HTTP delivery, so an HTTP plugin usually does not implement it. Implement it for a
    non-HTTP target (email), or for a target that needs several calls per delivery (search
    before create).

    pluggy cannot await: an ``async def`` implementation is refused when the plugin manager is
    built. Write a plain function that returns an awaitable (``return _send(...)``), or None
    to let the core's HTTP delivery send this request (a plugin that sends only some requests
    itself).

    :param webhook: one of your plugin's webhooks, already signed-for and rate-limited by the
        core.
    :param request: what ``format_payload`` returned, with signature headers added.
    :param session: the dispatcher's shared ``aiohttp.ClientSession`` (pooled connections,
        redirects off). Use it rather than opening your own.
    :param state: what your `webhook_state` made for this webhook (None if you keep none):
        where a delivery reads and records what outlives it (what was created, what is owed).
        Leave the parameter out if you do not need it.
    :return: an awaitable resolving to a `Response`, or None for the core's HTTP delivery.
        Raise ``ConnectionError``, ``TimeoutError`` or an ``aiohttp.ClientError`` for transport
        failures: those are retried. Any other exception is a final failure.
    """


@hookspec(firstresult=True)
def classify_response(
    webhook: Webhook, request: OutgoingRequest, response: Response
) -> Verdict | None:
    """Decide what an answer means: delivered, retry, final failure, or endpoint gone.

    Per-type: the core asks the plugin that registered the webhook's type, then falls back to
    its default: 2xx delivered; a 429, or a 503 with ``Retry-After``, a
    rate limit whatever ``retry_on_status`` says (the whole webhook pauses for the service's
    wait); a status in the webhook's ``retry_policy.retry_on_status`` retried; 410 gone;
    anything else (3xx included) a final failure.
    Implement it when your service speaks otherwise: Slack's plain-text errors, Discord's JSON
    ``retry_after``, GitHub's 403 that is really a rate limit.

    :param webhook: one of your plugin's webhooks, the one the attempt was made for (its
        ``retry_policy`` says which statuses are worth another attempt).
    :param request: the request as sent (the exact body, the signature headers, the
        ``extras`` your ``format_payload`` put there to read back now).
    :param response: the service's answer: status, lower-case headers, at most 64 KiB of
        body, the time it took, and (from a multi-step ``deliver``) ``step`` and ``details``:
        which call gave it and what it learnt.
    :return: a `Verdict`, or None to leave this answer to the core's default
        (``default_verdict``; ``HttpAnswers`` in ``empathy_webhooks_core.plugin`` is the same
        reading, with the service named in each reason, for a plugin to extend).
    """


@hookspec
def on_success(webhook: Webhook, event: Event, result: DeliveryResult) -> None:
    """Told after a delivery succeeded. Every plugin's implementation is called; one that
    raises is logged and does not affect the others. Do not block: schedule slow work.

    :param webhook: the webhook that delivered.
    :param event: the event it delivered.
    :param result: a `DeliveryResult`: the final status, the number of attempts, the time
        the last one took, and the ``details`` of the plugin's verdict (a created ticket's
        key).
    """


@hookspec
def on_failure(webhook: Webhook, event: Event, error: DeliveryError) -> None:
    """Told after a delivery finally failed (its retries exhausted, or a final answer).

    Called after the webhook's own ``on_failure`` callback, for every plugin. ``error`` is a
    `DeliveryError`: status, body excerpt, attempts and reason (masked, at most 500
    characters), and ``last_exception``, a redacted copy of the last exception (its type, its
    masked text, no traceback), never the original. The delivery is also kept as a dead letter.
    One implementation raising is logged and does not stop the others.

    :param webhook: the webhook that failed to deliver.
    :param event: the event it failed to deliver.
    :param error: the `DeliveryError` described above.
    """


@hookspec
def store_backends() -> Mapping[str, Any] | None:
    """Name the delivery stores this plugin provides, by URL scheme.

    :return: a mapping of scheme (``"redis"``) to a factory called with the whole store URL
        (``"redis://127.0.0.1:6379/0"``) that returns a
        `DeliveryStore`. Or None.
    """


@hookspec
def dispatcher_started(dispatcher: WebhookDispatcher) -> None:
    """Told when a dispatcher has started (its session open, its workers running). A plugin
    whose webhooks do background work (batched metrics) can keep the dispatcher to submit it.

    :param dispatcher: the `WebhookDispatcher` that has just started.
    """


@hookspec(firstresult=True)
def flush(webhook: Webhook, state: Any, dispatcher: WebhookDispatcher) -> Awaitable[None] | None:
    """Send whatever the webhook has buffered (metrics, digests).

    Called for each webhook when the dispatcher drains and before it closes (before the
    webhook's state is closed). Per-type, like `deliver`: only the plugin that registered the
    webhook's type is asked (there is no core default). ``async def`` is allowed here.

    :param webhook: one of your plugin's webhooks (never another plugin's).
    :param state: the webhook's state (what your `webhook_state` made; None if it keeps
        none): the buffer to send.
    :param dispatcher: the `WebhookDispatcher` draining or closing. Kept for plugins written
        before `state`; new plugins get what they need from the state's `StateContext`.
    :return: None when there is nothing to flush, else an awaitable the core awaits.
    """


@hookspec(firstresult=True)
def webhook_state(webhook: Webhook) -> Any:
    """Make the state your plugin keeps for one of your webhooks between deliveries: a buffer,
    what it created, what it looked up. Never keep such things on the (frozen) webhook or in
    module globals: the core keeps this object, one per webhook, and hands it to `deliver`,
    `flush` and `webhook_stats`; plugin code elsewhere gets it with
    ``state_for(webhook)``.

    Called once per webhook: when a dispatcher starts serving it, or earlier when plugin code
    asks for it (``state_for``: points queued before any dispatcher started). Must be quick,
    synchronous and free of I/O. The object may define ``start(context)``, called in the
    dispatcher's loop with a `StateContext` (the webhook's `Sender`, the dispatcher's clock,
    and a key-value ``memory`` that is shared by every worker when the store is), and
    ``close()`` (may be async), called when the last dispatcher serving the webhook stops,
    after the final `flush`.

    Per-type, like `deliver`: only the plugin that registered the webhook's type is asked.

    :param webhook: one of your plugin's webhooks (never another plugin's).
    :return: your state object for it, or None when it needs none.
    """


@hookspec
def webhook_stats(webhook: Webhook, state: Any) -> Mapping[str, int | float | str | None] | None:
    """Add your own figures to a webhook's stats (``get_webhook_stats``, the monitor, the
    Prometheus collector).

    Called for every plugin whenever stats are read, so it must be quick and must not block.
    Your keys appear namespaced as ``plugin.<plugin name>.<key>`` (the plugin name is its
    entry-point name, e.g. ``plugin.datadog.points_sent``). Figures of one state shared by two
    dispatchers are counted once; those of two states with the webhook's name are summed.

    Numbers are also exported to Prometheus with a ``webhook`` label. Say which are counts:
    a figure that only grows (points sent, batches failed) is returned as ``Count(n)`` (from
    ``empathy_webhooks_core.plugin``; an ``int`` everywhere else) and exported as a counter,
    ``<prefix>_plugin_<plugin name>_<key>_total``, so ``rate()`` and ``increase()`` read it
    across restarts. Any other number is a level now (points buffered) and exported as a
    gauge, ``<prefix>_plugin_<plugin name>_<key>``. Keep a figure's kind from one call to
    the next: a family is exported with the kind of its first figure.

    :param webhook: the webhook whose stats are read.
    :param state: its state (what its plugin's `webhook_state` made; None if it keeps none).
    :return: a mapping of figure names to numbers (``Count(n)`` for a count), or a short text
        such as a last error (shown by ``get_webhook_stats`` only), or None when you have
        nothing to add.
    """


@hookspec
def delivery_context(webhook: Webhook, event: Event) -> Mapping[str, str] | None:
    """Capture what a delivery should carry from the code that emitted it (a trace context).

    Called during ``emit``, in the emitter's own task (its context variables, its current
    span), once for each delivery being queued, before the delivery is stored. The mappings
    of every plugin are merged into ``Delivery.context``, which every store keeps with the
    delivery and gives back unchanged to the worker that makes the attempts, in this process
    or another one, after a restart too; `before_attempt` and `after_attempt` receive it.
    Keys are plain strings shared by every plugin: use a name of your own, or a standard one
    (``traceparent``). Keep it small: it is stored with every delivery.

    When no plugin implements it, emit does nothing more than before. A fallback delivery
    carries the context of the delivery that failed.

    :param webhook: the webhook the delivery is for.
    :param event: the event being emitted.
    :return: a mapping of string keys to string values, or None for nothing to carry.
    """


@hookspec
def before_attempt(
    webhook: Webhook,
    event: Event,
    delivery_id: str,
    attempt: int,
    request: OutgoingRequest,
    context: Mapping[str, str],
) -> Mapping[str, str] | None:
    """Told just before an attempt's request goes to ``deliver``; may add headers to it.

    Called for every attempt that has a request (rendered, signed), in the worker's task.
    Every plugin's implementation is called; one that raises is logged and the attempt goes
    on without its headers. Must be synchronous and quick: it is on every attempt's path.

    The headers returned are added to this attempt's request after signing. Signatures cover
    the body, the event id and the timestamp, never the headers, so they stay valid. A header
    never replaces one the request already has (the webhook's own, a signature), and none
    is added at all to a webhook whose class says ``rejects_unknown_headers = True``, or
    that is configured with ``plugin_headers = false``.

    Every `before_attempt` is followed by one `after_attempt` with the same `delivery_id` and
    `attempt`, whatever happens (the attempt cancelled included): state kept between the
    two (an open span) is always released.

    :param webhook: the webhook the attempt is for.
    :param event: the event being delivered.
    :param delivery_id: the delivery's id, the same on every attempt and in every process.
    :param attempt: this attempt's number, 1 for the first.
    :param request: the signed request about to be sent.
    :param context: the delivery's ``context``, as `delivery_context` captured it at emit
        (empty when nothing was captured). Read-only.
    :return: headers to add to this attempt's request, or None.
    """


@hookspec
def after_attempt(
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
    """Told when an attempt that `before_attempt` announced has ended, whatever its outcome.

    Called before the core acts on the outcome (schedules the retry, records the success or
    the dead letter). Every plugin's implementation is called; one that raises is logged and
    does not affect the others or the delivery. Must be synchronous and quick.

    :param webhook: the webhook the attempt was for.
    :param event: the event being delivered.
    :param delivery_id: the delivery's id, as `before_attempt` was given.
    :param attempt: the attempt's number, as `before_attempt` was given.
    :param request: the request as sent, the headers `before_attempt` added included.
    :param context: the delivery's ``context`` (see `delivery_context`).
    :param verdict: how the attempt went (its ``outcome``: success, retry, fail or gone, and
        its masked ``reason``); None when the attempt was cancelled before it ended (the
        dispatcher stopping).
    :param response: the service's answer, or None when none came (a transport error, a
        timeout, a cancelled attempt).
    :param error: the exception that ended the attempt, or None. A redacted copy (its type,
        its masked text, no traceback), never the original, whose text may hold a URL with
        its credentials.
    :param duration_s: the time from `before_attempt` to the end of the attempt, in seconds.
    """


@hookspec
def observing() -> bool | None:
    """Say whether your observing hooks have anything to do right now; while they have not,
    the core leaves them out, so watching deliveries costs nothing while nothing records.

    For a plugin whose `before_attempt`, `after_attempt` and `on_success` only record what
    something else may keep (an OpenTelemetry plugin before the application sets its SDK, a
    metrics client not configured yet): return False while nothing would be kept, True (or
    None) once it would. Without this hook, those hooks of yours are always called.

    Called, for each plugin that implements it, once before each attempt. Your answer holds
    for that attempt (a `before_attempt` you were given is always followed by its
    `after_attempt`) and, if it succeeds, for telling its success (`on_success`). It applies
    to your own hooks only. It is asked every time, never remembered, so answering True from
    the next attempt on is enough for nothing to be missed once something records (an SDK set
    while the dispatcher runs). Must be synchronous and quick: a couple of attribute reads, no
    I/O, no lock. One that raises is logged and taken as True.

    Not covered: the attempts of a delivery that carries a context (`delivery_context`
    captured one at emit) are watched whatever you answer, so the emitter's context always
    travels with them; `delivery_context`, `on_failure` and the other hooks are always
    called.

    :return: False when your observing hooks have nothing to do now; True or None otherwise.
    """
