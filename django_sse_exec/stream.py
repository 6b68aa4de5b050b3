"""The stream itself, independent of how its bytes are framed.

Both the Django view and any faster ASGI entry point call :func:`open_stream`,
which applies the connect rules (404 malformed id, 403 not authorised, 204 closed
and nothing new) and, for a 200, gives an async iterator of ready-made bytes:
the preamble, the replay of what the client has not seen, then live events with
keepalives, ending after ``stream-closed``.

The seam between replay and live is safe because the stream subscribes to the
hub *before* it reads the log: an event logged before the read is replayed, one
logged after arrives live, one in between arrives both ways and is dropped the
second time (ids only ever increase). A live event whose id skips ahead makes
the stream fetch the missing ids from the log (gap repair).

Streams also end on purpose — on shutdown, when rotated after
``MAX_STREAM_LIFETIME``, or when their client stops taking bytes (see
:meth:`~django_sse_exec.hub.Hub.drop`) — always between two events, so the
client's reconnect with ``Last-Event-ID`` resumes without loss or repeat. The
``retry:`` they send is jittered per stream so clients dropped together spread
their reconnects.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from .auth import authorize
from .backlog import find_backlog
from .caps import OverCap, admit
from .conf import sse_settings
from .cursor import Cursor
from .failures import ServiceUnavailable, guard, retry_body, unavailable
from .formats import JSON, Render, render_for
from .headers import STREAM_HEADERS, response_headers, session_read
from .hub import Hub, get_hub
from .runner import set_home_loop
from .store import LogSlice, Store, get_store
from .subscriber import Subscriber
from .tally import StreamTally
from .wire import (
    KEEPALIVE,
    is_valid_execution_id,
    parse_last_event_id,
    preamble,
    rejoin_hint,
)

logger = logging.getLogger("django_sse_exec")

#: Response headers of every stream (besides the status line); see headers.py.
HEADERS: dict[str, str] = STREAM_HEADERS


@dataclass
class Outcome:
    """The result of a connect: a status, a short reason, and the body for a 200."""

    status: int
    reason: str = ""
    body: AsyncIterator[bytes] | None = None
    #: The answer depended on the session (the policy read it): ``Vary: Cookie``.
    vary_cookie: bool = False
    #: Seconds for ``Retry-After`` (a 429 from a stream cap).
    retry_after: int | None = None

    @property
    def headers(self) -> dict[str, str]:
        """Every header of this answer, the same for the view and the fast path."""
        return response_headers(self.status, vary_cookie=self.vary_cookie,
                                has_body=bool(self.reason), retry_after=self.retry_after)


def last_event_id_of(header: str | None, query: str | None) -> int | None:
    """The client's position: the ``Last-Event-ID`` header, else ``?last_event_id=``."""
    parsed = parse_last_event_id(header)
    return parsed if parsed is not None else parse_last_event_id(query)


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
    try:
        reason = await authorize(request, execution_id)
        vary = session_read(request)
        if reason is not None:
            return Outcome(403, reason, vary_cookie=vary)
        render = render_for(getattr(request, "GET", None), execution_id)
        if render is None:
            return Outcome(400, "unknown format", vary_cookie=vary)
        head = None
        if last_event_id:  # only a client that has seen events can be told "no more"
            head = await guard("event store", get_store().read(execution_id, upto=0))
            if head.closed and last_event_id == head.last_id:
                return Outcome(204, vary_cookie=vary)
        slot = await guard("stream caps", admit(request))  # a per-user cap may read the session too
    except OverCap as exc:
        return Outcome(429, str(exc), vary_cookie=session_read(request),
                       retry_after=exc.retry_after)
    except ServiceUnavailable as exc:  # not a refusal: a 200 the client retries
        return Outcome(200, str(exc), body=retry_body(exc, retry_ms()),
                       vary_cookie=session_read(request))
    body = stream_events(execution_id, last_event_id, scope=getattr(request, "scope", None),
                         head=head, render=render, entry_point=entry_point)
    return Outcome(200, body=slot.hold(body) if slot else body,
                   vary_cookie=session_read(request))


