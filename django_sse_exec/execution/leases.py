"""Leases: an execution whose producer died without closing it still ends.

A producer (an :class:`~django_sse_exec.ExecutionReporter`, a Celery task of
:mod:`django_sse_exec.integrations.celery`, or code using the bare helpers that called
:func:`hold_lease`) holds a lease on its execution in the store, renewed in the
background every ``LEASE_TTL / 3`` seconds while the thread or task that took
it is alive. If the producer's process is killed (or its thread or task dies
without closing), renewals stop, and ``LEASE_TTL`` seconds after the last one
the lease is expired.

Expired leases are ended by whichever process checks first: every web process's
hub runs :func:`maintain` in its maintenance loop (every ``LEASE_CHECK``
seconds), and any process may call :func:`reap_lost_executions` (a cron job, a
Celery beat task). The store hands each expired lease to exactly one caller
(an atomic claim that pushes its expiry ``LEASE_CLAIM_GRACE`` seconds ahead, so
a reaper that dies mid-way leaves it to the next one). The reaper sends the
execution's final events — a ``task-fail`` per task still running, then
``execution-complete`` with ``status: "lost"`` — and closes it
(``stream-closed``). So an execution ends at most :func:`lost_within` seconds
(``LEASE_TTL + LEASE_CHECK + REPAIR_INTERVAL``) after its producer died, while a
web process with the hub running (any stream opened) exists. Lowering
``LEASE_TTL`` lowers the bound; what it costs is renewal traffic: one store write
per held lease every ``LEASE_TTL / 3`` seconds (30 s: one every 10 s per running
execution; 3 s: one a second).

Closing an execution ends its lease: the next renewal finds it closed and stops.
A lease only says the producer's process (thread, task) lives, not that it makes
progress: a producer stuck in a loop keeps its lease.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from types import TracebackType
from typing import Any

from ..api import aclose_sse_connections, asend_sse_event
from ..conf import sse_settings
from ..exceptions import ExecutionClosed
from ..runtime.sync import run_sync
from ..store import Store, get_store
from ..telemetry import metrics
from ..wire import validate_execution_id
from .state import ExecutionState

logger = logging.getLogger("django_sse_exec")

#: What the final event says about why the execution ended.
LOST_REASON = "the producer stopped renewing its lease (process killed or gone)"


def lost_within() -> float:
    """Seconds after its producer died within which an execution ends as ``lost`` (settings).

    The lease expires at most ``LEASE_TTL`` after the last renewal, the next
    check finds it within ``LEASE_CHECK``, and checks run at the hub's
    maintenance ticks, ``REPAIR_INTERVAL`` apart.
    """
    return (float(sse_settings.LEASE_TTL) + float(sse_settings.LEASE_CHECK)
            + float(sse_settings.REPAIR_INTERVAL))


def _ttl(ttl: float | None) -> float:
    value = float(sse_settings.LEASE_TTL if ttl is None else ttl)
    if not value > 0:
        raise ValueError(f"a lease's ttl must be a positive number of seconds, not {ttl!r}")
    return value


class Lease:
    """A lease held on one execution and renewed in the background until released.

    Get one with :func:`hold_lease` (sync code: a renewal thread, which stops
    when the calling thread ends) or :func:`ahold_lease` (async code: a renewal
    task, which stops when the calling task ends). Both are context managers;
    leaving the block releases the lease.
    """

    def __init__(self, execution_id: str, ttl: float | None = None) -> None:
        self.execution_id = validate_execution_id(execution_id)
        self.ttl = _ttl(ttl)
        self._stop = threading.Event()
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None

    @property
    def active(self) -> bool:
        """True while the lease is renewed."""
        return not self._stop.is_set() and (
            (self._thread is not None and self._thread.is_alive())
            or (self._task is not None and not self._task.done()))

    # -- taking it --------------------------------------------------------------

    async def astart(self) -> "Lease":
        """Take the lease; renew it from a task while the calling task runs."""
        owner = asyncio.current_task()
        await get_store().hold_lease(self.execution_id, self.ttl)
        self._task = asyncio.create_task(self._renew_task(owner),
                                         name=f"sse-lease:{self.execution_id}")
        return self

    def start(self) -> "Lease":
        """Take the lease; renew it from a daemon thread while the calling thread lives."""
        run_sync("hold_lease", get_store().hold_lease, self.execution_id, self.ttl)
        owner = threading.current_thread()
        self._thread = threading.Thread(target=self._renew_thread, args=(owner,), daemon=True,
                                        name=f"sse-lease:{self.execution_id}")
        self._thread.start()
        return self

    # -- renewing ---------------------------------------------------------------

    async def _renew_once(self) -> bool:
        """Renew; False once the execution is closed (the lease is then gone)."""
        try:
            return await get_store().hold_lease(self.execution_id, self.ttl)
        except Exception:
            logger.warning("could not renew the lease of execution %s; retrying",
                           self.execution_id, exc_info=True)
            return True

    async def _renew_task(self, owner: asyncio.Task[Any] | None) -> None:
        while not self._stop.is_set():
            await asyncio.sleep(self.ttl / 3)
            if self._stop.is_set() or (owner is not None and owner.done()):
                return
            if not await self._renew_once():
                return

    def _renew_thread(self, owner: threading.Thread) -> None:
        while not self._stop.wait(self.ttl / 3):
            if not owner.is_alive():
                return
            try:
                if not run_sync("renew_lease", self._renew_once):
                    return
            except Exception:  # the process is shutting down
                return

    # -- releasing --------------------------------------------------------------

    def stop(self) -> None:
        """Stop renewing (no I/O; the lease then expires unless released)."""
        self._stop.set()
        task = self._task
        if task is not None and not task.done():
            task.get_loop().call_soon_threadsafe(task.cancel)

    async def arelease(self) -> None:
        """Stop renewing and drop the lease (the execution then never counts as lost)."""
        self.stop()
        await get_store().release_lease(self.execution_id)

    def release(self) -> None:
        """Sync twin of :meth:`arelease`."""
        self.stop()
        run_sync("release_lease", get_store().release_lease, self.execution_id)

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    async def __aenter__(self) -> "Lease":
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.arelease()


def hold_lease(execution_id: str, ttl: float | None = None) -> Lease:
    """Take a lease on ``execution_id`` for code that sends with the bare helpers.

    Renewed every ``ttl / 3`` seconds (default ``LEASE_TTL``) by a daemon thread
    while the calling thread lives; ``release()`` it (or use ``with``) when done,
    or close the execution. If this process dies first, the execution is ended
    with ``execution-complete {status: "lost"}`` and ``stream-closed``.
    """
    return Lease(execution_id, ttl).start()


async def ahold_lease(execution_id: str, ttl: float | None = None) -> Lease:
    """Async twin of :func:`hold_lease`: renewed by a task while the calling task runs."""
    return await Lease(execution_id, ttl).astart()


# -- ending executions whose lease expired ---------------------------------------------


async def end_lost(store: Store, execution_id: str) -> bool:
    """End one execution whose lease this process claimed; True if it sent the final events."""
    ended = False
    try:
        log = await store.read(execution_id)
        if log.events and not log.closed:
            state = ExecutionState.from_events(execution_id, log.events)
            for event, data in state.lost(LOST_REASON):
                await asend_sse_event(execution_id, event, data)
            await aclose_sse_connections(execution_id)
            ended = True
    except ExecutionClosed:
        pass  # the producer closed it meanwhile
    await store.release_lease(execution_id)
    if ended:
        metrics.execution_lost()
        logger.warning("execution %s ended as lost: %s", execution_id, LOST_REASON)
    return ended


async def areap_lost_executions(store: Store | None = None) -> list[str]:
    """End every execution whose lease expired; return the ids this call ended."""
    store = store or get_store()
    grace = float(sse_settings.LEASE_CLAIM_GRACE)
    ended = []
    for execution_id in await store.claim_expired_leases(grace):
        try:
            if await end_lost(store, execution_id):
                ended.append(execution_id)
        except Exception:
            logger.exception("could not end lost execution %s; another check will retry "
                             "after %gs", execution_id, grace)
    return ended


def reap_lost_executions() -> list[str]:
    """Sync twin of :func:`areap_lost_executions` (a cron job, a Celery beat task)."""
    return run_sync("reap_lost_executions", areap_lost_executions)


_next_check: "weakref.WeakKeyDictionary[Store, float]" = weakref.WeakKeyDictionary()


async def maintain(store: Store) -> None:
    """The hub's hook: reap lost executions at most every ``LEASE_CHECK`` seconds."""
    now = time.monotonic()
    if now < _next_check.get(store, 0.0):
        return
    _next_check[store] = now + float(sse_settings.LEASE_CHECK)
    await areap_lost_executions(store)


__all__ = ["LOST_REASON", "Lease", "ahold_lease", "areap_lost_executions", "end_lost",
           "hold_lease", "lost_within", "maintain", "reap_lost_executions"]
