"""Ordered background publishing for sync senders whose sends cannot be fused.

When the event log is in Redis but the channel layer's messages cannot be
delivered by the log's own script (several hosts, encryption, an untested
channels_redis), a sync send logs the event with one blocking round trip and
hands the message to the process's :class:`Publisher`, which publishes
everything handed to it in order, in pipelined batches, on the private loop.
The caller only waits when the backlog is full (``Publisher.MAX_BACKLOG``), so
memory stays bounded; it is flushed on close and at interpreter exit. A
message that cannot be published is still in the log: the hubs' repair sweep
delivers it within ``REPAIR_INTERVAL``.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
import time
from collections import deque
from typing import Any

from ..layer.access import get_layer
from ..layer.redis.batches import group_send_in_order
from ..runtime.sync import private_loop

logger = logging.getLogger("django_sse_exec")
_lock = threading.Lock()


class Publisher:
    """Publishes channel-layer messages handed over by sync callers, in order.

    ``submit`` appends to a bounded backlog and returns at once; one drain task
    on the private loop takes up to ``BATCH`` messages at a time and sends them
    with :func:`~django_sse_exec.layer.redis.batches.group_send_in_order` (one pipelined round
    trip on the pub/sub layer). Thread-safe.
    """

    MAX_BACKLOG = 10_000
    BATCH = 500

    def __init__(self) -> None:
        self._items: deque[tuple[str, dict[str, Any]]] = deque()
        self._cond = threading.Condition()
        self._draining = False

    def submit(self, group: str, message: dict[str, Any]) -> None:
        """Queue ``message`` for ``group``; blocks only while the backlog is full."""
        with self._cond:
            while len(self._items) >= self.MAX_BACKLOG:
                self._cond.wait()
            self._items.append((group, message))
            if not self._draining:
                self._draining = True
                private_loop().call_soon_threadsafe(self._start)

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until everything submitted so far is published; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._draining, timeout)

    def backlog(self) -> int:
        """Messages submitted and not yet taken for publishing."""
        return len(self._items)

    def _start(self) -> None:
        asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        while True:
            with self._cond:
                if not self._items:
                    self._draining = False
                    self._cond.notify_all()
                    return
                batch = [self._items.popleft()
                         for _ in range(min(self.BATCH, len(self._items)))]
                self._cond.notify_all()
            try:
                await group_send_in_order(get_layer(), batch)
            except Exception:
                logger.exception("could not publish %d event(s); the hubs' repair sweep "
                                 "will deliver them from the log", len(batch))


_publisher: Publisher | None = None


def publisher() -> Publisher:
    """The process's :class:`Publisher` (a new one after ``fork``)."""
    global _publisher
    if _publisher is None:
        with _lock:
            if _publisher is None:
                _publisher = Publisher()
    return _publisher


def _flush_at_exit() -> None:
    if _publisher is not None:
        started = time.monotonic()
        if not _publisher.flush(5.0):
            logger.warning("%d event(s) were not published at exit (after %.1fs); "
                           "they are in the log", _publisher.backlog(), time.monotonic() - started)


atexit.register(_flush_at_exit)


def _after_fork() -> None:
    global _publisher
    _publisher = None


os.register_at_fork(after_in_child=_after_fork)
