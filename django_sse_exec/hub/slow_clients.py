"""Ending streams that should not go on: clients that stopped reading, and rotation.

daphne has no backpressure, so a client that stops reading would make the
server buffer its stream without limit; servers with backpressure (uvicorn)
instead leave the stream suspended in a write. The hub's maintenance runs
:func:`sweep` every ``REPAIR_INTERVAL``: a stream whose client took no bytes for
``WRITE_TIMEOUT`` — or that is ``CLIENT_BUFFER`` events behind while its writes
are blocked — is dropped (:func:`drop`); one past its ``MAX_STREAM_LIFETIME`` is
ended with a retry hint. Either way the client reconnects with its
Last-Event-ID and loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from ..conf import sse_settings
from .hub import Hub
from .subscriber import Subscriber

logger = logging.getLogger("django_sse_exec")

_cleanups: set[asyncio.Future[None]] = set()


def drop(hub: Hub, sub: Subscriber, reason: str) -> None:
    """End a stream whose client does not take its bytes, without waiting on it.

    Where the connection can be measured it is aborted (daphne would otherwise
    hold the unsent bytes until the client goes); otherwise the task blocked in
    the write is cancelled.
    """
    if sub.end_reason == reason:
        return
    sub.end_reason = reason
    logger.warning("dropping a stream of execution %s: %s", sub.execution_id, reason)
    if sub.backlog is not None:
        sub.backlog.abort()
    elif sub.writing_since is not None and sub.task is not None:
        # The stream is suspended in a yield, so cancelling its task does not
        # reach its ``finally`` (the server drops the generator unclosed):
        # unsubscribe it here.
        sub.task.cancel()
        cleanup = asyncio.ensure_future(hub.unsubscribe(sub))
        _cleanups.add(cleanup)
        cleanup.add_done_callback(_cleanups.discard)
    else:
        sub.wake()


def sweep(hub: Hub, now: float, streams: Iterable[Subscriber] | None = None) -> None:
    """Rotate streams past their lifetime; drop those whose client stopped reading.

    ``streams``: the hub's streams to look at (default: all of them).
    """
    write_timeout = float(sse_settings.WRITE_TIMEOUT)
    for sub in hub.subscribers() if streams is None else streams:
        if sub.end_reason is not None:
            continue
        if sub.stalled(now, write_timeout):
            drop(hub, sub, f"client took no bytes for {write_timeout:g}s")
        elif sub.overflowed and sub.writing_since is not None:
            drop(hub, sub, f"client is {sub.limit} events behind")
        elif sub.expires_at is not None and now >= sub.expires_at:
            hub.end(sub, "lifetime")
