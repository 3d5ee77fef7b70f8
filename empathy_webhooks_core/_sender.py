"""`Sender`: the one way a plugin sends HTTP requests for a webhook.

A plugin that makes more than the core's single request per delivery (Jira's search before its
create, GitHub's comment listing, Datadog's batched metrics) sends every one of them through a
`Sender`, never through a session of its own or the dispatcher's shared one. A sender is bound
to its webhook and to the session the dispatcher chose for that webhook (`deliver`'s `session`
argument; outside a delivery, the `sender` of the `StateContext` the webhook's plugin state is
started with, or `dispatcher.sender_for(webhook)`), so each request:

- honours the webhook's `block_private_addresses`: with it on, the session must be the
  dispatcher's guarded one, and a sender given any other refuses to send
  (`BlockedAddressError`, final like every refusal of the guard) rather than reach a private
  address through an unguarded path;
- honours the webhook's `retry_policy.timeout_seconds`;
- never follows redirects and reads at most `MAX_RESPONSE_BYTES` of the answer (the core's
  `send`).

A test keeps first-party plugins on this path (`tests/test_sender.py`).
"""

from __future__ import annotations

import aiohttp
import attrs

from ._netguard import BlockedAddressError, GuardedConnector
from .default_plugins.http import send
from .webhooks import Webhook
from .wire import OutgoingRequest, Response

__all__ = ["Sender", "is_guarded"]


def is_guarded(session: aiohttp.ClientSession) -> bool:
    """Whether `session` connects through the address guard (`netguard.GuardedConnector`)."""
    return isinstance(session.connector, GuardedConnector)


@attrs.frozen
class Sender:
    """Sends `webhook`'s HTTP requests through `session` (see the module's text)."""

    webhook: Webhook
    session: aiohttp.ClientSession = attrs.field(repr=False)

    @property
    def timeout_seconds(self) -> float:
        return self.webhook.retry_policy.timeout_seconds

    async def send(self, request: OutgoingRequest) -> Response:
        """Send one request and return the answer (any status: classifying it is the caller's
        job). Raises what the core's `send` raises for transport failures (retryable), and
        `BlockedAddressError` (final) when the guard refuses the address or the session is
        not guarded although the webhook asks for it."""
        if self.webhook.block_private_addresses and not is_guarded(self.session):
            raise BlockedAddressError(
                f"refused to send for webhook {self.webhook.name!r} through a session without "
                "the address guard: it has block_private_addresses=True, so every request goes "
                "through the dispatcher's guarded session (deliver's session argument, or "
                "dispatcher.sender_for(webhook))"
            )
        return await send(request, self.session, self.timeout_seconds)
