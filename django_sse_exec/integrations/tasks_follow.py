"""Follow tasks of Django's tasks framework through its signals: queued, running, ended.

A plain ``@task`` cannot report its own progress, but the framework says when a
task is enqueued, started and finished (``task_enqueued``, ``task_started``,
``task_finished``; from the backport on Django 5.2). With
``SSE_EXEC["FOLLOW_TASKS"]`` set, each followed task result is an execution (its
id is the result's id) reported from those signals:

* ``task_enqueued`` (in the process that enqueues): ``execution-start``, so a page
  shows the task as queued at once;
* ``task_started`` (in the worker): ``task-start`` (after ``task-retry`` when an
  earlier attempt never ended; ``attempt`` and ``retry: true`` from the second),
  and the worker holds the execution's lease until the task ends, so a killed
  worker's task ends as ``lost``;
* ``task_finished``: ``task-complete`` or ``task-fail`` (its error is the
  exception's type: the message stays in the backend's result), then
  ``execution-complete`` and ``stream-closed``. A result the backend will run
  again (status ``READY`` at that point) gets ``task-retry`` instead and stays open.

``FOLLOW_TASKS`` is ``False`` (default), ``True`` (every task) or a list of
prefixes of the tasks' dotted paths (``["myapp.tasks."]``). Progress tasks
(:mod:`.tasks`) report their own runs; the setting only adds their queued step.
Every process reads the log to know the execution's state (the three signals come
from different processes), and reporting problems are logged, never raised into
the backend (an invalid ``SSE_EXEC`` follows nothing: check ``E016`` names it).
The receivers are connected (:func:`connect`) when the app starts with
``FOLLOW_TASKS`` set (:meth:`~django_sse_exec.apps.SSEExecConfig.ready`), and
whenever :mod:`django_sse_exec.integrations.tasks` is imported (any module with a
progress task imports it).
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from ..api import close_sse_connections, send_sse_event
from ..conf import sse_settings
from ..execution.keys import lifecycle_key
from ..execution.leases import Lease, hold_lease
from ..execution.snapshot import get_execution_state
from .tasks_compat import signal_sets
from .tasks_lifecycle import Message, begin, end, retry

logger = logging.getLogger("django_sse_exec")

#: Attribute that marks the functions of progress tasks (they report themselves).
MARKER = "sse_exec_reports_itself"

#: Leases held by this process for the followed tasks it runs, by execution id.
_leases: dict[str, Lease] = {}


def follow_setting() -> Any:
    """``SSE_EXEC["FOLLOW_TASKS"]``: ``False`` (the default), ``True`` or a list of prefixes.

    ``False`` while ``SSE_EXEC`` holds an invalid value (logged): a task is never
    failed by the app's configuration.
    """
    try:
        return sse_settings.FOLLOW_TASKS
    except ImproperlyConfigured as exc:
        logger.warning("tasks are not followed: %s", exc)
        return False


def followed(task: Any) -> bool:
    """True if ``FOLLOW_TASKS`` asks to follow ``task`` (a framework ``Task``)."""
    setting = follow_setting()
    if setting is True:
        return True
    if not setting:
        return False
    path = str(getattr(task, "module_path", ""))
    return any(path.startswith(prefix) for prefix in setting)


def reports_itself(task: Any) -> bool:
    """True for progress tasks, whose runs are reported by their reporter."""
    return bool(getattr(getattr(task, "func", None), MARKER, False))


def _send_all(execution_id: str, messages: list[Message]) -> None:
    """Send each message with its key: a signal sent twice reports once."""
    for event, data in messages:
        send_sse_event(execution_id, event, data, key=lifecycle_key(event, data))


def _safely(what: str, execution_id: str, func: Any, *args: Any) -> None:
    try:
        func(*args)
    except Exception:
        logger.warning("execution %s: could not report %s", execution_id, what, exc_info=True)


def _error_of(task_result: Any) -> str:
    """The type of the last error the backend recorded (``"Task failed"`` if none)."""
    errors = getattr(task_result, "errors", None) or []
    path = getattr(errors[-1], "exception_class_path", "") if errors else ""
    return path.rsplit(".", 1)[-1] or "Task failed"


def _duration_ms(task_result: Any) -> int | None:
    started, finished = task_result.started_at, task_result.finished_at
    if started is None or finished is None:
        return None
    return max(0, int((finished - started).total_seconds() * 1000))


def _queued(task_result: Any) -> None:
    execution_id = str(task_result.id)
    state = get_execution_state(execution_id)
    if not state.started and not state.closed:
        state.total = 1
        _send_all(execution_id, [state.start()])


def _started(task_result: Any) -> None:
    execution_id = str(task_result.id)
    state = get_execution_state(execution_id)
    _send_all(execution_id, begin(state, execution_id, task_result.task.name,
                                  max(1, task_result.attempts)))


def _finished(task_result: Any) -> None:
    execution_id = str(task_result.id)
    state = get_execution_state(execution_id)
    status, attempt = str(task_result.status), max(1, task_result.attempts)
    if status not in ("SUCCESSFUL", "FAILED"):  # the backend will run it again
        _send_all(execution_id, retry(state, execution_id, attempt=attempt,
                                      error=_error_of(task_result)))
        return
    error = _error_of(task_result) if status == "FAILED" else None
    _send_all(execution_id, end(state, execution_id, attempt=attempt, error=error,
                                title=task_result.task.name, duration=_duration_ms(task_result)))
    close_sse_connections(execution_id)


def on_task_enqueued(sender: Any = None, task_result: Any = None, **kwargs: Any) -> None:
    """``task_enqueued``: a followed task's execution starts (queued)."""
    if task_result is not None and followed(task_result.task):
        _safely("its queued task", str(task_result.id), _queued, task_result)


def on_task_started(sender: Any = None, task_result: Any = None, **kwargs: Any) -> None:
    """``task_started``: a followed task runs; this thread holds its lease until it ends."""
    if task_result is None or reports_itself(task_result.task) or not followed(task_result.task):
        return
    execution_id = str(task_result.id)
    _safely("its task's start", execution_id, _started, task_result)
    try:
        _leases[execution_id] = hold_lease(execution_id)
    except Exception:
        logger.warning("execution %s: could not take its lease", execution_id, exc_info=True)


def on_task_finished(sender: Any = None, task_result: Any = None, **kwargs: Any) -> None:
    """``task_finished``: a followed task ended (or will run again)."""
    if task_result is None or reports_itself(task_result.task) or not followed(task_result.task):
        return
    execution_id = str(task_result.id)
    _safely("its task's end", execution_id, _finished, task_result)
    lease = _leases.pop(execution_id, None)
    if lease is not None:
        _safely("the release of its lease", execution_id, lease.release)


def connect() -> None:
    """Connect the receivers to every importable signal set (idempotent)."""
    for signals in signal_sets():
        for signal, receiver in ((signals.task_enqueued, on_task_enqueued),
                                 (signals.task_started, on_task_started),
                                 (signals.task_finished, on_task_finished)):
            signal.connect(receiver, dispatch_uid=f"django_sse_exec.{receiver.__name__}")


__all__ = ["MARKER", "connect", "follow_setting", "followed", "on_task_enqueued",
           "on_task_finished", "on_task_started", "reports_itself"]
