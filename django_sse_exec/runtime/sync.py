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

Sends on Redis mostly skip the loop altogether (see
:mod:`django_sse_exec.sending.delivery`); this module is the bridge for everything else.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

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


def private_loop() -> asyncio.AbstractEventLoop:
    """The process's private loop thread (started on first use, again after fork)."""
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
    return private_loop()


def run_sync(name: str, func: Callable[..., Coroutine[Any, Any, T]], *args: object,
             timeout: float | None = None) -> T:
    """Run ``func(*args)`` to completion from synchronous code and return its result.

    Raises ``RuntimeError`` when called from a thread that runs an event loop,
    naming the async twin (``a`` + ``name``) to ``await`` instead.
    """
    refuse_in_loop(name)
    future = asyncio.run_coroutine_threadsafe(func(*args), target_loop())
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


def _after_fork() -> None:
    global _home_loop, _private_loop
    _home_loop = None
    _private_loop = None


os.register_at_fork(after_in_child=_after_fork)
