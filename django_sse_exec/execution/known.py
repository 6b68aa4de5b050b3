"""What is known about one execution: its fields, the figures derived from them, and
how logged events update them.

The base of :class:`~django_sse_exec.execution.state.ExecutionState`, which adds the
payloads of each step. Kept apart so that each module holds one job: reading an
execution (here) and describing its next step (there). No I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, TypeVar

from ..wire import STREAM_CLOSED, Event, validate_execution_id
from .vocabulary import (
    EXECUTION_CANCEL_REQUESTED,
    EXECUTION_CANCELLED,
    EXECUTION_COMPLETE,
    EXECUTION_RESUMED,
    EXECUTION_STALLED,
    EXECUTION_START,
    PROGRESS,
    TASK_COMPLETE,
    TASK_FAIL,
    TASK_RETRY,
    TASK_START,
    Running,
    TaskState,
    fraction_of,
    int_or,
    now_ms,
    str_or_none,
)

_State = TypeVar("_State", bound="KnownState")


class KnownState:
    """What is known about one execution (see :class:`~django_sse_exec.execution.state.ExecutionState`)."""

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
        #: Set by ``execution-start`` (or :meth:`~django_sse_exec.execution.state.ExecutionState.start`).
        self.started = False
        #: Set once the log's ``stream-closed`` was applied: nothing follows.
        self.closed = False
        #: Id of the last logged event applied (0: none; only the log path sets it).
        self.last_event_id = 0
        #: The ``execution-cancel-requested`` payload, once someone asked to cancel.
        self.cancel_request: dict[str, Any] | None = None
        #: The ``execution-stalled`` payload while the execution is stalled, else None.
        self.stall: dict[str, Any] | None = None
        #: The execution's own share done (0 to 1) from its last ``progress`` without a task.
        self.own_fraction: float | None = None

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
    def cancel_requested(self) -> bool:
        """True once someone asked to cancel the execution."""
        return self.cancel_request is not None

    @property
    def stalled(self) -> bool:
        """True while the execution is stalled (no report for ``STALL_AFTER`` seconds)."""
        return self.stall is not None

    def fraction(self) -> float:
        """The execution's share done, 0 to 1: its tasks (an ended one counts 1, a running
        one its last progress, steps rolled up), or its own progress (``progress`` with no
        task: the producer's account of the whole) when that says more."""
        total = (int_or(self.summary.get("total"), 0) or 0) if self.summary else self.total_tasks()
        own = 0.0 if self.summary else (self.own_fraction or 0.0)
        if total <= 0:
            return 1.0 if self.summary and self.status == "success" else own
        running = 0.0 if self.summary else sum(
            self.tasks[task_id].fraction or 0.0 for task_id in self.running if task_id in self.tasks)
        return min(1.0, max(own, (self.completed + running) / total))

    @property
    def percent(self) -> int:
        """:meth:`fraction` as a whole percentage (0 while nothing is known)."""
        return min(100, int(100 * self.fraction() + 1e-9))

    def note_task(self, task_id: str, title: str | None, status: str, **fields: Any) -> None:
        """Record a task's latest status (and fields such as duration or error)."""
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
            "cancelRequested": self.cancel_request, "stalled": self.stall,
        }

    # -- rebuilding from the log -------------------------------------------

    @classmethod
    def from_events(cls: type[_State], execution_id: str, events: Iterable[Event]) -> _State:
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
        if event == EXECUTION_STALLED:
            self.stall = data
            return
        self.stall = None  # any other event: a report, or the notice that it resumed
        if event == EXECUTION_CANCEL_REQUESTED:
            self.cancel_request = self.cancel_request or data
        elif event == EXECUTION_RESUMED:
            return
        if event == EXECUTION_START:
            self.started = True
            if isinstance(data.get("totalTasks"), int):
                self.total = data["totalTasks"]
            if isinstance(data.get("startTime"), int):
                self.start_time = data["startTime"]
        elif event == TASK_START and isinstance(task_id, str):
            self.running[task_id] = Running(str(data.get("taskTitle")), None)
            self.note_task(task_id, title, "running", attempt=int_or(data.get("attempt"), 1),
                            duration=None, error=None)
        elif event in (TASK_COMPLETE, TASK_FAIL) and isinstance(task_id, str):
            self.running.pop(task_id, None)
            self.results.append(data)
            skipped = data.get("skipped")
            if isinstance(skipped, int) and skipped > 0:
                self.skipped += skipped
            status = "success" if event == TASK_COMPLETE else "failed"
            self.note_task(task_id, title, status, duration=int_or(data.get("duration"), None),
                            error=str_or_none(data.get("error")))
        elif event == TASK_RETRY and isinstance(task_id, str):
            self.running.pop(task_id, None)
            self.note_task(task_id, title, "retrying", attempt=int_or(data.get("attempt"), 1),
                            duration=int_or(data.get("duration"), None),
                            error=str_or_none(data.get("error")))
        elif event == PROGRESS:
            self.last_progress = data
            fraction = fraction_of(data)
            if isinstance(task_id, str) and task_id in self.tasks:
                self.tasks[task_id].fraction = fraction
            elif task_id is None:
                self.own_fraction = fraction
        elif event in (EXECUTION_COMPLETE, EXECUTION_CANCELLED):
            self.finished = True
            self.summary = data
