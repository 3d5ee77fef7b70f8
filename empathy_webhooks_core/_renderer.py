"""Who renders a webhook's request for `Webhook.render`.

Rendering runs the installed plugins (`delivery.render_request`, which imports `webhooks`), so
`webhooks.py` cannot import it without a cycle. It declares what it needs instead, and the
package, which runs before any of its modules, binds it (dependency inversion): `webhooks.py`
imports nothing above it, and `webhook.render(...)` works however the class was imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .events import Event
    from .webhooks import Webhook
    from .wire import OutgoingRequest

__all__ = ["Renderer", "bind_renderer", "bound_renderer"]


class Renderer(Protocol):
    """What `webhook` would send for `event`: a dry run through the installed plugins."""

    def __call__(self, webhook: Webhook, event: Event, /) -> OutgoingRequest: ...


_renderer: Renderer | None = None


def bind_renderer(renderer: Renderer) -> None:
    """Use `renderer` for every `Webhook.render` from now on."""
    global _renderer  # the one slot: bound by the package as it is imported
    _renderer = renderer


def bound_renderer() -> Renderer:
    """The bound renderer; a clear error (never a call of None) if none is bound."""
    if _renderer is None:
        raise RuntimeError(
            "Webhook.render has no renderer bound: the empathy_webhooks_core package binds "
            "delivery.render_request when it is imported; call "
            "empathy_webhooks_core.render_request(webhook, event) instead"
        )
    return _renderer
