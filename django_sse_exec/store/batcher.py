"""Membership writes of one event loop, coalesced into pipelined round trips.

A connect storm of thousands of streams would otherwise cost one Redis round
trip per stream for its membership entry (and queue on the pool past its
timeout). See :class:`WriteBatcher`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from redis import exceptions as redis_errors

from .scripts import TOUCH_MEMBER

#: Errors that mean Redis is unreachable (reported as StoreUnavailable).
UNAVAILABLE = (redis_errors.ConnectionError, redis_errors.TimeoutError, asyncio.TimeoutError,
               OSError)


@dataclass(eq=False)
class WriteBatcher:
    """Membership writes of one event loop, sent as one pipelined round trip per batch.

    A write is queued with a future for its caller; the first write of a batch
    schedules a task that sends the queue on the loop's next iteration, so every
    write made in the same tick goes along, and the writes queued while a batch
    is in flight form the next batch. Order is kept (one FIFO, one connection per
    batch): a stream's remove is never sent before its add. Each caller gets its
    own result or its own exception (:class:`StoreUnavailable` when Redis is
    unreachable, as for a lone write); a caller cancelled before its batch is
    sent is left out of it.
    """

    store: Any
    queue: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    def submit(self, *command: Any) -> asyncio.Future[Any]:
        future = asyncio.get_running_loop().create_future()
        self.queue.append((command, future))
        if self.task is None:
            self.task = asyncio.ensure_future(self._drain())
        return future

    async def _drain(self) -> None:
        try:
            while self.queue:
                batch, self.queue = self.queue, []
                await self._send([(c, f) for c, f in batch if not f.done()])
        finally:
            self.task = None
            for _, future in self.queue:  # only left when this task was cancelled
                future.cancel()
            self.queue = []

    async def _send(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        if not batch:
            return
        try:
            results = await self._execute([command for command, _ in batch])
            if any(isinstance(r, redis_errors.NoScriptError) for r in results):
                # Redis lost its script cache (restart, SCRIPT FLUSH): load it and
                # resend the batch (sent again in order, it leaves the same state).
                await self.store.client().script_load(TOUCH_MEMBER)
                results = await self._execute([command for command, _ in batch])
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(self.store.unavailable(exc)
                                         if isinstance(exc, UNAVAILABLE) else exc)
            return
        for (_, future), result in zip(batch, results):
            if not future.done():
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    async def _execute(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        async with self.store.client().pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            return await pipe.execute(raise_on_error=False)
