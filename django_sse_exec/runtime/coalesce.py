"""Calls made in the same turn of an event loop, carried out together as one batch.

A connect storm makes thousands of small requests to Redis at once (membership
writes, channel-layer group joins); one round trip each costs a connection,
a send and a wake-up each, and queues on the pool. :class:`Coalescer` gathers
the calls of one loop iteration and hands them to one batch function; calls
made while a batch is in flight form the next batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Coalescer(Generic[T]):
    """Batches the items submitted in one loop iteration; each caller awaits its own result.

    ``handle(items)`` returns one result per item, in order (an ``Exception``
    instance as a result fails only that caller); if it raises, every caller of
    the batch gets the error (mapped by ``on_error``). Order is kept: batches
    run one at a time, in submission order. A caller cancelled before its
    batch is sent is left out of it.
    """

    def __init__(self, handle: Callable[[list[T]], Awaitable[list[Any]]],
                 on_error: Callable[[Exception], Exception] = lambda exc: exc) -> None:
        self.handle = handle
        self.on_error = on_error
        self.queue: list[tuple[T, asyncio.Future[Any]]] = []
        self.task: asyncio.Task[None] | None = None

    def submit(self, item: T) -> asyncio.Future[Any]:
        """Queue ``item`` for the next batch; the future gets its result."""
        future = asyncio.get_running_loop().create_future()
        self.queue.append((item, future))
        if self.task is None:
            self.task = asyncio.ensure_future(self._drain())
        return future

    async def _drain(self) -> None:
        try:
            while self.queue:
                batch, self.queue = self.queue, []
                await self._send([(item, f) for item, f in batch if not f.done()])
        finally:
            self.task = None
            for _, future in self.queue:  # only left when this task was cancelled
                future.cancel()
            self.queue = []

    async def _send(self, batch: list[tuple[T, asyncio.Future[Any]]]) -> None:
        if not batch:
            return
        try:
            results = await self.handle([item for item, _ in batch])
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(self.on_error(exc))
            return
        for (_, future), result in zip(batch, results):
            if not future.done():
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)
