"""The stream itself, independent of how its bytes are framed.

Both the Django view and any faster ASGI entry point call :func:`open_stream`,
which applies the connect rules (404 malformed id, 403 not authorised, 204 closed
and nothing new) and, for a 200, gives an async iterator of ready-made bytes:
the preamble, the replay of what the client has not seen, then live events with
keepalives, ending after ``stream-closed``.

How the bytes are made once connected (replay, live, gap repair, keepalives)
is shared with streams of many executions, in :mod:`django_sse_exec.streams.live`.

A stream opened with a token renews it before it expires
(:mod:`django_sse_exec.streams.renewal`); a reconnect whose token expired gets
``stream-token-expired`` instead of a 403.

Streams also end on purpose — on shutdown, when rotated after
``MAX_STREAM_LIFETIME``, or when their client stops taking bytes (see
:func:`~django_sse_exec.hub.slow_clients.drop`) — always between two events, so the
client's reconnect with ``Last-Event-ID`` resumes without loss or repeat. The
``retry:`` they send is jittered per stream so clients dropped together spread
their reconnects.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from ..auth.policies import SALT, authorize
from ..hub.hub import Hub
from ..hub.subscriber import Subscriber
from ..outages import guard
from ..render.formats import JSON, Render
from ..render.select import render_for
from ..store import LogSlice, get_store
from ..wire import is_valid_execution_id
from .connect import Outcome, Timings, authorised, connect
from .cursor import Cursor
from .live import deliver, follow, replay
from .renewal import Renewal, renewal_for

logger = logging.getLogger("django_sse_exec")

async def open_stream(request: Any, execution_id: str, last_event_id: int | None,
                      entry_point: str = "view") -> Outcome:
    """Apply the connect rules and return the response to give.

    ``entry_point`` ("view" or "fast") labels the stream's metrics and end log line.
    An outage at connect (the policy's database, the store's Redis) is a 200
    whose body is only a ``retry:`` hint and a comment naming the cause, so
    ``EventSource`` comes back; only a refusal is a 403.
    """
    if not is_valid_execution_id(execution_id):
        return Outcome(404, "unknown execution")

    async def decide(timings: Timings) -> Outcome:
        refused = await authorised(timings, authorize(request, execution_id))
        if refused is not None:
            return refused
        render = render_for(getattr(request, "GET", None), execution_id)
        if render is None:
            return Outcome(400, "unknown format")
        head = None
        if last_event_id:  # only a client that has seen events can be told "no more"
            with timings("head"):
                head = await guard("event store", get_store().read(execution_id, upto=0))
            if head.closed and last_event_id == head.last_id:
                return Outcome(204)
        renewal = renewal_for(request, SALT, {"e": execution_id},
                              lambda again: authorize(again, execution_id))
        return Outcome(200, body=stream_events(
            execution_id, last_event_id, scope=getattr(request, "scope", None), head=head,
            render=render, entry_point=entry_point, renewal=renewal))

    return await connect(request, decide, label=execution_id)


def stream_events(execution_id: str, after: int | None, scope: Any = None,
                  head: LogSlice | None = None, render: Render = JSON,
                  entry_point: str = "view",
                  renewal: Renewal | None = None) -> AsyncGenerator[bytes, None]:
    """The bytes of one stream: preamble, replay, live events, keepalives, end.

    ``scope`` is the request's ASGI scope; where the server lets us measure
    that connection's unsent bytes (daphne), the stream pauses
    while more than ``CLIENT_BUFFER_BYTES`` are unsent, and the hub's guard drops
    it if its client takes nothing for ``WRITE_TIMEOUT`` or falls more than
    ``CLIENT_BUFFER`` events behind meanwhile.

    ``head`` is a read of the log made before (to decide the connect); it
    saves reading it again. ``render`` turns events into bytes
    (:mod:`django_sse_exec.render.formats`: JSON frames, or HTML fragments and state).
    ``renewal`` renews the stream's token before it expires (:mod:`.renewal`).
    """
    cursor = Cursor(execution_id, after or 0, render)
    return deliver([execution_id], lambda hub, sub: (
        _start(hub, sub, cursor, after, head), follow(hub, sub, {execution_id: cursor}, render)),
        scope=scope, entry_point=entry_point, on_end=render.close, renewal=renewal)


async def _start(hub: Hub, sub: Subscriber, cursor: Cursor, after: int | None,
                 head: LogSlice | None) -> AsyncIterator[bytes]:
    """What a stream sends before live events: a reset if its position is gone, the replay."""
    if sub.end_reason is not None:
        return
    store, execution_id, render = hub.store, cursor.execution_id, cursor.render
    if after:
        if head is None:
            head = await store.read(execution_id, upto=0)
        if not head.holds(after):
            # The client's id is not a position in this log: the history was
            # trimmed past it, or it belongs to a lost incarnation (another
            # epoch, or a log that expired and restarted). Start over.
            yield render.reset(execution_id, after, head.first_id)
            cursor.last_sent = 0
    async for chunk in replay(store, cursor, hub=hub):
        yield chunk


__all__ = ["open_stream", "stream_events"]
