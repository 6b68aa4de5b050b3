"""Report one execution's progress in the orchestrator's event vocabulary, lifecycle included.

Hand-writing every ``task-start``/``task-complete`` payload and remembering to
close the stream is how executions end up "running" forever: a crash leaves no
final event. :class:`ExecutionReporter` emits ``execution-start`` on enter,
measures durations, keeps the results, and on exit *always* emits the summary
(``execution-complete``, ``status: "failed"`` when a task failed or the block
raised) and closes the stream, then lets the exception propagate.

Payloads are built in one place, :class:`ExecutionState`, which does no I/O:
the reporter's async methods send what it builds, the sync methods are thin
wrappers over them, and the Celery integration rebuilds a state from the event
log to report tasks that run in other processes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from .api import aclose_sse_connections, asend_sse_event
from .conf import sse_settings
from .leases import Lease
from .runner import run_sync
from .wire import Event, encode_data, validate_execution_id

logger = logging.getLogger("django_sse_exec")

#: The event vocabulary.
EXECUTION_START = "execution-start"
EXECUTION_COMPLETE = "execution-complete"
EXECUTION_CANCELLED = "execution-cancelled"
TASK_START = "task-start"
TASK_COMPLETE = "task-complete"
TASK_FAIL = "task-fail"
TASK_RETRY = "task-retry"
PROGRESS = "progress"

#: An event to send: its name and its (JSON-serialisable) data.
Message = tuple[str, dict[str, Any]]

#: Longest error text put in a payload (tracebacks belong in logs, not streams).
MAX_ERROR_CHARS = 2000


def error_text(error: BaseException | str) -> str:
    """A short, single-line-safe description of ``error`` for a payload."""
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def _now_ms() -> int:
    return int(time.time() * 1000)


def _checked(data: dict[str, Any]) -> dict[str, Any]:
    """Raise at the call site, before the state changes, if ``data`` cannot be sent."""
    encode_data(data, max_bytes=int(sse_settings.MAX_EVENT_BYTES))
    return data


def _task_id(task_id: Any) -> str:
    if not isinstance(task_id, str) or not task_id:
        raise ValueError(f"task_id must be a non-empty str, not {task_id!r}")
    return task_id


@dataclass
class _Running:
    title: str
    #: ``time.monotonic()`` at task start in this process; None when learnt from the log.
    started: float | None


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
        self.start_time = _now_ms()
        self.results: list[dict[str, Any]] = []
        self.running: dict[str, _Running] = {}
        #: Tasks that will never run (e.g. the rest of a chain after a failure).
        self.skipped = 0
        #: Set once the final event (complete or cancelled) has been built.
        self.finished = False

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

    # -- payloads -------------------------------------------------------------

    def start(self) -> Message:
        """``execution-start``."""
        return EXECUTION_START, {
            "executionId": self.execution_id,
            "totalTasks": self.total_tasks(),
            "startTime": self.start_time,
        }

    def task_start(self, task_id: str, title: str | None = None, *, attempt: int = 1,
                   **extra: Any) -> Message:
        """``task-start``; an ``attempt`` above 1 is marked ``retry: true``."""
        task_id = _task_id(task_id)
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
        self.running[task_id] = _Running(title, time.monotonic())
        return TASK_START, _checked(data)

    def task_end(self, task_id: str, *, error: BaseException | str | None = None,
                 title: str | None = None, duration: int | None = None,
                 **extra: Any) -> Message:
        """``task-complete`` (no ``error``) or ``task-fail``; the payload joins the results.

        ``duration`` (ms) is measured from :meth:`task_start` in this process
        unless given.
        """
        task_id = _task_id(task_id)
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
        _checked(data)
        self.running.pop(task_id, None)
        self.results.append(data)
        return (TASK_COMPLETE if error is None else TASK_FAIL), data

    def task_retry(self, task_id: str, error: BaseException | str, *, attempt: int,
                   **extra: Any) -> Message:
        """``task-retry``: this attempt failed and another one is scheduled (not a result)."""
        task_id = _task_id(task_id)
        run = self.running.pop(task_id, None)
        started = run.started if run is not None else None
        return TASK_RETRY, {
            **extra,
            "taskId": task_id,
            "taskTitle": run.title if run is not None else task_id,
            "attempt": attempt,
            "duration": int((time.monotonic() - started) * 1000) if started is not None else 0,
            "error": error_text(error),
        }

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
        return PROGRESS, _checked(data)

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
        messages = self._fail_running(error or "the execution ended before the task did")
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
            "totalDuration": max(0, _now_ms() - self.start_time),
            "results": self.results,
        }
        if error is not None:
            data["error"] = error_text(error)
        return event, _fit(data)

    # -- rebuilding from the log -------------------------------------------

    @classmethod
    def from_events(cls, execution_id: str, events: Iterable[Event]) -> "ExecutionState":
        """The state an execution's logged events describe (for reporters in other processes)."""
        state = cls(execution_id)
        for event in events:
            try:
                data = json.loads(event.data)
            except ValueError:
                continue
            if not isinstance(data, dict):
                continue
            state.apply(event.event, data)
        return state

    def apply(self, event: str, data: dict[str, Any]) -> None:
        """Update the state with one logged event of the vocabulary (others are ignored)."""
        if event == EXECUTION_START:
            if isinstance(data.get("totalTasks"), int):
                self.total = data["totalTasks"]
            if isinstance(data.get("startTime"), int):
                self.start_time = data["startTime"]
        elif event == TASK_START and isinstance(data.get("taskId"), str):
            self.running[data["taskId"]] = _Running(str(data.get("taskTitle")), None)
        elif event in (TASK_COMPLETE, TASK_FAIL) and isinstance(data.get("taskId"), str):
            self.running.pop(data["taskId"], None)
            self.results.append(data)
            skipped = data.get("skipped")
            if isinstance(skipped, int) and skipped > 0:
                self.skipped += skipped
        elif event == TASK_RETRY and isinstance(data.get("taskId"), str):
            self.running.pop(data["taskId"], None)
        elif event in (EXECUTION_COMPLETE, EXECUTION_CANCELLED):
            self.finished = True


