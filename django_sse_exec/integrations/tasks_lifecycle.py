"""The events that begin and end one run of a task, decided from its execution's state.

A task of Django's tasks framework is one execution: its id is the task
result's id, and its one task is the run itself (``taskId`` is the result id
too). A run may be an attempt after an earlier one (``TaskResult.attempts``
above 1: the backend runs the same result again), so what a run sends depends
on what the execution's log already holds. Both the decorated tasks
(:mod:`.tasks`) and the tasks followed through signals (:mod:`.tasks_follow`)
build their events here; nothing here does I/O.
"""

from __future__ import annotations

from typing import Any

from ..execution.state import ExecutionState

#: An event to send: its name and data.
Message = tuple[str, dict[str, Any]]

#: ``task-retry``'s error for an attempt that never reported its end.
UNFINISHED = "attempt {attempt} ended without a result (its worker stopped)"


def ended(state: ExecutionState) -> bool:
    """True once the execution has its summary or is closed: nothing more is reported."""
    return state.finished or state.closed


def begin(state: ExecutionState, task_id: str, title: str, attempt: int) -> list[Message]:
    """The events that start attempt ``attempt`` of the run (none once the execution ended).

    ``execution-start`` (one task) unless the execution has started (a queued
    task, an earlier attempt); ``task-retry`` for an earlier attempt that is
    still running in the log (its worker died before it could report an end);
    then ``task-start``, which says ``attempt`` and ``retry: true`` from the
    second attempt on.
    """
    if ended(state):
        return []
    messages: list[Message] = []
    if not state.started:
        if state.total is None:
            state.total = 1
        messages.append(state.start())
    if task_id in state.running:
        earlier = state.tasks[task_id].attempt if task_id in state.tasks else max(1, attempt - 1)
        messages.append(state.task_retry(task_id, UNFINISHED.format(attempt=earlier),
                                         attempt=earlier))
    messages.append(state.task_start(task_id, title, attempt=attempt))
    return messages


def end(state: ExecutionState, task_id: str, *, attempt: int,
        error: BaseException | str | None = None, title: str | None = None,
        duration: int | None = None) -> list[Message]:
    """The events that end the run and its execution: ``task-complete`` (no ``error``)
    or ``task-fail``, then ``execution-complete`` (``status: "failed"`` after a failure).

    None once the execution ended. The stream is closed by the caller.
    """
    if ended(state):
        return []
    extra: dict[str, Any] = {"attempt": attempt} if attempt > 1 else {}
    messages = [state.task_end(task_id, error=error, title=title, duration=duration, **extra)]
    return messages + state.finish(None)


def retry(state: ExecutionState, task_id: str, *, attempt: int, error: str) -> list[Message]:
    """``task-retry`` for an attempt that failed while the backend will run the result again."""
    if ended(state):
        return []
    return [state.task_retry(task_id, error, attempt=attempt)]


__all__ = ["Message", "UNFINISHED", "begin", "end", "ended", "retry"]
