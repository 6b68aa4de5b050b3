"""HTML fragments of an execution's events and state, rendered once per event per process.

Under ``?format=html`` a stream sends, for each event, an HTML fragment as its
data (rendered from ``django_sse_exec/events/<event>.html``, or
``django_sse_exec/event.html`` when the project has no template for that name),
and after each chunk of events an unnamed message whose data is the whole
execution state rendered from ``django_sse_exec/state.html`` — the state after
the chunk's last event, so one ``sse-swap="message"`` (htmx 2) or a plain
``hx-sse:connect`` (htmx 4, which swaps unnamed messages) keeps a widget current.
The state fragment has no ``id:``: the client's Last-Event-ID stays the id of
the event it follows. Before a ``stream-closed`` it comes first (clients stop
reading at ``stream-closed``).

Rendering is per process, not per stream: a :class:`FragmentCache` per event
loop keeps, per execution, the encoded fragment of each event and the
execution's state, advanced event by event (reading the log only for events
it has not seen), with the state fragment of the last few ids. A thousand
streams of one execution cost one render per event. What it keeps is bounded:
event fragments by bytes across all executions (:mod:`.fragments`), state
fragments to :data:`STATE_FRAMES` per execution, each of the widget's
``MAX_ROWS`` rows at most; an execution's fragments and state are freed when
its last HTML stream of the loop ends. The log is read a page at a time to
advance or rebuild a state, never whole.

Templates get plain data (the event's decoded JSON, the state) and must not
touch the database: they are rendered inside the server's event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from collections import OrderedDict
from typing import Any

from django.template.loader import render_to_string, select_template

from ..execution.state import ExecutionState
from ..hub.subscriber import Batch, Entry
from ..store import Store, get_store
from ..wire import STREAM_CLOSED, STREAM_RESET, Event, text_frame
from .formats import Render
from .fragments import Fragments, FragmentStore
from .widget import state_context

EVENT_TEMPLATE = "django_sse_exec/events/{event}.html"
FALLBACK_TEMPLATE = "django_sse_exec/event.html"
STATE_TEMPLATE = "django_sse_exec/state.html"

logger = logging.getLogger("django_sse_exec")

#: State fragments kept per execution: a stream this many events behind the
#: others gets its state rebuilt from the log instead.
STATE_FRAMES = 32
#: When the state advances by several events at once, the states after this
#: many of the last ones are rendered too (streams that took the same events in
#: other chunks need them); a catch-up over a long history renders no more.
STEP_FRAMES = 8
class _Execution:
    """One execution's cached fragments and its state, advanced event by event."""

    __slots__ = ("state", "events", "states", "lock", "streams")

    def __init__(self, execution_id: str) -> None:
        self.state = ExecutionState(execution_id)
        #: Its events' fragments (:mod:`.fragments`: bounded with every other execution's).
        self.events = Fragments()
        #: id -> the encoded state fragment after that event.
        self.states: OrderedDict[int, bytes] = OrderedDict()
        self.lock = asyncio.Lock()
        self.streams = 0


