"""What an operator does to webhooks and dead letters, whichever face asks: the JSON API
(`routes.py`) and the console call the same functions, so a replay or an enable behaves
the same way from both. Each raises `Problem` for what the caller must be told."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..events import Event
from ..monitor import UnknownWebhookError
from .figures import Held
from .problems import Problem

if TYPE_CHECKING:
    from .app import Gateway

__all__ = [
    "enable_webhook",
    "replay_all",
    "replay_one",
    "unknown_webhook",
    "webhook_stats",
    "webhook_summaries",
    "webhook_summary",
]


def unknown_webhook(gateway: Gateway, name: str) -> Problem:
    known = ", ".join(gateway.dispatcher.webhook_names()) or "none"
    return Problem(404, "/problems/not-found", f"no webhook named {name!r} (known: {known})")


async def webhook_stats(gateway: Gateway, name: str) -> dict[str, Any]:
    """`get_webhook_stats(name)` (this process's figures, since it started) with what the
    store holds added: `store_pending` and `store_dead_letters` (None when it cannot count).
    Raises `UnknownWebhookError`."""
    stats = gateway.dispatcher.get_webhook_stats(name)
    return {**stats, **(await gateway.store_figures.read()).figures(name)}


async def webhook_summaries(gateway: Gateway, names: list[str]) -> list[dict[str, Any]]:
    """Each webhook's name, type and health, as `GET /v1/webhooks` lists it (the store read
    once for all)."""
    held = await gateway.store_figures.read()
    return [_summary(gateway, name, held) for name in names]


async def webhook_summary(gateway: Gateway, name: str) -> dict[str, Any]:
    return (await webhook_summaries(gateway, [name]))[0]


def _summary(gateway: Gateway, name: str, held: Held) -> dict[str, Any]:
    stats = {**gateway.dispatcher.get_webhook_stats(name), **held.figures(name)}
    # `queued` and `dead_letters` are what the store holds when it can count them: the
    # process's own counts read 0 after a restart, or for a gateway whose workers are
    # elsewhere, while letters and a backlog wait in the store.
    queued, dead = stats["store_pending"], stats["store_dead_letters"]
    return {
        "name": name,
        "type": gateway.webhook_types.get(name),
        "disabled": bool(stats.get("disabled")),
        "breaker_state": stats.get("breaker_state"),
        "queued": stats.get("queued", 0) if queued is None else queued,
        "in_flight": stats.get("in_flight", 0),
        "dead_letters": stats.get("dead_letters", 0) if dead is None else dead,
        "counted_in": {
            "queued": "process" if queued is None else "store",
            "dead_letters": "process" if dead is None else "store",
        },
        "stats": stats,
    }


def enable_webhook(gateway: Gateway, name: str) -> None:
    """Re-enable a webhook disabled by a 410 (404 for a name not configured)."""
    if name not in gateway.dispatcher.webhook_names():
        raise unknown_webhook(gateway, name)
    gateway.dispatcher.enable_webhook(name)


async def replay_one(gateway: Gateway, dead_letter_id: str) -> Event:
    """Queue one dead letter again (attempts start over); 404 when there is no such letter,
    409 when it cannot be replayed (its event could not be decoded, or its webhook is not
    in this gateway's configuration: the letter stays a dead letter)."""
    try:
        return await gateway.dispatcher.replay_dead_letter(dead_letter_id)
    except UnknownWebhookError as exc:
        # A KeyError too, but "no dead letter" would be false: the letter is there, kept.
        raise Problem(409, "/problems/not-replayable", str(exc)) from None
    except KeyError:
        raise Problem(404, "/problems/not-found", f"no dead letter {dead_letter_id!r}") from None
    except ValueError as exc:
        raise Problem(409, "/problems/not-replayable", str(exc)) from None


async def replay_all(
    gateway: Gateway, webhook: str | None
) -> tuple[list[dict[str, str]], list[str]]:
    """Queue every dead letter (of `webhook`, or all) again: what was replayed (letter and
    event ids) and the ids skipped (not replayable, webhook gone, or replayed meanwhile)."""
    dispatcher = gateway.dispatcher
    replayed: list[dict[str, str]] = []
    skipped: list[str] = []
    for letter in await dispatcher.dead_letters(webhook):
        if not letter.replayable or letter.webhook_name not in dispatcher.webhook_names():
            skipped.append(letter.dead_letter_id)
            continue
        try:
            event = await dispatcher.replay_dead_letter(letter)
        except (KeyError, ValueError):  # replayed meanwhile by another caller
            skipped.append(letter.dead_letter_id)
            continue
        replayed.append({"dead_letter_id": letter.dead_letter_id, "event_id": event.event_id})
    return replayed, skipped
