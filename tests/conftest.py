"""Fixtures shared by the core's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from empathy_webhooks_core.testing import Receiver


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver() as started:
        yield started


#: Retry quickly in tests: the schedule's shape is tested with a fake clock elsewhere.
FAST = {"initial_delay_seconds": 0.001, "max_delay_seconds": 0.01}
