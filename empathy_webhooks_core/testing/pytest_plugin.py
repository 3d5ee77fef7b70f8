"""pytest plugin (entry point `pytest11`): fixtures for testing webhooks against a real receiver.

Loaded in every pytest run wherever empathy-webhooks-core is installed, so it imports nothing
beyond pytest at load time (core modules are imported inside the fixtures) and defines its
async fixtures only when pytest-asyncio is present.

Fixtures:

- ``webhook_receiver``: a started :class:`~empathy_webhooks_core.testing.Receiver`.
- ``webhook_dispatcher``: a factory, ``webhook_dispatcher(webhooks, **options)``, returning a
  :class:`~empathy_webhooks_core.WebhookDispatcher`; every one it made is drained and closed at
  teardown, and a drain that does not finish within ``CLOSE_TIMEOUT_SECONDS`` fails the test.
- ``fake_clock``: a :class:`~empathy_webhooks_core.testing.FakeClock`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

#: How long the ``webhook_dispatcher`` fixture waits at teardown for what is still queued.
CLOSE_TIMEOUT_SECONDS = 5.0

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - plugin authors without pytest-asyncio
    pytest_asyncio = None  # type: ignore[assignment]


def pytest_configure(config: pytest.Config) -> None:
    # The example-wheel test and plugin authors' heavier tests use it; registered here so
    # `-m "not slow"` works without every project declaring it.
    config.addinivalue_line("markers", "slow: a slow test (deselect with -m 'not slow')")


if pytest_asyncio is not None:

    @pytest_asyncio.fixture
    async def webhook_receiver() -> AsyncIterator[Any]:
        """A started `Receiver` on 127.0.0.1 (records requests, answers 200 by default)."""
        from .receiver import Receiver

        async with Receiver() as receiver:
            yield receiver

    @pytest_asyncio.fixture
    async def webhook_dispatcher() -> AsyncIterator[Callable[..., Any]]:
        """A factory of dispatchers: ``webhook_dispatcher([webhook], clock=..., store=...)``.

        Takes the same arguments as `WebhookDispatcher`. Each dispatcher it made is closed at
        teardown, draining what is queued. A drain still unfinished after
        ``CLOSE_TIMEOUT_SECONDS`` fails the test, naming what was left (a delivery that never
        ends is a bug worth seeing), after closing the dispatcher without waiting.
        """
        from ..dispatcher import WebhookDispatcher

        made: list[WebhookDispatcher] = []

        def factory(webhooks: Any = None, **options: Any) -> WebhookDispatcher:
            dispatcher = WebhookDispatcher(webhooks, **options)
            made.append(dispatcher)
            return dispatcher

        yield factory
        unfinished: list[str] = []
        for dispatcher in made:
            try:
                await dispatcher.close(timeout=CLOSE_TIMEOUT_SECONDS)
            except TimeoutError as exc:
                unfinished.append(f"{', '.join(dispatcher.webhook_names())}: {exc}")
                await dispatcher.close(drain=False)
        if unfinished:
            pytest.fail(
                "webhook_dispatcher: a dispatcher did not drain at teardown ("
                + "; ".join(unfinished)
                + "); await dispatcher.drain() in the test, or find the delivery that never ends",
                pytrace=False,
            )


@pytest.fixture
def fake_clock() -> Any:
    """A `FakeClock`: pass it as `WebhookDispatcher(clock=...)` and `await clock.advance(s)`."""
    from ..clock import FakeClock

    return FakeClock()
