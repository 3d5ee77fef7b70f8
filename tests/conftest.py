"""Fixtures shared by the core's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from empathy_webhooks_core.testing import Receiver

from ._once import build_core_wheel, once_per_run

# Hypothesis judges how fast it generates examples; on a loaded machine (CI beside other jobs,
# xdist on two cores) that says nothing about the code under test, so timing checks are off.
settings.register_profile(
    "project", suppress_health_check=[HealthCheck.too_slow], deadline=None, print_blob=True
)
settings.load_profile("project")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`make test`), the tests marked slow (wheels, virtual environments,
    up to a minute or two each under load) are handed out first, one at a time, so the short
    tests fill in beside them instead of one slow test running alone at the end. A plain
    `pytest` keeps the file order."""
    if hasattr(config, "workerinput"):  # only an xdist worker has it
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver() as started:
        yield started


@pytest.fixture(scope="session")
def core_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The core's wheel, built once per run (tests/_once.py)."""
    [wheel] = once_per_run(tmp_path_factory, "core-wheel", build_core_wheel).glob("*.whl")
    return wheel


#: Retry quickly in tests: the schedule's shape is tested with a fake clock elsewhere.
FAST = {"initial_delay_seconds": 0.001, "max_delay_seconds": 0.01}
