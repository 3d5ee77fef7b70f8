"""Deliver events through a real dispatcher for a command, and learn each outcome."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from ..dispatcher import WebhookDispatcher
from ..events import Event
from ..plugins import PluginManager
from ..stores import StoreOpenError
from ..webhooks import Webhook
from ._common import CliError, Outcome, Outcomes, Output
from ._store import queue_only


def why_skipped(webhook: Webhook, event: Event) -> str:
    from .._routing import EventMatcher

    if not EventMatcher(webhook.events)(event.event_type):
        return f"not subscribed (events: {', '.join(webhook.events)})"
    return f"filtered out ({webhook.filter})"


@contextlib.contextmanager
def _progress(out: Output, enabled: bool) -> Iterator[Any]:
    if not enabled or not out.rich:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=out.console
    ) as progress:
        yield progress


async def deliver(
    webhooks: Sequence[Webhook],
    events: Sequence[Event],
    *,
    pm: PluginManager,
    out: Output,
    store: Any = None,
    wait: bool = True,
    timeout: float | None = None,
    progress: bool = False,
    replay: Sequence[str] = (),
) -> list[Outcome]:
    """Emit `events` (or replay the dead letters `replay`) and return one outcome per event
    and webhook: delivered, failed, skipped, pending (timed out) or queued (not waited for)."""
    if not wait:
        store = queue_only(store, pm)
    outcomes = Outcomes()
    outcomes.register(pm)
    dispatcher = WebhookDispatcher(webhooks=list(webhooks), store=store, plugin_manager=pm)
    routed: dict[str, list[str]] = {}
    remote = False
    ordered: list[Event] = list(events)
    try:
        try:
            await dispatcher.start()
        except StoreOpenError as exc:  # it names the store and what is wrong
            raise CliError(f"error: {exc}") from None
        except (OSError, ValueError, TypeError) as exc:
            raise CliError(f"error: cannot open the store: {exc}") from None
        remote = dispatcher.store.remote_workers
        with _progress(out, progress) as bar:
            task = bar.add_task("delivering", total=0) if bar is not None else None
            if bar is not None:
                outcomes.on_change = lambda: bar.update(task, completed=len(outcomes.results))
            if replay:
                letters = {d.dead_letter_id: d for d in await dispatcher.dead_letters()}
                for letter_id in replay:
                    letter = letters.get(letter_id)
                    if letter is None:
                        raise CliError(f"error: no dead letter {letter_id!r} in the store")
                    if not letter.replayable:
                        raise CliError(
                            f"error: dead letter {letter_id!r} holds an event that could not "
                            "be decoded, so it cannot be replayed; its stored text is in its "
                            "error.stored_event (dead-letters list --json)"
                        )
                    if letter.webhook_name not in dispatcher.webhook_names():
                        raise CliError(
                            f"error: dead letter {letter_id!r} is for webhook "
                            f"{letter.webhook_name!r}, which the configuration no longer has"
                        )
                    event = await dispatcher.replay_dead_letter(letter_id)
                    if event.event_id not in routed:
                        ordered.append(event)
                    routed.setdefault(event.event_id, []).append(letter.webhook_name)
            for event in events:
                routed[event.event_id] = await dispatcher.emit_event(event)
                if bar is not None:
                    bar.update(task, total=sum(len(n) for n in routed.values()))
            outcomes.event_ids = {e.event_id for e in ordered}
            if wait and not remote:
                try:
                    await dispatcher.drain(timeout)
                except TimeoutError:
                    pass  # reported below as pending
    finally:
        await dispatcher.close(drain=False)
        outcomes.unregister(pm)
    replayed = {e.event_id for e in ordered} - {e.event_id for e in events}
    results: list[Outcome] = []
    for event in ordered:
        names = routed.get(event.event_id, [])
        for webhook in webhooks:
            found = outcomes.results.get((event.event_id, webhook.name))
            if found is not None:
                results.append(found)
            elif webhook.name in names:
                if wait and not remote:
                    state, reason = "pending", "still pending when the wait ended"
                else:
                    state, reason = "queued", "queued in the store for a worker"
                results.append(
                    Outcome(webhook.name, event.event_id, event.event_type, state, reason=reason)
                )
            elif event.event_id not in replayed:
                results.append(
                    Outcome(
                        webhook.name,
                        event.event_id,
                        event.event_type,
                        "skipped",
                        reason=why_skipped(webhook, event),
                    )
                )
    return results
