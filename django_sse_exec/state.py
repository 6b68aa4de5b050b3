"""The state of one execution, rebuilt from its events or built step by step, and its payloads.

:class:`ExecutionState` is the one place that turns the orchestrator's
vocabulary (:mod:`django_sse_exec.vocabulary`) into payloads and back: the
reporter asks it for the payload of each step, the Celery integration rebuilds
it from the event log to report tasks that run in other processes, and
:func:`~django_sse_exec.get_execution_state` rebuilds it for pages (their first
paint) and for the HTML rendering of streams. It does no I/O.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable
from typing import Any

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
    int_or,
    now_ms,
    str_or_none,
)
from .wire import STREAM_CLOSED, Event, validate_execution_id


class ExecutionState:
    """What is known about one execution, and the payloads that describe it.

    Every method that changes the state returns the :data:`Message` to send;
    nothing here sends anything. Payload fields follow the orchestrator's
    vocabulary: ``execution-start {executionId,totalTasks,startTime}``,
    ``task-start {taskId,taskTitle,progress,total}``, ``task-complete`` /
    ``task-fail {taskId,taskTitle,status,duration,progress,total[,error]}`` and
    ``execution-complete`` / ``execution-cancelled {executionId,status,successful,
    failed,cancelled,completed,total,totalDuration,results}``.
    """

    def __init__(self, execution_id: str, total: int | None = None) -> None:
        self.execution_id = validate_execution_id(execution_id)
        if total is not None and (not isinstance(total, int) or total < 0):
            raise ValueError(f"total must be a non-negative int or None, not {total!r}")
        self.total = total
        self.start_time = now_ms()
        self.results: list[dict[str, Any]] = []
        self.running: dict[str, Running] = {}
        #: Tasks that will never run (e.g. the rest of a chain after a failure).
        self.skipped = 0
        #: Set once the final event (complete or cancelled) has been built.
        self.finished = False
        #: Every task seen, in the order they were first seen.
        self.tasks: dict[str, TaskState] = {}
        #: The ``execution-complete`` / ``execution-cancelled`` payload, once there is one.
        self.summary: dict[str, Any] | None = None
        #: The last ``progress`` payload (``progress``, ``total``, ``message``, ``taskId``).
        self.last_progress: dict[str, Any] | None = None
        #: Set by ``execution-start`` (or :meth:`start`).
        self.started = False
        #: Set once the log's ``stream-closed`` was applied: nothing follows.
        self.closed = False
        #: Id of the last logged event applied (0: none; only the log path sets it).
        self.last_event_id = 0

    # -- derived figures ------------------------------------------------------

    @property
    def failed(self) -> int:
        return sum(1 for r in self.results if r.get("status") == "failed")

    @property
    def successful(self) -> int:
        return len(self.results) - self.failed

    def total_tasks(self) -> int:
        """``total`` if it was given, else every task seen so far."""
        seen = len(self.results) + len(self.running)
        return self.total if self.total is not None else seen

    def all_done(self) -> bool:
        """True when every expected task has ended or will never run."""
        return self.total is not None and len(self.results) + self.skipped >= self.total

    @property
    def status(self) -> str:
        """``pending`` (nothing yet), ``running``, then the summary's ``status``
        (``success``, ``failed``, ``cancelled``, ...), or ``closed`` for an
        execution closed without a summary."""
        if self.summary is not None:
            return str(self.summary.get("status") or "closed")
        if self.closed:
            return "closed"
        return "running" if self.started or self.tasks else "pending"

    @property
    def completed(self) -> int:
        """Tasks that ended (successfully or not)."""
        fallback = len(self.results)
        return int_or(self.summary.get("completed"), fallback) or 0 if self.summary else fallback

    @property
    def percent(self) -> int:
        """Ended tasks as a whole percentage of the total (0 while the total is unknown)."""
        total = (int_or(self.summary.get("total"), 0) or 0) if self.summary else self.total_tasks()
        return min(100, (100 * self.completed) // total) if total > 0 else 0

    def _note_task(self, task_id: str, title: str | None, status: str, **fields: Any) -> None:
        task = self.tasks.get(task_id)
        if task is None:
            task = self.tasks[task_id] = TaskState(task_id, title or task_id)
        elif title:
            task.title = title
        task.status = status
        for name, value in fields.items():
            setattr(task, name, value)

    def as_dict(self) -> dict[str, Any]:
        """The state as JSON-serialisable data, e.g. for an API response."""
        return {
            "executionId": self.execution_id, "status": self.status,
            "lastEventId": self.last_event_id, "total": self.total_tasks(),
            "completed": self.completed, "successful": self.successful, "failed": self.failed,
            "percent": self.percent, "startTime": self.start_time if self.started else None,
            "tasks": [task.as_dict() for task in self.tasks.values()],
            "lastProgress": self.last_progress, "summary": self.summary, "closed": self.closed,
        }

    # -- payloads -------------------------------------------------------------

    def start(self) -> Message:
        """``execution-start``."""
        self.started = True
        return EXECUTION_START, {
            "executionId": self.execution_id,
            "totalTasks": self.total_tasks(),
            "startTime": self.start_time,
        }

    def task_start(self, task_id: str, title: str | None = None, *, attempt: int = 1,
                   **extra: Any) -> Message:
        """``task-start``; an ``attempt`` above 1 is marked ``retry: true``."""
        task_id = checked_task_id(task_id)
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
        self._note_task(task_id, title, "running", attempt=attempt, duration=None, error=None)
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
        self._note_task(task_id, data["taskTitle"], data["status"], duration=duration,
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
        self._note_task(task_id, data["taskTitle"], "retrying", attempt=attempt,
                        duration=data["duration"], error=data["error"])
        return TASK_RETRY, data

    def progress(self, current: int | float, total: int | float | None = None,
                 message: str | None = None, *, task_id: str | None = None) -> Message:
        """``progress {progress,total[,message][,taskId]}`` within the execution or a task."""
        data: dict[str, Any] = {"progress": current, "total": total}
        if message is not None:
            data["message"] = str(message)
        if task_id is None and len(self.running) == 1:
            task_id = next(iter(self.running))
        if task_id is not None:
            data["taskId"] = task_id
        self.last_progress = checked_payload(data)
        return PROGRESS, data

    def finish(self, error: BaseException | str | None = None) -> list[Message]:
        """The closing messages: a ``task-fail`` per task still running, then the summary.

        ``execution-complete`` has ``status: "failed"`` when a task failed or
        ``error`` (what ended the block) is given; an ``asyncio.CancelledError``
        ends the execution as ``execution-cancelled`` instead.
        """
        if self.finished:
            return []
        if isinstance(error, asyncio.CancelledError):
            return [self.cancel("cancelled")]
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
        messages = self._fail_running(reason)
        messages.append(self._summary(EXECUTION_COMPLETE, "lost", reason))
        return messages

    def _fail_running(self, error: BaseException | str) -> list[Message]:
        """A ``task-fail`` for each task still running."""
        return [self.task_end(task_id, error=error) for task_id in list(self.running)]

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

    # -- rebuilding from the log -------------------------------------------

    @classmethod
    def from_events(cls, execution_id: str, events: Iterable[Event]) -> "ExecutionState":
        """The state an execution's logged events describe (for reporters in other processes)."""
        state = cls(execution_id)
        for event in events:
            state.apply_event(event)
        return state

    def apply_event(self, event: Event) -> None:
        """Update the state with one event read from the log (its id becomes ``last_event_id``)."""
        self.last_event_id = max(self.last_event_id, event.id)
        if event.event == STREAM_CLOSED:
            self.closed = True
            return
        try:
            data = json.loads(event.data)
        except ValueError:
            return
        if isinstance(data, dict):
            self.apply(event.event, data)

    def apply(self, event: str, data: dict[str, Any]) -> None:
        """Update the state with one logged event of the vocabulary (others are ignored)."""
        task_id = data.get("taskId")
        title = str_or_none(data.get("taskTitle"))
        if event == EXECUTION_START:
            self.started = True
            if isinstance(data.get("totalTasks"), int):
                self.total = data["totalTasks"]
            if isinstance(data.get("startTime"), int):
                self.start_time = data["startTime"]
        elif event == TASK_START and isinstance(task_id, str):
            self.running[task_id] = Running(str(data.get("taskTitle")), None)
            self._note_task(task_id, title, "running", attempt=int_or(data.get("attempt"), 1),
                            duration=None, error=None)
        elif event in (TASK_COMPLETE, TASK_FAIL) and isinstance(task_id, str):
            self.running.pop(task_id, None)
            self.results.append(data)
            skipped = data.get("skipped")
            if isinstance(skipped, int) and skipped > 0:
                self.skipped += skipped
            status = "success" if event == TASK_COMPLETE else "failed"
            self._note_task(task_id, title, status, duration=int_or(data.get("duration"), None),
                            error=str_or_none(data.get("error")))
        elif event == TASK_RETRY and isinstance(task_id, str):
            self.running.pop(task_id, None)
            self._note_task(task_id, title, "retrying", attempt=int_or(data.get("attempt"), 1),
                            duration=int_or(data.get("duration"), None),
                            error=str_or_none(data.get("error")))
        elif event == PROGRESS:
            self.last_progress = data
        elif event in (EXECUTION_COMPLETE, EXECUTION_CANCELLED):
            self.finished = True
            self.summary = data


__all__ = [
    "EXECUTION_CANCELLED", "EXECUTION_COMPLETE", "EXECUTION_START", "PROGRESS", "TASK_COMPLETE",
    "TASK_FAIL", "TASK_RETRY", "TASK_START", "ExecutionState", "Message", "TaskState",
    "error_text",
]
