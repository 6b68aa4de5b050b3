"""An execution's current state, read from its event log: for first paints and APIs.

A page that shows an execution must be right before any stream connects: an
execution that already ended needs no stream at all, and one half way through
must not flash empty. :func:`aget_execution_state` rebuilds the
:class:`~django_sse_exec.execution.state.ExecutionState` from the retained history, so
the page renders what a stream would have shown, and
``state.last_event_id`` tells the stream where to resume.
"""

from __future__ import annotations

from ..runtime.sync import run_sync
from ..store import LogSlice, Store, get_store
from ..wire import Event, validate_execution_id
from .state import ExecutionState


async def read_all(store: Store, execution_id: str, after: int = 0,
                   upto: int | None = None) -> LogSlice:
    """Every retained event with ``after < id <= upto`` in one slice (read page by
    page, as the store pages its reads; ``first_id`` is the first page's)."""
    events: list[Event] = []
    head: LogSlice | None = None
    async for page in store.pages(execution_id, after=after, upto=upto):
        events.extend(page.events)
        head = head or page
        last = page
    assert head is not None  # pages() yields at least one page
    return LogSlice(events, last.last_id, head.first_id, last.closed)


#: What a lean state keeps of each task result (``task-complete`` / ``task-fail`` data).
RESULT_FIELDS = ("taskId", "taskTitle", "status", "duration", "error", "attempt", "progress",
                 "total", "skipped")


async def fold_log(store: Store, execution_id: str, *, lean: bool = False) -> ExecutionState:
    """The state the retained log describes, read and applied one page at a time.

    Only one page of the log (the store's ``page_events`` / ``page_bytes``) is
    held at once, whatever the log's length. With ``lean``, each task result
    keeps only the vocabulary's fields (:data:`RESULT_FIELDS`), not the other
    keys a producer put in its payload (an output, a report): what a widget
    shows, in memory that does not grow with what the events carry.
    """
    state = ExecutionState(execution_id)
    async for page in store.pages(execution_id):
        kept = len(state.results)
        for event in page.events:
            state.apply_event(event)
        if lean:
            state.results[kept:] = [{k: r[k] for k in RESULT_FIELDS if k in r}
                                    for r in state.results[kept:]]
        state.last_event_id = max(state.last_event_id, page.last_id)
    return state


async def aget_execution_state(execution_id: str) -> ExecutionState:
    """The execution's state rebuilt from its logged events (no I/O besides the read).

    An execution nothing was sent to yet is ``pending`` with ``last_event_id``
    0. Only the retained history (``HISTORY_MAX_EVENTS``) is replayed: for an
    execution with more events, counts start at the oldest retained one. The
    log is read page by page (:func:`fold_log`).
    Raises ``ValueError``/``TypeError`` for an invalid execution id.
    """
    validate_execution_id(execution_id)
    return await fold_log(get_store(), execution_id)


def get_execution_state(execution_id: str) -> ExecutionState:
    """Sync twin of :func:`aget_execution_state` (for sync views, tasks and shells)."""
    return run_sync("get_execution_state", aget_execution_state, execution_id)


__all__ = ["RESULT_FIELDS", "aget_execution_state", "fold_log", "get_execution_state", "read_all"]
