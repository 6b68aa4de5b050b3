"""A simulated execution that runs inside the server process as an asyncio task.

It emits the event vocabulary of the orchestrator this app grew from:
``execution-start``, ``task-start``, ``task-complete``/``task-fail`` and finally
``execution-complete`` (``status: "failed"`` when any task failed), then closes
the stream.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from typing import Any

from django_sse_exec import aclose_sse_connections, asend_sse_event

#: Running executions, so their tasks are not garbage-collected mid-run.
RUNNING: dict[str, asyncio.Task[None]] = {}


def new_execution_id() -> str:
    return f"exec-{uuid.uuid4().hex[:12]}"


async def run_execution(execution_id: str, tasks: int = 5, delay_ms: int = 400,
                        fail_rate: float = 0.0, seed: int | None = None) -> None:
    """Emit a whole execution of ``tasks`` simulated tasks, ``delay_ms`` apart."""
    rng = random.Random(seed)
    started = time.time()
    results: list[dict[str, Any]] = []
    await asend_sse_event(execution_id, "execution-start", {
        "executionId": execution_id, "totalTasks": tasks, "startTime": int(started * 1000),
    })
    for index in range(1, tasks + 1):
        task_id, title = f"task-{index}", f"Task {index}"
        await asend_sse_event(execution_id, "task-start", {
            "taskId": task_id, "taskTitle": title, "progress": index - 1, "total": tasks,
        })
        task_started = time.monotonic()
        await asyncio.sleep(delay_ms / 1000 * rng.uniform(0.5, 1.5))
        duration = int((time.monotonic() - task_started) * 1000)
        failed = rng.random() < fail_rate
        payload: dict[str, Any] = {
            "taskId": task_id, "taskTitle": title,
            "status": "failed" if failed else "success",
            "duration": duration, "progress": index, "total": tasks,
        }
        if failed:
            payload["error"] = f"{title} failed (simulated)"
        results.append(payload)
        await asend_sse_event(execution_id, "task-fail" if failed else "task-complete", payload)
    failed_count = sum(1 for r in results if r["status"] == "failed")
    await asend_sse_event(execution_id, "execution-complete", {
        "executionId": execution_id,
        "status": "failed" if failed_count else "success",
        "successful": len(results) - failed_count,
        "failed": failed_count,
        "cancelled": 0,
        "completed": len(results),
        "total": tasks,
        "totalDuration": int((time.time() - started) * 1000),
        "results": results,
    })
    await aclose_sse_connections(execution_id)


def start(execution_id: str, **options: Any) -> asyncio.Task[None]:
    """Start an execution on the running loop and keep a reference until it ends."""
    task = asyncio.create_task(run_execution(execution_id, **options))
    RUNNING[execution_id] = task
    task.add_done_callback(lambda _: RUNNING.pop(execution_id, None))
    return task
