"""A per-process bound on the database connections stream authorisation holds at once.

A policy that loads the user (the session policies, a user-bound token) or any
custom policy may open a database connection. Streams connect in bursts (a
deploy, a network blip: every browser reconnects within seconds), and under
ASGI each request's sync database work runs in a thread of its own, so a burst
of N connects would open N connections at once — past the server's
``max_connections`` they fail. :func:`database_slot` lets at most
``SSE_EXEC["AUTHORIZE_DB_CONNECTIONS"]`` policy calls per process touch the
database at a time; the others wait their turn. The holder closes its
connections before it gives the slot back (a stream must not pin one anyway).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from django.core.checks import CheckMessage, Error

from ..conf import sse_settings

#: One semaphore per event loop (an asyncio primitive belongs to one loop) and size.
_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[int, asyncio.Semaphore]] = (
    weakref.WeakKeyDictionary())


def _semaphore(size: int) -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    known = _slots.get(loop)
    if known is None or known[0] != size:
        known = (size, asyncio.Semaphore(size))
        _slots[loop] = known
    return known[1]


@asynccontextmanager
async def database_slot() -> AsyncIterator[None]:
    """Hold one of the process's ``AUTHORIZE_DB_CONNECTIONS`` slots (no limit when None)."""
    size = sse_settings.AUTHORIZE_DB_CONNECTIONS
    if size is None:
        yield
        return
    async with _semaphore(int(size)):
        yield


def check_db_connections() -> list[CheckMessage]:
    """Error ``django_sse_exec.E011`` unless ``AUTHORIZE_DB_CONNECTIONS`` is None or a positive int."""
    size = sse_settings.AUTHORIZE_DB_CONNECTIONS
    if size is None or (isinstance(size, int) and not isinstance(size, bool) and size > 0):
        return []
    return [Error(
        f"SSE_EXEC['AUTHORIZE_DB_CONNECTIONS'] = {size!r} is not a positive number of connections",
        hint="Give a positive int below your database's connection limit divided by the number "
             "of web processes (default 8), or None for no limit.",
        id="django_sse_exec.E011",
    )]


__all__ = ["check_db_connections", "database_slot"]
