"""The EmpathyOS-style host example runs against a local receiver."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "empathy_host.py"


def test_the_host_example_emits_its_level_4_prediction() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("interact() answered at level 4\nthe receiver got: {")
    body = json.loads(done.stdout.split("the receiver got: ", 1)[1])
    assert body["event_type"] == "prediction" and body["empathy_level"] == 4
    assert body["data"]["recommendation"] == "Deploy auth behind feature flag"
    assert body["data"]["context"] == {"service": "authentication", "environment": "production"}
