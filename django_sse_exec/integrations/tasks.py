"""``@progress_task``: a task of Django's tasks framework that reports its own execution.

Django's tasks framework (``django.tasks`` in Django 6.0+, the ``django-tasks``
backport on 5.2) runs functions in workers but has no progress API. A progress
task is a framework task whose function receives a reporter first::

    from django_sse_exec import stream_url
    from django_sse_exec.tasks import progress_task

    @progress_task(queue_name="imports")        # any of @task's arguments
    def import_rows(reporter, path):
        rows = load(path)
        for n, row in enumerate(rows, 1):
            save(row)
            reporter.progress(n, len(rows), f"row {n}")

    result = import_rows.enqueue("data.csv")
    url = stream_url(result.id)                 # the execution id is the result's id

The decorator returns the framework's own ``Task`` (``enqueue``, ``aenqueue``,
``using``, ``get_result`` as usual), made by the framework's ``task``
decorator for the backend ``TASKS`` names. Its run is one execution of one
task: ``execution-start``, ``task-start``, the function's ``progress`` events,
then ``task-complete`` and ``execution-complete`` (``status: "success"``) or,
if the function raised, ``task-fail`` and ``execution-complete``
(``status: "failed"``), then ``stream-closed``: the same ending as the Celery
integration's. An ``async def`` task gets the same reporter and uses its async
methods (``await reporter.aprogress(...)``).

A backend that runs the same result again (``context.attempt`` above 1) continues
the execution: an earlier attempt that never reported its end gets
``task-retry``, and the new ``task-start`` says ``attempt`` and ``retry: true``.
Django's framework has no retry of its own yet, so a result whose execution had
already ended (failed, or ended as lost) runs unreported (logged).

While the function runs the execution holds a lease (see
:mod:`django_sse_exec.execution.leases`): if the worker process is killed, the execution
ends as ``lost`` about ``LEASE_TTL`` seconds later. Reporting problems (the
store unreachable, the execution closed meanwhile) are logged and never fail the
task itself; ``progress`` is sent at most every :data:`PROGRESS_INTERVAL`
seconds (the last step always goes out).

Cancel: once someone asked to cancel the execution (its ``cancel_url``), the
run's next report raises :class:`~django_sse_exec.exceptions.ExecutionCancelled`
inside the function, and a run that had not started yet does not run the
function at all; either way the execution ends ``execution-cancelled`` and the
exception ends the task (the framework records it as failed: it has no
cancelled state). Its events are keyed (see :mod:`django_sse_exec.execution.keys`),
and a run that finds progress of an earlier attempt in the log shows its own
only once it gets further than that, so a result run again never shows the
same progress twice.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ..exceptions import ExecutionCancelled, ExecutionClosed
from ..execution.keys import shown_before
from ..execution.leases import Lease
from ..execution.reporter import ExecutionReporter
from ..execution.snapshot import aget_execution_state
from . import tasks_follow
from .tasks_compat import task_decorator
from .tasks_lifecycle import Message, begin, end, ended

logger = logging.getLogger("django_sse_exec")

#: Seconds between two ``progress`` events of one run (the last step always goes out).
PROGRESS_INTERVAL = 0.25
#: Attribute set on the functions of progress tasks (the signal receivers leave them be).
MARKER = tasks_follow.MARKER


@contextmanager
def _logged(what: str, execution_id: str) -> Iterator[None]:
    """Log (never raise) a reporting problem: it must not fail the task (a cancel does)."""
    try:
        yield
    except ExecutionCancelled:
        raise
    except ExecutionClosed:
        logger.info("execution %s was closed before it could %s", execution_id, what)
    except Exception:
        logger.warning("execution %s: could not %s", execution_id, what, exc_info=True)


class TaskReporter(ExecutionReporter):
    """The :class:`~django_sse_exec.ExecutionReporter` a progress task's function receives.

    Its execution is the task result's id and its one task is the run
    (``task_id``, also the result's id). Use ``progress`` (sync functions) or
    ``aprogress`` (async ones); ``attempt`` is this run's attempt (1, 2, ...).
    Sends never raise: a problem is logged and the call returns 0.
    """

    def __init__(self, task_result: Any, title: str) -> None:
        super().__init__(str(task_result.id), total=1, lease=False)
        #: The ``taskId`` of this run's events (the result's id).
        self.task_id = str(task_result.id)
        #: The ``taskTitle`` of this run's events.
        self.title = title
        #: This run's attempt: 1, then 2, ... when the backend runs the result again.
        self.attempt = max(1, int(task_result.attempts or 0))
        #: True when the execution had already ended before this run: nothing is sent.
        self.detached = False
        self._progress_at = float("-inf")
        #: The share of the run an earlier attempt reported (its progress is not shown again).
        self.high_water: float | None = None

    async def _emit(self, message: Message) -> int:
        if self.detached:
            return 0
        with _logged(f"send {message[0]}", self.execution_id):
            return await super()._emit(message)
        return 0

    async def astart(self) -> int:
        """Emit this run's first events (see :func:`.tasks_lifecycle.begin`); returns the
        first event's id (0 if none was sent)."""
        with _logged("read its state", self.execution_id):
            self.state = await aget_execution_state(self.execution_id)
        if ended(self.state):
            logger.warning("execution %s has already ended: attempt %d of its task is not "
                           "reported", self.execution_id, self.attempt)
            self.detached, self.close_on_exit = True, False
        elif self.state.cancel_requested:
            self.cancel_requested = True
            raise ExecutionCancelled(self.execution_id, "cancelled before it ran")
        earlier = self.state.tasks.get(self.task_id)
        self.high_water = earlier.fraction if earlier is not None else None
        ids = [await self._emit(message)
               for message in begin(self.state, self.task_id, self.title, self.attempt)]
        return ids[0] if ids else 0

    async def aprogress(self, current: int | float, total: int | float | None = None,
                        message: str | None = None, *, task_id: str | None = None) -> int:
        """Emit ``progress``, at most every :data:`PROGRESS_INTERVAL` seconds unless it is
        the last step (``current >= total``); returns its id, 0 when skipped."""
        now = time.monotonic()
        last = total is not None and current >= total
        if now - self._progress_at < PROGRESS_INTERVAL and not last:
            return 0
        if self.high_water is not None and not last:
            if shown_before(current, total, self.high_water):
                return 0  # an earlier attempt showed this far already
            self.high_water = None
        self._progress_at = now
        with _logged("send progress", self.execution_id):
            return await super().aprogress(current, total, message, task_id=task_id)
        return 0

    async def afinish(self, error: BaseException | None = None) -> None:
        """End the run (``task-complete``/``task-fail``), the execution, and its stream.

        An ``asyncio.CancelledError`` (an async task cancelled) or
        :class:`~django_sse_exec.exceptions.ExecutionCancelled` ends it as
        ``execution-cancelled``.
        """
        cancelled = isinstance(error, (asyncio.CancelledError, ExecutionCancelled))
        self._finishing = True  # the run is over: a cancel request must not stop its end
        if not cancelled:
            for message in end(self.state, self.task_id, attempt=self.attempt, error=error):
                await self._emit(message)
        with _logged("close its stream", self.execution_id):
            await super().afinish(error if cancelled else None)

    def __enter__(self) -> "TaskReporter":
        with _logged("take its lease", self.execution_id):
            self.lease = Lease(self.execution_id).start()  # renewed while this thread lives
        try:
            self.start()
        except ExecutionCancelled as exc:  # cancelled while queued: the function never runs
            self.finish(exc)
            raise
        return self

    async def __aenter__(self) -> "TaskReporter":
        with _logged("take its lease", self.execution_id):
            self.lease = await Lease(self.execution_id).astart()  # while this task runs
        try:
            await self.astart()
        except ExecutionCancelled as exc:
            await self.afinish(exc)
            raise
        return self


def _task_function(func: Callable[..., Any], takes_context: bool, title: str) -> Callable[..., Any]:
    """The function the framework runs: ``(context, *args, **kwargs)``, which builds the
    run's reporter, runs ``func`` inside it, and looks like ``func`` to the framework
    (module, name and qualified name, so workers import the task by its path)."""
    if inspect.iscoroutinefunction(func):
        async def run_async(context: Any, *args: Any, **kwargs: Any) -> Any:
            async with TaskReporter(context.task_result, title) as reporter:
                return await func(reporter, *((context,) if takes_context else ()), *args, **kwargs)

        run: Callable[..., Any] = run_async
    else:
        def run_sync(context: Any, *args: Any, **kwargs: Any) -> Any:
            with TaskReporter(context.task_result, title) as reporter:
                return func(reporter, *((context,) if takes_context else ()), *args, **kwargs)

        run = run_sync
    for name in ("__module__", "__name__", "__qualname__", "__doc__"):
        setattr(run, name, getattr(func, name))
    run.__signature__ = _signature(func, takes_context)  # type: ignore[attr-defined]
    setattr(run, MARKER, True)
    return run


def _signature(func: Callable[..., Any], takes_context: bool) -> inspect.Signature:
    """``func``'s signature with ``context`` in place of ``reporter`` (and its own ``context``)."""
    signature = inspect.signature(func)
    params = list(signature.parameters.values())
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    needed = 2 if takes_context else 1
    if len(params) < needed or any(p.kind not in positional for p in params[:needed]):
        wanted = "(reporter, context, ...)" if takes_context else "(reporter, ...)"
        raise TypeError(f"a progress task's function takes {wanted}; {func.__qualname__} "
                        f"takes {signature}")
    if takes_context and params[1].name != "context":
        raise TypeError(f"a progress task with takes_context=True takes (reporter, context, ...); "
                        f"{func.__qualname__} takes {signature}")
    context = inspect.Parameter("context", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return signature.replace(parameters=[context, *params[needed:]])


def progress_task(function: Callable[..., Any] | None = None, *, takes_context: bool = False,
                  title: str | None = None, **task_options: Any) -> Any:
    """Make ``function`` a task of Django's tasks framework that reports its run.

    Use as ``@progress_task`` or ``@progress_task(...)`` with ``@task``'s arguments
    (``priority``, ``queue_name``, ``backend``, ``takes_context`` and any a backend
    adds). The function takes the run's :class:`TaskReporter` first, then (with
    ``takes_context=True``) the framework's ``TaskContext`` as ``context``, then
    the task's arguments. ``title`` is the run's ``taskTitle`` (default: the
    function's name). Returns the framework's ``Task``; ``result.id`` of its
    ``enqueue()`` is the execution id (:func:`~django_sse_exec.stream_url`).
    """
    def decorate(func: Callable[..., Any]) -> Any:
        run = _task_function(func, takes_context, title or func.__name__)
        return task_decorator()(takes_context=True, **task_options)(run)

    return decorate(function) if function is not None else decorate


tasks_follow.connect()

__all__ = ["PROGRESS_INTERVAL", "TaskReporter", "progress_task"]
