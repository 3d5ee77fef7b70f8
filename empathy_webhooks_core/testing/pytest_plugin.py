"""pytest plugin (entry point `pytest11`): fixtures for testing webhooks against a real receiver.

Loaded wherever empathy-webhooks-core is installed, so it imports nothing beyond pytest at load
time and defines its async fixtures only when pytest-asyncio is present.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - plugin authors without pytest-asyncio
    pytest_asyncio = None  # type: ignore[assignment]

if pytest_asyncio is not None:

    @pytest_asyncio.fixture
    async def webhook_receiver() -> AsyncIterator[object]:
        """A started `Receiver` on 127.0.0.1 (records requests, answers 200 by default)."""
        from .receiver import Receiver

        async with Receiver() as receiver:
            yield receiver


@pytest.fixture
def fake_clock() -> object:
    """A `FakeClock`: pass it as `WebhookDispatcher(clock=...)` and `await clock.advance(s)`."""
    from ..clock import FakeClock

    return FakeClock()
