"""A simulated execution: the demo's stand-in for a real workflow.

It speaks the orchestrator's full event vocabulary with its payload fields:
``execution-start``, ``task-start``, ``task-complete`` / ``task-fail``, and
finally ``execution-complete`` (``status: "failed"`` when any task failed) or
``execution-cancelled``; then the stream is closed.

The plan of an execution (:class:`Simulation`) is pure: a generator of
:class:`Emit` and :class:`Pause` steps. Two thin drivers play it:

* :func:`start` runs it inside the web server as an asyncio task, so the
  dashboard can start one and :func:`cancel` it (real cancellation: the task is
  cancelled at its current ``await``; nothing is sent after
  ``execution-cancelled``);
* :func:`run_blocking` runs it with the sync helpers, from any other process
  (``manage.py simulate_execution``), the way a Celery worker reports.

:data:`REGISTRY` remembers recent executions started in this process for the
dashboard's "recent executions" list.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django_sse_exec import (
    aclose_sse_connections,
    asend_sse_event,
    close_sse_connections,
    send_sse_event,
)

#: Most executions the registry remembers (oldest are forgotten first).
RECENT_MAX = 20


@dataclass(frozen=True)
class Emit:
    """Send ``event`` with ``data``."""

    event: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Pause:
    """Wait ``seconds`` (a task doing its work)."""

    seconds: float


Step = Emit | Pause


@dataclass
class Simulation:
    """One execution's plan and state: which tasks ran, how they ended.

    ``fail_rate`` is the chance of each task failing; ``fail_tasks`` names task
    numbers (1-based) that always fail. ``seed`` makes the run reproducible.
    """

    execution_id: str
    tasks: int = 5
    delay_ms: int = 400
    fail_rate: float = 0.0
    fail_tasks: frozenset[int] = frozenset()
    seed: int | None = None
    created: float = field(default_factory=time.time)
    #: ``running`` until the end, then ``success``, ``failed`` or ``cancelled``.
    status: str = "running"
    results: list[dict[str, Any]] = field(default_factory=list)
    #: Set once the final event is decided; a cancel after it has no effect.
    finished: bool = False
    _started: float = 0.0

    @property
    def completed(self) -> int:
        """Tasks that ended (success or failure)."""
        return len(self.results)

    @property
    def failed(self) -> int:
        return sum(1 for r in self.results if r["status"] == "failed")

    def steps(self) -> Iterator[Step]:
        """The execution as steps; task durations are measured as the steps are played."""
        rng = random.Random(self.seed)
        self._started = time.time()
        yield Emit("execution-start", {
            "executionId": self.execution_id, "totalTasks": self.tasks,
            "startTime": int(self._started * 1000),
        })
        for index in range(1, self.tasks + 1):
            task_id, title = f"task-{index}", f"Task {index}"
            yield Emit("task-start", {
                "taskId": task_id, "taskTitle": title, "progress": index - 1, "total": self.tasks,
            })
            began = time.monotonic()
            yield Pause(self.delay_ms / 1000 * rng.uniform(0.6, 1.4))
            failed = index in self.fail_tasks or rng.random() < self.fail_rate
            result: dict[str, Any] = {
                "taskId": task_id, "taskTitle": title,
                "status": "failed" if failed else "success",
                "duration": int((time.monotonic() - began) * 1000),
                "progress": index, "total": self.tasks,
            }
            if failed:
                result["error"] = f"{title} failed (simulated error)"
            self.results.append(result)
            yield Emit("task-fail" if failed else "task-complete", result)
        self.finished = True
        self.status = "failed" if self.failed else "success"
        yield Emit("execution-complete", self.summary())

    def cancel_step(self) -> Emit:
        """The ``execution-cancelled`` event for a run stopped now; marks it finished."""
        self.finished = True
        self.status = "cancelled"
        return Emit("execution-cancelled", self.summary())

    def summary(self) -> dict[str, Any]:
        """The final payload: counts, total duration and every ended task's result.

        ``cancelled`` counts the tasks that never ended (the running one and
        those not started).
        """
        failed = self.failed
        started = self._started or self.created
        return {
            "executionId": self.execution_id,
            "status": self.status,
            "successful": self.completed - failed,
            "failed": failed,
            "cancelled": self.tasks - self.completed if self.status == "cancelled" else 0,
            "completed": self.completed,
            "total": self.tasks,
            "totalDuration": int((time.time() - started) * 1000),
            "results": list(self.results),
        }

    def info(self) -> dict[str, Any]:
        """What the dashboard lists about this execution."""
        return {
            "executionId": self.execution_id, "status": self.status, "total": self.tasks,
            "completed": self.completed, "failed": self.failed,
            "created": int(self.created * 1000),
        }


class Registry:
    """Recent executions started in this process, newest first, bounded."""

    def __init__(self, limit: int = RECENT_MAX) -> None:
        self.limit = limit
        self._items: OrderedDict[str, Simulation] = OrderedDict()
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def add(self, sim: Simulation, task: asyncio.Task[None] | None = None) -> None:
        self._items[sim.execution_id] = sim
        self._items.move_to_end(sim.execution_id, last=False)
        while len(self._items) > self.limit:
            self._items.popitem(last=True)
        if task is not None:
            self._tasks[sim.execution_id] = task
            task.add_done_callback(lambda _: self._tasks.pop(sim.execution_id, None))

    def get(self, execution_id: str) -> Simulation | None:
        return self._items.get(execution_id)

    def task(self, execution_id: str) -> asyncio.Task[None] | None:
        return self._tasks.get(execution_id)

    def recent(self) -> list[Simulation]:
        return list(self._items.values())

    def running(self) -> int:
        """Executions of this process still running (listed or not)."""
        return len(self._tasks)


REGISTRY = Registry()


def new_execution_id() -> str:
    """A fresh, valid execution id."""
    return f"exec-{uuid.uuid4().hex[:12]}"


async def _send_whole(event: str, data: dict[str, Any], execution_id: str) -> None:
    """Send one event; a cancel arriving meanwhile waits until it is fully sent.

    Without this, cancelling between the log append and the publish would leave
    an event logged but unannounced, and ``execution-cancelled`` would overtake it.
    """
    send = asyncio.ensure_future(asend_sse_event(execution_id, event, data))
    try:
        await asyncio.shield(send)
    except asyncio.CancelledError:
        await send
        raise


async def play(sim: Simulation) -> None:
    """Play ``sim`` on the running loop; on cancellation send ``execution-cancelled``.

    The stream is closed in every case, so browsers stop reconnecting.
    """
    try:
        try:
            for step in sim.steps():
                if isinstance(step, Pause):
                    await asyncio.sleep(step.seconds)
                else:
                    await _send_whole(step.event, step.data, sim.execution_id)
        except asyncio.CancelledError:
            if not sim.finished:
                step = sim.cancel_step()
                await asend_sse_event(sim.execution_id, step.event, step.data)
            raise
    finally:
        await asyncio.shield(aclose_sse_connections(sim.execution_id))


def start(execution_id: str, **options: Any) -> Simulation:
    """Start an execution as a task on the running loop and register it."""
    sim = Simulation(execution_id, **options)
    REGISTRY.add(sim, asyncio.create_task(play(sim), name=f"demo:{execution_id}"))
    return sim


def cancel(execution_id: str) -> bool:
    """Cancel a running execution of this process; False if it is unknown or already ended."""
    sim = REGISTRY.get(execution_id)
    task = REGISTRY.task(execution_id)
    if sim is None or task is None or sim.finished or task.done():
        return False
    task.cancel()
    return True


def run_blocking(sim: Simulation, on_sent: Callable[[str, int], None] | None = None) -> None:
    """Play ``sim`` with the sync helpers (from a worker, command or thread).

    ``on_sent(event, id)`` is called after each send. Ctrl-C ends the run with
    ``execution-cancelled``. The stream is closed in every case.
    """
    try:
        try:
            for step in sim.steps():
                if isinstance(step, Pause):
                    time.sleep(step.seconds)
                    continue
                event_id = send_sse_event(sim.execution_id, step.event, step.data)
                if on_sent is not None:
                    on_sent(step.event, event_id)
        except KeyboardInterrupt:
            if not sim.finished:
                step = sim.cancel_step()
                send_sse_event(sim.execution_id, step.event, step.data)
            raise
    finally:
        close_sse_connections(sim.execution_id)
