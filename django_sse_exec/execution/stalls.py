"""Stalls: an execution whose producer stopped reporting, while it still holds its lease.

A lease (:mod:`.leases`) says the producer's process lives, not that it makes
progress: a task waiting on a dead socket keeps its lease forever. With
``STALL_AFTER`` set, the store notes the time of every report (any event the
producer sends; the app's own notices do not count) in the same atomic step as
the append, and an open execution silent for ``STALL_AFTER`` seconds gets
``execution-stalled {executionId, lastReportAt, after}``. Its next report ends
the stall: the sender then sends ``execution-resumed {executionId, at}`` (see
:func:`django_sse_exec.api.asend_as`). Pages show both; nothing is cancelled.

Who notices: every web process's hub checks in its maintenance loop (a job of
:func:`~django_sse_exec.hub.maintenance.add_job`, about every fifth of
``STALL_AFTER``), and any process may call :func:`check_stalls` (a cron job).
The store hands each stalled execution to exactly one caller (an atomic claim
on Redis, like the leases'), and the notice is logged only if no report came
in between, so a stall is announced once and never after its producer resumed.
The store's sets are the only index: no scan of the keyspace.
"""

from __future__ import annotations

import logging
import time
import weakref

from ..api import asend_as
from ..exceptions import ExecutionClosed
from ..runtime.sync import run_sync
from ..store import Store, get_store
from ..store.base import STALLED
from .vocabulary import EXECUTION_STALLED

logger = logging.getLogger("django_sse_exec")

#: Fraction of ``STALL_AFTER`` between two checks of one process.
CHECK_FRACTION = 0.2


async def acheck_stalls(store: Store | None = None) -> list[str]:
    """Announce every execution silent for ``STALL_AFTER`` seconds; return their ids."""
    store = store or get_store()
    if store.stall_after is None:
        return []
    announced = []
    for execution_id, last_report in await store.claim_stalled():
        data = {"executionId": execution_id, "lastReportAt": int(last_report * 1000),
                "after": store.stall_after}
        try:
            appended = await asend_as(execution_id, EXECUTION_STALLED, data, kind=STALLED)
        except ExecutionClosed:
            continue
        except Exception:
            logger.warning("could not announce the stall of execution %s", execution_id,
                           exc_info=True)
            continue
        if not appended.skipped:
            announced.append(execution_id)
            logger.info("execution %s stalled: no report for %gs", execution_id,
                        store.stall_after)
    return announced


def check_stalls() -> list[str]:
    """Sync twin of :func:`acheck_stalls` (a cron job, a Celery beat task)."""
    return run_sync("check_stalls", acheck_stalls)


_next_check: "weakref.WeakKeyDictionary[Store, float]" = weakref.WeakKeyDictionary()


async def maintain(store: Store) -> None:
    """The hub's hook: check for stalls about every ``STALL_AFTER / 5`` seconds."""
    if store.stall_after is None:
        return
    now = time.monotonic()
    if now < _next_check.get(store, 0.0):
        return
    _next_check[store] = now + store.stall_after * CHECK_FRACTION
    await acheck_stalls(store)


__all__ = ["CHECK_FRACTION", "acheck_stalls", "check_stalls", "maintain"]
