"""A reporter's step as a block: ``with report.step("download", weight=3): ...``.

Entering emits the step's start (a ``progress`` with ``step`` and ``percent``),
leaving it normally emits its end (the step then counts as done); leaving it
with an exception only closes it, since the execution is ending anyway. The
maths is in :mod:`.steps` (no I/O); this block only sends what the reporter's
state builds, through the reporter (so keys and cancel apply as to any report).
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

from ..runtime.sync import run_sync

if TYPE_CHECKING:
    from .reporter import ExecutionReporter


class StepBlock:
    """One step of a reporter; use ``with`` (sync code) or ``async with`` (async code)."""

    def __init__(self, reporter: "ExecutionReporter", name: str, weight: float | None,
                 steps: dict[str, float] | None, task_id: str | None) -> None:
        self.reporter = reporter
        self.name = name
        self.weight = weight
        self.steps = steps
        self.task_id = task_id

    async def __aenter__(self) -> "StepBlock":
        state = self.reporter.state
        await self.reporter._emit(state.step_start(self.name, self.weight, self.steps,
                                                   task_id=self.task_id))
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        state = self.reporter.state
        if exc is not None:
            tree = state.step_trees.get(state._subject(self.task_id) or "")
            if tree is not None and tree.path:
                tree.leave()
            return
        await self.reporter._emit(state.step_end(task_id=self.task_id))

    def __enter__(self) -> "StepBlock":
        run_sync("step", self.__aenter__)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        run_sync("step", lambda: self.__aexit__(exc_type, exc, tb))


__all__ = ["StepBlock"]
