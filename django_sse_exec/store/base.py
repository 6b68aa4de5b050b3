"""The state behind streams: each execution's event log and its stream membership.

A Store keeps, per execution, the ids it assigned (contiguous, increasing), a
bounded history of events for replay, a closed flag, and the set of open streams
(membership entries that expire unless refreshed by a heartbeat, so a crashed
process stops being counted). Backends: ``memory`` (one process) and ``redis``
(shared by every process), chosen by ``SSE_EXEC["STORE"]``.

This class is the contract both backends follow (``tests/test_store_contract.py``
runs the same tests against each) and owns the rules they share; a backend
only decides where the bytes live:

* **Ids** are 1, 2, 3 ... per execution, assigned atomically.
* **Epochs**: a store that lost its data (a Redis restarted empty, a memory
  store cleared) moves to a new epoch ``E`` (seconds of the loss, above the old
  one); a log created under epoch ``E > 0`` starts at ``E * EPOCH_SPAN + 1``,
  so a client's Last-Event-ID from a lost log is never inside a new log's range.
* **History** keeps the newest ``history_max_events`` events and at most
  ``history_max_bytes`` bytes of them (:meth:`entry_size`; the newest event is
  always kept), so ids in the history are contiguous from ``first_id``.
* **Expiry**: an open log lives ``history_ttl`` after its last event, a closed
  one ``closed_ttl`` after closing, and neither expires while streams are
  counted on it (then: ``member_ttl`` after the last one went). An expired log
  reads as empty with ``last_id`` 0.
* **Closing** logs ``stream-closed`` as the last event; appends then raise.
* **Reads** can be limited to a page (``limit`` events, about ``max_bytes``
  bytes, at least one event): :meth:`pages` walks a range page by page, so a
  stream never holds more than one page of replay.
* **Keys**: an append with a ``key`` the execution has already logged appends
  nothing and answers the first event's id (``repeated``); the newest
  ``send_keys_max`` keys are remembered, and they expire with the log.
* **Cancel and stalls** (what :class:`Appended` tells the sender): an append of
  kind :data:`CANCEL` marks the execution as asked to cancel, and every later
  append says so; with ``stall_after`` set, each :data:`REPORT` notes the
  execution's last activity, :meth:`claim_stalled` hands out the executions
  silent that long (each to one caller), and the next report after a
  :data:`STALLED` notice says ``resumed``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import NamedTuple

from ..wire import STREAM_CLOSED, Event, closed_data

#: Ids one epoch may use before the next epoch's first id.
EPOCH_SPAN = 1_000_000


#: Kinds of append. A producer's report (what ``send_sse_event`` sends) counts as
#: activity and ends a stall; a notice (sent by the app about the execution) does
#: neither; a cancel request also marks the execution as asked to cancel; a stall
#: notice is logged only while the execution is still claimed as stalled.
REPORT = "report"
NOTICE = "notice"
CANCEL = "cancel"
STALLED = "stalled"
KINDS = (REPORT, NOTICE, CANCEL, STALLED)
#: The notice a sender sends when its report ended a stall (``Appended.resumed``).
EXECUTION_RESUMED = "execution-resumed"


class Appended(int):
    """An appended event's id, and what the store learnt in the same atomic step.

    An ``int`` (the id; 0 when nothing was appended), so every caller that
    only wants the id keeps working.
    """

    #: The key had been logged before: nothing was appended, the id is that event's.
    repeated: bool
    #: Someone asked to cancel the execution (an append of kind :data:`CANCEL`).
    cancel_requested: bool
    #: This report ended a stall the execution had been noticed in.
    resumed: bool
    #: A stall notice found the execution no longer stalled: nothing was appended.
    skipped: bool

    def __new__(cls, event_id: int, *, repeated: bool = False, cancel_requested: bool = False,
                resumed: bool = False, skipped: bool = False) -> "Appended":
        self = super().__new__(cls, event_id)
        self.repeated = repeated
        self.cancel_requested = cancel_requested
        self.resumed = resumed
        self.skipped = skipped
        return self

    @classmethod
    def from_flags(cls, event_id: int, flags: int) -> "Appended":
        """From a script's answer: bit 1 repeated, 2 cancel requested, 4 resumed, 8 skipped."""
        return cls(event_id, repeated=bool(flags & 1), cancel_requested=bool(flags & 2),
                   resumed=bool(flags & 4), skipped=bool(flags & 8))


class LogSlice(NamedTuple):
    """What a read of the log returns."""

    #: Retained events with ``after < id <= upto``, in id order (maybe one page of them).
    events: list[Event]
    #: Last id assigned in the execution (0 when nothing was ever sent).
    last_id: int
    #: Oldest retained id (``last_id + 1`` when the history is empty).
    first_id: int
    #: True once the execution was closed (its last event is ``stream-closed``).
    closed: bool

    def holds(self, event_id: int) -> bool:
        """Whether a client that has seen ``event_id`` can resume in this log:
        the id is one this log assigned and what follows it is retained."""
        return self.first_id - 1 <= event_id <= self.last_id