def _fit(data: dict[str, Any]) -> dict[str, Any]:
    """Keep a summary under ``MAX_EVENT_BYTES``: drop per-task extras, then the list.

    The final event must always go out; a long execution's results may not fit.
    """
    limit = int(sse_settings.MAX_EVENT_BYTES)
    try:
        encode_data(data, max_bytes=limit)
        return data
    except ValueError:
        pass
    keys = ("taskId", "taskTitle", "status", "duration", "error")
    slim = [{k: r[k] for k in keys if k in r} for r in data["results"]]
    for results in (slim, []):
        candidate = {**data, "results": results, "resultsTruncated": True}
        try:
            encode_data(candidate, max_bytes=limit)
            return candidate
        except ValueError:
            continue
    return {**data, "results": [], "resultsTruncated": True, "error": "summary too large"}


class ExecutionReporter:
    """Report one execution; use ``with`` (sync code) or ``async with`` (async code).

    Sync (a Celery task, a thread, a management command)::

        with ExecutionReporter("exec-42", total=2) as report:
            report.task_start("fetch", "Fetch the data")
            report.progress(50, 100, "half way")
            report.task_complete("fetch")
            report.task_start("load", "Load it")
            report.task_fail("load", "database is read-only")
        # -> execution-complete {status: "failed", successful: 1, failed: 1, ...}, stream closed

    Async: ``async with ExecutionReporter(...) as report: await report.atask_start(...)``.

    On exit the reporter fails the tasks still running, emits ``execution-complete``
    (``status: "failed"`` if a task failed or the block raised; the exception's
    text is the summary's ``error``), then closes the stream
    (:func:`~django_sse_exec.close_sse_connections`) unless ``close=False``.
    An exception from the block is always re-raised after the final event and
    the close; an error while sending those is logged, and raised only if the
    block itself succeeded. :meth:`cancel` emits ``execution-cancelled`` instead.

    Inside the block the reporter holds a lease on the execution, renewed in the
    background (``lease=False`` opts out): if the process dies before the exit,
    a web process ends the execution with ``execution-complete`` ``status: "lost"``
    within about ``LEASE_TTL + LEASE_CHECK`` seconds (see :mod:`django_sse_exec.leases`).
    """

    def __init__(self, execution_id: str, total: int | None = None, *, close: bool = True,
                 lease: bool = True) -> None:
        self.state = ExecutionState(execution_id, total)
        self.close_on_exit = close
        #: Hold a lease while inside ``with``/``async with`` (see :mod:`django_sse_exec.leases`).
        self.use_lease = lease
        self.lease: Lease | None = None

    @property
    def execution_id(self) -> str:
        return self.state.execution_id

    async def _emit(self, message: Message) -> int:
        event, data = message
        return await asend_sse_event(self.execution_id, event, data)

    # -- async API --------------------------------------------------------------

    async def astart(self) -> int:
        """Emit ``execution-start``; returns its event id."""
        return await self._emit(self.state.start())

    async def atask_start(self, task_id: str, title: str | None = None, **extra: Any) -> int:
        """Emit ``task-start`` for ``task_id`` (its duration is measured from now)."""
        return await self._emit(self.state.task_start(task_id, title, **extra))

    async def atask_complete(self, task_id: str, **extra: Any) -> int:
        """Emit ``task-complete``; ``extra`` fields (e.g. ``result=...``) join the payload."""
        return await self._emit(self.state.task_end(task_id, **extra))

    async def atask_fail(self, task_id: str, error: BaseException | str, **extra: Any) -> int:
        """Emit ``task-fail`` with ``error`` (an exception or a message)."""
        return await self._emit(self.state.task_end(task_id, error=error, **extra))

    async def aprogress(self, current: int | float, total: int | float | None = None,
                        message: str | None = None, *, task_id: str | None = None) -> int:
        """Emit ``progress`` (of the running task if exactly one runs, or ``task_id``)."""
        return await self._emit(self.state.progress(current, total, message, task_id=task_id))

    async def acancel(self, reason: str | None = None) -> int:
        """Emit ``execution-cancelled``; the exit then only closes the stream."""
        if self.state.finished:
            raise RuntimeError(f"execution {self.execution_id} has already been finished")
        return await self._emit(self.state.cancel(reason))

    async def afinish(self, error: BaseException | None = None) -> None:
        """Emit the closing events (unless cancelled) and close the stream; see the class doc."""
        await asyncio.shield(self._finish(error))

    async def _finish(self, error: BaseException | None) -> None:
        problem: BaseException | None = None
        for message in self.state.finish(error):
            try:
                await self._emit(message)
            except Exception as exc:
                logger.exception("execution %s: could not send %s", self.execution_id, message[0])
                problem = problem or exc
        if self.close_on_exit:
            try:
                await aclose_sse_connections(self.execution_id)
            except Exception as exc:
                logger.exception("execution %s: could not close the stream", self.execution_id)
                problem = problem or exc
        if self.lease is not None:
            try:
                await self.lease.arelease()
            except Exception:
                logger.warning("execution %s: could not release its lease", self.execution_id,
                               exc_info=True)
        if problem is not None and error is None:
            raise problem

    async def __aenter__(self) -> "ExecutionReporter":
        if self.use_lease:
            self.lease = await Lease(self.execution_id).astart()
        await self.astart()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.afinish(exc)

    # -- sync API: thin wrappers --------------------------------------------------

    def start(self) -> int:
        """Sync twin of :meth:`astart`."""
        return run_sync("start", self.astart)

    def task_start(self, task_id: str, title: str | None = None, **extra: Any) -> int:
        """Sync twin of :meth:`atask_start`."""
        return run_sync("task_start", lambda: self.atask_start(task_id, title, **extra))

    def task_complete(self, task_id: str, **extra: Any) -> int:
        """Sync twin of :meth:`atask_complete`."""
        return run_sync("task_complete", lambda: self.atask_complete(task_id, **extra))

    def task_fail(self, task_id: str, error: BaseException | str, **extra: Any) -> int:
        """Sync twin of :meth:`atask_fail`."""
        return run_sync("task_fail", lambda: self.atask_fail(task_id, error, **extra))

    def progress(self, current: int | float, total: int | float | None = None,
                 message: str | None = None, *, task_id: str | None = None) -> int:
        """Sync twin of :meth:`aprogress`."""
        return run_sync("progress", lambda: self.aprogress(current, total, message, task_id=task_id))

    def cancel(self, reason: str | None = None) -> int:
        """Sync twin of :meth:`acancel`."""
        return run_sync("cancel", self.acancel, reason)

    def finish(self, error: BaseException | None = None) -> None:
        """Sync twin of :meth:`afinish`."""
        run_sync("finish", self.afinish, error)

    def __enter__(self) -> "ExecutionReporter":
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            if self.use_lease:
                self.lease = Lease(self.execution_id).start()
            self.start()
            return self
        raise RuntimeError("ExecutionReporter was entered with `with` inside a running "
                           "event loop; use `async with ExecutionReporter(...)` instead")

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.finish(exc)


__all__ = [
    "EXECUTION_CANCELLED", "EXECUTION_COMPLETE", "EXECUTION_START", "PROGRESS", "TASK_COMPLETE",
    "TASK_FAIL", "TASK_RETRY", "TASK_START", "ExecutionReporter", "ExecutionState", "Message",
    "error_text",
]
