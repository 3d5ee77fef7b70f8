"""An installed plugin distribution, as `pip install` leaves it, for discovery tests."""

from __future__ import annotations

import textwrap
from pathlib import Path


def install_distribution(site: Path, name: str, module: str, source: str) -> None:
    """What `pip install` leaves behind in `site`: a module and its dist-info with an entry
    point in the `empathy_webhooks` group."""
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[empathy_webhooks]\n{name} = {module}\n")
