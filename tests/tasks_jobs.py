"""Tasks of Django's tasks framework that the tests run: in the test process (the
immediate backend) and in real ``db_worker`` processes (``tests.settings_tasks``).

Each is a module-level function, as the framework requires, imported by its
dotted path in the worker. The framework module (``django.tasks`` or the
backport) is the one the integration chose.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from django_sse_exec import close_sse_connections
from django_sse_exec.integrations.tasks_compat import task_decorator
from django_sse_exec.tasks import TaskReporter, progress_task

task = task_decorator()


@progress_task()
def count_rows(reporter: TaskReporter, rows: int, delay: float = 0.0) -> int:
    """The issue's example: one ``progress`` per row (throttled by the reporter)."""
    for n in range(1, rows + 1):
        time.sleep(delay)
        reporter.progress(n, rows, f"row {n}")
    return rows


@progress_task(title="Import the rows")
def boom(reporter: TaskReporter, rows: int = 1) -> None:
    reporter.progress(0, rows)
    raise ValueError("the data is bad")


@progress_task()
async def acount_rows(reporter: TaskReporter, rows: int, delay: float = 0.0) -> int:
    """An async task function: the reporter's async methods."""
    for n in range(1, rows + 1):
        await asyncio.sleep(delay)
        await reporter.aprogress(n, rows)
    return rows


@progress_task(takes_context=True)
def attempt_of(reporter: TaskReporter, context: Any, extra: int = 0) -> list[Any]:
    """Returns what it was given: the context's attempt and result id, and the reporter's."""
    return [context.attempt, context.task_result.id, reporter.execution_id, reporter.attempt,
            extra]


@progress_task(takes_context=True)
def stall_first_attempt(reporter: TaskReporter, context: Any, rows: int) -> int:
    """Attempt 1 reports a step, then hangs (its worker is killed); later attempts finish."""
    reporter.progress(1, rows, f"attempt {context.attempt}")
    if context.attempt == 1:
        time.sleep(600)
    for n in range(2, rows + 1):
        reporter.progress(n, rows)
    return context.attempt


@progress_task()
def closed_under_it(reporter: TaskReporter) -> int:
    """Its execution is closed mid-run: the reports after that are dropped, the task succeeds."""
    close_sse_connections(reporter.execution_id)
    return reporter.progress(1, 1)


@progress_task(priority=5)
def urgent(reporter: TaskReporter) -> str:
    return "urgent"


@progress_task()
def traced_step(reporter: TaskReporter, traceparent: str, go: str) -> int:
    """Once file ``go`` exists (its stream is open), reports one step in a ``task`` span
    continuing the trace ``traceparent`` names (the enqueuer passes it as an argument: a
    task's message has no headers)."""
    from tests.helpers import wait_until_sync
    from tests.tracefile import continued

    wait_until_sync(lambda: os.path.exists(go), 30, what=f"{go} to exist")
    with continued(traceparent):
        return reporter.progress(1, 1, "traced")


@task()
def plain_add(x: int, y: int) -> int:
    """A task that is not decorated: followed through the signals when asked."""
    return x + y


@task()
def plain_boom() -> None:
    raise KeyError("no such row")


@progress_task()
def pause_between(reporter: TaskReporter, pause: float) -> int:
    """Reports, goes silent for ``pause`` seconds (stalled), then reports to the end."""
    reporter.progress(1, 3, "before the pause")
    time.sleep(pause)
    reporter.progress(2, 3, "after the pause")
    time.sleep(0.3)
    reporter.progress(3, 3)
    return 3
