"""Report Celery tasks, chains and groups to an execution's stream with no hand-written events.

Needs the ``celery`` extra. Give tasks the base class :class:`ExecutionTask` and
start them with :func:`start_execution`::

    @shared_task(bind=True, base=ExecutionTask)
    def import_rows(self, rows):
        for n, row in enumerate(rows, 1):
            save(row)
            self.progress(n, len(rows), f"row {n}")

    start_execution(chain(fetch.s(url), import_rows.s()), "exec-42")

:func:`start_execution` counts the tasks, stamps each with the execution id (a
message header that survives retries), and emits ``execution-start``. Each task
then reports itself from the worker: ``task-start`` per attempt (``attempt``
and ``retry: true`` from the second on), ``task-retry`` when an attempt fails
and another is scheduled, ``task-complete`` or ``task-fail``. The task whose
end completes the execution emits ``execution-complete`` (``status: "failed"``
if any task failed) and closes the stream. A failure in a chain counts the
rest of the chain as skipped, so the execution still ends.

Tasks run in different processes, so nobody holds the execution in memory:
every report rebuilds it from the execution's event log
(:meth:`~django_sse_exec.execution.reporter.ExecutionState.from_events`). Ids in the log
are assigned atomically, so exactly one task sees its own end as the last one.
Keep ``HISTORY_MAX_EVENTS`` above the number of events one execution emits
(``progress`` is throttled to one event per :data:`PROGRESS_INTERVAL` per task).

Cancel (``cancel_url``, ``request_cancel``): a task still queued does not run
(it finds the request at its start), a running one raises
:class:`~django_sse_exec.exceptions.ExecutionCancelled` at its next
``self.progress`` (let it propagate: it is in ``throws``, so the worker records
the task as failed without logging it as an error), the tasks running when the
request was seen are revoked by the task that saw it first (``control.revoke``
from the worker, without terminating them: stopping is cooperative; a revoked
id is never run again by a retry or a redelivery), and the execution ends
``execution-cancelled``, sent once whichever task gets there first. Every event is keyed (see
:mod:`django_sse_exec.execution.keys`): a task redelivered after its worker died
repeats nothing, and a retry's progress shows only past where the earlier
attempt got. ``progress`` carries ``percent``, ``rate`` and ``eta`` of the task,
and the execution's percentage counts each running task's share, so a group or
chord rolls up into its execution.

What a task cannot report itself is reported from the worker's main process:
a process that died mid-task (``WorkerLostError``) or hit its hard time limit
(``TimeLimitExceeded``) through ``task_failure``; a revoked task cancels the
execution (``execution-cancelled``, then the stream closes) through
``task_revoked``. Reporting problems (e.g. Redis unreachable) are logged and
never fail the task itself.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Iterable
from typing import Any

from celery import Task, signals
from celery.app.task import Context
from celery.canvas import Signature
from celery.exceptions import Retry

from ..api import close_sse_connections
from ..exceptions import ExecutionCancelled, ExecutionClosed
from ..execution.keys import shown_before
from ..execution.reporter import ExecutionState
from ..sending.feeds import add_to_feed
from ..wire import validate_execution_id
from ..wire.many import validate_feed_name
from . import celery_reports as reports
from .celery_reports import RESULT_MAX_BYTES, TITLE_HEADER, iter_tasks

logger = logging.getLogger("django_sse_exec")

#: Message header carrying the execution id of a task.
EXECUTION_HEADER = "sse_execution_id"
#: Seconds between ``progress`` events of one task (the last step always goes out).
PROGRESS_INTERVAL = 0.25


def start_execution(sig: Signature, execution_id: str, *, feeds: Iterable[str] = (),
                    **options: Any) -> Any:
    """Run ``sig`` as the execution ``execution_id``, reported to its stream; returns the AsyncResult.

    Every task in ``sig`` should use :class:`ExecutionTask` (others run but are
    not reported, and the execution then never completes). ``options`` go to
    ``sig.apply_async``. Give a task a title with
    ``sig.set(headers={TITLE_HEADER: "Fetch the data"})``. ``feeds`` are feeds the
    execution joins before it starts (see :func:`~django_sse_exec.add_to_feed`).

    Synchronous (it publishes to the broker): from async code, call it through
    ``asgiref.sync.sync_to_async``. If publishing fails the execution is ended
    as failed and closed, and the error is raised.
    """
    validate_execution_id(execution_id)
    feeds = [validate_feed_name(feed) for feed in feeds]
    tasks = list(iter_tasks(sig))
    if not tasks:
        raise ValueError(f"{sig!r} has no task to run")
    for task in tasks:
        headers = dict(task.options.get("headers") or {})
        headers[EXECUTION_HEADER] = execution_id
        task.set(headers=headers)
    state = ExecutionState(execution_id, total=len(tasks))
    for feed in feeds:
        add_to_feed(feed, execution_id)
    reports.send(execution_id, state.start())
    try:
        return sig.apply_async(**options)
    except Exception as exc:
        reports.safely(reports.finish, execution_id, state, exc)  # never hide the broker's error
        raise


def execution_of(request: Any) -> str | None:
    """The execution id a task request was started in, or None."""
    value = getattr(request, EXECUTION_HEADER, None)
    if value is None:
        value = (getattr(request, "headers", None) or {}).get(EXECUTION_HEADER)
    return value if isinstance(value, str) else None


class ExecutionTask(Task):
    """Base class of tasks that report their lifecycle to the execution they run in.

    Outside an execution (called directly, or sent without
    :func:`start_execution`) the task runs as usual and reports nothing.

    A task's return value is published (in ``task-complete.result``, when its
    JSON is under :data:`RESULT_MAX_BYTES`) only if the task opts in with
    ``publish_result=True`` (``@shared_task(base=ExecutionTask, publish_result=True)``):
    every viewer of the stream sees it.
    """

    #: Publish the return value in ``task-complete`` (off: results may be private).
    publish_result: bool = False
    #: A cancelled task fails with ExecutionCancelled: expected, so not logged as an error.
    throws = (ExecutionCancelled,)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request = self.request
        execution_id = execution_of(request)
        if execution_id is None or request.id is None:
            return super().__call__(*args, **kwargs)
        # The worker has pushed this call's request; Task.__call__ would push an empty one.
        started = time.monotonic()
        request.sse_progress_at = 0.0
        request.sse_state = ExecutionState(execution_id)  # this attempt's paces and keys
        try:
            reports.safely(reports.report_start, request, self.name, execution_id)
        except ExecutionCancelled as exc:  # cancelled while queued: the task does not run
            reports.safely(reports.report_cancelled, execution_id, exc.reason, self.app,
                           request.id)
            raise
        with reports.leased(execution_id):
            return self._run_reported(request, execution_id, started, args, kwargs)

    def _run_reported(self, request: Any, execution_id: str, started: float,
                      args: Any, kwargs: Any) -> Any:
        try:
            result = self.run(*args, **kwargs)
        except Retry as exc:
            reports.safely(reports.report_retry, request, execution_id, exc, started)
            raise
        except ExecutionCancelled as exc:
            reports.safely(reports.report_cancelled, execution_id, exc.reason, self.app,
                           request.id)
            raise
        except Exception as exc:
            # Not SystemExit & co.: then the process is going (revoked with terminate,
            # shutdown) and the worker's main process reports it (task_revoked/task_failure).
            reports.safely(reports.report_end, request, self.name, execution_id, started, error=exc)
            raise
        reports.safely(reports.report_end, request, self.name, execution_id, started,
                result=result if self.publish_result else None)
        return result

    def progress(self, current: int | float, total: int | float | None = None,
                 message: str | None = None) -> None:
        """Emit ``progress`` for this task (at most every :data:`PROGRESS_INTERVAL` s).

        Raises :class:`~django_sse_exec.exceptions.ExecutionCancelled` once someone
        asked to cancel the execution. Does nothing outside an execution.
        """
        request = self.request
        execution_id = execution_of(request)
        if execution_id is None or request.id is None:
            return
        now = time.monotonic()
        last = total is not None and current >= total
        if now - getattr(request, "sse_progress_at", 0.0) < PROGRESS_INTERVAL and not last:
            return
        high_water = getattr(request, "sse_high_water", None)
        if high_water is not None and not last:
            if shown_before(current, total, high_water):
                return  # an earlier attempt of the task showed this far already
            request.sse_high_water = None
        request.sse_progress_at = now
        state = getattr(request, "sse_state", None) or ExecutionState(execution_id)
        message_ = state.progress(current, total, message, task_id=request.id)
        try:
            appended = reports.send(execution_id, message_, state.key_for(message_))
        except ExecutionClosed as exc:
            if exc.cancel_requested:
                raise ExecutionCancelled(execution_id) from None
            logger.info("execution %s was closed before its progress could be reported",
                        execution_id)
            return
        except Exception:
            logger.warning("could not report progress to execution %s", execution_id,
                           exc_info=True)
            return
        if appended.cancel_requested:
            raise ExecutionCancelled(execution_id)


# -- reports from the worker's main process ---------------------------------------------

#: Requests this worker process received that belong to an execution, while they exist:
#: a hard time limit is handled in the main process, which has no current request.
_in_flight: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()


@signals.task_received.connect
def _on_task_received(request: Any = None, **kwargs: Any) -> None:
    request_dict = getattr(request, "request_dict", None) or {}
    if request_dict.get(EXECUTION_HEADER) and request_dict.get("id"):
        _in_flight[request_dict["id"]] = request


def _request_of(sender: Task, task_id: str) -> Any:
    """The request of ``task_id``: the current one, else the one this process received."""
    if execution_of(sender.request) is not None and sender.request.id == task_id:
        return sender.request
    received = _in_flight.get(task_id)
    if received is None:
        return None
    context = getattr(received, "_context", None)
    return context if context is not None else Context(received.request_dict)


@signals.task_failure.connect
def _on_task_failure(sender: Task | None = None, task_id: str | None = None,
                     exception: BaseException | None = None, **kwargs: Any) -> None:
    """Report failures a task could not report itself (lost process, hard time limit)."""
    if not isinstance(sender, ExecutionTask) or task_id is None or isinstance(
            exception, ExecutionCancelled):
        return
    request = _request_of(sender, task_id)
    execution_id = execution_of(request)
    if request is None or execution_id is None:
        return
    reports.safely(reports.report_end, request, sender.name, execution_id, None,
            error=exception or RuntimeError("the task failed"))


@signals.task_revoked.connect
def _on_task_revoked(sender: Task | None = None, request: Any = None, terminated: bool = False,
                     expired: bool = False, **kwargs: Any) -> None:
    """A revoked task cancels its execution: ``execution-cancelled``, then the stream closes."""
    execution_id = execution_of(request)
    if not isinstance(sender, ExecutionTask) or execution_id is None:
        return
    how = "expired" if expired else "was terminated" if terminated else "was revoked"

    def cancel() -> None:
        state = reports.read_state(execution_id)
        if not state.finished:
            reports.send(execution_id, state.cancel(f"task {reports.title(request, sender.name)} {how}"))
        close_sse_connections(execution_id)

    reports.safely(cancel)


__all__ = [
    "EXECUTION_HEADER", "ExecutionTask", "PROGRESS_INTERVAL", "RESULT_MAX_BYTES", "TITLE_HEADER",
    "execution_of", "iter_tasks", "start_execution",
]
