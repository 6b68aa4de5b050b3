"""A connected stream's bytes: subscribe, preamble, replay, live events, keepalives, end.

What every kind of stream shares once its connect was allowed — one
execution's (:mod:`django_sse_exec.streams.single`) and a set's or a feed's
(:mod:`django_sse_exec.streams.many.sets`): :func:`deliver` subscribes and writes, in
pieces, pausing while the client's unsent bytes are over the limit;
:func:`replay` sends the log past a cursor one page at a time; :func:`follow`
sends live events as the hub pushes them, coalesced, with keepalives, filling
gaps from the log.

The seam between replay and live is safe because the stream subscribes to the
hub *before* it reads the log: an event logged before the read is replayed, one
logged after arrives live, one in between arrives both ways and is dropped the
second time (ids only ever increase). A live event whose id skips ahead makes
the stream fetch the missing ids from the log (gap repair).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

from ..conf import sse_settings
from ..hub.hub import Hub
from ..hub.running import get_hub
from ..hub.subscriber import Subscriber
from ..outages import tracker, unavailable
from ..render.formats import JSON, Render
from ..runtime.daphne_buffer import find_backlog
from ..runtime.sync import set_home_loop
from ..store import Store
from ..telemetry import tracing
from ..wire import preamble, rejoin_hint
from .cursor import Cursor
from .renewal import EXPIRED_END, Renewal
from .stats import StreamTally
from .write_now import COALESCE, PIECE_BYTES, direct_send, settle, take_now

logger = logging.getLogger("django_sse_exec")


def retry_ms() -> int:
    """The ``retry:`` value of one stream: ``RETRY_MS`` plus up to ``RETRY_JITTER_MS``."""
    jitter = int(sse_settings.RETRY_JITTER_MS)
    return int(sse_settings.RETRY_MS) + (random.randint(0, jitter) if jitter > 0 else 0)


#: Reasons to end a stream after which the client is told to come back.
_REJOIN_REASONS = ("shutdown", "lifetime", "reset")




def _pieces(chunk: bytes) -> list[bytes]:
    return [chunk[i:i + PIECE_BYTES] for i in range(0, len(chunk), PIECE_BYTES)]


#: A stream's phases once subscribed: what comes before live events (a reset, the
#: replay), then the live events (usually :func:`follow`).
Phases = Callable[[Hub, Subscriber], tuple[AsyncIterator[bytes], AsyncIterator[bytes]]]


def label_of(execution_ids: list[str]) -> str:
    """A stream's name in logs and spans: its execution, or the first and how many more."""
    return execution_ids[0] if len(execution_ids) == 1 else f"{execution_ids[0]}+{len(execution_ids) - 1}"


