"""One Celery task's reports, each rebuilt from its execution's event log.

Tasks of one execution run in different processes, so nobody holds the
execution in memory: every report reads the log, rebuilds the
:class:`~django_sse_exec.execution.state.ExecutionState`, and sends the next payload. Ids
in the log are assigned atomically, so exactly one task sees its own end as
the last one (:func:`finish_if_last`). Reporting never fails the task itself
(:func:`safely`). Used by :mod:`django_sse_exec.integrations.celery`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery.canvas import Signature, _chain, _chord, group, maybe_signature
from celery.exceptions import Retry

from ..api import close_sse_connections, send_as
from ..exceptions import ExecutionCancelled, ExecutionClosed
from ..execution.keys import lifecycle_key
from ..execution.leases import Lease
from ..execution.reporter import ExecutionState, Message
from ..runtime.sync import run_sync
from ..store import get_store
from ..store.base import Appended
from ..wire import encode_data

logger = logging.getLogger("django_sse_exec")

#: Optional message header with the task's title (default: the task's name).
TITLE_HEADER = "sse_task_title"
#: A task's return value joins its ``task-complete`` payload when its JSON is this
#: small (and the task opts in).
RESULT_MAX_BYTES = 2048


def iter_tasks(sig: Any) -> Iterator[Signature]:
    """The task signatures of a canvas (a task, chain, group or chord), in order."""
    sig = maybe_signature(sig)
    if isinstance(sig, _chord):
        yield from iter_tasks(sig.tasks)
        yield from iter_tasks(sig.body)
    elif isinstance(sig, (_chain, group)):
        for task in sig.tasks:
            yield from iter_tasks(task)
    elif isinstance(sig, (list, tuple)):
        for task in sig:
            yield from iter_tasks(task)
    elif sig is not None:
        yield sig


@contextmanager
def leased(execution_id: str) -> Iterator[None]:
    """Hold the execution's lease while a task of it runs in this process.

    If the worker is killed mid-task, renewals stop and a web process ends the
    execution as lost (see :mod:`django_sse_exec.execution.leases`). Between tasks (queued
    in the broker) no lease is held.
    """
    lease = None
    try:
        lease = Lease(execution_id).start()
    except Exception:
        logger.warning("could not take the lease of execution %s", execution_id, exc_info=True)
    try:
        yield
    finally:
        if lease is not None:
            safely(lease.release)


def send(execution_id: str, message: Message, key: str | None = None) -> Appended:
    """Send ``message`` with ``key`` (default: its lifecycle key, see
    :mod:`django_sse_exec.execution.keys`)."""
    event, data = message
    return send_as(execution_id, event, data, key=key or lifecycle_key(event, data))


def read_state(execution_id: str, upto: int | None = None) -> ExecutionState:
    log = run_sync("read", get_store().read, execution_id, 0, upto)
    return ExecutionState.from_events(execution_id, log.events)


def title(request: Any, name: str) -> str:
    headers = getattr(request, "headers", None) or {}
    return str(getattr(request, TITLE_HEADER, None) or headers.get(TITLE_HEADER) or name)


def attempt(request: Any) -> int:
    return int(getattr(request, "retries", 0) or 0) + 1


def report_start(request: Any, name: str, execution_id: str) -> None:
    """``task-start``; raises ExecutionCancelled (nothing sent) if a cancel was requested.

    Notes on ``request`` how far earlier attempts of the task got
    (``sse_high_water``): its progress shows again only past that.
    """
    state = read_state(execution_id)
    if state.cancel_requested:
        raise ExecutionCancelled(execution_id, "cancelled before it ran")
    earlier = state.tasks.get(request.id)
    request.sse_high_water = earlier.fraction if earlier is not None else None
    send(execution_id, state.task_start(request.id, title(request, name),
                                         attempt=attempt(request)))


def report_cancelled(execution_id: str, reason: str, app: Any = None,
                     task_id: str | None = None) -> None:
    """End a cancelled execution: revoke its other running tasks (with ``app``'s control),
    then ``execution-cancelled`` (once, whoever sends it), then close."""
    state = read_state(execution_id)
    others = [other for other in state.running if other != task_id]
    if app is not None and others and not state.finished:
        safely(app.control.revoke, others)
    if not state.finished:
        try:
            send(execution_id, state.cancel(reason))
        except ExecutionClosed:
            return
    close_sse_connections(execution_id)


def report_retry(request: Any, execution_id: str, exc: Retry, started: float) -> None:
    state = read_state(execution_id)
    # Not ``exc.excs``: that is the exception's repr, captured text like its message.
    reason = exc.exc if exc.exc is not None else (exc.message or "retry")
    extra: dict[str, Any] = {"duration": int((time.monotonic() - started) * 1000)}
    if exc.when is not None:
        extra["retryIn"] = exc.humanize()
    event, data = state.task_retry(request.id, reason, attempt=attempt(request))
    send(execution_id, (event, {**data, **extra}))


def report_end(request: Any, name: str, execution_id: str, started: float | None, *,
                error: BaseException | None = None, result: Any = None) -> None:
    state = read_state(execution_id)
    if error is not None and any(r.get("taskId") == request.id for r in state.results):
        return  # already reported (by the task, before a signal reports it again)
    extra: dict[str, Any] = {}
    if attempt(request) > 1:
        extra["attempt"] = attempt(request)
    if error is None and result is not None:
        try:
            encode_data(result, max_bytes=RESULT_MAX_BYTES)
            extra["result"] = result
        except (TypeError, ValueError):
            pass
    if error is not None:
        skipped = sum(len(list(iter_tasks(step))) for step in (request.chain or []))
        if skipped:
            extra["skipped"] = skipped
    duration = int((time.monotonic() - started) * 1000) if started is not None else None
    message = state.task_end(request.id, error=error, title=title(request, name),
                             duration=duration, **extra)
    event_id = send(execution_id, message)
    finish_if_last(execution_id, event_id)


def finish_if_last(execution_id: str, event_id: int) -> None:
    """End the execution if event ``event_id`` is the one that completed it.

    Only events up to ``event_id`` are read: exactly one task end is the one
    after which every task has ended (or been skipped), whatever the order in
    which concurrent tasks read the log.
    """
    log = run_sync("read", get_store().read, execution_id, 0, event_id)
    before = ExecutionState.from_events(execution_id, [e for e in log.events if e.id < event_id])
    state = ExecutionState.from_events(execution_id, log.events)
    if state.all_done() and not before.all_done() and not state.finished:
        finish(execution_id, state, None)


def finish(execution_id: str, state: ExecutionState, error: BaseException | None) -> None:
    for message in state.finish(error):
        send(execution_id, message)
    close_sse_connections(execution_id)


def safely(func: Any, *args: Any, **kwargs: Any) -> None:
    """Report without ever failing the task: problems are logged (a cancel is raised)."""
    try:
        func(*args, **kwargs)
    except ExecutionCancelled:
        raise
    except ExecutionClosed:
        logger.info("execution was closed before %s could report", func.__name__)
    except Exception:
        logger.warning("could not report %s to its execution", func.__name__, exc_info=True)
