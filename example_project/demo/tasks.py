"""A demo Celery task: a simulated execution reported with ``ExecutionReporter``.

It emits the same vocabulary as :mod:`example_project.demo.executor` (which runs
inside the web process), but from a worker process: every event travels through
Redis to whichever web process holds the browser's stream. The reporter emits
``execution-start`` on enter and, on exit, the summary and the close — even if
the task raises.
"""

from __future__ import annotations

import time

from celery import shared_task

from django_sse_exec import ExecutionReporter


@shared_task(name="demo.run_execution")
def run_execution(execution_id: str, tasks: int = 5, delay_ms: int = 400,
                  fail_at: int | None = None) -> dict[str, int]:
    """Run ``tasks`` simulated steps ``delay_ms`` apart; step ``fail_at`` fails.

    Returns the summary's counts (``successful``, ``failed``).
    """
    with ExecutionReporter(execution_id, total=tasks) as report:
        for index in range(1, tasks + 1):
            task_id, title = f"task-{index}", f"Task {index}"
            report.task_start(task_id, title)
            time.sleep(delay_ms / 1000)
            if index == fail_at:
                report.task_fail(task_id, f"{title} failed (simulated)")
            else:
                report.task_complete(task_id)
    return {"successful": report.state.successful, "failed": report.state.failed}