async def deliver(execution_ids: list[str], phases: Phases, *,
                  scope: Any = None, entry_point: str = "view",
                  on_end: Callable[[], None] | None = None,
                  renewal: Renewal | None = None) -> AsyncGenerator[bytes, None]:
    """Subscribe to ``execution_ids`` and write what ``phases`` yield, as every stream does.

    ``phases(hub, sub)`` gives the start (reset, replay) and the live part; they
    are written one after the other, so that for the stream's lifetime only this
    generator and the live one are held (a stream costs its memory for hours).

    This is what a stream of one execution and a stream of many
    (:mod:`django_sse_exec.streams.many.sets`) share: the preamble, pieces of at most
    ``PIECE_BYTES``, the pause while the client's unsent bytes are over the
    limit, the rejoin hint of a stream ended on purpose, its tally, and the
    clean-up in ``finally`` (Django cancels this generator when the client goes).
    ``renewal`` renews the stream's token while it follows live events (see :func:`follow`).
    Errors after the headers are sent end the stream cleanly (the client
    reconnects with its Last-Event-ID) instead of hanging the connection.
    """
    set_home_loop(asyncio.get_running_loop())
    hub = get_hub()
    label = label_of(execution_ids)
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
    sub.renewal = renewal
    del renewal
    tally = StreamTally(label, entry_point)
    lifetime = tracing.start("sse_exec.stream", **{"sse_exec.execution_id": label,
                                                   "sse_exec.entry_point": entry_point})
    send = direct_send(scope)
    if send is not None:  # the entry point lets the fan-out write (see follow())
        sub.direct_send, sub.tally = send, tally
    retry = retry_ms()
    limit = int(sse_settings.CLIENT_BUFFER_BYTES)
    phase: AsyncIterator[bytes] | None
    then: AsyncIterator[bytes] | None
    try:
        # Keep the phases, not what made them (a closure per stream, for hours).
        phase, then = phases(hub, sub)
        del phases
        yield preamble(retry)
        tracing.note(lifetime, "first byte")
        while phase is not None:
            async for chunk in phase:
                for piece in (chunk,) if len(chunk) <= PIECE_BYTES else _pieces(chunk):
                    backlog = sub.backlog
                    if backlog is not None and backlog.pending() > limit and not await sub.drained(limit):
                        return  # ended while its client was not reading: no more bytes
                    if sub.inflight is not None:  # a write of the fan-out's is still on its way
                        await settle(sub)
                    sub.writing(len(piece))
                    tally.wrote(piece)
                    yield piece
                    sub.written()
            if then is not None:
                tracing.note(lifetime, "replayed")
            phase, then = then, None
        if sub.end_reason in _REJOIN_REASONS:
            yield rejoin_hint(retry, sub.end_reason)
    except asyncio.CancelledError:
        raise
    except Exception:
        tally.failed = True
        logger.exception("stream of execution %s failed; ending it", label)
    finally:
        tally.ended(sub.end_reason)
        tracing.end(lifetime, **{"sse_exec.end_reason": str(sub.end_reason or "client_gone")})
        if on_end is not None:
            on_end()
        await asyncio.shield(hub.unsubscribe(sub))


async def follow(hub: Hub, sub: Subscriber, cursors: dict[str, Cursor], render: Render = JSON,
                 grow: Callable[[], AsyncIterator[bytes]] | None = None) -> AsyncIterator[bytes]:
    """Live events of the executions of ``cursors`` (by id), with keepalives and gap repair.

    Ends when every cursor is done (its execution closed) and ``grow`` is None,
    or when the hub ends the stream. ``render.flush`` runs before each write;
    ``grow`` (a feed stream's) runs after each, to start on executions that joined.
    When the stream's token is due (``sub.renewal``), it is renewed between two
    writes, or the stream ends with ``stream-token-expired``.
    """
    store = hub.store
    keepalive = float(sse_settings.KEEPALIVE)
    loop = asyncio.get_running_loop()
    renewal: Renewal | None = sub.renewal
    if sub.direct_send is not None and render is JSON and grow is None and len(cursors) == 1:
        # While it waits, the fan-out writes its events itself (streams/write_now.py).
        sub.cursor_now, sub.sink = next(iter(cursors.values())), take_now
    while sub.end_reason is None and (grow is not None or not all(c.done for c in cursors.values())):
        if renewal is not None and loop.time() >= renewal.at:
            chunk, ended = await renewal.run()
            if sub.end_reason is None:
                yield chunk
            if ended:
                sub.end_reason = EXPIRED_END
                return
            continue
        wait = keepalive if renewal is None else min(keepalive, max(renewal.at - loop.time(), 0.0))
        if not await sub.wait(wait):
            if wait == keepalive:
                yield tracker.keepalive()  # during a Redis outage it names the cause and fix
            continue
        # Under a stream of events, write at most every COALESCE seconds: many
        # events per write instead of one (the first event after a quiet spell
        # goes out at once).
        now = loop.time()
        if now < sub.written_at + COALESCE:
            await asyncio.sleep(sub.written_at + COALESCE - now)
            now = loop.time()
        if sub.end_reason is not None:
            return
        sub.written_at = now
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
        for cursor in list(cursors.values()) if overflowed or catch_up else ():
            # (a feed's replay may stop following an execution: skip it then)
            if cursors.get(cursor.execution_id) is cursor and not cursor.done and (
                    overflowed or catch_up > cursor.last_sent):
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


__all__ = ["COALESCE", "PIECE_BYTES", "Phases", "deliver", "follow", "label_of", "replay", "retry_ms"]
