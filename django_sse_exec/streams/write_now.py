"""Writing an event to a waiting fast-path stream from the fan-out, without waking its task.

A stream that waits for events is a task parked in :func:`~.live.follow`; waking
it for each event costs a pass of the event loop and the resumption of three
nested generators (the entry point's pump, :func:`~.live.deliver`,
:func:`~.live.follow`) — per delivered event, most of what the app adds to a
raw server's work. Where the entry point lets its ASGI ``send`` be called
directly (the fast path puts it in the scope: :data:`DIRECT_SEND`), :func:`take_now` writes a batch
the moment the hub pushes it, as the woken task would have: the same bytes, the
same cursor, tally and keepalive bookkeeping, and only when the task would have
written it at once and on its own (the stream is exactly at the batch's first id,
its last write was more than ``COALESCE`` ago, nothing else is pending, the
batch fits one piece, it does not end the execution, the client's unsent bytes
are under the limit). Anything else goes the usual way.

ASGI does not promise that ``send`` completes without suspending (uvicorn's
waits while its transport is paused). A send that suspends is driven to its
end from the future it waits on (:class:`~django_sse_exec.runtime.drive.Driven`),
and the stream writes nothing else until it has (:func:`settle`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ..hub.subscriber import Batch, Subscriber
from ..runtime.drive import Driven
from .stats import GONE_MID_WRITE

logger = logging.getLogger("django_sse_exec")

#: The key of the request's ASGI scope under which the entry point puts its ``send``
#: when the stream may call it itself (the fast path does; the view's bytes go through
#: Django's response). In the scope rather than a context variable: the scope is kept
#: for the stream's lifetime anyway, a context variable set per request is not free.
DIRECT_SEND = "django_sse_exec.send"


def direct_send(scope: Any) -> Callable[[dict[str, Any]], Awaitable[None]] | None:
    """The ``send`` a stream of this request may call itself, or None."""
    return scope.get(DIRECT_SEND) if isinstance(scope, dict) else None

#: Largest piece a stream hands to the server at once (a long replay is cut up,
#: so the unsent-bytes limit holds during it too); bigger batches are not written here.
PIECE_BYTES = 64 * 1024
#: Seconds a busy stream gathers events before its next write (:func:`~.live.follow`).
COALESCE = 0.01


def take_now(sub: Subscriber, batch: Batch) -> bool:
    """Write ``batch`` to ``sub``'s client now if the waiting stream would have at once; True if so."""
    cursor = sub.cursor_now
    data = batch.data
    if (batch.first != cursor.last_sent + 1 or batch.closing or cursor.done or sub.inflight is not None
            or sub.end_reason is not None or batch.execution_id != cursor.execution_id
            or len(data) > PIECE_BYTES):
        return False
    now = sub._loop.time()
    if now < sub.written_at + COALESCE:
        return False
    backlog = sub.backlog
    if backlog is not None and backlog.pending() > sub.max_bytes:
        return False
    cursor.last_sent = batch.last
    sub.quiet_since(now)
    sub.writing(len(data))
    sub.tally.wrote(data)
    sending = sub.direct_send({"type": "http.response.body", "body": data, "more_body": True})
    try:
        waiting_on = sending.send(None)
    except StopIteration:
        sub.written()
        return True
    except Exception as exc:  # the client went away mid-write, or the server refused it
        logger.debug("a direct write to a stream of %s failed: %s", sub.execution_id, exc)
        sub.end_reason = sub.end_reason or GONE_MID_WRITE
        sub.wake()
        return True
    sub.inflight = Driven(sending, lambda _, exc: _sent(sub, exc), started=True, waiting=waiting_on)
    return True


def _sent(sub: Subscriber, exc: BaseException | None) -> None:
    """A direct write that had to wait for the server is done (or failed)."""
    sub.inflight = None
    if exc is None:
        sub.written()
        return
    logger.debug("a direct write to a stream of %s failed: %s", sub.execution_id, exc)
    sub.end_reason = sub.end_reason or GONE_MID_WRITE
    sub.wake()


async def settle(sub: Subscriber) -> None:
    """Wait until a direct write of ``sub`` that suspended has finished (before writing more)."""
    inflight = sub.inflight
    if inflight is not None:
        await inflight.finished()


__all__ = ["COALESCE", "DIRECT_SEND", "PIECE_BYTES", "direct_send", "settle", "take_now"]
