"""HTML fragments on a stream of many executions: many htmx widgets over one connection.

Under ``?format=html`` a fixed set's stream (:mod:`django_sse_exec.streams.many.sets`)
sends, after each chunk of an execution's events, that execution's whole state
rendered from ``state.html`` as an event named ``state:<execution id>`` — so
each widget of a page listens for its own name (``sse-swap="state:exec-42"``)
under one ``sse-connect``. Fragments come from the loop's
:class:`~django_sse_exec.render.html.FragmentCache`, rendered once per event per
process, as on single streams. The frame's ``id:`` is the stream's cursor with
this execution at the state's last event: a reconnect resumes every widget
exactly. No ``stream-closed`` is sent per execution (it would close the whole
connection under htmx); the stream ends when every execution has closed, with
one ``stream-closed`` of its own (:data:`SET_CLOSED_HTML`, no ``id:``, so the
client keeps the cursor of the last state), which the widget's ``sse-close``
waits for.
"""

from __future__ import annotations

from ...hub.subscriber import Batch, Entry
from ...render.html import UsesCache
from ...wire import STREAM_CLOSED, Event, text_frame
from .frames import MultiRender

#: The last frame of an HTML set stream whose executions have all closed.
SET_CLOSED_HTML = text_frame(None, STREAM_CLOSED, '<span data-event="stream-closed">Ended</span>')


class MultiHtmlRender(UsesCache, MultiRender):
    """One execution of a multi stream as state fragments named ``state:<id>``."""

    format = "html"

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.pending: list[Event] = []

    def frame(self, event: Event) -> bytes:
        self.pending.append(event)  # its state goes out at the flush
        return b""

    def batch(self, batch: Batch) -> bytes:
        self.pending.extend(entry[3] for entry in batch.events)
        return b""

    def entry(self, entry: Entry) -> bytes:
        return self.frame(entry[3])

    def reset(self, execution_id: str, requested: int, first_retained: int) -> bytes:
        self.pending.clear()  # the state is rebuilt from what follows
        return b""

    async def flush(self, out: list[bytes]) -> None:
        """The execution's state after its pending events, carrying the stream's cursor."""
        if not self.pending:
            return
        events, self.pending = self.pending, []
        state = await self._cache().state_frame(self.execution_id, events)
        cursor = self.mux.cursor(self.key, events[-1].id)
        if state:
            out.append(f"id: {cursor}\nevent: state:{self.execution_id}\n".encode() + state)


__all__ = ["SET_CLOSED_HTML", "MultiHtmlRender"]
