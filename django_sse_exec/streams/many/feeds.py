"""The stream of a feed: the executions of its latest entries, announced, resumed exactly, bounded.

A feed (:mod:`django_sse_exec.sending.feeds`) is a log of ``execution-added``
entries, as long as the feed has been used. Its stream follows the executions of
the feed's last ``MULTI_STREAM_MAX`` entries — its *window* — and no others,
so what one stream costs does not grow with the feed:

* ``execution-added {executionId, feed}`` when an execution enters the window
  (an entry adds it), then its events, wrapped as on a set's stream, replayed
  from its start. An execution added again while in the window is not
  announced again (its entry only keeps it in the window longer).
* ``execution-removed {executionId, feed}`` when it leaves the window (its
  latest entry is ``MULTI_STREAM_MAX`` entries old): the stream sends no more
  of its events. Added again later, it is announced again and replayed from
  its start, like any execution that enters the window.
* Executions whose log expired (``CLOSED_TTL`` after they closed) have left the
  feed: they are not announced; a reconnect whose cursor has one gets
  ``execution-removed`` for it. A feed's stream never ends by itself.

The cursor (:mod:`django_sse_exec.wire.many`) holds the feed's position in a
slot of its own and a pair per followed execution, keyed by its latest entry.
A connect reads the log's head and its window (at most ``MULTI_STREAM_MAX``
entries), never the rest of the feed, and compares the client's executions
with the window's: those in both resume at the client's position, those only
in the cursor are removed, those only in the window are announced. A key older
than the window is looked up with a read of that one entry. Where the cursor
cannot be placed in this log — the feed's entries past it were trimmed
(``HISTORY_MAX_EVENTS``), or it is from a log that was lost and recreated —
the stream sends ``stream-reset {feed, requestedAfter, firstRetainedId}`` and
starts over (every followed execution announced and replayed from its start).
A cursor that is garbage (forged, of the first form) gets a full replay.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any

from ...auth.many import FEED_SALT, authorize_feed
from ...conf import sse_settings
from ...hub.hub import Hub
from ...hub.subscriber import Batch, Entry, Subscriber
from ...render.formats import Render
from ...render.select import requested_format
from ...store import LogSlice, Store
from ...wire import Event, is_valid_execution_id
from ...wire.many import (
    EXECUTION_ADDED,
    EXECUTION_REMOVED,
    feed_log_id,
    feed_reset_frame,
    key_of,
    membership_frame,
    parse_feed_cursor,
    validate_feed_name,
)
from ..connect import Outcome, Timings, authorised, connect
from ..cursor import Cursor
from ..live import deliver, follow
from ..renewal import renewal_for
from .frames import FeedMux, MultiRender
from .sets import multi_max, start_all


def added_execution(event: Event) -> str | None:
    """The execution an entry of a feed's log added (None for anything else)."""
    entry = added_entry(event)
    return entry[0] if entry else None


def added_entry(event: Event) -> tuple[str, float] | None:
    """``(execution id, when it was added)`` of an entry of a feed's log, or None."""
    if event.event != EXECUTION_ADDED:
        return None
    try:
        data = json.loads(event.data)
        execution_id, at = data.get("executionId"), float(data.get("at", 0))
    except (ValueError, AttributeError, TypeError):
        return None
    return (execution_id, at) if is_valid_execution_id(execution_id) else None


async def open_feed_stream(request: Any, feed: str, last_event_id: str | None,
                           entry_point: str = "view") -> Outcome:
    """Connect a stream of ``feed`` (404 malformed name, 403, 400 a format but JSON)."""
    try:
        validate_feed_name(feed)
    except ValueError:
        return Outcome(404, "unknown feed")

    async def decide(timings: Timings) -> Outcome:
        refused = await authorised(timings, authorize_feed(request, feed))
        if refused is not None:
            return refused
        if requested_format(getattr(request, "GET", None), served=("json",)) is None:
            return Outcome(400, "unknown format (a feed's stream is JSON only)")
        plan = FeedStream(feed, parse_feed_cursor(last_event_id, multi_max()), multi_max())
        renewal = renewal_for(request, FEED_SALT, {"f": feed},
                              lambda again: authorize_feed(again, feed))
        return Outcome(200, body=deliver([plan.log_id], plan.phases, renewal=renewal,
                                         scope=getattr(request, "scope", None),
                                         entry_point=entry_point))

    return await connect(request, decide, label=f"feed {feed}")


