"""A delivery's `context` (opaque text such as a trace parent) survives every store: the memory
store, the SQLite file across a restart and between processes on one file, old files migrated,
and dead letters and their replays. The Redis store has its own test in its plugin."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from empathy_webhooks_core import CustomWebhook, Event, WebhookDispatcher
from empathy_webhooks_core.stores import DeadLetter, Delivery, MemoryStore
from empathy_webhooks_core.stores.sqlite import SQLiteStore
from empathy_webhooks_core.testing import Receiver

FAST = {"initial_delay_seconds": 0.001, "max_delay_seconds": 0.01, "max_retries": 0}
CONTEXT = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "k": "é"}


def delivery(name: str = "h", context: dict[str, str] | None = None) -> Delivery:
    return Delivery(
        webhook_name=name,
        event=Event(event_type="prediction", data={"n": 1}),
        context=dict(CONTEXT if context is None else context),
    )


async def letters_until(dispatcher: WebhookDispatcher, count: int) -> list[DeadLetter]:
    async with asyncio.timeout(10):
        while len(letters := await dispatcher.dead_letters()) < count:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    return letters


def test_a_delivery_has_an_empty_context_unless_given_one() -> None:
    plain = Delivery(webhook_name="h", event=Event(event_type="x", data={}))
    assert plain.context == {}
    assert delivery().context == CONTEXT


async def test_the_memory_store_keeps_the_context_in_dead_letters_and_replays(
    receiver: Receiver,
) -> None:
    receiver.respond(status=400)
    hook = CustomWebhook(name="h", url=receiver.url("/h"), retry_policy=FAST)
    async with WebhookDispatcher(webhooks=[hook], store=MemoryStore()) as dispatcher:
        dispatcher.submit(delivery())
        (letter,) = await letters_until(dispatcher, 1)
        assert letter.context == CONTEXT
        assert letter.to_dict()["context"] == CONTEXT
        await dispatcher.replay_dead_letter(letter.dead_letter_id)
        (again,) = await letters_until(dispatcher, 1)
        # The replay's delivery carried the context on, so its own dead letter has it too.
        assert again.dead_letter_id != letter.dead_letter_id
        assert again.context == CONTEXT


async def test_sqlite_keeps_the_context_across_a_restart_and_between_processes(
    tmp_path: Path,
) -> None:
    db = tmp_path / "outbox.db"
    producer = SQLiteStore(db, role="producer")
    await producer.open()
    await producer.enqueue([delivery(), delivery(context={})])
    await producer.close()

    # Another store on the file (as another process would open it) takes them back.
    worker = SQLiteStore(db)
    await worker.open()
    taken = await worker.take_pending({"h": 10})
    assert [d.context for d in taken] == [CONTEXT, {}]
    letter = await worker.add_dead_letter(taken[0], {"reason": "bad"})
    assert letter.context == CONTEXT
    await worker.close()

    restarted = SQLiteStore(db)
    await restarted.open()
    (listed,) = await restarted.dead_letters()
    assert listed.context == CONTEXT
    assert listed.delivery_id == taken[0].delivery_id
    replayed = await restarted.take_dead_letter(letter.dead_letter_id)
    assert replayed is not None and replayed.context == CONTEXT
    fresh = replayed.replay_delivery()
    assert fresh.context == CONTEXT and fresh.attempts == 0
    await restarted.enqueue([fresh])
    await restarted.close()

    last = SQLiteStore(db)
    await last.open()
    back = {d.delivery_id: d for d in await last.take_pending({"h": 10})}
    await last.close()
    # The plain one was released when its store closed; the replay's keeps the context.
    assert back[fresh.delivery_id].context == CONTEXT
    assert back[taken[1].delivery_id].context == {}


async def test_a_dispatcher_on_sqlite_carries_the_context_to_the_dead_letter_and_replay(
    tmp_path: Path, receiver: Receiver
) -> None:
    db = tmp_path / "outbox.db"
    producer = SQLiteStore(db, role="producer")
    await producer.open()
    await producer.enqueue([delivery()])
    await producer.close()

    receiver.respond(status=400)
    hook = CustomWebhook(name="h", url=receiver.url("/h"), retry_policy=FAST)
    async with WebhookDispatcher(webhooks=[hook], store=f"sqlite:///{db}") as dispatcher:
        (letter,) = await letters_until(dispatcher, 1)
        assert letter.context == CONTEXT
        await dispatcher.replay_dead_letter(letter.dead_letter_id)
        await receiver.wait_for(2)
        (again,) = await letters_until(dispatcher, 1)
        assert again.dead_letter_id != letter.dead_letter_id
        assert again.context == CONTEXT


#: The tables as files made before deliveries carried a context had them.
_OLD_SCHEMA = """
CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY, delivery_id TEXT NOT NULL, webhook_name TEXT NOT NULL,
    event_id TEXT NOT NULL, event_json TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'queued', created_at REAL NOT NULL, delivered_at REAL,
    owner TEXT
);
CREATE TABLE dead_letters (
    dead_letter_id TEXT PRIMARY KEY, delivery_id TEXT NOT NULL, webhook_name TEXT NOT NULL,
    event_id TEXT NOT NULL, event_json TEXT NOT NULL, error_json TEXT NOT NULL,
    attempts INTEGER NOT NULL, failed_at REAL NOT NULL,
    replaying INTEGER NOT NULL DEFAULT 0, replaying_by TEXT
);
"""


async def test_an_older_sqlite_file_is_migrated_and_its_rows_have_no_context(
    tmp_path: Path,
) -> None:
    db = tmp_path / "old.db"
    event = Event(event_type="prediction", data={"n": 1})
    with sqlite3.connect(db) as conn:
        conn.executescript(_OLD_SCHEMA)
        conn.execute(
            "INSERT INTO deliveries (id, delivery_id, webhook_name, event_id, event_json,"
            " created_at) VALUES (1, 'dlv_old', 'h', ?, ?, 0)",
            (event.event_id, event.to_json()),
        )
        conn.execute(
            "INSERT INTO dead_letters (dead_letter_id, delivery_id, webhook_name, event_id,"
            " event_json, error_json, attempts, failed_at) VALUES ('dl_old', 'dlv_x', 'h', ?, ?,"
            " '{}', 1, 0)",
            (event.event_id, event.to_json()),
        )
    conn.close()
    store = SQLiteStore(db)
    await store.open()
    (old,) = await store.take_pending({"h": 10})
    assert (old.delivery_id, old.context) == ("dlv_old", {})
    (letter,) = await store.dead_letters()
    assert letter.context == {}
    await store.close()
    producer = SQLiteStore(db, role="producer")
    await producer.open()
    await producer.enqueue([delivery()])
    await producer.close()
    again = SQLiteStore(db)
    await again.open()
    contexts = [d.context for d in await again.take_pending({"h": 10})]
    await again.close()
    assert contexts == [{}, CONTEXT]
