"""Membership writes and log reads of one event loop, coalesced into pipelined round trips.

A connect storm of thousands of streams would otherwise cost one Redis round
trip per stream for its membership entry and another for its first log read
(and queue on the pool past its timeout). See :class:`WriteBatcher`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis import exceptions as redis_errors

from ..runtime.coalesce import Coalescer
from .scripts import READ, TOUCH_MEMBER

#: Errors that mean Redis is unreachable (reported as StoreUnavailable).
UNAVAILABLE = (redis_errors.ConnectionError, redis_errors.TimeoutError, asyncio.TimeoutError,
               OSError)


class WriteBatcher:
    """Membership writes and log reads of one event loop, one pipelined round trip per batch.

    A command is queued with a future for its caller; every command made in the
    same loop iteration goes along, and the writes queued while a batch is in
    flight form the next batch (:class:`~django_sse_exec.runtime.coalesce.Coalescer`).
    Order is kept (one FIFO, one connection per batch): a stream's remove is
    never sent before its add. Each caller gets its own result or its own
    exception (:class:`StoreUnavailable` when Redis is unreachable, as for a
    lone write).
    """

    def __init__(self, store: Any) -> None:
        self.store = store
        self._coalescer: Coalescer[tuple[Any, ...]] = Coalescer(self._send, self._error)

    def submit(self, *command: Any) -> asyncio.Future[Any]:
        """Queue one Redis command; the future gets its reply."""
        return self._coalescer.submit(command)

    def _error(self, exc: Exception) -> Exception:
        return self.store.unavailable(exc) if isinstance(exc, UNAVAILABLE) else exc

    async def _send(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        results = await self._execute(commands)
        if any(isinstance(r, redis_errors.NoScriptError) for r in results):
            # Redis lost its script cache (restart, SCRIPT FLUSH): load them and
            # resend the batch (sent again in order, it leaves the same state).
            for script in (TOUCH_MEMBER, READ):
                await self.store.client().script_load(script)
            results = await self._execute(commands)
        return results

    async def _execute(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        async with self.store.client().pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            return await pipe.execute(raise_on_error=False)
