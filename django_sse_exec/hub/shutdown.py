"""Ending every stream when the server is told to stop.

Servers cancel or cut open streams when they shut down, and their cleanup is
unreliable; ending the streams first, each with a retry hint, lets clients
reconnect elsewhere at once and lets the server exit without waiting. The hook
wraps the server's own SIGTERM/SIGINT handler: it ends the loop's streams, waits
up to ``SHUTDOWN_GRACE`` seconds for them to finish, then calls the server's
handler.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

from ..conf import sse_settings
from .hub import Hub

logger = logging.getLogger("django_sse_exec")


def begin_shutdown(hub: Hub, then: Callable[[], object] | None = None) -> None:
    """End every stream of ``hub`` now; call ``then`` once all ended.

    ``then`` (the server's own signal handler) is called at the latest after
    ``SHUTDOWN_GRACE`` seconds. A second call while shutting down calls it at once.
    """
    if hub.closing:
        if then is not None:
            then()
        return
    hub.closing = True
    subs = hub.subscribers()
    logger.info("shutting down: ending %d streams", len(subs))
    for sub in subs:
        hub.end(sub, "shutdown")
    if then is not None:
        hub.spawn(_after_streams_end(hub, then))


async def _after_streams_end(hub: Hub, then: Callable[[], object]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + float(sse_settings.SHUTDOWN_GRACE)
    while hub.local_count() and loop.time() < deadline:
        await asyncio.sleep(0.02)
    # Let the servers flush the final chunks before they start closing sockets.
    await asyncio.sleep(0.05)
    then()


def install_signal_hook(hub_of: Callable[[asyncio.AbstractEventLoop], Hub | None]) -> None:
    """On SIGTERM/SIGINT, end the running loop's streams before the server's handler runs.

    ``hub_of(loop)`` finds the loop's hub when the signal comes. Only the main
    thread's loop can own signals, and only Python-level handlers (daphne's,
    uvicorn's) are wrapped; a ``SHUTDOWN_GRACE`` of 0 disables this.
    """
    if float(sse_settings.SHUTDOWN_GRACE) <= 0 or threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(signum)
        if not callable(previous) or previous is signal.default_int_handler \
                or getattr(previous, "sse_exec_hook", False):
            continue

        def handler(number: int, frame: Any, previous: Callable[..., Any] = previous) -> None:
            loop.call_soon_threadsafe(_shut_down, hub_of, loop, lambda: previous(number, frame))

        handler.sse_exec_hook = True  # type: ignore[attr-defined]
        signal.signal(signum, handler)


def _shut_down(hub_of: Callable[[asyncio.AbstractEventLoop], Hub | None],
               loop: asyncio.AbstractEventLoop, then: Callable[[], object]) -> None:
    hub = hub_of(loop)
    if hub is None:
        then()
    else:
        begin_shutdown(hub, then)
