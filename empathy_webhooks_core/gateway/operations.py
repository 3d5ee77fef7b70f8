"""What an operator does to webhooks and dead letters, whichever face asks: the JSON API
(`routes.py`) and the console call the same functions, so a replay or an enable behaves
the same way from both. Each raises `Problem` for what the caller must be told."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..events import Event
from ..monitor import UnknownWebhookError
from .problems import Problem

if TYPE_CHECKING:
    from .app import Gateway

__all__ = ["enable_webhook", "replay_all", "replay_one", "unknown_webhook", "webhook_summary"]


def unknown_webhook(gateway: Gateway, name: str) -> Problem:
    known = ", ".join(gateway.dispatcher.webhook_names()) or "none"
    return Problem(404, "/problems/not-found", f"no webhook named {name!r} (known: {known})")


def webhook_summary(gateway: Gateway, name: str) -> dict[str, Any]:
    """A webhook's name, type and health, as `GET /v1/webhooks` lists it."""
    stats = gateway.dispatcher.get_webhook_stats(name)
    return {
        "name": name,
        "type": gateway.webhook_types.get(name),
        "disabled": bool(stats.get("disabled")),
        "breaker_state": stats.get("breaker_state"),
        "queued": stats.get("queued", 0),
        "in_flight": stats.get("in_flight", 0),
        "dead_letters": stats.get("dead_letters", 0),
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
