"""The hub of each running event loop: made on first use, with its maintenance and shutdown hook.

A hub belongs to one event loop (its channel and tasks do); a server has one
loop, a test process may have several. The hub is made here rather than in
:mod:`.hub` so that the hub itself knows nothing of what runs beside it: its
periodic work (:mod:`.maintenance`) and the signal hook that ends its streams
on shutdown (:mod:`.shutdown`) are handed to it.
"""

from __future__ import annotations

import asyncio
import os
import weakref

from ..layer.access import get_layer
from ..store import get_store
from . import maintenance, shutdown
from .hub import Hub

_hubs: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub]" = weakref.WeakKeyDictionary()


def get_hub() -> Hub:
    """The hub of the running event loop, created on first use."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None or hub.store is not get_store() or hub.layer is not get_layer():
        if hub is not None:  # settings changed (tests): retire the old hub's loops
            hub.retire()
        hub = _hubs[loop] = Hub(get_layer(), get_store(), services=(maintenance.run,),
                                on_start=_install_signal_hook)
    return hub


def running_hub(loop: asyncio.AbstractEventLoop) -> Hub | None:
    """The hub of ``loop`` if it has one (for signal handlers, which run outside it)."""
    return _hubs.get(loop)


def _install_signal_hook() -> None:
    shutdown.install_signal_hook(running_hub)


def _after_fork() -> None:
    _hubs.clear()


os.register_at_fork(after_in_child=_after_fork)

__all__ = ["get_hub", "running_hub"]
