"""New and changed deliveries, live: a Server-Sent Events stream for the deliveries page.

The stream looks at the newest deliveries matching the page's filters once a second and
sends each one that is new or changed since the page was drawn (`after`, epoch seconds) as
`event: delivery`, its data `{"id": ..., "html": "<tr>...</tr>"}`: the row drawn by the same
template as the page, so escaping happens in one place, on the server. It ends when the
session expires or the gateway stops (the browser's EventSource then reconnects, and is
refused or finds the restarted gateway).
"""

from __future__ import annotations

import asyncio
import json
import time

from aiohttp import web

from .guard import page, secure, session_of
from .keys import CONSOLE
from .render import render_fragment
from .views import read_filters

__all__ = ["stream"]

#: Seconds between two looks at the store, and between two keep-alive comments.
POLL_SECONDS = 0.5
KEEPALIVE_SECONDS = 15.0
#: The newest deliveries each look takes: a row older than these no longer changes live.
WINDOW = 100


@page("read")
async def stream(request: web.Request) -> web.StreamResponse:
    console = request.config_dict[CONSOLE]
    gateway = console.gateway
    session = session_of(request)
    assert session is not None
    filters = read_filters(request, gateway.dispatcher.webhook_names())
    try:
        after = float(request.query.get("after", ""))
    except ValueError:
        after = time.time()
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
    )
    secure(response.headers)
    await response.prepare(request)
    sent: dict[str, tuple[str, int, float]] = {}
    quiet = 0.0
    try:
        while not gateway.stopping and console.sessions.get(session.session_id) is not None:
            try:
                page_ = await gateway.dispatcher.deliveries(**filters.query(), limit=WINDOW)
            except RuntimeError:  # a store without history: nothing will ever come
                break
            fresh = []
            for record in reversed(page_.items):  # oldest first: the newest ends on top
                state = (record.status, len(record.attempts), record.updated_at)
                if record.updated_at < after or sent.get(record.delivery_id) == state:
                    continue
                sent[record.delivery_id] = state
                fresh.append(record)
            # Only the window's rows are remembered: a long session holds no more than that.
            sent = {
                r.delivery_id: sent[r.delivery_id] for r in page_.items if r.delivery_id in sent
            }
            for record in fresh:
                html = render_fragment(request, "_delivery_row.html", record=record)
                data = json.dumps({"id": record.delivery_id, "html": html})
                await response.write(f"event: delivery\ndata: {data}\n\n".encode())
            quiet = 0.0 if fresh else quiet + POLL_SECONDS
            if quiet >= KEEPALIVE_SECONDS:
                await response.write(b": still here\n\n")
                quiet = 0.0
            await asyncio.sleep(POLL_SECONDS)
    except (ConnectionResetError, ConnectionError):
        pass  # the page went away
    return response