class Store:
    """Interface and shared rules of an event-log and membership backend.

    All I/O methods are coroutines. Implementations must make :meth:`append`
    and :meth:`close` atomic per execution across every process that shares
    the backend.
    """

    def __init__(
        self,
        *,
        history_max_events: int = 1000,
        history_max_bytes: int = 16 * 1024 * 1024,
        history_ttl: float = 86400,
        closed_ttl: float = 3600,
        member_ttl: float = 30,
        page_events: int = 200,
        page_bytes: int = 256 * 1024,
        send_keys_max: int = 10_000,
        stall_after: float | None = None,
    ) -> None:
        self.history_max_events = history_max_events
        self.history_max_bytes = history_max_bytes
        self.history_ttl = history_ttl
        self.closed_ttl = closed_ttl
        self.member_ttl = member_ttl
        self.page_events = page_events
        self.page_bytes = page_bytes
        #: Keys remembered per execution (the newest; see :meth:`append`).
        self.send_keys_max = send_keys_max
        #: Seconds without a report after which an open execution is stalled (None: not watched).
        self.stall_after = stall_after or None

    # -- event log ---------------------------------------------------------

    async def append(self, execution_id: str, event: str, data: str, *,
                     key: str | None = None, kind: str = REPORT) -> Appended:
        """Log ``event`` with its JSON ``data``; return its id (see :class:`Appended`).

        With ``key``, at most once per key: a key already logged appends nothing
        and returns that event's id, ``repeated``. ``kind`` is one of
        :data:`KINDS` (see the module's docstring). Raises
        :class:`~django_sse_exec.exceptions.ExecutionClosed` (with
        ``cancel_requested``) if the execution was closed.
        """
        raise NotImplementedError

    async def cancel_requested(self, execution_id: str) -> bool:
        """Whether someone asked to cancel the execution (an append of kind :data:`CANCEL`)."""
        raise NotImplementedError

    async def claim_stalled(self, limit: int = 100) -> list[tuple[str, float]]:
        """Open executions with no report for ``stall_after`` seconds, each handed to one
        caller, with the time of their last report (seconds since the epoch).

        A claimed execution is stalled until its next report; send it a
        :data:`STALLED` notice (logged only if no report came meanwhile). Nothing
        when ``stall_after`` is None.
        """
        raise NotImplementedError

    async def close(self, execution_id: str) -> tuple[int, bool]:
        """Log the final ``stream-closed`` event and mark the execution closed.

        Returns ``(id of the stream-closed event, True)`` on the first call and
        ``(that same id, False)`` on later calls (closing is idempotent).
        """
        raise NotImplementedError

    async def read(self, execution_id: str, after: int = 0, upto: int | None = None,
                   limit: int | None = None, max_bytes: int | None = None) -> LogSlice:
        """Retained events with ``after < id <= upto`` (``upto`` None: to the end).

        With ``limit`` at most that many events; with ``max_bytes`` no more
        events once their :meth:`entry_size` passes it (but at least one).
        """
        raise NotImplementedError

    async def pages(self, execution_id: str, after: int = 0,
                    upto: int | None = None) -> AsyncIterator[LogSlice]:
        """Read ``after < id <= upto`` one page at a time (the first page even if empty).

        Each page is read when the previous one has been consumed, so a caller
        that writes each page before asking for the next holds one page at most.
        """
        while True:
            page = await self.read(execution_id, after, upto, self.page_events, self.page_bytes)
            yield page
            end = page.last_id if upto is None else min(upto, page.last_id)
            if not page.events or page.events[-1].id >= end:
                return
            after = page.events[-1].id

    async def last_ids(self, execution_ids: Iterable[str]) -> dict[str, int]:
        """Last assigned id of each execution (0 if unknown or expired), in one round trip."""
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

    async def ping(self) -> None:
        """One round trip to every host, raising if one does not answer (the outage probe)."""

    # -- rules shared by the backends --------------------------------------

    @staticmethod
    def closed_event(execution_id: str, event_id: int) -> Event:
        """The ``stream-closed`` event that ends an execution's log."""
        return Event(event_id, STREAM_CLOSED, closed_data(execution_id, event_id))

    @staticmethod
    def entry_size(event_id: int, event: str, data: str) -> int:
        """Bytes an event counts for against ``history_max_bytes``."""
        return len(str(event_id)) + len(event) + len(data.encode()) + 2

    @staticmethod
    def next_epoch(seen: int, now: float) -> int:
        """The epoch that follows ``seen`` after a loss noticed at ``now`` (seconds)."""
        return max(int(now), seen + 1)

    @staticmethod
    def first_id_of_epoch(epoch: int) -> int:
        """The first id of a log created under ``epoch``."""
        return epoch * EPOCH_SPAN + 1

    # -- operations: leases and listing (see execution/leases.py and the admin page) ----

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
        Feeds' own logs (ids starting with ``_``) are left out.
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
