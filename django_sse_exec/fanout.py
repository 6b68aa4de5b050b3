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

from .store import Store
from .subscriber import Subscriber
from .wire import STREAM_CLOSED, Event, closed_data, frame

logger = logging.getLogger("django_sse_exec")

#: Seconds a message may be older than the freshest seen (allowing for clock
#: skew between Redis and this host) before the hub treats its channel as
#: behind and reads the log instead.
LAG_LIMIT = 0.2


class Group:
    """Local state of one execution: its streams and how far the hub has delivered."""

    __slots__ = ("subscribers", "joined", "lock", "seen", "known", "suspect", "wanted",
                 "catching_up")

    def __init__(self) -> None:
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


class LagMeter:
    """Tells from messages' send times whether the channel delivers them late.

    Lag is measured against the smallest lag seen in the last minute, so a
    constant clock difference between Redis (which stamps fused sends) and
    this host does not count.
    """

    def __init__(self) -> None:
        self.lag = 0.0
        self._floor = float("inf")
        self._floor_until = 0.0

    def behind(self, sent_at: Any) -> bool:
        if not isinstance(sent_at, float):
            return False
        now = time.time()
        raw = now - sent_at
        if raw < self._floor or now > self._floor_until:
            self._floor, self._floor_until = raw, now + 60.0
        self.lag = raw - self._floor
        return self.lag > LAG_LIMIT


class Fanout:
    """Fan-out and catch-up for one hub's executions (``groups``, shared with the hub)."""

    def __init__(self, store: Store, groups: dict[str, Group],
                 spawn: Callable[..., asyncio.Task[Any]]) -> None:
        self.store = store
        self.groups = groups
        self.spawn = spawn
        self.lag = LagMeter()

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
        if event_id <= group.seen:
            return
        behind = self.lag.behind(message.get("t"))
        if group.catching_up is not None or behind or (group.seen and event_id > group.seen + 1):
            group.wanted = max(group.wanted, event_id)
            self.catch_up(execution_id)
            return
        data = message["data"]
        if message["event"] == STREAM_CLOSED:
            data = closed_data(execution_id, event_id)
        self._fan_out(group, Event(event_id, message["event"], data))

    def _fan_out(self, group: Group, event: Event) -> None:
        item = (event.id, event.event, frame(event))
        group.seen = event.id
        for sub in group.subscribers:
            sub.push(item)

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
                after = group.seen or group.known
                async for page in self.store.pages(execution_id, after=after):
                    for event in page.events:
                        if event.id > group.seen:
                            self._fan_out(group, event)
                    await asyncio.sleep(0)  # let the streams write between pages
                if group.wanted <= group.seen:
                    break
                group.wanted = 0  # announced ids the log no longer has (it was lost)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("catching up execution %s from the log failed; the repair "
                             "sweep will retry", execution_id)
        finally:
            group.catching_up = None