def retry_ms() -> int:
    """The ``retry:`` value of one stream: ``RETRY_MS`` plus up to ``RETRY_JITTER_MS``."""
    jitter = int(sse_settings.RETRY_JITTER_MS)
    return int(sse_settings.RETRY_MS) + (random.randint(0, jitter) if jitter > 0 else 0)


#: Reasons to end a stream after which the client is told to come back.
_REJOIN_REASONS = ("shutdown", "lifetime", "reset")


def stream_events(execution_id: str, after: int | None, scope: Any = None,
                  head: LogSlice | None = None, render: Render = JSON,
                  entry_point: str = "view") -> AsyncGenerator[bytes, None]:
    """The bytes of one stream: preamble, replay, live events, keepalives, end.

    ``scope`` is the request's ASGI scope; where the server lets us measure
    that connection's unsent bytes (daphne), the stream pauses
    while more than ``CLIENT_BUFFER_BYTES`` are unsent, and the hub's guard drops
    it if its client takes nothing for ``WRITE_TIMEOUT`` or falls more than
    ``CLIENT_BUFFER`` events behind meanwhile.

    ``head`` is a read of the log made before (to decide the connect); it
    saves reading it again. ``render`` turns events into bytes
    (:mod:`django_sse_exec.formats`: JSON frames, or HTML fragments and state).
    """
    return deliver([execution_id], lambda hub, sub: _events(hub, sub, execution_id, after,
                                                            head, render),
                   scope=scope, entry_point=entry_point, on_end=render.close)


async def deliver(execution_ids: list[str],
                  events: Callable[[Hub, Subscriber], AsyncIterator[bytes]], *,
                  scope: Any = None, entry_point: str = "view",
                  on_end: Callable[[], None] | None = None) -> AsyncGenerator[bytes, None]:
    """Subscribe to ``execution_ids`` and write what ``events`` yields, as every stream does.

    This is what a stream of one execution and a stream of many
    (:mod:`django_sse_exec.multi`) share: the preamble, pieces of at most
    ``PIECE_BYTES``, the pause while the client's unsent bytes are over the
    limit, the rejoin hint of a stream ended on purpose, its tally, and the
    clean-up in ``finally`` (Django cancels this generator when the client goes).
    Errors after the headers are sent end the stream cleanly (the client
    reconnects with its Last-Event-ID) instead of hanging the connection.
    """
    set_home_loop(asyncio.get_running_loop())
    hub = get_hub()
    label = execution_ids[0] if len(execution_ids) == 1 else f"{execution_ids[0]}+{len(execution_ids) - 1}"
    try:
        sub = await hub.subscribe(*execution_ids)
    except Exception as exc:  # e.g. the store timed out in a connect storm
        outage = unavailable("event store", exc)
        if outage is None:
            logger.exception("could not subscribe a stream of execution %s; ending it", label)
        # A clean, empty stream: the client comes back after retry.
        yield rejoin_hint(retry_ms(), str(outage or "subscribe failed"))
        return
    sub.backlog = find_backlog(scope)
    tally = StreamTally(label, entry_point)
    retry = retry_ms()
    limit = int(sse_settings.CLIENT_BUFFER_BYTES)
    try:
        yield preamble(retry)
        async for chunk in events(hub, sub):
            for piece in (chunk,) if len(chunk) <= PIECE_BYTES else _pieces(chunk):
                backlog = sub.backlog
                if backlog is not None and backlog.pending() > limit and not await sub.room(limit):
                    return  # ended while its client was not reading: no more bytes
                sub.writing(len(piece))
                tally.wrote(piece)
                yield piece
                sub.written()
        if sub.end_reason in _REJOIN_REASONS:
            yield rejoin_hint(retry, sub.end_reason)
    except asyncio.CancelledError:
        raise
    except Exception:
        tally.failed = True
        logger.exception("stream of execution %s failed; ending it", label)
    finally:
        tally.ended(sub.end_reason)
        if on_end is not None:
            on_end()
        await asyncio.shield(hub.unsubscribe(sub))


