"""A simulated execution: the demo's stand-in for a real workflow.

It speaks the orchestrator's full event vocabulary with its payload fields:
``execution-start``, ``task-start``, ``task-complete`` / ``task-fail``, and
finally ``execution-complete`` (``status: "failed"`` when any task failed) or
``execution-cancelled``; then the stream is closed.

With ``with_steps`` each task is also a weighted step of the execution, made
of two steps of its own (``fetch``, weight 1, then ``process``, weight 3, which
counts rows and takes one and a half times the task's delay, so a rate shows
once it has run a second), reported as ``progress`` events that the app's
:class:`~django_sse_exec.ExecutionState` builds: the whole execution's
``percent``, the step, the rows' ``rate`` and the execution's ``eta``. With
``stall`` the middle task goes silent for :data:`STALL_SECONDS` (longer than
the demo's ``STALL_AFTER``), so the page shows ``execution-stalled``, then
``execution-resumed``.

The plan of an execution (:class:`Simulation`) is a generator of :class:`Emit`
and :class:`Pause` steps. Two thin drivers play it, and both stop when someone
asks to cancel (the app's ``cancel_url``, which the dashboards use): every
send answers whether a cancel was requested, and a long pause asks the store
every :data:`CANCEL_CHECK` seconds. Then ``execution-cancelled`` is sent and
nothing after it but ``stream-closed``.

* :func:`start` runs it inside the web server as an asyncio task;
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
    ExecutionCancelled,
    ExecutionState,
    aclose_sse_connections,
    asend_sse_event,
    close_sse_connections,
    send_sse_event,
)
from django_sse_exec.store import get_store

#: Most executions the registry remembers (oldest are forgotten first).
RECENT_MAX = 20
#: Seconds the middle task goes silent in a run with ``stall`` (``STALL_AFTER`` is 5).
STALL_SECONDS = 8.0
#: Rows each task's ``process`` step counts, in this many reports.
ROWS, ROW_REPORTS = 400, 10
#: Seconds between two checks for a cancel request during a long pause.
CANCEL_CHECK = 0.25


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
    #: Report weighted steps inside each task (see the module's docstring).
    with_steps: bool = False
    #: Make the middle task go silent for STALL_SECONDS.
    stall: bool = False
    created: float = field(default_factory=time.time)
    #: ``running`` until the end, then ``success``, ``failed`` or ``cancelled``.
    status: str = "running"
    results: list[dict[str, Any]] = field(default_factory=list)
    #: Set once the final event is decided; a cancel after it has no effect.
    finished: bool = False
    _started: float = 0.0
    #: Builds the steps' progress payloads (percent, rate, eta), with ``with_steps``.
    _pace: ExecutionState | None = field(default=None, repr=False)

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
            seconds = self.delay_ms / 1000 * rng.uniform(0.6, 1.4)
            silent = STALL_SECONDS if self.stall and index == (self.tasks + 1) // 2 else 0.0
            if self.with_steps:
                yield from self._work(title, seconds, silent)
            else:
                yield Pause(seconds + silent)
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

    def _work(self, title: str, seconds: float, silent: float) -> Iterator[Step]:
        """One task as nested, weighted steps of the execution, with its rows counted."""
        if self._pace is None:
            self._pace = ExecutionState(self.execution_id)
            self._pace.plan({f"Task {n}": 1 for n in range(1, self.tasks + 1)})
        state = self._pace
        yield Emit(*state.step_start(title, steps={"fetch": 1, "process": 3}))
        yield Emit(*state.step_start("fetch"))
        yield Pause(seconds * 0.25 + silent)
        yield Emit(*state.step_end())
        yield Emit(*state.step_start("process"))
        for report in range(1, ROW_REPORTS + 1):
            yield Pause(seconds * 1.5 / ROW_REPORTS)
            rows = ROWS * report // ROW_REPORTS
            yield Emit(*state.progress(rows, ROWS, f"{rows} rows"))
        yield Emit(*state.step_end())
        yield Emit(*state.step_end())

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
    Raises ExecutionCancelled once someone asked to cancel (the send says so).
    """
    send = asyncio.ensure_future(asend_sse_event(execution_id, event, data))
    try:
        sent = await asyncio.shield(send)
    except asyncio.CancelledError:
        await send
        raise
    if getattr(sent, "cancel_requested", False):
        raise ExecutionCancelled(execution_id)


async def _pause(seconds: float, execution_id: str) -> None:
    """Wait, asking the store for a cancel request every CANCEL_CHECK seconds."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(left, CANCEL_CHECK))
        if left > CANCEL_CHECK and await get_store().cancel_requested(execution_id):
            raise ExecutionCancelled(execution_id)


async def play(sim: Simulation) -> None:
    """Play ``sim`` on the running loop; on a cancel send ``execution-cancelled``.

    The stream is closed in every case, so browsers stop reconnecting.
    """
    try:
        try:
            for step in sim.steps():
                if isinstance(step, Pause):
                    await _pause(step.seconds, sim.execution_id)
                else:
                    await _send_whole(step.event, step.data, sim.execution_id)
        except (asyncio.CancelledError, ExecutionCancelled):
            if not sim.finished:
                step = sim.cancel_step()
                await asend_sse_event(sim.execution_id, step.event, step.data)
            raise
    except ExecutionCancelled:
        pass  # asked from the page: the run ends here
    finally:
        await asyncio.shield(aclose_sse_connections(sim.execution_id))


def start(execution_id: str, **options: Any) -> Simulation:
    """Start an execution as a task on the running loop and register it."""
    sim = Simulation(execution_id, **options)
    REGISTRY.add(sim, asyncio.create_task(play(sim), name=f"demo:{execution_id}"))
    return sim


def run_blocking(sim: Simulation, on_sent: Callable[[str, int], None] | None = None) -> None:
    """Play ``sim`` with the sync helpers (from a worker, command or thread).

    ``on_sent(event, id)`` is called after each send. Ctrl-C or a cancel request
    ends the run with ``execution-cancelled``. The stream is closed in every case.
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
                if getattr(event_id, "cancel_requested", False):
                    raise ExecutionCancelled(sim.execution_id)
        except (KeyboardInterrupt, ExecutionCancelled):
            if not sim.finished:
                step = sim.cancel_step()
                send_sse_event(sim.execution_id, step.event, step.data)
            raise
    finally:
        close_sse_connections(sim.execution_id)