class FragmentCache:
    """The per-event-loop renderer and cache of HTML fragments. Get it with :func:`get_cache`."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._executions: dict[str, _Execution] = {}
        self.fragments = FragmentStore()
        self._templates: dict[str, Any] = {}
        #: Fragments rendered so far (events, states): what "once per event" is measured by.
        self.rendered_events = 0
        self.rendered_states = 0

    # -- which executions are kept ----------------------------------------------

    def acquire(self, execution_id: str) -> None:
        """A stream of the execution opened: keep its fragments while it is open."""
        self._entry(execution_id).streams += 1

    def release(self, execution_id: str) -> None:
        """A stream closed; with its last one, the execution's fragments are freed."""
        entry = self._executions.get(execution_id)
        if entry is None:
            return
        entry.streams = max(0, entry.streams - 1)
        if entry.streams == 0:
            self._free(execution_id)

    def _free(self, execution_id: str) -> _Execution | None:
        entry = self._executions.pop(execution_id, None)
        if entry is not None:
            self.fragments.clear(entry.events)
            entry.states.clear()
        return entry

    def _entry(self, execution_id: str) -> _Execution:
        entry = self._executions.get(execution_id)
        if entry is None:
            entry = self._executions[execution_id] = _Execution(execution_id)
        return entry

    # -- event fragments -----------------------------------------------------------

    def event_frame(self, execution_id: str, event: Event) -> bytes:
        """The encoded HTML message of ``event``, rendered on first use only."""
        entry = self._entry(execution_id)
        cached = entry.events.get(event.id)
        if cached is not None:
            if cached[0] == event:
                return cached[1]
            self._forget(execution_id)  # same id, other event: the log was recreated
            entry = self._entry(execution_id)
        encoded = text_frame(event.id, event.event, self.render_event(execution_id, event))
        self.fragments.put(entry.events, event, encoded)
        return encoded

    def render_event(self, execution_id: str, event: Event) -> str:
        """The HTML of one event from its template (``data``: the decoded JSON)."""
        try:
            data = json.loads(event.data)
        except ValueError:
            data = event.data
        self.rendered_events += 1
        try:
            template = self._templates.get(event.event)
            if template is None:
                template = self._templates[event.event] = select_template(
                    [EVENT_TEMPLATE.format(event=event.event), FALLBACK_TEMPLATE])
            return template.render({"execution_id": execution_id, "id": event.id,
                                    "event": event.event, "data": data}).strip()
        except Exception:  # one event a template cannot render must not end the streams
            logger.exception("rendering event %s (%s) of execution %s failed; sending it "
                             "with no HTML", event.id, event.event, execution_id)
            return ""

    def reset_frame(self, execution_id: str, requested: int, first_retained: int) -> bytes:
        """``stream-reset`` as HTML (rare, so not cached)."""
        data = json.dumps({"executionId": execution_id, "requestedAfter": requested,
                           "firstRetainedId": first_retained})
        html = self.render_event(execution_id, Event(0, STREAM_RESET, data))
        return text_frame(None, STREAM_RESET, html)

    # -- state fragments -----------------------------------------------------------

    async def state_frame(self, execution_id: str, events: list[Event]) -> bytes:
        """The state fragment after the last of ``events`` (consecutive events a stream sent).

        The execution's state advances through ``events`` (and through the log
        for any it has not seen before them); a state older than the cached
        ones is rebuilt from the log. The log is read and applied a page at a
        time (never held whole: it may be ``HISTORY_MAX_BYTES`` long).
        """
        target = events[-1].id
        entry = self._entry(execution_id)
        async with entry.lock:
            cached = entry.states.get(target)
            if cached is not None:
                return cached
            state = entry.state
            if target <= state.last_event_id:  # a stream far behind the others
                older = ExecutionState(execution_id)
                async for page in self.store.pages(execution_id, upto=target):
                    for event in page.events:
                        older.apply_event(event)
                return self._render_state(older)
            given = [e for e in events if e.id > state.last_event_id]
            if given[0].id > state.last_event_id + 1:
                async for page in self.store.pages(execution_id, after=state.last_event_id,
                                                   upto=given[0].id - 1):
                    if state.last_event_id and page.first_id > state.last_event_id + 1:
                        # What followed the state is gone (trimmed, or the log was lost
                        # and recreated in a new epoch): start again from what is retained.
                        state = entry.state = ExecutionState(execution_id)
                        entry.states.clear()
                    self._advance(entry, state, page.events, target)
            self._advance(entry, state, given, target)
            while len(entry.states) > STATE_FRAMES:
                entry.states.popitem(last=False)
            return entry.states[target]

    def _advance(self, entry: _Execution, state: ExecutionState, events: list[Event],
                 target: int) -> None:
        """Apply ``events``, rendering the states of the last few before ``target``."""
        for event in events:
            state.apply_event(event)
            if target - event.id < STEP_FRAMES:
                entry.states[event.id] = self._render_state(state)

    def _render_state(self, state: ExecutionState) -> bytes:
        self.rendered_states += 1
        try:
            html = render_to_string(STATE_TEMPLATE, state_context(state)).strip()
        except Exception:
            logger.exception("rendering the state of execution %s at event %s failed; "
                             "sending no state", state.execution_id, state.last_event_id)
            return b""
        return text_frame(None, None, html)

    def _forget(self, execution_id: str) -> None:
        entry = self._free(execution_id)
        if entry is not None:  # keep the stream count of the new incarnation
            self._entry(execution_id).streams = entry.streams

    def stats(self) -> dict[str, int]:
        """Executions and fragments kept, their bytes, and fragments rendered so far
        (for tests and metrics)."""
        return {"executions": len(self._executions), "events": self.rendered_events,
                "states": self.rendered_states, "kept": self.fragments.count,
                "bytes": self.fragments.bytes}


_caches: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, FragmentCache]" = \
    weakref.WeakKeyDictionary()


def get_cache() -> FragmentCache:
    """The fragment cache of the running event loop (rebuilt when the store changes)."""
    loop = asyncio.get_running_loop()
    cache = _caches.get(loop)
    if cache is None or cache.store is not get_store():
        cache = _caches[loop] = FragmentCache(get_store())
    return cache


class UsesCache:
    """A render of one execution's fragments: it holds the loop's cache while it streams."""

    execution_id: str
    cache: "FragmentCache | None" = None

    def _cache(self) -> FragmentCache:
        if self.cache is None:
            self.cache = get_cache()
            self.cache.acquire(self.execution_id)
        return self.cache

    def close(self) -> None:
        if self.cache is not None:
            self.cache.release(self.execution_id)
            self.cache = None


class HtmlRender(UsesCache, Render):
    """One stream's ``?format=html`` representation, backed by the loop's cache."""

    format = "html"

    def __init__(self, execution_id: str) -> None:
        self.execution_id = execution_id
        self.pending: list[Event] = []
        self.closing = b""  # the stream-closed frame, once rendered

    def frame(self, event: Event) -> bytes:
        self.pending.append(event)
        encoded = self._cache().event_frame(self.execution_id, event)
        if event.event == STREAM_CLOSED:
            self.closing = encoded
        return encoded

    def batch(self, batch: Batch) -> bytes:
        return b"".join(self.frame(entry[3]) for entry in batch.events)

    def entry(self, entry: Entry) -> bytes:
        return self.frame(entry[3])

    def reset(self, execution_id: str, requested: int, first_retained: int) -> bytes:
        self.pending.clear()  # the state is rebuilt from what follows
        return self._cache().reset_frame(execution_id, requested, first_retained)

    async def flush(self, out: list[bytes]) -> None:
        """Add the state after the chunk's last event (before it, if that is ``stream-closed``)."""
        if not self.pending:
            return
        events, self.pending = self.pending, []
        state = await self._cache().state_frame(self.execution_id, events)
        closing = self.closing
        if events[-1].event == STREAM_CLOSED and out and out[-1].endswith(closing):
            out[-1] = out[-1][:-len(closing)]  # the state goes just before stream-closed
            out.extend((state, closing))
        else:
            out.append(state)


__all__ = ["FragmentCache", "HtmlRender", "UsesCache", "get_cache"]
