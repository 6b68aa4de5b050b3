"""In-process store: the default with the in-memory channel layer (one process).

A plain dict guarded by a thread lock, so sync helpers called from threads and
the server's event loop can share it. Expired executions and membership entries
are swept lazily on access. The rules (ids, epochs, trimming, expiry) are the
ones :class:`~django_sse_exec.store.base.Store` states for every backend.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..exceptions import ExecutionClosed
from ..wire import STREAM_CLOSED, Event
from .base import CANCEL, REPORT, STALLED, Appended, ExecutionSummary, LogSlice, Store


@dataclass
class _Log:
    history: deque[Event] = field(default_factory=deque)
    last_id: int = 0
    closed: bool = False
    expires_at: float = 0.0
    size: int = 0  # bytes of the history, as Store.entry_size counts them
    members: dict[str, float] = field(default_factory=dict)
    #: Keys of keyed appends -> their event's id, oldest first (at most send_keys_max).
    keys: OrderedDict[str, int] = field(default_factory=OrderedDict)
    cancel_requested: bool = False


class MemoryStore(Store):
    """Event logs and membership in this process's memory."""

    SWEEP_EVERY = 30.0  # seconds between sweeps of expired executions

    def __init__(self, **kwargs: float) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._logs: dict[str, _Log] = {}
        self._lock = threading.Lock()
        self._next_sweep = time.monotonic() + self.SWEEP_EVERY
        #: The store's epoch (see Store): 0 until :meth:`clear` loses its data.
        self.epoch = 0
        #: Open executions -> time of their last report (with ``stall_after`` only).
        self._activity: dict[str, float] = {}
        #: Executions claimed as stalled -> minus the last report's time until their
        #: notice is logged, then plus it.
        self._stalled: dict[str, float] = {}

    def clear(self) -> None:
        """Forget every log and membership, as a data loss would, and move to a new epoch."""
        with self._lock:
            self._logs.clear()
            self.epoch = self.next_epoch(self.epoch, time.time())

    def _get(self, execution_id: str, create: bool = False) -> _Log | None:
        now = time.monotonic()
        if now >= self._next_sweep:
            self._sweep(now)
        log = self._logs.get(execution_id)
        if log is not None and self._expired(log, now):
            del self._logs[execution_id]
            log = None
        if log is None and create:
            log = self._logs[execution_id] = _Log(expires_at=now + self.history_ttl)
            log.last_id = self.first_id_of_epoch(self.epoch) - 1
        return log

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + self.SWEEP_EVERY
        for execution_id, log in list(self._logs.items()):
            if self._expired(log, now):
                del self._logs[execution_id]
        for watched in (self._activity, self._stalled):
            for execution_id in [e for e in watched if e not in self._logs]:
                del watched[execution_id]

    def _expired(self, log: _Log, now: float) -> bool:
        return log.expires_at <= now and not self._live_members(log, now)

    @staticmethod
    def _live_members(log: _Log, now: float) -> int:
        for member, expiry in list(log.members.items()):
            if expiry <= now:
                del log.members[member]
        return len(log.members)

    def _push(self, log: _Log, event: Event) -> None:
        log.last_id = event.id
        log.history.append(event)
        log.size += self.entry_size(event.id, event.event,
                                    "" if event.event == STREAM_CLOSED else event.data)
        while len(log.history) > 1 and (len(log.history) > self.history_max_events
                                        or log.size > self.history_max_bytes):
            old = log.history.popleft()
            log.size -= self.entry_size(old.id, old.event,
                                        "" if old.event == STREAM_CLOSED else old.data)

    async def append(self, execution_id: str, event: str, data: str, *,
                     key: str | None = None, kind: str = REPORT) -> Appended:
        with self._lock:
            if kind == STALLED and self._get(execution_id) is None:
                self._stalled.pop(execution_id, None)
                return Appended(0, skipped=True)
            log = self._get(execution_id, create=True)
            assert log is not None
            cancel = log.cancel_requested or kind == CANCEL
            if log.closed:
                raise ExecutionClosed(f"execution {execution_id!r} is closed",
                                      cancel_requested=log.cancel_requested)
            if key is not None and key in log.keys:
                return Appended(log.keys[key], repeated=True, cancel_requested=log.cancel_requested)
            if kind == STALLED and self._stalled.get(execution_id, 0.0) >= 0:
                return Appended(0, skipped=True, cancel_requested=log.cancel_requested)
            self._push(log, Event(log.last_id + 1, event, data))
            log.expires_at = time.monotonic() + self.history_ttl
            if key is not None:
                log.keys[key] = log.last_id
                while len(log.keys) > self.send_keys_max:
                    log.keys.popitem(last=False)
            log.cancel_requested = cancel
            return Appended(log.last_id, cancel_requested=cancel,
                            resumed=self._watch(execution_id, kind))

    def _watch(self, execution_id: str, kind: str) -> bool:
        """Note a report's activity (True if it ended a noticed stall) or a stall notice."""
        if self.stall_after is None:
            return False
        if kind == STALLED:
            self._stalled[execution_id] = -self._stalled[execution_id]
            return False
        if kind != REPORT:
            return False
        self._activity[execution_id] = time.time()
        return self._stalled.pop(execution_id, 0.0) > 0

    async def cancel_requested(self, execution_id: str) -> bool:
        with self._lock:
            log = self._get(execution_id)
            return log is not None and log.cancel_requested

    async def claim_stalled(self, limit: int = 100) -> list[tuple[str, float]]:
        if self.stall_after is None:
            return []
        cutoff = time.time() - self.stall_after
        with self._lock:
            claimed = [(e, at) for e, at in self._activity.items() if at <= cutoff][:limit]
            for execution_id, at in claimed:
                del self._activity[execution_id]
                self._stalled[execution_id] = -at
            return claimed

    async def close(self, execution_id: str) -> tuple[int, bool]:
        with self._lock:
            log = self._get(execution_id, create=True)
            assert log is not None
            if log.closed:
                return log.last_id, False
            self._push(log, self.closed_event(execution_id, log.last_id + 1))
            self._activity.pop(execution_id, None)
            self._stalled.pop(execution_id, None)
            log.closed = True
            log.expires_at = time.monotonic() + self.closed_ttl
            return log.last_id, True

    async def read(self, execution_id: str, after: int = 0, upto: int | None = None,
                   limit: int | None = None, max_bytes: int | None = None) -> LogSlice:
        with self._lock:
            log = self._get(execution_id)
            if log is None:
                return LogSlice([], 0, 1, False)
            history = log.history
            first_id = log.last_id - len(history) + 1
            top = log.last_id if upto is None else min(upto, log.last_id)
            start = max(after + 1, first_id) - first_id
            stop = max(start, top - first_id + 1)
            if limit is not None:
                stop = min(stop, start + limit)
            events: list[Event] = []
            budget = max_bytes
            for i in range(start, stop):
                event = history[i]
                if budget is not None:
                    size = self.entry_size(event.id, event.event, event.data)
                    if events and size > budget:
                        break
                    budget -= size
                events.append(event)
            return LogSlice(events, log.last_id, first_id, log.closed)

    async def last_ids(self, execution_ids: Iterable[str]) -> dict[str, int]:
        with self._lock:
            result = {}
            now = time.monotonic()
            for execution_id in execution_ids:
                log = self._logs.get(execution_id)
                result[execution_id] = log.last_id if log and not self._expired(log, now) else 0
            return result

    def execution_count(self) -> int:
        """Executions this process holds anything for (a log, a membership), expired
        ones included until swept: what a leak check compares before and after."""
        with self._lock:
            return len(self._logs)

    async def delete(self, execution_id: str) -> None:
        with self._lock:
            self._logs.pop(execution_id, None)
            self._activity.pop(execution_id, None)
            self._stalled.pop(execution_id, None)

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
            ids = [e for e, log in self._logs.items() if search in e and log.history
                   and not e.startswith("_") and not self._expired(log, now)]  # not feeds
            page = [self._summary(e, self._logs[e], now) for e in ids[start:start + count]]
        following = start + count
        return page, str(following) if following < len(ids) else "0"

    async def describe_execution(self, execution_id: str) -> ExecutionSummary | None:
        with self._lock:
            log = self._get(execution_id)
            if log is None or not log.history:
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
