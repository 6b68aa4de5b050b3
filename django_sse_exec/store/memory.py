"""In-process store: the default with the in-memory channel layer (one process).

A plain dict guarded by a thread lock, so sync helpers called from threads and
the server's event loop can share it. Expired executions and membership entries
are swept lazily on access.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..exceptions import ExecutionClosed
from ..wire import Event
from .base import ExecutionSummary, LogSlice, Store


@dataclass
class _Log:
    history: deque[Event]
    last_id: int = 0
    closed: bool = False
    expires_at: float = 0.0
    members: dict[str, float] = field(default_factory=dict)


class MemoryStore(Store):
    """Event logs and membership in this process's memory."""

    SWEEP_EVERY = 30.0  # seconds between sweeps of expired executions

    def __init__(self, **kwargs: float) -> None:
        super().__init__(**kwargs)
        self._logs: dict[str, _Log] = {}
        self._lock = threading.Lock()
        self._next_sweep = time.monotonic() + self.SWEEP_EVERY

    def _get(self, execution_id: str, create: bool = False) -> _Log | None:
        now = time.monotonic()
        if now >= self._next_sweep:
            self._sweep(now)
        log = self._logs.get(execution_id)
        if log is not None and log.expires_at <= now and not self._live_members(log, now):
            del self._logs[execution_id]
            log = None
        if log is None and create:
            log = _Log(history=deque(maxlen=self.history_max_events))
            log.expires_at = now + self.history_ttl
            self._logs[execution_id] = log
        return log

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + self.SWEEP_EVERY
        for execution_id, log in list(self._logs.items()):
            if log.expires_at <= now and not self._live_members(log, now):
                del self._logs[execution_id]

    @staticmethod
    def _live_members(log: _Log, now: float) -> int:
        for member, expiry in list(log.members.items()):
            if expiry <= now:
                del log.members[member]
        return len(log.members)

    async def append(self, execution_id: str, event: str, data: str) -> int:
        with self._lock:
            log = self._get(execution_id, create=True)
            assert log is not None
            if log.closed:
                raise ExecutionClosed(f"execution {execution_id!r} is closed")
            log.last_id += 1
            log.history.append(Event(log.last_id, event, data))
            log.expires_at = time.monotonic() + self.history_ttl
            return log.last_id

    async def close(self, execution_id: str) -> tuple[int, bool]:
        with self._lock:
            log = self._get(execution_id, create=True)
            assert log is not None
            if log.closed:
                return log.last_id, False
            log.last_id += 1
            log.history.append(self.closed_event(execution_id, log.last_id))
            log.closed = True
            log.expires_at = time.monotonic() + self.closed_ttl
            return log.last_id, True

    async def read(self, execution_id: str, after: int = 0, upto: int | None = None) -> LogSlice:
        with self._lock:
            log = self._get(execution_id)
            if log is None:
                return LogSlice([], 0, 1, False)
            history = log.history
            first_id = history[0].id if history else log.last_id + 1
            top = log.last_id if upto is None else upto
            start = max(after + 1, first_id) - first_id
            stop = max(0, min(top, log.last_id) - first_id + 1)
            events = [history[i] for i in range(start, stop)]
            return LogSlice(events, log.last_id, first_id, log.closed)

    async def last_ids(self, execution_ids: Iterable[str]) -> dict[str, int]:
        with self._lock:
            result = {}
            for execution_id in execution_ids:
                log = self._logs.get(execution_id)
                result[execution_id] = log.last_id if log else 0
            return result

    async def delete(self, execution_id: str) -> None:
        with self._lock:
            self._logs.pop(execution_id, None)

    async def add_member(self, execution_id: str, member: str) -> None:
        with self._lock:
            log = self._get(execution_id, create=True)
            assert log is not None
            log.members[member] = time.monotonic() + self.member_ttl

    async def remove_member(self, execution_id: str, member: str) -> None:
        with self._lock:
            log = self._logs.get(execution_id)
            if log is None:
                return
            log.members.pop(member, None)
            if not log.members and not log.history and not log.closed:
                del self._logs[execution_id]

    async def refresh_members(self, members: Iterable[tuple[str, str]]) -> None:
        expiry = time.monotonic() + self.member_ttl
        with self._lock:
            for execution_id, member in members:
                log = self._logs.get(execution_id)
                if log is not None and member in log.members:
                    log.members[member] = expiry

    async def count_members(self, execution_id: str) -> int:
        with self._lock:
            log = self._logs.get(execution_id)
            return self._live_members(log, time.monotonic()) if log else 0

    # -- operations: leases and listing -------------------------------------

    def _leases(self) -> dict[str, float]:
        """Execution id -> lease expiry (monotonic), created on first use."""
        return self.__dict__.setdefault("_lease_expiry", {})

    async def hold_lease(self, execution_id: str, ttl: float) -> bool:
        with self._lock:
            log = self._logs.get(execution_id)
            if log is not None and log.closed:
                self._leases().pop(execution_id, None)
                return False
            self._leases()[execution_id] = time.monotonic() + ttl
            return True

    async def release_lease(self, execution_id: str) -> None:
        with self._lock:
            self._leases().pop(execution_id, None)

    async def claim_expired_leases(self, grace: float, limit: int = 100) -> list[str]:
        now = time.monotonic()
        with self._lock:
            leases = self._leases()
            expired = [e for e, expiry in leases.items() if expiry <= now][:limit]
            for execution_id in expired:
                leases[execution_id] = now + grace
            return expired

    async def list_executions(self, cursor: str = "0", count: int = 50,
                              search: str = "") -> tuple[list[ExecutionSummary], str]:
        start = int(cursor) if str(cursor).isdigit() else 0
        with self._lock:
            now = time.monotonic()
            ids = [e for e, log in self._logs.items()
                   if search in e and log.last_id and (log.expires_at > now or log.members)]
            page = [self._summary(e, self._logs[e], now) for e in ids[start:start + count]]
        following = start + count
        return page, str(following) if following < len(ids) else "0"

    async def describe_execution(self, execution_id: str) -> ExecutionSummary | None:
        with self._lock:
            log = self._get(execution_id)
            if log is None or not log.last_id:
                return None
            return self._summary(execution_id, log, time.monotonic())

    def _summary(self, execution_id: str, log: _Log, now: float) -> ExecutionSummary:
        ttl = self.closed_ttl if log.closed else self.history_ttl
        first = log.history[0] if log.history else None
        return ExecutionSummary(
            execution_id, log.last_id, log.closed,
            sum(1 for expiry in log.members.values() if expiry > now),
            max(0.0, ttl - (log.expires_at - now)),
            log.history[-1].event if log.history else "",
            first.data if first is not None and first.event == "execution-start" else None,
            self._leases().get(execution_id, 0.0) > now)
