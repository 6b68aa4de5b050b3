"""A demo Celery task: a simulated execution reported with the public sync helpers.

It emits the same vocabulary as :mod:`example_project.demo.executor` (which runs
inside the web process), but from a worker process: every event travels through
Redis to whichever web process holds the browser's stream.
"""

from __future__ import annotations

import time
from typing import Any

from celery import shared_task

from django_sse_exec import close_sse_connections, send_sse_event


@shared_task(name="demo.run_execution")
def run_execution(execution_id: str, tasks: int = 5, delay_ms: int = 400,
                  fail_at: int | None = None) -> dict[str, Any]:
    """Run ``tasks`` simulated steps ``delay_ms`` apart; task ``fail_at`` fails.

    Returns the ``execution-complete`` payload.
    """
    started = time.time()
    send_sse_event(execution_id, "execution-start", {
        "executionId": execution_id, "totalTasks": tasks, "startTime": int(started * 1000),
    })
    results: list[dict[str, Any]] = []
    for index in range(1, tasks + 1):
        task_id, title = f"task-{index}", f"Task {index}"
        send_sse_event(execution_id, "task-start", {
            "taskId": task_id, "taskTitle": title, "progress": index - 1, "total": tasks,
        })
        step_started = time.monotonic()
        time.sleep(delay_ms / 1000)
        failed = index == fail_at
        payload: dict[str, Any] = {
            "taskId": task_id, "taskTitle": title, "status": "failed" if failed else "success",
            "duration": int((time.monotonic() - step_started) * 1000),
            "progress": index, "total": tasks,
        }
        if failed:
            payload["error"] = f"{title} failed (simulated)"
        results.append(payload)
        send_sse_event(execution_id, "task-fail" if failed else "task-complete", payload)
    failed_count = sum(1 for r in results if r["status"] == "failed")
    summary = {
        "executionId": execution_id, "status": "failed" if failed_count else "success",
        "successful": len(results) - failed_count, "failed": failed_count, "cancelled": 0,
        "completed": len(results), "total": tasks,
        "totalDuration": int((time.time() - started) * 1000), "results": results,
    }
    send_sse_event(execution_id, "execution-complete", summary)
    close_sse_connections(execution_id)
    return summary
