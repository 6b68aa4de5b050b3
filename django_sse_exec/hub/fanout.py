"""Turning channel messages into frames for the local streams, and catching up from the log.

The channel is a notification path; the event log is the truth. Each message
is encoded to a frame once and pushed to every local stream of its execution.
When the channel falls behind (its messages arrive late: the core Redis layer
receives one message per round trip, slower than a busy sender sends) or skips
ids, the hub reads the log from the last id it fanned out, page by page, and
fans those events out instead: one read for many events, for all local streams
at once. Messages it has already covered are then dropped on arrival.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from ..outages import report
from ..store import Store
from ..telemetry import metrics, tracing
from ..wire import STREAM_CLOSED, Event, closed_data, frame
from .subscriber import Batch, Entry, Subscriber

logger = logging.getLogger("django_sse_exec")

#: Seconds a message may be older than the freshest seen (allowing for clock
#: skew between Redis and this host) before the hub treats its channel as
#: behind and reads the log instead.
LAG_LIMIT = 0.2
#: Seconds between reads of the log while the channel is behind.
POLL_INTERVAL = 0.05
#: Catch-up reads of the log a hub runs at once (below the store's pool size:
#: a process serving thousands of executions may need them all at once).
READ_CONCURRENCY = 16


class Group:
    """Local state of one execution: its streams and how far the hub has delivered."""

    __slots__ = ("execution_id", "subscribers", "joined", "lock", "seen", "known", "suspect", "wanted",
                 "catching_up", "pending")

    def __init__(self, execution_id: str = "") -> None:
        self.execution_id = execution_id
        self.subscribers: set[Subscriber] = set()
        self.joined = False
        self.lock = asyncio.Lock()
        #: Highest event id fanned out (0: none yet). Messages up to it are dropped.
        self.seen = 0
        #: Highest id a stream of this execution read from the log itself.
        self.known = 0
        #: The log's last id when a repair sweep last found it ahead of ``seen``.
        self.suspect = 0
        #: Highest id announced while a catch-up was running.
        self.wanted = 0
        self.catching_up: asyncio.Task[None] | None = None
        #: Frames fanned out in this turn of the event loop, not yet pushed (None: none;
        #: a list only while there are some, as most executions have nothing pending).
        self.pending: list[Entry] | None = None


class LagMeter:
    """Tells from messages' send times whether the channel delivers them late.

    Lag is measured against the smallest delay seen over the last one to two
    minutes, so a constant clock difference between Redis (which stamps fused
    sends) and this host does not count. A measurement older than a second
    (no messages since) no longer says the channel is behind.
    """

    WINDOW = 60.0

    def __init__(self) -> None:
        #: Seconds the last message arrived later than the fastest recent one.
        self.lag = 0.0
        self.measured_at = 0.0
        self._floors = [float("inf"), float("inf")]  # minimum delay: previous, current window
        self._window_ends = 0.0

    def behind(self, sent_at: Any) -> bool:
        """Measure one message's delay; True if the channel is behind."""
        if not isinstance(sent_at, float):
            return False
        now = time.time()
        delay = now - sent_at
        if now > self._window_ends:
            self._floors = [self._floors[1], delay]
            self._window_ends = now + self.WINDOW
        self._floors[1] = min(self._floors[1], delay)
        self.lag = max(0.0, delay - min(self._floors))
        self.measured_at = now
        return self.lag > LAG_LIMIT

    def lagging(self) -> bool:
        """Whether the channel was behind at the last message, within the last second."""
        return self.lag > LAG_LIMIT and time.time() - self.measured_at < 1.0


class Fanout:
    """Fan-out and catch-up for one hub's executions (``groups``, shared with the hub)."""

    def __init__(self, store: Store, groups: dict[str, Group],
                 spawn: Callable[..., asyncio.Task[Any]]) -> None:
        self.store = store
        self.groups = groups
        self.spawn = spawn
        self.lag = LagMeter()
        self._reads = asyncio.Semaphore(READ_CONCURRENCY)
        #: Groups given events since the last :meth:`flush_touched`, when the hub reads
        #: Redis itself (it flushes after each read); None: each group flushes at the
        #: end of the loop turn.
        self.touched: list[Group] | None = None

    def dispatch(self, message: dict[str, Any]) -> None:
        """Fan one channel-layer message out to the local streams of its execution.

        A message the hub already covered is dropped; one that arrives late or
        after a gap starts a catch-up from the log instead.
        """
        execution_id = message.get("execution_id", "")
        group = self.groups.get(execution_id)
        if group is None or not group.subscribers:
            return
        event_id = int(message["id"])
        behind = self.lag.behind(message.get("t"))
        metrics.hub_dispatched(message)
        if tracing.ENABLED:
            tracing.delivered(message, len(group.subscribers))
        if event_id <= group.seen:
            return
        if group.catching_up is not None or behind or (group.seen and event_id > group.seen + 1):
            group.wanted = max(group.wanted, event_id)
            self.catch_up(execution_id)
            return
        data = message["data"]
        if message["event"] == STREAM_CLOSED:
            data = closed_data(execution_id, event_id)
        self._fan_out(group, Event(event_id, message["event"], data))

    def _fan_out(self, group: Group, event: Event) -> None:
        """Queue an event for the group's streams; they get it as part of a batch
        at the end of this turn of the event loop (see :meth:`_flush`)."""
        group.seen = event.id
        entry = (event.id, event.event, frame(event), event)
        if group.pending is not None:
            group.pending.append(entry)
            return
        group.pending = [entry]
        if self.touched is not None:
            self.touched.append(group)
        else:
            asyncio.get_running_loop().call_soon(self._flush, group)

    def flush_touched(self) -> None:
        """Hand the streams what :meth:`dispatch` queued since the last call (the events of
        one read from Redis: no extra pass of the event loop)."""
        touched = self.touched
        if touched:
            self.touched = []
            for group in touched:
                self._flush(group)

    @staticmethod
    def _flush(group: Group) -> None:
        events, group.pending = group.pending, None
        if events:
            batch = Batch(events, group.execution_id)
            for sub in group.subscribers:
                sub.push(batch)

    def catch_up(self, execution_id: str, upto: int = 0) -> None:
        """Fan out the log's events past what the hub delivered (one task per execution)."""
        group = self.groups.get(execution_id)
        if group is None:
            return
        group.wanted = max(group.wanted, upto)
        if group.catching_up is None:
            group.catching_up = self.spawn(self._catch_up(execution_id, group))

    async def _catch_up(self, execution_id: str, group: Group) -> None:
        try:
            while group.subscribers:
                before = after = group.seen or group.known
                async with self._reads:
                    async for page in self.store.pages(execution_id, after=after):
                        for event in page.events:
                            if event.id > group.seen:
                                self._fan_out(group, event)
                        self.flush_touched()
                        await asyncio.sleep(0)  # let the streams write between pages
                if self.lag.lagging() and group.seen > before:
                    # The channel is behind and this log is moving: its messages
                    # would only say what the log says now. Read it again shortly
                    # instead of waiting (an execution whose log had nothing new
                    # stops here: the next message or repair sweep restarts it).
                    await asyncio.sleep(POLL_INTERVAL)
                    continue
                if group.wanted <= group.seen:
                    break
                group.wanted = 0  # announced ids the log no longer has (it was lost)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not report(exc, "the hub's catch-up"):
                logger.exception("catching up execution %s from the log failed; the repair "
                                 "sweep will retry", execution_id)
        finally:
            group.catching_up = None
