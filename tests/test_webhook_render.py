"""`webhook.render(...)` needs the plugins, which `webhooks.py` may not import: the package binds
the renderer. It works whichever module the class came from, and an unbound slot says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from empathy_webhooks_core import _renderer
from empathy_webhooks_core.webhooks import CustomWebhook

# Nothing but the public module `webhooks` imported before the render: the delivery module
# (which renders) is loaded by the package on first use.
FRESH = """
import json, sys
from empathy_webhooks_core.webhooks import CustomWebhook
loaded_before = "empathy_webhooks_core.delivery" in sys.modules
request = CustomWebhook(url="https://a.example/hook").render("alert", {"message": "disk full"})
print(json.dumps({"loaded_before": loaded_before, "url": request.url, "body": request.json_body()}))
"""


def test_a_webhook_imported_from_its_own_module_renders_in_a_fresh_process() -> None:
    # The core's own plugins only: which others are installed changes nothing here.
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMPATHY_")}
    env["EMPATHY_WEBHOOKS_LOAD_PLUGINS"] = ""
    done = subprocess.run(
        [sys.executable, "-c", FRESH], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen["loaded_before"] is False
    assert seen["url"] == "https://a.example/hook"
    assert (seen["body"]["event_type"], seen["body"]["data"]) == ("alert", {"message": "disk full"})


def test_an_unbound_renderer_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_renderer, "_renderer", None)
    with pytest.raises(RuntimeError, match="no renderer bound.*render_request"):
        CustomWebhook(url="https://a.example/hook").render("alert")
