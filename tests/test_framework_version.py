"""`metadata.framework_version` is the Empathy Framework's version (found in the installed
`attune-ai` or `empathy-framework` distribution), configurable on the dispatcher, and left
out rather than wrong when the framework is not installed (it used to be this library's)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from empathy_webhooks_core import CustomWebhook, Event, WebhookDispatcher, __version__
from empathy_webhooks_core.events import installed_framework_version
from empathy_webhooks_core.testing import Receiver


@pytest.fixture
def fresh_detection() -> Iterator[None]:
    installed_framework_version.cache_clear()
    yield
    installed_framework_version.cache_clear()


def install_fake_distribution(
    monkeypatch: pytest.MonkeyPatch, where: Path, name: str, version: str
) -> None:
    """A distribution's metadata on sys.path, as pip leaves it: what importlib.metadata reads."""
    info = where / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    monkeypatch.syspath_prepend(str(where))


def test_without_the_framework_installed_the_version_is_left_out(fresh_detection: None) -> None:
    if installed_framework_version() is not None:
        pytest.skip("an Empathy Framework distribution is installed here")
    event = Event(event_type="prediction", metadata={"model": "claude-sonnet-4.5"})
    assert event.metadata == {"model": "claude-sonnet-4.5"}
    assert "framework_version" not in event.to_envelope()["metadata"]
    assert __version__ not in event.envelope_bytes().decode()


@pytest.mark.parametrize("name", ["attune-ai", "empathy-framework"])
async def test_the_installed_frameworks_version_is_sent(
    name: str,
    fresh_detection: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    receiver: Receiver,
) -> None:
    install_fake_distribution(monkeypatch, tmp_path, name, "7.3.1")
    assert installed_framework_version() == "7.3.1"
    async with WebhookDispatcher(webhooks=[CustomWebhook(url=receiver.url())]) as dispatcher:
        await dispatcher.emit("prediction", {"x": 1}, metadata={"model": "m"})
    metadata = receiver.requests[0].json()["metadata"]
    assert list(metadata.items()) == [("framework_version", "7.3.1"), ("model", "m")]


async def test_the_dispatcher_says_which_version_or_none(
    fresh_detection: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, receiver: Receiver
) -> None:
    install_fake_distribution(monkeypatch, tmp_path, "attune-ai", "7.3.1")
    webhook = CustomWebhook(url=receiver.url())
    async with WebhookDispatcher(webhooks=[webhook], framework_version="1.8.0") as dispatcher:
        await dispatcher.emit("alert", {})
        # The event's own metadata wins.
        await dispatcher.emit("alert", {}, metadata={"framework_version": "1.9.0-rc1"})
    async with WebhookDispatcher(webhooks=[webhook], framework_version=None) as dispatcher:
        await dispatcher.emit("alert", {})
    sent = [request.json()["metadata"] for request in receiver.requests]
    assert sent == [
        {"framework_version": "1.8.0"},
        {"framework_version": "1.9.0-rc1"},
        {},
    ]


@pytest.mark.parametrize("bad", ["", "1.0\n", 3])
def test_a_version_that_cannot_travel_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="framework_version must be a non-empty string"):
        WebhookDispatcher(framework_version=bad)  # type: ignore[arg-type]


def test_an_event_read_back_keeps_the_metadata_it_was_sent_with(
    fresh_detection: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    install_fake_distribution(monkeypatch, tmp_path, "attune-ai", "7.3.1")
    # Sent without a version (framework_version=None), read back by a process that has one.
    sent = Event.from_envelope({**Event(event_type="x").to_envelope(), "metadata": {}})
    assert sent.metadata == {}
    assert Event.from_envelope(sent.to_envelope()) == sent
