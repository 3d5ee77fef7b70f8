"""`dead-letters replay` decides before it replays anything, `--webhook` names are checked
by `list` and `replay` alike, and the CLI reads JSON as the gateway does (a key twice is an
error). Real CLI, real SQLite files, a real receiver on loopback."""

from __future__ import annotations

from pathlib import Path

from empathy_webhooks_core.testing import Receiver

from ._cli_kit import arun, run

ENV = {"EMPATHY_WEBHOOKS_LOAD_PLUGINS": ""}


def _config(path: Path, receiver: Receiver, store: Path, names: tuple[str, ...]) -> Path:
    # Each webhook takes only the events named after it, so each event leaves one letter.
    text = f'store = "sqlite:///{store}"\n'
    for name in names:
        text += (
            f'[[webhooks]]\ntype = "custom"\nname = "{name}"\nurl = "{receiver.url("/" + name)}"\n'
            f'events = ["{name}_*"]\nretry_policy = {{ max_retries = 0 }}\n'
        )
    path.write_text(text, encoding="utf-8")
    return path


async def _letters(config: Path) -> dict[str, str]:
    """Dead letter id by webhook name, as `dead-letters list --json` shows them."""
    listed = await arun("dead-letters", "list", "--json", "-c", str(config), env=ENV)
    assert listed.code == 0, listed.err
    return {d["webhook_name"]: d["dead_letter_id"] for d in listed.json()["dead_letters"]}


async def _three_letters(tmp_path: Path, receiver: Receiver) -> tuple[Path, dict[str, str]]:
    """Dead letters for `a`, `gone` and `b`, failed in that order; then a configuration
    without `gone`, and a receiver that accepts everything."""
    store = tmp_path / "outbox.db"
    before = _config(tmp_path / "before.toml", receiver, store, ("a", "gone", "b"))
    receiver.respond(400)
    for name in ("a", "gone", "b"):
        sent = await arun("send", f"{name}_alert", "-c", str(before), env=ENV)
        assert sent.code == 1, sent.out + sent.err
    letters = await _letters(before)
    assert set(letters) == {"a", "gone", "b"}
    receiver.respond(200)
    receiver.requests.clear()
    return _config(tmp_path / "after.toml", receiver, store, ("a", "b")), letters


async def test_replaying_all_sends_the_others_and_leaves_the_letters_of_a_removed_webhook(
    tmp_path: Path, receiver: Receiver
) -> None:
    """Before: `a` was taken out of the dead letters, then the replay stopped at `gone` with
    exit 2 "nothing was sent"; `a` was never sent and vanished from the list, `b` was not
    tried."""
    config, letters = await _three_letters(tmp_path, receiver)

    replayed = await arun("dead-letters", "replay", "-c", str(config), env=ENV)

    assert replayed.code == 1, replayed.out + replayed.err
    assert "replayed 2 dead letter(s)" in replayed.out
    assert (
        f"not replayed: 1 dead letter(s) for webhook 'gone', which {config} does not have; "
        f"they stay dead letters ({letters['gone']})"
    ) in replayed.err
    assert sorted(r.path for r in receiver.delivered) == ["/a", "/b"]
    assert await _letters(config) == {"gone": letters["gone"]}


async def test_replaying_named_letters_checks_every_one_before_replaying_any(
    tmp_path: Path, receiver: Receiver
) -> None:
    """Before: `a` was replayed (taken, never sent, gone from the list), then the error for
    `gone` ended the command."""
    config, letters = await _three_letters(tmp_path, receiver)

    replayed = await arun(
        "dead-letters", "replay", letters["a"], letters["gone"], "-c", str(config), env=ENV
    )

    assert replayed.code == 2
    assert (
        f"error: dead letter {letters['gone']!r} is for webhook 'gone', which {config} does "
        "not have"
    ) in replayed.err
    assert "nothing was replayed: every dead letter is still listed" in replayed.err
    assert receiver.requests == []
    assert await _letters(config) == letters


