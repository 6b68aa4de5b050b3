"""Report Celery tasks, chains and groups to an execution's stream, at the documented import path.

Needs the ``celery`` extra. Give tasks the base class :class:`ExecutionTask` and
start them with :func:`start_execution`; the implementation is
:mod:`django_sse_exec.integrations.celery`.
"""

from .integrations.celery import (
    EXECUTION_HEADER,
    PROGRESS_INTERVAL,
    RESULT_MAX_BYTES,
    TITLE_HEADER,
    ExecutionTask,
    execution_of,
    iter_tasks,
    start_execution,
)

__all__ = [
    "EXECUTION_HEADER", "ExecutionTask", "PROGRESS_INTERVAL", "RESULT_MAX_BYTES", "TITLE_HEADER",
    "execution_of", "iter_tasks", "start_execution",
]
