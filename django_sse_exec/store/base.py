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

    # -- operations: leases and listing (see leases.py and the admin page) ----

    async def hold_lease(self, execution_id: str, ttl: float) -> bool:
        """Take or renew the execution's lease until ``ttl`` seconds from now.

        Returns False, holding nothing, when the execution is closed.
        """
        raise NotImplementedError

    async def release_lease(self, execution_id: str) -> None:
        """Drop the execution's lease (if any)."""
        raise NotImplementedError

    async def claim_expired_leases(self, grace: float, limit: int = 100) -> list[str]:
        """Executions whose lease expired, each handed to exactly one caller.

        Atomically pushes each returned lease ``grace`` seconds ahead, so no other
        caller gets it unless this one fails to end the execution in that time.
        """
        raise NotImplementedError

    async def list_executions(self, cursor: str = "0", count: int = 50,
                              search: str = "") -> tuple[list["ExecutionSummary"], str]:
        """A page of executions whose id contains ``search``, and the next page's cursor.

        Start with cursor ``"0"``; a returned cursor of ``"0"`` means the last page.
        Pages are in no particular order and hold about ``count`` executions.
        """
        raise NotImplementedError

    async def describe_execution(self, execution_id: str) -> "ExecutionSummary | None":
        """One execution's summary, or None if the store does not know it."""
        raise NotImplementedError


class ExecutionSummary(NamedTuple):
    """What the admin page lists about one execution."""

    execution_id: str
    #: Last id assigned.
    last_id: int
    closed: bool
    #: Open streams across processes.
    viewers: int
    #: Seconds since the last event (None when the store cannot tell).
    idle: float | None
    #: Name of the last retained event ("" when none is retained).
    last_event: str
    #: Data of the first retained event if it is ``execution-start`` (for the age), else None.
    start_data: str | None
    #: True while a producer holds a lease on it.
    leased: bool