async def test_a_misspelt_webhook_is_an_error_for_list_and_replay(
    tmp_path: Path, receiver: Receiver
) -> None:
    """Before: `replay --webhook bda` said "no dead letters to replay" and `list --webhook
    bda` "0 dead letter(s)", both with exit 0, while `bad` had a dead letter."""
    store = tmp_path / "outbox.db"
    config = _config(tmp_path / "webhooks.toml", receiver, store, ("bad", "ok"))
    receiver.respond(400)
    assert (await arun("send", "bad_alert", "-c", str(config), env=ENV)).code == 1

    for action in ("list", "replay"):
        result = await arun("dead-letters", action, "--webhook", "bda", "-c", str(config), env=ENV)
        assert result.code == 2, (action, result.out, result.err)
        assert (
            result.err.strip() == f"error: no webhook named 'bda' (did you mean 'bad'?) in {config}"
        )
        assert result.out == ""
    assert set(await _letters(config)) == {"bad"}
    assert len(receiver.requests) == 1  # the first send's, nothing replayed


async def test_a_removed_webhook_still_lists_its_letters_and_replay_says_they_stay(
    tmp_path: Path, receiver: Receiver
) -> None:
    config, letters = await _three_letters(tmp_path, receiver)

    listed = await arun("dead-letters", "list", "--webhook", "gone", "-c", str(config), env=ENV)
    assert listed.code == 0 and letters["gone"] in listed.out
    replayed = await arun("dead-letters", "replay", "--webhook", "gone", "-c", str(config), env=ENV)
    assert replayed.code == 2
    assert replayed.err.splitlines() == [
        f"error: no webhook named 'gone' in {config}",
        "its 1 dead letter(s) stay in the store: replay them with a configuration that has "
        "the webhook",
    ]
    assert receiver.requests == []
    assert await _letters(config) == letters


def test_help_of_replay_documents_its_exit_codes() -> None:
    shown = run("dead-letters", "replay", "--help", env=ENV)
    assert shown.code == 0
    assert "2  nothing was replayed" in shown.out
    assert "their webhook is not in the configuration" in shown.out


async def test_send_refuses_a_key_given_twice_in_data(tmp_path: Path, receiver: Receiver) -> None:
    """Before: `{"level": "low", "level": "critical"}` sent `critical`, silently."""
    config = _config(tmp_path / "webhooks.toml", receiver, tmp_path / "o.db", ("ok",))

    sent = await arun(
        "send",
        "ok_alert",
        "--data",
        '{"level": "low", "nested": {"x": 1, "x": 2}}',
        "-c",
        str(config),
        env=ENV,
    )

    assert sent.code == 2
    assert sent.err.strip() == (
        "error: --data: $.nested.x: the key 'x' appears more than once in its object; give it once"
    )
    assert receiver.requests == []


async def test_send_refuses_a_key_given_twice_in_an_events_file(
    tmp_path: Path, receiver: Receiver
) -> None:
    config = _config(tmp_path / "webhooks.toml", receiver, tmp_path / "o.db", ("ok",))
    events = tmp_path / "events.jsonl"
    events.write_text(
        '{"event_type": "ok_alert", "data": {"n": 1}}\n'
        '{"event_type": "ok_alert", "data": {"n": 2}, "severity": "low", "severity": "high"}\n',
        encoding="utf-8",
    )

    sent = await arun("send", "--events-file", str(events), "-c", str(config), env=ENV)

    assert sent.code == 2
    assert sent.err.strip() == (
        f"{events}:2: $.severity: the key 'severity' appears more than once in its object; "
        "give it once"
    )
    assert receiver.requests == []  # the file is read whole before anything is sent


def test_render_refuses_a_key_given_twice_in_data(tmp_path: Path) -> None:
    config = tmp_path / "webhooks.toml"
    config.write_text(
        '[[webhooks]]\ntype = "custom"\nname = "ok"\nurl = "http://127.0.0.1:9/"\n',
        encoding="utf-8",
    )
    data = tmp_path / "data.json"
    data.write_text('{"a": 1, "a": 1}', encoding="utf-8")

    rendered = run("render", "alert", "--data", f"@{data}", "-c", str(config), env=ENV)

    assert rendered.code == 2
    assert rendered.err.strip() == (
        "error: --data: $.a: the key 'a' appears more than once in its object; give it once"
    )
