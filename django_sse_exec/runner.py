"""Run the async API from synchronous code (Celery workers, sync views, shells).

``async_to_sync`` in a thread with no event loop builds a new loop, thread and
Redis connection on every call (~2.5 ms each). Instead coroutines are handed to
a long-lived loop and the caller blocks on the result:

* the *home loop* — the server's loop, recorded when it starts its hub — while
  it runs. Channels' in-memory layer is not thread-safe, so a sync view under
  ASGI must publish on the loop that serves the streams;
* otherwise one private daemon loop thread per process, created lazily and
  again after ``fork`` (Celery's prefork pool).

Each call waits for its coroutine, so events sent from one thread keep their order.

Sends on Redis (store and channel layer) skip the loop altogether
(:class:`RedisSender`): the event is logged in the calling thread with one
blocking round trip, and the same Redis script delivers the layer's message
(either channels_redis layer, one host, no encryption). Otherwise the message
is handed to the process's :class:`Publisher`, which publishes everything
handed to it in order, in pipelined batches, on the private loop; the caller
only waits when its backlog is full (``Publisher.MAX_BACKLOG``), so memory
stays bounded.
``close_sse_connections`` waits until the backlog is published, and it is
flushed at interpreter exit. A message that cannot be published is still in the
log: the hubs' repair sweep delivers it within ``REPAIR_INTERVAL``.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from django.core.signals import setting_changed
from django.dispatch import receiver

from .layers import (
    ID_PLACEHOLDER,
    PublishPlan,
    can_publish_from_redis,
    group_name,
    publish_template,
)

T = TypeVar("T")

logger = logging.getLogger("django_sse_exec")

_home_loop: asyncio.AbstractEventLoop | None = None
_private_loop: asyncio.AbstractEventLoop | None = None
_lock = threading.Lock()


def set_home_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Record the server's event loop as the place to run sync callers' coroutines."""
    global _home_loop
    if loop is not _private_loop:
        _home_loop = loop


def _private() -> asyncio.AbstractEventLoop:
    global _private_loop
    with _lock:
        if _private_loop is None or _private_loop.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=loop.run_forever, name="django-sse-exec-loop", daemon=True
            )
            thread.start()
            _private_loop = loop
        return _private_loop


def target_loop() -> asyncio.AbstractEventLoop:
    """The loop a sync call from this thread will run on."""
    home = _home_loop
    if home is not None and home.is_running() and not home.is_closed():
        return home
    return _private()


def run_sync(name: str, func: Callable[..., Awaitable[T]], *args: object,
             timeout: float | None = None) -> T:
    """Run ``func(*args)`` to completion from synchronous code and return its result.

    Raises ``RuntimeError`` when called from a thread that runs an event loop,
    naming the async twin (``a`` + ``name``) to ``await`` instead.
    """
    refuse_in_loop(name)
    future = asyncio.run_coroutine_threadsafe(func(*args), target_loop())  # type: ignore[arg-type]
    return future.result(timeout)


def refuse_in_loop(name: str) -> None:
    """Raise ``RuntimeError`` naming the async twin if this thread runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(
        f"{name}() was called from a running event loop; "
        f"use `await a{name}(...)` in async code instead"
    )


class Publisher:
    """Publishes channel-layer messages handed over by sync callers, in order.

    ``submit`` appends to a bounded backlog and returns at once; one drain task
    on the private loop takes up to ``BATCH`` messages at a time and sends them
    with :func:`~django_sse_exec.layers.group_send_in_order` (one pipelined round
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
                _private().call_soon_threadsafe(self._start)

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
        from .layers import get_layer, group_send_in_order

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


class RedisSender:
    """Sends on Redis (store and layer) in as few round trips as the setup allows;
    see :func:`redis_sender`."""

    def __init__(self, store: Any, layer: Any) -> None:
        self.store = store
        self.layer = layer
        #: Whether the store's append script can deliver for this layer (either
        #: channels_redis layer on the store's Redis, one host, no encryption).
        self.fused = bool(store.shares_layer_redis) and can_publish_from_redis(layer)

    def delivery_plan(self, execution_id: str,
                      message: Callable[[int], dict[str, Any]]) -> PublishPlan | None:
        """How the append script can deliver ``message(id)`` itself, or None."""
        if not self.fused:
            return None
        return publish_template(self.layer, group_name(execution_id), message(ID_PLACEHOLDER))

    def send(self, execution_id: str, event: str, data: str,
             message: Callable[[int], dict[str, Any]]) -> int:
        """Log ``event`` (validated JSON ``data``) and publish ``message(id)``; return the id.

        Blocking, for sync callers. Fused: one script logs and delivers (one
        round trip). Otherwise the event is logged here and its message handed
        to the :class:`Publisher`.
        """
        plan = self.delivery_plan(execution_id, message)
        if plan is not None:
            return self.store.append_blocking(execution_id, event, data, publish=plan)
        event_id = self.store.append_blocking(execution_id, event, data)
        publisher().submit(group_name(execution_id), message(event_id))
        return event_id

    def close(self, execution_id: str, message: Callable[[int, str], dict[str, Any]]) -> int:
        """Close the execution's log; publish ``message(id, data)`` of its ``stream-closed``
        after everything this process sent before. Returns that id."""
        event_id, first = self.store.close_blocking(execution_id)
        if first:
            closed = self.store.closed_event(execution_id, event_id)
            publish = publisher()
            publish.submit(group_name(execution_id), message(event_id, closed.data))
            publish.flush()
        return event_id


#: The process's sender: False until resolved, None when the store or the layer
#: is not Redis (sync calls then run on the loop through :func:`run_sync`).
_sender: RedisSender | None | bool = False


def redis_sender() -> RedisSender | None:
    """The Redis fast path for sends, resolved once per settings (and per process)."""
    global _sender
    sender = _sender
    if sender is False:
        from .layers import get_layer, is_redis_layer
        from .store import get_store

        store, layer = get_store(), get_layer()
        sender = RedisSender(store, layer) if (
            hasattr(store, "append_blocking") and is_redis_layer(layer)) else None
        _sender = sender
    return sender  # type: ignore[return-value]


@receiver(setting_changed)
def _on_setting_changed(setting: str, **kwargs: object) -> None:
    global _sender
    if setting in ("SSE_EXEC", "CHANNEL_LAYERS"):
        _sender = False


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
    global _home_loop, _private_loop, _publisher, _sender
    _home_loop = None
    _private_loop = None
    _publisher = None
    _sender = False


os.register_at_fork(after_in_child=_after_fork)
