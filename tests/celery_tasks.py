"""Celery tasks the reporting tests run in a real worker (imported with ``--include``)."""

from __future__ import annotations

import os
import time

from celery import shared_task

import django_sse_exec as sse
from django_sse_exec.celery import ExecutionTask


@shared_task(bind=True, base=ExecutionTask, name="tests.reporting.count_rows", publish_result=True)
def count_rows(self, rows: int) -> int:
    """The five-line task: reports progress per row, returns the count."""
    for n in range(1, rows + 1):
        self.progress(n, rows, f"row {n}")
    return rows


@shared_task(bind=True, base=ExecutionTask, name="tests.reporting.add")
def add(self, x: int, y: int) -> int:
    return x + y


@shared_task(bind=True, base=ExecutionTask, name="tests.reporting.boom")
def boom(self, *args: object) -> None:
    raise ValueError("the data is bad")


@shared_task(bind=True, base=ExecutionTask, name="tests.reporting.flaky", max_retries=5,
             publish_result=True)
def flaky(self, failures: int) -> int:
    """Fails its first ``failures`` attempts, each time scheduling a retry."""
    if self.request.retries < failures:
        raise self.retry(exc=ConnectionError(f"attempt {self.request.retries + 1} failed"),
                         countdown=0.1)
    return self.request.retries + 1


@shared_task(bind=True, base=ExecutionTask, name="tests.reporting.nap")
def nap(self, seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@shared_task(bind=True, base=ExecutionTask, name="tests.reporting.crash")
def crash(self) -> None:
    """The worker process dies mid-task (as on an OOM kill)."""
    os._exit(1)


@shared_task(bind=True, base=ExecutionTask, name="tests.reporting.slow_rows")
def slow_rows(self, rows: int, delay: float) -> int:
    """A row every ``delay`` seconds, each reported: a task a cancel can stop mid-way."""
    for n in range(1, rows + 1):
        time.sleep(delay)
        self.progress(n, rows, f"row {n}")
    return rows


@shared_task(bind=True, base=ExecutionTask, name="tests.reporting.retry_rows", max_retries=2)
def retry_rows(self, rows: int, fail_at: int) -> int:
    """Counts its rows from 1 on every attempt; the first attempt fails at ``fail_at``."""
    for n in range(1, rows + 1):
        time.sleep(0.3)
        self.progress(n, rows, f"row {n}")
        if self.request.retries == 0 and n == fail_at:
            raise self.retry(exc=ConnectionError("the source went away"), countdown=0.1)
    return rows


@shared_task(bind=True, name="tests.reporting.traced_send")
def traced_send(self, execution_id: str) -> int:
    """Sends one event in a ``task`` span continuing the trace whose ``traceparent``
    came in the message's headers (as OpenTelemetry's Celery instrumentation carries it)."""
    from tests.tracefile import continued

    with continued(getattr(self.request, "traceparent", None)):
        return sse.send_sse_event(execution_id, "step", {"n": 1})
