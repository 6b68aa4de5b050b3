"""The state of one execution, rebuilt from its events or built step by step, and its payloads.

:class:`ExecutionState` is the one place that turns the orchestrator's
vocabulary (:mod:`django_sse_exec.execution.vocabulary`) into payloads and back: the
reporter asks it for the payload of each step, the Celery integration rebuilds
it from the event log to report tasks that run in other processes, and
:func:`~django_sse_exec.get_execution_state` rebuilds it for pages (their first
paint) and for the HTML rendering of streams. It does no I/O.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ..exceptions import ExecutionCancelled
from .keys import ProgressKeys, lifecycle_key
from .known import KnownState
from .pace import Pace
from .steps import StepTree
from .vocabulary import (
    EXECUTION_CANCELLED,
    EXECUTION_COMPLETE,
    EXECUTION_START,
    PROGRESS,
    TASK_COMPLETE,
    TASK_FAIL,
    TASK_RETRY,
    TASK_START,
    Message,
    Running,
    TaskState,
    checked_payload,
    checked_task_id,
    error_text,
    fit_summary,
    fraction_of,
    now_ms,
)


class ExecutionState(KnownState):
    """What is known about one execution, and the payloads that describe it.

    Every method that changes the state returns the :data:`Message` to send;
    nothing here sends anything. Payload fields follow the orchestrator's
    vocabulary: ``execution-start {executionId,totalTasks,startTime}``,
    ``task-start {taskId,taskTitle,progress,total}``, ``task-complete`` /
    ``task-fail {taskId,taskTitle,status,duration,progress,total[,error]}`` and
    ``execution-complete`` / ``execution-cancelled {executionId,status,successful,
    failed,cancelled,completed,total,totalDuration,results}``.

    ``progress`` payloads also carry ``percent`` (the subject's share done, steps
    rolled up, see :mod:`.steps`), ``step`` (the open steps' labels) and, once
    they mean something, ``rate`` and ``eta`` (see :mod:`.pace`). The subject of
    a ``progress`` is its task (``taskId``), else the execution. Each message's
    key for the store (:meth:`key_for`, see :mod:`.keys`) makes a re-run send
    nothing twice.
    """

    def __init__(self, execution_id: str, total: int | None = None) -> None:
        super().__init__(execution_id, total)
        #: The steps of each subject ("" for the execution, else a task id).
        self.step_trees: dict[str, StepTree] = {}
        #: Paces of each counter (subject and step) and of each subject's fraction.
        self.paces: dict[tuple[str, str | None], Pace] = {}
        self.progress_keys = ProgressKeys()
        #: Key of the last ``progress`` message built (see :meth:`key_for`).
        self.progress_key: str | None = None

    def key_for(self, message: Message) -> str | None:
        """The store key of a message this state just built (see :mod:`.keys`)."""
        event, data = message
        return self.progress_key if event == PROGRESS else lifecycle_key(event, data)

    # -- payloads -------------------------------------------------------------

    def start(self) -> Message:
        """``execution-start``."""
        self.started = True
        return EXECUTION_START, {
            "executionId": self.execution_id,
            "totalTasks": self.total_tasks(),
            "startTime": self.start_time,
        }

    def task_start(self, task_id: str, title: str | None = None, *, attempt: int | None = None,
                   **extra: Any) -> Message:
        """``task-start``; an ``attempt`` above 1 is marked ``retry: true``.

        Without ``attempt``, a task started again in this state is its next attempt.
        """
        task_id = checked_task_id(task_id)
        if attempt is None:
            seen = self.tasks.get(task_id)
            attempt = seen.attempt + 1 if seen is not None else 1
        title = title or task_id
        data: dict[str, Any] = {
            **extra,
            "taskId": task_id,
            "taskTitle": title,
            "progress": len(self.results),
            "total": max(self.total_tasks(), len(self.results) + 1),
        }
        if attempt > 1:
            data.update(attempt=attempt, retry=True)
        self.running[task_id] = Running(title, time.monotonic())
        self.note_task(task_id, title, "running", attempt=attempt, duration=None, error=None)
        return TASK_START, checked_payload(data)

    def task_end(self, task_id: str, *, error: BaseException | str | None = None,
                 title: str | None = None, duration: int | None = None,
                 **extra: Any) -> Message:
        """``task-complete`` (no ``error``) or ``task-fail``; the payload joins the results.

        ``duration`` (ms) is measured from :meth:`task_start` in this process
        unless given.
        """
        task_id = checked_task_id(task_id)
        run = self.running.get(task_id)
        if duration is None:
            started = run.started if run is not None else None
            duration = int((time.monotonic() - started) * 1000) if started is not None else 0
        data: dict[str, Any] = {
            **extra,
            "taskId": task_id,
            "taskTitle": title or (run.title if run is not None else task_id),
            "status": "success" if error is None else "failed",
            "duration": duration,
            "progress": len(self.results) + 1,
            "total": max(self.total_tasks(), len(self.results) + 1),
        }
        if error is not None:
            data["error"] = error_text(error)
        checked_payload(data)
        self.running.pop(task_id, None)
        self.results.append(data)
        self.note_task(task_id, data["taskTitle"], data["status"], duration=duration,
                        error=data.get("error"))
        return (TASK_COMPLETE if error is None else TASK_FAIL), data

    def task_retry(self, task_id: str, error: BaseException | str, *, attempt: int,
                   **extra: Any) -> Message:
        """``task-retry``: this attempt failed and another one is scheduled (not a result)."""
        task_id = checked_task_id(task_id)
        run = self.running.pop(task_id, None)
        started = run.started if run is not None else None
        data: dict[str, Any] = {
            **extra,
            "taskId": task_id,
            "taskTitle": run.title if run is not None else task_id,
            "attempt": attempt,
            "duration": int((time.monotonic() - started) * 1000) if started is not None else 0,
            "error": error_text(error),
        }
        self.note_task(task_id, data["taskTitle"], "retrying", attempt=attempt,
                        duration=data["duration"], error=data["error"])
        return TASK_RETRY, data

    def progress(self, current: int | float, total: int | float | None = None,
                 message: str | None = None, *, task_id: str | None = None) -> Message:
        """``progress {progress,total[,message][,taskId][,step][,percent][,rate][,eta]}``
        within the execution or a task (the one running, if exactly one runs)."""
        data: dict[str, Any] = {"progress": current, "total": total}
        if message is not None:
            data["message"] = str(message)
        task_id = self._subject(task_id)
        if task_id:
            data["taskId"] = task_id
        tree = self.step_trees.get(task_id or "")
        fraction = fraction_of({"progress": current, "total": total})
        path = list(tree.path) if tree is not None else []
        if tree is not None:
            if fraction is not None:
                tree.progress(fraction)
            fraction = tree.fraction()
            if path:
                data["step"] = path
        now = time.monotonic()
        counter = self.paces.setdefault((task_id or "", "/".join(path)), Pace())
        figures = counter.observe(now, current, None)
        data.update(self._fraction_figures(task_id or "", fraction, now))
        if "rate" in figures:
            data["rate"] = figures["rate"]
        self.progress_key = self.progress_keys.key(task_id or "", path, current, total, message)
        self.last_progress = checked_payload(data)
        self._note_fraction(task_id, fraction)
        return PROGRESS, data

    def _subject(self, task_id: str | None) -> str | None:
        if task_id is None and len(self.running) == 1:
            return next(iter(self.running))
        return task_id

    def _fraction_figures(self, subject: str, fraction: float | None,
                          now: float) -> dict[str, Any]:
        """``percent`` and, once it means something, ``eta`` of the subject."""
        if fraction is None:
            return {}
        eta = self.paces.setdefault((subject, None), Pace()).observe(now, None, fraction)
        return {"percent": round(100 * fraction, 1), **({"eta": eta["eta"]} if "eta" in eta else {})}

    def _note_fraction(self, task_id: str | None, fraction: float | None) -> None:
        if task_id is not None and task_id in self.tasks:
            self.tasks[task_id].fraction = fraction
        elif task_id is None:
            self.own_fraction = fraction

    def plan(self, steps: dict[str, float], *, task_id: str | None = None) -> None:
        """Declare the subject's steps and their weights before they start (see :mod:`.steps`)."""
        self.step_trees.setdefault(self._subject(task_id) or "", StepTree()).root.plan(steps)

    def step_start(self, name: str, weight: float | None = None,
                   steps: dict[str, float] | None = None, *,
                   task_id: str | None = None) -> Message:
        """Start step ``name`` (inside the open one); ``steps`` declares its own steps.
        Returns the ``progress`` that says so (``step``, ``percent``, ``message``)."""
        task_id = self._subject(task_id)
        tree = self.step_trees.setdefault(task_id or "", StepTree())
        tree.enter(name, weight, steps)
        return self._boundary(task_id, tree, list(tree.path), "start", name)

    def step_end(self, *, task_id: str | None = None) -> Message:
        """End the innermost open step; returns the ``progress`` that says so (``stepDone``)."""
        task_id = self._subject(task_id)
        tree = self.step_trees.get(task_id or "")
        if tree is None or not tree.path:
            raise RuntimeError("no step is open")
        path, name = list(tree.path), tree.current.name
        tree.leave()
        return self._boundary(task_id, tree, path, "end", name)

    def _boundary(self, task_id: str | None, tree: StepTree, path: list[str], edge: str,
                  name: str) -> Message:
        fraction = tree.fraction()
        percent = round(100 * fraction, 1)
        data: dict[str, Any] = {"progress": percent, "total": 100, "message": name, "step": path}
        if edge == "end":
            data["stepDone"] = True
        if task_id:
            data["taskId"] = task_id
        data.update(self._fraction_figures(task_id or "", fraction, time.monotonic()))
        self.progress_key = self.progress_keys.boundary(task_id or "", path, edge)
        self.last_progress = checked_payload(data)
        self._note_fraction(task_id, fraction)
        return PROGRESS, data

    def finish(self, error: BaseException | str | None = None) -> list[Message]:
        """The closing messages: a ``task-fail`` per task still running, then the summary.

        ``execution-complete`` has ``status: "failed"`` when a task failed or
        ``error`` (what ended the block) is given; an ``asyncio.CancelledError``
        or :class:`~django_sse_exec.exceptions.ExecutionCancelled` ends the
        execution as ``execution-cancelled`` instead.
        """
        if self.finished:
            return []
        if isinstance(error, asyncio.CancelledError):
            return [self.cancel("cancelled")]
        if isinstance(error, ExecutionCancelled):
            return [self.cancel(error.reason)]
        reason = error if error is not None else "the execution ended before the task did"
        messages = self._fail_running(reason)
        status = "failed" if self.failed or error is not None else "success"
        messages.append(self._summary(EXECUTION_COMPLETE, status, error))
        return messages

    def lost(self, reason: str) -> list[Message]:
        """The closing messages of an execution whose producer is gone (its lease expired):
        a ``task-fail`` per task still running, then ``execution-complete`` with
        ``status: "lost"`` and ``reason`` as its ``error``."""
        if self.finished:
            return []
        # The log holds no task's start time, and the producer that measured it is
        # gone: a task learnt from the log ran at most since the execution started
        # (``startTime`` of its ``execution-start``), which is what its duration says.
        messages = self._fail_running(reason, unknown_ms=max(0, now_ms() - self.start_time)
                                      if self.started else 0)
        messages.append(self._summary(EXECUTION_COMPLETE, "lost", reason))
        return messages

    def _fail_running(self, error: BaseException | str,
                      unknown_ms: int | None = None) -> list[Message]:
        """A ``task-fail`` for each task still running; ``unknown_ms``: the duration of those
        whose start this state does not know (else :meth:`task_end` works it out)."""
        return [self.task_end(task_id, error=error,
                              duration=None if unknown_ms is None or run.started is not None
                              else unknown_ms)
                for task_id, run in list(self.running.items())]

    def cancel(self, reason: BaseException | str | None = None) -> Message:
        """``execution-cancelled``; tasks still running or not started count as cancelled."""
        return self._summary(EXECUTION_CANCELLED, "cancelled", reason)

    def _summary(self, event: str, status: str, error: BaseException | str | None) -> Message:
        self.finished = True
        total = max(self.total_tasks(), len(self.results))
        data: dict[str, Any] = {
            "executionId": self.execution_id,
            "status": status,
            "successful": self.successful,
            "failed": self.failed,
            "cancelled": max(0, total - len(self.results)),
            "completed": len(self.results),
            "total": total,
            "totalDuration": max(0, now_ms() - self.start_time),
            "results": self.results,
        }
        if error is not None:
            data["error"] = error_text(error)
        self.summary = fit_summary(data)
        return event, self.summary

__all__ = [
    "EXECUTION_CANCELLED", "EXECUTION_COMPLETE", "EXECUTION_START", "PROGRESS", "TASK_COMPLETE",
    "TASK_FAIL", "TASK_RETRY", "TASK_START", "ExecutionState", "Message", "TaskState",
    "error_text",
]
