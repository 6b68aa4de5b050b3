"""The state behind streams: each execution's event log and its stream membership.

A Store keeps, per execution, the ids it assigned (1, 2, 3 ... with no gaps), a
bounded history of events for replay, a closed flag, and the set of open streams
(membership entries that expire unless refreshed by a heartbeat, so a crashed
process stops being counted). Backends: ``memory`` (one process) and ``redis``
(shared by every process). The backend is chosen by ``SSE_EXEC["STORE"]``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from ..wire import STREAM_CLOSED, Event, closed_data


class LogSlice(NamedTuple):
    """What a read of the log returns."""

    #: Retained events with ``after < id <= upto``, in id order.
    events: list[Event]
    #: Last id assigned in the execution (0 when nothing was ever sent).
    last_id: int
    #: Oldest retained id (``last_id + 1`` when the history is empty).
    first_id: int
    #: True once the execution was closed (its last event is ``stream-closed``).
    closed: bool


class Store:
    """Interface of an event-log and membership backend. All methods are coroutines.

    Implementations must make :meth:`append` and :meth:`close` atomic per
    execution across every process that shares the backend.
    """

    def __init__(
        self,
        *,
        history_max_events: int = 1000,
        history_ttl: float = 86400,
        closed_ttl: float = 3600,
        member_ttl: float = 30,
    ) -> None:
        self.history_max_events = history_max_events
        self.history_ttl = history_ttl
        self.closed_ttl = closed_ttl
        self.member_ttl = member_ttl

    # -- event log ---------------------------------------------------------

    async def append(self, execution_id: str, event: str, data: str) -> int:
        """Log ``event`` with its JSON ``data``; return its id.

        Raises :class:`~django_sse_exec.exceptions.ExecutionClosed` if the
        execution was closed.
        """
        raise NotImplementedError

    async def close(self, execution_id: str) -> tuple[int, bool]:
        """Log the final ``stream-closed`` event and mark the execution closed.

        Returns ``(id of the stream-closed event, True)`` on the first call and
        ``(that same id, False)`` on later calls (closing is idempotent).
        """
        raise NotImplementedError

    async def read(self, execution_id: str, after: int = 0, upto: int | None = None) -> LogSlice:
        """Retained events with ``after < id <= upto`` (``upto`` None: to the end)."""
        raise NotImplementedError

    async def last_ids(self, execution_ids: Iterable[str]) -> dict[str, int]:
        """Last assigned id of each execution (0 if unknown), in one round trip."""
        raise NotImplementedError

    async def delete(self, execution_id: str) -> None:
        """Forget an execution's log and membership entirely."""
        raise NotImplementedError

    # -- membership --------------------------------------------------------

    async def add_member(self, execution_id: str, member: str) -> None:
        """Count ``member`` (one open stream) until removed or expired."""
        raise NotImplementedError

    async def remove_member(self, execution_id: str, member: str) -> None:
        """Stop counting ``member``; an execution with no members leaves no entry."""
        raise NotImplementedError

    async def refresh_members(self, members: Iterable[tuple[str, str]]) -> None:
        """Heartbeat: push back the expiry of each ``(execution_id, member)``."""
        raise NotImplementedError

    async def count_members(self, execution_id: str) -> int:
        """Open streams of the execution, not counting expired entries."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release connections (optional)."""

    # -- helpers for implementations --------------------------------------

    @staticmethod
    def closed_event(execution_id: str, event_id: int) -> Event:
        """The ``stream-closed`` event that ends an execution's log."""
        return Event(event_id, STREAM_CLOSED, closed_data(execution_id, event_id))
