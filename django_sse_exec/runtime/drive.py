"""A coroutine run to its end by callbacks on what it awaits, without a Task.

A stream lives for hours, and each of its objects is paid for that long by
every stream of the process. Two small waits of a stream need no task of
their own: the wait for the client's ``http.disconnect`` (an ASGI ``receive()``
that returns once, at the end) and a write the fan-out started that had to
wait for the server (an ASGI ``send()`` that suspended). A task costs a
``Task``, its entry in asyncio's set of all tasks and a coroutine frame of its
own; :class:`Driven` is one small object that resumes the coroutine from a
done-callback of the future it waits on, as a task would, and calls back with
its result.

It drives coroutines that await asyncio futures (or yield bare, as
``asyncio.sleep(0)`` does), which is what an ASGI server's ``send`` and
``receive`` await.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

#: ``on_done(result, exception)``: exactly one of them is meaningful.
Done = Callable[[Any, "BaseException | None"], None]


class Driven:
    """Runs ``awaitable`` (a coroutine, or any awaitable) to its end; ``on_done(result,
    exc)`` when it returns or raises.

    ``waiting``: what it yielded if it was already started (its first ``send(None)``
    made by the caller), else it is started here, at once.
    """

    __slots__ = ("_coro", "_on_done", "_waiting", "_finished")

    def __init__(self, awaitable: Awaitable[Any], on_done: Done, *, started: bool = False,
                 waiting: Any = None) -> None:
        self._coro: Any = awaitable.__await__()
        self._on_done = on_done
        self._waiting: Any = None
        #: Futures of :meth:`finished` callers (None: nobody waits; True: it ended).
        self._finished: Any = None
        if started:
            self._wait(waiting)
        else:
            self._step()

    def _step(self, _: Any = None) -> None:
        if self._finished is True:
            # Cancelled after its future completed but before this done-callback ran
            # (``remove_done_callback`` cannot take back a callback already queued).
            return
        self._waiting = None
        try:
            waiting = self._coro.send(None)
        except StopIteration as stop:
            self._end(stop.value, None)
        except BaseException as exc:  # noqa: BLE001 - handed to on_done, as a task would keep it
            self._end(None, exc)
        else:
            self._wait(waiting)

    def _wait(self, waiting: Any) -> None:
        if waiting is None:  # a bare yield: resume at the next turn
            self._waiting = asyncio.get_running_loop().call_soon(self._step)
            return
        waiting._asyncio_future_blocking = False
        self._waiting = waiting
        waiting.add_done_callback(self._step)

    def _end(self, result: Any, exc: BaseException | None) -> None:
        waiters, self._finished = self._finished, True
        for future in waiters or ():
            if not future.done():
                future.set_result(None)
        self._on_done(result, exc)

    @property
    def done(self) -> bool:
        """Whether the coroutine has ended (returned, raised or was cancelled)."""
        return self._finished is True

    def finished(self) -> asyncio.Future[None]:
        """A future done once the coroutine has ended."""
        future = asyncio.get_running_loop().create_future()
        if self._finished is True:
            future.set_result(None)
        else:
            self._finished = [*(self._finished or ()), future]
        return future

    def cancel(self) -> None:
        """Stop driving it and close the coroutine (its ``finally`` clauses run); no callback."""
        if self._finished is True:
            return
        waiting, self._waiting = self._waiting, None
        if isinstance(waiting, asyncio.Handle):
            waiting.cancel()
        elif waiting is not None:
            waiting.remove_done_callback(self._step)
        self._coro.close()
        waiters, self._finished = self._finished, True
        for future in waiters or ():
            if not future.done():
                future.set_result(None)


__all__ = ["Done", "Driven"]
