"""An EmpathyOS-style host whose level-4 predictions become `prediction` events.

The Empathy Framework's `EmpathyOS.interact` is synchronous in its current release, so the
host emits through `ThreadedDispatcher`: `interact` returns at once while the webhook
delivers in the background. Run it as it is and it starts a local receiver and prints what
arrived; give `--url` to send to your own endpoint instead:

    python examples/empathy_host.py
    python examples/empathy_host.py --url http://127.0.0.1:8080/webhooks/empathy
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from empathy_webhooks_core import ThreadedDispatcher, Webhook, WebhookConfig


class EmpathyOS:
    """A stand-in for the framework's host: it "predicts" when asked to deploy."""

    def __init__(self, user_id: str, target_level: int = 4, webhooks: Sequence[Webhook] = ()):
        self.user_id = user_id
        self.target_level = target_level
        self._events = ThreadedDispatcher(webhooks=list(webhooks))

    def interact(self, user_id: str, user_input: str, context: dict[str, Any]) -> dict[str, Any]:
        response: dict[str, Any] = {"level": 3, "answer": f"Working on: {user_input}"}
        if self.target_level >= 4 and "deploy" in user_input.lower():
            prediction = {
                "prediction": "Auth deployment may conflict with user-service v2.1",
                "confidence": 0.87,
                "recommendation": "Deploy auth behind feature flag",
                "context": {"service": "authentication", **context},
            }
            # Queued, not sent: interact never waits for the network.
            self._events.emit(
                "prediction",
                prediction,
                user_id=user_id,
                empathy_level=4,
                metadata={"model": "claude-sonnet-4.5"},
            )
            response = {"level": 4, "answer": response["answer"], "prediction": prediction}
        return response

    def close(self) -> None:
        """Deliver what is queued, then stop (call at shutdown)."""
        self._events.close()


@contextmanager
def local_receiver() -> Iterator[tuple[str, list[bytes]]]:
    """A loopback receiver on its own thread; yields its URL and the bodies it got."""
    from empathy_webhooks_core.testing import Receiver

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    receiver = Receiver()
    asyncio.run_coroutine_threadsafe(receiver.start(), loop).result(5)
    bodies: list[bytes] = []
    try:
        yield receiver.url("/webhooks/empathy"), bodies
    finally:
        bodies.extend(request.body for request in receiver.requests)
        asyncio.run_coroutine_threadsafe(receiver.stop(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


def run(url: str) -> dict[str, Any]:
    webhook = WebhookConfig(url=url, events=["prediction", "alert", "completion"])
    empathy = EmpathyOS(user_id="developer_123", target_level=4, webhooks=[webhook])
    try:
        return empathy.interact(
            user_id="developer_123",
            user_input="Deploy the authentication service",
            context={"environment": "production"},
        )
    finally:
        empathy.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="send to this endpoint instead of a local receiver")
    args = parser.parse_args()
    if args.url:
        print(json.dumps(run(args.url), indent=2))
        return
    with local_receiver() as (url, bodies):
        answer = run(url)
    print(f"interact() answered at level {answer['level']}")
    for body in bodies:
        print("the receiver got:", json.dumps(json.loads(body), indent=2))


if __name__ == "__main__":
    main()