class FeedRender(Render):
    """The frames of a feed's own log: what each entry changes in the stream's window."""

    __slots__ = ("stream",)

    def __init__(self, stream: FeedStream) -> None:
        self.stream = stream

    def frame(self, event: Event) -> bytes:
        return self.stream.take_entry(event)

    def batch(self, batch: Batch) -> bytes:
        return b"".join([self.frame(entry[3]) for entry in batch.events])

    def entry(self, entry: Entry) -> bytes:
        return self.frame(entry[3])

    def reset(self, execution_id: str, requested: int, first_retained: int) -> bytes:
        # Entries were trimmed before this stream read them: it can no longer tell
        # what its window holds. It ends; the client's reconnect works it out.
        self.stream.lost()
        return b""


class FeedStream:
    """One feed stream: its window of executions (each keyed by its latest entry), their
    cursors, and the executions to start on or to leave at the next write."""

    def __init__(self, feed: str, given: tuple[int, dict[str, int]] | None, size: int) -> None:
        self.feed = feed
        self.given = given
        self.size = size
        self.log_id = feed_log_id(feed)
        self.mux = FeedMux()
        #: The executions followed, each with its latest entry's id, oldest first.
        self.window: OrderedDict[str, int] = OrderedDict()
        self.renders: dict[str, MultiRender] = {}
        self.cursors: dict[str, Cursor] = {}
        self.starting: list[Cursor] = []
        self.leaving: list[str] = []
        self.hub: Hub | None = None
        self.sub: Subscriber | None = None

    def phases(self, hub: Hub, sub: Subscriber) -> tuple[AsyncIterator[bytes], AsyncIterator[bytes]]:
        self.hub, self.sub = hub, sub
        return self._start(hub, sub), follow(hub, sub, self.cursors, grow=self.grow)

    async def _start(self, hub: Hub, sub: Subscriber) -> AsyncIterator[bytes]:
        """Compare the client's executions with the window's; remove, resume, announce."""
        if sub.end_reason is not None:
            return
        store = hub.store
        head = await store.read(self.log_id, upto=0)
        hub.note_seen(self.log_id, head.last_id)
        entries = await _window(store, self.log_id, head, self.size)
        known, reset = await self._placed(store, head, entries)
        gone = await _gone(hub, entries)
        for entry_id, execution_id, _ in entries:
            self.window.pop(execution_id, None)
            if execution_id not in gone:
                self.window[execution_id] = entry_id
        self.mux.position = head.last_id
        self.cursors[self.log_id] = Cursor(self.log_id, head.last_id, FeedRender(self))
        for execution_id, entry_id in self.window.items():
            if execution_id in known:
                self._follow(execution_id, entry_id, known[execution_id])
        out = [reset] if reset else []
        for execution_id in known:
            if execution_id not in self.window:
                out.append(membership_frame(self.mux.current(), EXECUTION_REMOVED, self.feed,
                                            execution_id))
        for execution_id, entry_id in self.window.items():
            if execution_id not in known:
                self._follow(execution_id, entry_id, 0)
                out.append(membership_frame(self.mux.current(), EXECUTION_ADDED, self.feed,
                                            execution_id))
        if out:
            yield b"".join(out)
        async for chunk in self.grow():
            yield chunk

    async def _placed(self, store: Store, head: LogSlice,
                      entries: list[tuple[int, str, float]]) -> tuple[dict[str, int], bytes]:
        """The client's executions and positions, and a reset if its cursor cannot be
        placed in this log (then it knows of nothing: the stream starts over)."""
        if self.given is None:
            return {}, b""
        position, pairs = self.given
        keys = {int(key, 36): at for key, at in pairs.items()}
        if not all(0 < key <= position for key in keys):
            return {}, b""  # no stream sent that: garbage, a full replay
        if not head.holds(position):  # trimmed past it, or from a lost incarnation
            return {}, feed_reset_frame(self.feed, position, head.first_id)
        of = {entry_id: execution_id for entry_id, execution_id, _ in entries}
        older = [key for key in keys if key not in of]
        reads = await asyncio.gather(*(store.read(self.log_id, after=key - 1, upto=key, limit=1)
                                       for key in older))
        for key, read in zip(older, reads):
            execution_id = added_execution(read.events[0]) if read.events else None
            if execution_id is not None:
                of[key] = execution_id
        known = {of[key]: at for key, at in keys.items() if key in of}
        if len(known) < len(keys):  # an entry it was told of is gone (trimmed)
            return {}, feed_reset_frame(self.feed, position, head.first_id)
        return known, b""

    def _follow(self, execution_id: str, entry_id: int, position: int) -> None:
        """Follow an execution of the window from ``position`` (started at the next write)."""
        render = self.renders[execution_id] = MultiRender(self.mux, key_of(entry_id), execution_id)
        cursor = Cursor(execution_id, position, render)
        render.start(cursor)
        self.starting.append(cursor)

    def take_entry(self, event: Event) -> bytes:
        """A live entry of the feed's log: the window moves on by one; the frames it makes."""
        self.mux.position = event.id
        execution_id = added_execution(event)
        if execution_id is not None and execution_id in self.window:  # added again: it stays longer
            self.mux.rename(key_of(self.window.pop(execution_id)), key_of(event.id))
            self.renders[execution_id].key = key_of(event.id)
            self.window[execution_id] = event.id
        out = []
        while self.window:
            oldest, entry_id = next(iter(self.window.items()))
            if entry_id > event.id - self.size:
                break
            del self.window[oldest]
            out.append(self._leave(oldest))
        if execution_id is not None and execution_id not in self.window:
            self.window[execution_id] = event.id
            self._follow(execution_id, event.id, 0)
            out.append(membership_frame(self.mux.current(), EXECUTION_ADDED, self.feed,
                                        execution_id))
        return b"".join(out)

    def _leave(self, execution_id: str) -> bytes:
        """Stop following an execution (its events are left at the next write)."""
        self.mux.drop(self.renders.pop(execution_id).key)
        self.cursors.pop(execution_id, None)
        self.starting = [c for c in self.starting if c.execution_id != execution_id]
        self.leaving.append(execution_id)
        return membership_frame(self.mux.current(), EXECUTION_REMOVED, self.feed, execution_id)

    def lost(self) -> None:
        """End the stream with a rejoin hint (its client comes back with its cursor)."""
        if self.hub is not None and self.sub is not None:
            self.hub.end(self.sub, "reset")

    async def grow(self) -> AsyncIterator[bytes]:
        """After each write: leave the executions that left, start on those that came."""
        hub, sub = self.hub, self.sub
        if hub is None or sub is None:
            return
        leaving, self.leaving = [e for e in self.leaving if e not in self.renders], []
        if leaving:
            await hub.leave(sub, leaving)
        starting, self.starting = self.starting, []
        if not starting:
            return
        await hub.join(sub, [cursor.execution_id for cursor in starting])
        for cursor in starting:
            self.cursors[cursor.execution_id] = cursor
        async for chunk in start_all(hub, starting):
            yield chunk


async def _window(store: Store, log_id: str, head: LogSlice,
                  size: int) -> list[tuple[int, str, float]]:
    """The feed's last ``size`` entries (those still retained): ``(id, execution, at)``."""
    after = max(head.last_id - size, head.first_id - 1)
    return [(event.id, *entry) async for page in store.pages(log_id, after=after, upto=head.last_id)
            for event in page.events if (entry := added_entry(event))]


async def _gone(hub: Hub, entries: list[tuple[int, str, float]]) -> set[str]:
    """Executions that left the feed: their log expired (``CLOSED_TTL`` after they closed).

    One with no log that joined less than ``CLOSED_TTL`` ago has not sent its
    first event yet: it stays.
    """
    if not entries:
        return set()
    last = await hub.store.last_ids({execution_id for _, execution_id, _ in entries})
    joined = {execution_id: at for _, execution_id, at in entries}
    old = time.time() - float(sse_settings.CLOSED_TTL)
    return {e for e, last_id in last.items() if not last_id and joined.get(e, 0) < old}


__all__ = ["FeedRender", "FeedStream", "added_entry", "added_execution", "open_feed_stream"]
