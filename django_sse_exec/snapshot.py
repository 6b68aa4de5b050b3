"""An execution's current state, read from its event log: for first paints and APIs.

A page that shows an execution must be right before any stream connects: an
execution that already ended needs no stream at all, and one half way through
must not flash empty. :func:`aget_execution_state` rebuilds the
:class:`~django_sse_exec.state.ExecutionState` from the retained history, so
the page renders what a stream would have shown, and
``state.last_event_id`` tells the stream where to resume.
"""

from __future__ import annotations

from .runner import run_sync
from .state import ExecutionState
from .store import Store, get_store
from .wire import Event, validate_execution_id


async def read_events(store: Store, execution_id: str, after: int = 0,
                      upto: int | None = None) -> tuple[list[Event], int]:
    """Every retained event with ``after < id <= upto``, and the log's last id.

    Reads page after page while a slice ends before the log does (a store may
    cap how much one read returns).
    """
    events: list[Event] = []
    while True:
        log = await store.read(execution_id, after=after, upto=upto)
        events.extend(log.events)
        end = log.last_id if upto is None else min(upto, log.last_id)
        if not log.events or log.events[-1].id >= end:
            return events, log.last_id
        after = log.events[-1].id


async def aget_execution_state(execution_id: str) -> ExecutionState:
    """The execution's state rebuilt from its logged events (no I/O besides the read).

    An execution nothing was sent to yet is ``pending`` with ``last_event_id``
    0. Only the retained history (``HISTORY_MAX_EVENTS``) is replayed: for an
    execution with more events, counts start at the oldest retained one.
    Raises ``ValueError``/``TypeError`` for an invalid execution id.
    """
    validate_execution_id(execution_id)
    events, last_id = await read_events(get_store(), execution_id)
    state = ExecutionState.from_events(execution_id, events)
    state.last_event_id = max(state.last_event_id, last_id)
    return state


def get_execution_state(execution_id: str) -> ExecutionState:
    """Sync twin of :func:`aget_execution_state` (for sync views, tasks and shells)."""
    return run_sync("get_execution_state", aget_execution_state, execution_id)


__all__ = ["aget_execution_state", "get_execution_state", "read_events"]