#: Seconds a busy stream gathers events before its next write.
COALESCE = 0.01

#: Largest piece a stream hands to the server at once (a long replay is cut up,
#: so the unsent-bytes limit holds during it too).
PIECE_BYTES = 64 * 1024


def _pieces(chunk: bytes) -> list[bytes]:
    return [chunk[i:i + PIECE_BYTES] for i in range(0, len(chunk), PIECE_BYTES)]


async def _events(hub: Hub, sub: Subscriber, execution_id: str, after: int | None,
                  head: LogSlice | None, render: Render = JSON) -> AsyncIterator[bytes]:
    if sub.end_reason is not None:
        return
    store = hub.store
    cursor = Cursor(execution_id, after or 0, render)
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
    async for chunk in follow(hub, sub, {execution_id: cursor}, render):
        yield chunk


async def follow(hub: Hub, sub: Subscriber, cursors: dict[str, Cursor], render: Render = JSON,
                 grow: Callable[[], AsyncIterator[bytes]] | None = None) -> AsyncIterator[bytes]:
    """Live events of the executions of ``cursors`` (by id), with keepalives and gap repair.

    Ends when every cursor is done (its execution closed) and ``grow`` is None,
    or when the hub ends the stream. ``render.flush`` runs before each write;
    ``grow`` (a feed stream's) runs after each, to start on executions that joined.
    """
    store = hub.store
    keepalive = float(sse_settings.KEEPALIVE)
    loop = asyncio.get_running_loop()
    written_at = 0.0
    while sub.end_reason is None and (grow is not None or not all(c.done for c in cursors.values())):
        if not await sub.wait(keepalive):
            yield KEEPALIVE
            continue
        # Under a stream of events, write at most every COALESCE seconds: many
        # events per write instead of one (the first event after a quiet spell
        # goes out at once).
        now = loop.time()
        if now < written_at + COALESCE:
            await asyncio.sleep(written_at + COALESCE - now)
            now = loop.time()
        if sub.end_reason is not None:
            return
        written_at = now
        batches, catch_up, overflowed = sub.take()
        out: list[bytes] = []
        for batch in batches:
            cursor = cursors.get(batch.execution_id)
            if cursor is None:
                continue
            if batch.first > cursor.last_sent + 1 and not cursor.done:  # a gap: fill it from the log
                await render.flush(out)
                if out:
                    yield b"".join(out)
                    out = []
                async for chunk in replay(store, cursor, upto=batch.first - 1):
                    yield chunk
                cursor.jump(batch.first, out)
            cursor.take_batch(batch, out)
        await render.flush(out)
        if out:
            yield b"".join(out)
        for cursor in cursors.values() if overflowed or catch_up else ():
            if not cursor.done and (overflowed or catch_up > cursor.last_sent):
                async for chunk in replay(store, cursor):
                    yield chunk
        if grow is not None:
            async for chunk in grow():
                yield chunk


async def replay(store: Store, cursor: Cursor, upto: int | None = None,
                  hub: Hub | None = None) -> AsyncIterator[bytes]:
    """The log past ``cursor`` (up to ``upto``), one page read and written at a time.

    With ``hub``, the log's end at the first read is noted there: this stream
    delivers up to it itself, so the hub need not catch up what it reads.
    """
    async for page in store.pages(cursor.execution_id, after=cursor.last_sent, upto=upto):
        if hub is not None:
            hub.note_seen(cursor.execution_id, page.last_id)
            hub = None
        out: list[bytes] = []
        cursor.take_slice(page, out)
        await cursor.render.flush(out)
        if out:
            yield b"".join(out)
        if cursor.done:
            return


__all__ = ["HEADERS", "Outcome", "deliver", "last_event_id_of", "open_stream", "follow", "replay", "retry_ms",
           "stream_events"]
