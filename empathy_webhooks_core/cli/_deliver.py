"""Deliver events through a real dispatcher for a command, and learn each outcome."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from ..dispatcher import WebhookDispatcher
from ..events import Event
from ..history import MAX_PAGE, DeliveryRecord, KeepsHistory
from ..plugins import PluginManager
from ..stores import DeadLetter, StoreOpenError
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
    replay: Sequence[DeadLetter] = (),
) -> list[Outcome]:
    """Emit `events` (or replay the dead letters `replay`, each for one of `webhooks`) and
    return one outcome per event and webhook: delivered, failed, skipped, pending (timed out)
    or queued (not waited for).

    When other processes' workers make the store's deliveries (Redis), the wait follows each
    delivery's record in the store's history until it is delivered or failed: returning at
    once with "queued" told a script that an alert nobody might ever send was fine."""
    if not wait:
        store = queue_only(store, pm)
    outcomes = Outcomes()
    outcomes.register(pm)
    dispatcher = WebhookDispatcher(webhooks=list(webhooks), store=store, plugin_manager=pm)
    routed: dict[str, list[str]] = {}
    remote = False
    ordered: list[Event] = list(events)
    vanished: list[Outcome] = []
    where = ""
    try:
        try:
            await dispatcher.start()
        except StoreOpenError as exc:  # it names the store and what is wrong
            raise CliError(f"error: {exc}") from None
        except (OSError, ValueError, TypeError) as exc:
            raise CliError(f"error: cannot open the store: {exc}") from None
        remote = dispatcher.store.remote_workers
        # A store's repr names it without secrets, with what tells two apart on one server
        # (Redis: the key prefix, where a typo leaves deliveries no worker ever reads).
        where = repr(dispatcher.store)
        watch = _Watch(dispatcher) if wait and remote else None
        if watch is not None and not isinstance(dispatcher.store, KeepsHistory):
            # Said before anything is queued: its workers' outcomes could not be learned.
            raise CliError(
                [
                    f"error: cannot wait for the workers of {where}: the store keeps no "
                    "delivery history to follow",
                    "Pass --no-wait to only queue.",
                ]
            )
        with _progress(out, progress) as bar:
            task = bar.add_task("delivering", total=0) if bar is not None else None
            if bar is not None:
                outcomes.on_change = lambda: bar.update(task, completed=len(outcomes.results))
            for letter in replay:
                if watch is not None:
                    await watch.before(letter.event.event_id)
                try:
                    event = await dispatcher.replay_dead_letter(letter)
                except (KeyError, ValueError) as exc:
                    # Checked before anything was replayed, so only another process's replay
                    # of the same letter (or its removal) lands here: nothing was taken.
                    vanished.append(
                        Outcome(
                            letter.webhook_name,
                            letter.event.event_id,
                            letter.event.event_type,
                            "skipped",
                            reason=f"not replayed: {_reason(exc)}",
                        )
                    )
                    continue
                if event.event_id not in routed:
                    ordered.append(event)
                routed.setdefault(event.event_id, []).append(letter.webhook_name)
            for event in events:
                routed[event.event_id] = await dispatcher.emit_event(event)
                if bar is not None:
                    bar.update(task, total=sum(len(n) for n in routed.values()))
            outcomes.event_ids = {e.event_id for e in ordered}
            if watch is not None:
                await watch.until_final(routed, timeout, outcomes, ordered)
            elif wait and not remote:
                try:
                    await dispatcher.drain(timeout)
                except TimeoutError:
                    pass  # reported below as pending
    finally:
        await dispatcher.close(drain=False)
        outcomes.unregister(pm)
    replayed = {e.event_id for e in ordered} - {e.event_id for e in events}
    results: list[Outcome] = list(vanished)
    for event in ordered:
        names = routed.get(event.event_id, [])
        for webhook in webhooks:
            found = outcomes.results.get((event.event_id, webhook.name))
            if found is not None:
                results.append(found)
            elif webhook.name in names:
                if wait and remote:
                    state, reason = "pending", f"no worker finished it within {_seconds(timeout)}"
                elif wait:
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
    if wait and remote:
        pending = sum(r.outcome == "pending" for r in results)
        if pending:
            Output.error(
                f"{pending} deliver{'y' if pending == 1 else 'ies'} still pending after "
                f"{_seconds(timeout)}: {WORKER_HINT.format(store=where)}"
            )
    return results


#: Why a delivery made by another process's worker was still pending when the wait ended.
WORKER_HINT = (
    "check that a worker (`empathy-webhooks worker`) runs on {store} with these webhooks; "
    "what is pending stays queued there until one does"
)


def _seconds(timeout: float | None) -> str:
    return "the wait" if timeout is None else f"{timeout:g} s"


def _reason(exc: BaseException) -> str:
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)


#: How often the wait reads the records at first, and at most (it backs off between).
_FIRST_LOOK, _LAST_LOOK = 0.05, 1.0


class _Watch:
    """The wait for deliveries another process's worker makes: each one's record in the
    store's history, read until it says delivered or failed (the `on_success` and
    `on_failure` hooks fire in the worker, not here)."""

    def __init__(self, dispatcher: WebhookDispatcher) -> None:
        self.dispatcher = dispatcher
        #: Per event, the deliveries its records held before a replay made a fresh one.
        self.earlier: dict[str, set[str]] = {}

    async def _records(self, event_id: str) -> list[DeliveryRecord]:
        page = await self.dispatcher.deliveries(event_id=event_id, limit=MAX_PAGE)
        return list(page.items)

    async def before(self, event_id: str) -> None:
        if event_id not in self.earlier:
            self.earlier[event_id] = {r.delivery_id for r in await self._records(event_id)}

    async def until_final(
        self,
        routed: dict[str, list[str]],
        timeout: float | None,
        outcomes: Outcomes,
        ordered: Sequence[Event],
    ) -> None:
        """Wait until each routed delivery is delivered or failed, or `timeout` passed; put
        each final one in `outcomes` (what is left is reported as pending)."""
        events = {e.event_id: e for e in ordered}
        # One delivery per event and webhook: the oldest record made by this command (a
        # fallback webhook's delivery for the same event comes later).
        found: dict[tuple[str, str], str] = {}
        waiting = {(event_id, name) for event_id, names in routed.items() for name in names}
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        pause = _FIRST_LOOK
        while True:
            for event_id in {
                event_id for event_id, name in waiting if (event_id, name) not in found
            }:
                earlier = self.earlier.get(event_id, set())
                for record in sorted(
                    await self._records(event_id), key=lambda r: (r.created_at, r.delivery_id)
                ):
                    key = (event_id, record.webhook)
                    if key in waiting and key not in found and record.delivery_id not in earlier:
                        found[key] = record.delivery_id
            letters: dict[str, DeadLetter] | None = None
            for key in sorted(waiting):
                delivery_id = found.get(key)
                if delivery_id is None:
                    continue
                now = await self.dispatcher.delivery(delivery_id)
                if now is None or now.status not in ("delivered", "failed"):
                    continue
                if now.status == "failed" and letters is None:
                    # The failure's reason from its dead letter: the record is marked failed
                    # with the letter, and its last attempt may still be on its way.
                    letters = {d.dead_letter_id: d for d in await self.dispatcher.dead_letters()}
                letter = (letters or {}).get(now.dead_letter_id or "")
                outcomes.results[key] = _outcome(now, events[key[0]], letter)
                waiting.discard(key)
                if outcomes.on_change is not None:
                    outcomes.on_change()
            if not waiting:
                return
            if deadline is not None:
                left = deadline - loop.time()
                if left <= 0:
                    return
                pause = min(pause, left)
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, _LAST_LOOK)


def _outcome(record: DeliveryRecord, event: Event, letter: DeadLetter | None) -> Outcome:
    last = record.attempts[-1] if record.attempts else None
    if record.status == "delivered":
        return Outcome(
            record.webhook,
            event.event_id,
            event.event_type,
            "delivered",
            status=last.status if last else None,
            attempts=len(record.attempts),
            elapsed_ms=last.duration_s * 1000 if last else None,
        )
    if letter is not None:
        status = letter.error.get("status")
        return Outcome(
            record.webhook,
            event.event_id,
            event.event_type,
            "failed",
            status=status if isinstance(status, int) else None,
            attempts=letter.attempts,
            reason=str(letter.error.get("reason") or f"see dead letter {letter.dead_letter_id}"),
        )
    reason = (last.reason or last.error) if last else None
    return Outcome(
        record.webhook,
        event.event_id,
        event.event_type,
        "failed",
        status=last.status if last else None,
        attempts=len(record.attempts),
        reason=reason or "finally failed (its dead letter is no longer listed)",
    )
