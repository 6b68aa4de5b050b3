"""Streams of many executions on one connection: a fixed set, or a feed.

A page that lists a user's running imports would otherwise open one
``EventSource`` per execution, and browsers allow about six connections per
host across all tabs. A multi stream carries up to ``MULTI_STREAM_MAX``
executions; a feed stream carries the executions of a named feed's last
``MULTI_STREAM_MAX`` entries (:mod:`django_sse_exec.sending.feeds`,
:mod:`.feeds`), announcing each with ``execution-added``.

Both follow the single stream's rules, per execution, with the very same code
(:func:`~django_sse_exec.streams.live.deliver`, :class:`~django_sse_exec.streams.cursor.Cursor`,
:func:`~django_sse_exec.streams.live.follow`): replay past the client's position,
``stream-reset`` where history is gone, gap repair, ``stream-closed``. Only the
framing differs (:mod:`django_sse_exec.wire.many`): each frame's ``id:`` is a
cursor of every execution's position, built as the frame is written, so a
reconnect resumes each execution exactly. A set's stream ends when all its
executions have closed (a reconnect then gets 204); a feed's never ends. Both
start their executions one after the other, reading each log a page at a time
(:func:`start_all`), so what a stalled stream holds does not grow with its
executions.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from ...auth.many import SET_SALT, authorize_set
from ...conf import sse_settings
from ...hub.hub import Hub
from ...hub.subscriber import Subscriber
from ...outages import guard
from ...render.formats import JSON
from ...render.select import requested_format
from ...store import LogSlice, get_store
from ...wire.many import key_of, parse_cursor, parse_ids, set_digest
from ..connect import Outcome, Timings, authorised, connect
from ..cursor import Cursor
from ..live import deliver, follow, label_of, replay
from ..renewal import renewal_for
from .frames import AllRenders, MultiRender, Mux
from .html import SET_CLOSED_HTML, MultiHtmlRender


def multi_max() -> int:
    """``MULTI_STREAM_MAX``: executions one multi stream, or one feed stream, may carry."""
    return int(sse_settings.MULTI_STREAM_MAX)


async def open_multi_stream(request: Any, ids: str | None, last_event_id: str | None,
                            entry_point: str = "view") -> Outcome:
    """Connect a stream of the fixed set ``?ids=`` (404 malformed, 403, 204 all closed).

    ``?format=html`` sends each execution's state as HTML (:mod:`.html`).
    """
    execution_ids = parse_ids(ids, multi_max())
    if execution_ids is None:
        return Outcome(404, f"ids must be 1-{multi_max()} distinct, valid execution ids")

    async def decide(timings: Timings) -> Outcome:
        refused = await authorised(timings, authorize_set(request, execution_ids))
        if refused is not None:
            return refused
        requested = requested_format(getattr(request, "GET", None))
        if requested is None:
            return Outcome(400, "unknown format")
        html = requested == "html"
        given = parse_cursor(last_event_id) or {}
        positions = [given.get(key_of(i), 0) for i in range(len(execution_ids))]
        if given:  # only a client that has seen events can be told "no more"
            store = get_store()
            with timings("head"):
                heads = await guard("event store", asyncio.gather(
                    *(store.read(e, upto=0) for e in execution_ids)))
            if all(h.closed and p == h.last_id for h, p in zip(heads, positions)):
                return Outcome(204)
        plan = SetStream(execution_ids, positions, html)
        renewal = renewal_for(request, SET_SALT, {"s": set_digest(execution_ids)},
                              lambda again: authorize_set(again, execution_ids))
        return Outcome(200, body=deliver(execution_ids, plan.phases, on_end=plan.close,
                                         scope=getattr(request, "scope", None),
                                         entry_point=entry_point, renewal=renewal))

    return await connect(request, decide, label=label_of(execution_ids))


async def start_all(hub: Hub, cursors: list[Cursor]) -> AsyncIterator[bytes]:
    """Start each execution of ``cursors`` (subscribed already), one after the other.

    The heads of their logs are read together first (one round trip on Redis,
    after subscribing: the seam between replay and live, see
    :mod:`django_sse_exec.streams.live`); then each execution's replay is read a
    page at a time, when its turn comes. So a stream of a hundred executions
    holds at most one page while its client is not reading (reading every
    first page at once held ~19 MB per stalled connection), and an execution
    with nothing past the client's position costs no read at all. The heads
    also tell the hub that this stream replays their logs itself (no catch-up
    of what it is about to read).
    """
    heads = await asyncio.gather(*(hub.store.read(c.execution_id, upto=0) for c in cursors))
    for cursor, head in zip(cursors, heads):
        hub.note_seen(cursor.execution_id, head.last_id)
    for cursor, head in zip(cursors, heads):
        async for chunk in start_one(hub, cursor, head):
            yield chunk


async def start_one(hub: Hub, cursor: Cursor, head: LogSlice) -> AsyncIterator[bytes]:
    """One execution's start: a reset if its position is gone, then its replay.

    ``head`` is a read of the log's head (no events) made after subscribing.
    """
    render = cursor.render
    if cursor.last_sent and not head.holds(cursor.last_sent):
        reset = render.reset(cursor.execution_id, cursor.last_sent, head.first_id)
        cursor.last_sent = 0
        if reset:  # (HTML rebuilds the state instead)
            yield reset
    if isinstance(render, MultiRender):
        render.start(cursor)  # its position, after a reset, in the stream's cursor
    if head.closed and cursor.last_sent == head.last_id:
        cursor.done = True  # closed, and the client has seen its end
        return
    if cursor.last_sent < head.last_id:
        async for chunk in replay(hub.store, cursor):
            yield chunk


class SetStream:
    """One set stream's cursors and renders (built with no I/O), and its phases."""

    def __init__(self, execution_ids: list[str], positions: list[int], html: bool) -> None:
        mux = Mux()
        kind: type[MultiRender] = MultiHtmlRender if html else MultiRender
        self.renders = [kind(mux, key_of(i), e) for i, e in enumerate(execution_ids)]
        self.cursors: dict[str, Cursor] = {}
        for render, position in zip(self.renders, positions):
            cursor = self.cursors[render.execution_id] = Cursor(render.execution_id, position, render)
            render.start(cursor)
        self.everyone = AllRenders(self.cursors)
        self.html = html

    def phases(self, hub: Hub, sub: Subscriber) -> tuple[AsyncIterator[bytes], AsyncIterator[bytes]]:
        if not self.html:
            return self._start(hub, sub), follow(hub, sub, self.cursors, JSON)
        return self._start(hub, sub), self._ended(sub, follow(hub, sub, self.cursors, self.everyone))

    async def _ended(self, sub: Subscriber, live: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """``live``, then, once every execution has closed, the set's own ``stream-closed``.

        HTML streams send no ``stream-closed`` per execution (it would close the
        whole connection under htmx); without one at the end, htmx's SSE
        extension would open the stream again, replaying the final states, for ever.
        """
        async for chunk in live:
            yield chunk
        if sub.end_reason is None and all(c.done for c in self.cursors.values()):
            yield SET_CLOSED_HTML

    async def _start(self, hub: Hub, sub: Subscriber) -> AsyncIterator[bytes]:
        if sub.end_reason is not None:
            return
        async for chunk in start_all(hub, list(self.cursors.values())):
            yield chunk

    def close(self) -> None:
        self.everyone.close()


__all__ = ["SetStream", "multi_max", "open_multi_stream", "start_all", "start_one"]
