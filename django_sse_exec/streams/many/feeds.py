"""The stream of a feed: every execution that joins it, announced and resumed exactly.

A feed (:mod:`django_sse_exec.sending.feeds`) is a log of ``execution-added`` entries.
Its stream reads that log, resumes each execution the client has heard of at
the client's position (the cursor keys an execution by the id of the entry
that added it), announces the ones added since with ``execution-added``, and
starts on each as it is announced: subscribe first, then replay its log, as
every stream does. Executions whose log expired (``CLOSED_TTL`` after they
closed) have left the feed; a feed's stream never ends by itself.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from ...auth.many import authorize_feed
from ...conf import sse_settings
from ...hub.hub import Hub
from ...hub.subscriber import Subscriber
from ...render.select import requested_format
from ...wire import Event, is_valid_execution_id
from ...wire.many import (
    EXECUTION_ADDED,
    FEED_KEY,
    added_frame,
    feed_log_id,
    key_of,
    parse_cursor,
    validate_feed_name,
)
from ..connect import Outcome, connect
from ..cursor import Cursor
from ..live import deliver, follow, replay
from .frames import MultiRender, Mux
from .sets import first_pages, multi_max, start_one


class FeedRender(MultiRender):
    """Frames of a feed's own log: ``execution-added``, once per execution that is not gone."""

    def __init__(self, mux: Mux, feed: str, gone: set[str]) -> None:
        super().__init__(mux, FEED_KEY, feed_log_id(feed))
        self.feed = feed
        self.gone = gone
        #: Executions of the stream (announced or known), and those to start on.
        self.members: set[str] = set()
        self.added: list[tuple[str, str]] = []

    def frame(self, event: Event) -> bytes:
        cursor = self.mux.cursor(self.key, event.id)
        execution_id = added_execution(event)
        if execution_id is None or execution_id in self.members or execution_id in self.gone:
            return b""
        self.members.add(execution_id)
        self.added.append((key_of(event.id), execution_id))
        return added_frame(cursor, self.feed, execution_id)


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
    """Connect a stream of ``feed`` (404 malformed name, 403)."""
    try:
        validate_feed_name(feed)
    except ValueError:
        return Outcome(404, "unknown feed")

    async def decide() -> Outcome:
        reason = await authorize_feed(request, feed)
        if reason is not None:
            return Outcome(403, reason)
        if requested_format(getattr(request, "GET", None), served=("json",)) is None:
            return Outcome(400, "unknown format (a feed's stream is JSON only)")
        plan = FeedStream(feed, parse_cursor(last_event_id) or {})
        return Outcome(200, body=deliver([plan.log_id], plan.phases,
                                         scope=getattr(request, "scope", None),
                                         entry_point=entry_point))

    return await connect(request, decide)


class FeedStream:
    """One feed stream's state: the feed's cursor, then one cursor per execution it starts."""

    def __init__(self, feed: str, given: dict[str, int]) -> None:
        self.feed = feed
        self.given = given
        self.log_id = feed_log_id(feed)
        self.mux = Mux()
        self.cursors: dict[str, Cursor] = {}
        self.render = FeedRender(self.mux, feed, set())
        self.hub: Hub | None = None
        self.sub: Subscriber | None = None

    def phases(self, hub: Hub, sub: Subscriber) -> tuple[AsyncIterator[bytes], AsyncIterator[bytes]]:
        self.hub, self.sub = hub, sub
        return self._start(hub, sub), follow(hub, sub, self.cursors, grow=self.grow)

    async def _start(self, hub: Hub, sub: Subscriber) -> AsyncIterator[bytes]:
        """The executions the client has heard of, resumed; those added since, announced."""
        if sub.end_reason is not None:
            return
        store, log_id, render = hub.store, self.log_id, self.render
        entries = [(event.id, *entry) async for page in store.pages(log_id)
                   for event in page.events if (entry := added_entry(event))]
        entries = entries[-multi_max():]
        render.gone = gone = await _gone(hub, entries)
        feed_cursor = self.cursors[log_id] = Cursor(log_id, self.given.get(FEED_KEY, 0), render)
        head = await store.read(log_id, upto=0)
        if feed_cursor.last_sent and not head.holds(feed_cursor.last_sent):
            yield render.reset(log_id, feed_cursor.last_sent, head.first_id)
            feed_cursor.last_sent = 0
        render.start(feed_cursor)
        for entry_id, execution_id, _ in entries:
            if entry_id <= feed_cursor.last_sent and execution_id not in render.members | gone:
                render.members.add(execution_id)
                render.added.append((key_of(entry_id), execution_id))
        async for chunk in self.grow():
            yield chunk
        async for chunk in replay(store, feed_cursor, hub=hub):
            yield chunk
        async for chunk in self.grow():  # executions the replay announced
            yield chunk

    async def grow(self) -> AsyncIterator[bytes]:
        """Start on the executions announced since the last call: join, then replay each."""
        added, self.render.added = self.render.added, []
        if not added or self.hub is None or self.sub is None:
            return
        hub, cursors = self.hub, self.cursors
        await hub.join(self.sub, [execution_id for _, execution_id in added])
        renders = [MultiRender(self.mux, key, execution_id) for key, execution_id in added]
        for each in renders:
            cursor = cursors[each.execution_id] = Cursor(each.execution_id,
                                                         self.given.get(each.key, 0), each)
            each.start(cursor)
        pages = await first_pages(hub.store, [cursors[each.execution_id] for each in renders])
        for each, page in zip(renders, pages):
            async for chunk in start_one(hub, each, cursors[each.execution_id], page):
                yield chunk


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


__all__ = ["FeedRender", "FeedStream", "added_entry", "open_feed_stream"]
