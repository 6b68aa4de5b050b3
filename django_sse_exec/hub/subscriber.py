"""A stream's end of the hub: a bounded buffer of ready frames and a wake-up.

The hub pushes each event, encoded once, into every local stream's Subscriber;
the stream takes what is pending and writes it as one chunk. Past its limit a
Subscriber stops buffering and marks itself for catch-up from the event log, so
a slow stream costs bounded memory and loses nothing. It also carries what the
hub's guard needs to end a stream whose client stopped reading.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..runtime.daphne_buffer import Backlog
from ..runtime.drive import Driven
from ..wire import STREAM_CLOSED, Event

#: One event in a batch: (id, name, encoded JSON frame, the event itself).
Entry = tuple[int, str, bytes, Event]


class Batch:
    """Consecutive events of one execution, encoded once for every local stream.

    ``data`` is the frames of ids ``first`` to ``last`` joined, so a stream that
    is exactly at ``first - 1`` writes it as it is: per stream, the cost of a
    batch does not grow with its events. ``events`` keeps each event's
    ``(id, name, frame, event)`` for a stream that needs only part of it, or
    another representation of it (:mod:`django_sse_exec.render.formats`).
    """

    __slots__ = ("execution_id", "first", "last", "data", "events", "closing")

    def __init__(self, events: list[Entry], execution_id: str = "") -> None:
        #: The execution the events belong to (a multi stream takes many executions' batches).
        self.execution_id = execution_id
        self.events = events
        self.first = events[0][0]
        self.last = events[-1][0]
        self.data = events[0][2] if len(events) == 1 else b"".join(e[2] for e in events)
        #: True when the batch ends the execution (it holds ``stream-closed``).
        self.closing = events[-1][1] == STREAM_CLOSED


#: An item in a stream's buffer.
Item = Batch


class Subscriber:
    """A stream's end of the hub: a bounded buffer plus a wake-up.

    It also carries what the hub's guard needs to end a stream that should not
    go on (see :meth:`Hub.end`): when it must be rotated, the task writing it,
    since when that task is blocked in a write, and the connection's backlog of
    unsent bytes where the server lets us measure it.
    """

    __slots__ = ("execution_id", "execution_ids", "member", "limit", "max_bytes", "buffered",
                 "pending_events", "items", "overflowed", "catch_up_to", "_waiter", "_loop",
                 "_timer", "_deadline", "end_reason", "expires_at",
                 "task", "writing_since", "backlog", "sent", "delivered", "progress_at",
                 "sink", "cursor_now", "direct_send", "tally", "written_at", "inflight", "_timeout",
                 "renewal")

    def __init__(self, execution_id: str, member: str, limit: int,
                 max_bytes: int = 1 << 20) -> None:
        #: The execution it was opened for (a multi stream: the first of its set).
        self.execution_id = execution_id
        #: Every execution whose events it receives (more than one for a multi stream).
        self.execution_ids: list[str] = []
        self.member = member
        #: Most events, and about the most bytes, buffered before catching up instead.
        self.limit = limit
        self.max_bytes = max_bytes
        self.buffered = 0
        self.pending_events = 0
        self.items: list[Item] = []
        #: Set when the buffer was full and events were dropped: read the log.
        self.overflowed = False
        #: Highest id the log is known to hold; the stream reads up to it.
        self.catch_up_to = 0
        self._waiter: asyncio.Future[bool] | None = None
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        #: Why the stream must end ("shutdown", "lifetime", "reset", a drop's reason), or None.
        self.end_reason: str | None = None
        #: Loop time after which the stream is rotated (None: never).
        self.expires_at: float | None = None
        #: The task that iterates the stream (cancelled if a write never returns).
        self.task: asyncio.Task[Any] | None = asyncio.current_task()
        #: Loop time at which the stream handed a chunk to the server and has not
        #: been resumed since (servers with backpressure block there).
        self.writing_since: float | None = None
        self.backlog: Backlog | None = None
        #: Bytes yielded, bytes known to have left the server, and when that last grew.
        self.sent = 0
        self.delivered = 0
        self.progress_at = self._loop.time()
        #: ``sink(sub, batch) -> bool``: writes a batch to the client at once, from the
        #: fan-out, while the stream waits (see :func:`~django_sse_exec.streams.live.follow`).
        self.sink: Any = None
        #: The stream's cursor, for its sink.
        self.cursor_now: Any = None
        #: The entry point's ASGI ``send`` where it may be called from the fan-out, and
        #: what a direct write accounts to (set by the stream).
        self.direct_send: Any = None
        self.tally: Any = None
        #: Loop time of the stream's last write (a busy stream writes every 10 ms at most).
        self.written_at = 0.0
        #: A direct write whose ``send`` suspended (the server's transport was paused).
        self.inflight: Driven | None = None
        self._timeout = 0.0
        #: The stream's token renewal (:mod:`django_sse_exec.streams.renewal`), or None.
        self.renewal: Any = None

    def push(self, item: Item) -> None:
        """Queue a batch, or write it now if the stream waits and its sink can;
        past the limits drop it and mark the stream for catch-up."""
        sink, waiter = self.sink, self._waiter
        if sink is not None and waiter is not None and not waiter.done() and sink(self, item):
            return
        if self.pending_events >= self.limit or self.buffered > self.max_bytes:
            self.overflowed = True
        else:
            self.items.append(item)
            self.buffered += len(item.data)
            self.pending_events += len(item.events)
        self.wake()

    def catch_up(self, last_id: int) -> None:
        """Tell the stream the log holds events up to ``last_id``."""
        if last_id > self.catch_up_to:
            self.catch_up_to = last_id
            self.wake()

    def wake(self) -> None:
        """Wake the stream if it is waiting (to take items, or to end)."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)

    def pending(self) -> bool:
        return (bool(self.items) or self.overflowed or self.catch_up_to > 0
                or self.end_reason is not None)

    def writing(self, size: int) -> None:
        """The stream is about to hand ``size`` bytes to the server."""
        self.sent += size
        self.writing_since = self._loop.time()

    def written(self) -> None:
        """The server took the bytes (the stream was resumed)."""
        self.writing_since = None

    async def drained(self, limit: int) -> bool:
        """Wait while more than ``limit`` bytes of this stream are unsent.

        This is backpressure for servers that do not apply it (daphne): the
        stream pauses like a blocked write, so the guard's write deadline and
        event-buffer rules apply to it. False if the stream was ended meanwhile.
        """
        backlog = self.backlog
        if backlog is None or backlog.pending() <= limit:
            return True
        self.writing_since = self._loop.time()
        while self.end_reason is None:
            await asyncio.sleep(0.05)
            if backlog.pending() <= limit:
                self.writing_since = None
                return True
        return False

    def stalled(self, now: float, timeout: float) -> bool:
        """True if the client has taken no bytes for ``timeout`` s while some wait for it."""
        backlog = self.backlog
        if backlog is None:  # backpressure: the write itself blocks
            since = self.writing_since
            return since is not None and now - since > timeout
        unsent = backlog.pending()
        delivered = self.sent - unsent
        if unsent == 0 or delivered > self.delivered:
            self.delivered = delivered
            self.progress_at = now
            return False
        return now - self.progress_at > timeout

    def wait(self, timeout: float) -> asyncio.Future[bool]:
        """A future that is True once something is pending, False after ``timeout``
        seconds of nothing (a future, not a coroutine: a waiting stream holds one
        object less).

        One timer per stream is re-armed lazily (not one created and cancelled
        per event): with events every few ms, the timer fires about once per
        ``timeout`` instead of costing two heap operations per event.
        """
        loop = self._loop
        waiter = loop.create_future()
        if self.pending():
            waiter.set_result(True)
            return waiter
        self._waiter = waiter  # a done one left here is ignored (see wake, push, _on_timer)
        self._timeout = timeout
        self._deadline = loop.time() + timeout
        timer = self._timer
        if timer is None or timer.when() > self._deadline:  # (sooner: a token renewal is due)
            if timer is not None:
                timer.cancel()
            self._timer = loop.call_at(self._deadline, self._on_timer)
        return waiter

    def quiet_since(self, now: float) -> None:
        """The stream wrote at ``now`` while it waits: its silence (keepalive) starts again."""
        self.written_at = now
        self._deadline = now + self._timeout
        if self.renewal is not None:  # writes do not put off a token renewal
            self._deadline = min(self._deadline, self.renewal.at)

    def _on_timer(self) -> None:
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return  # not waiting: the next wait() arms a new timer
        if self._loop.time() >= self._deadline:
            waiter.set_result(False)
        else:
            self._timer = self._loop.call_at(self._deadline, self._on_timer)

    def close(self) -> None:
        """Release what the ended stream held: its timer, its task and its connection."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.inflight is not None:
            self.inflight.cancel()
            self.inflight = None
        self.task = None
        self.backlog = None
        self.sink = self.cursor_now = self.direct_send = self.tally = None

    def take(self) -> tuple[list[Item], int, bool]:
        """Everything pending: (items, catch-up id, overflowed), and reset."""
        items, self.items = self.items, []
        self.buffered = self.pending_events = 0
        catch_up, self.catch_up_to = self.catch_up_to, 0
        overflowed, self.overflowed = self.overflowed, False
        return items, catch_up, overflowed
