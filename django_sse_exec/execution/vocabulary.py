"""The orchestrator's event vocabulary: event names, payload rules, and one task's state.

Shared by :mod:`django_sse_exec.execution.state` (which builds and reads the payloads) and
the reporter; pure functions and data, no I/O.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ..conf import sse_settings
from ..store.base import EXECUTION_RESUMED
from ..wire import encode_data
from .error_detail import describe_exception

#: The event vocabulary.
EXECUTION_START = "execution-start"
EXECUTION_COMPLETE = "execution-complete"
EXECUTION_CANCELLED = "execution-cancelled"
TASK_START = "task-start"
TASK_COMPLETE = "task-complete"
TASK_FAIL = "task-fail"
TASK_RETRY = "task-retry"
PROGRESS = "progress"
#: Someone asked to cancel: ``{executionId, by, at[, requester]}`` (see :mod:`.cancel`).
EXECUTION_CANCEL_REQUESTED = "execution-cancel-requested"
#: No report for ``STALL_AFTER`` seconds: ``{executionId, lastReportAt, after}``; then,
#: at the next report, ``execution-resumed {executionId, at}`` (see :mod:`.stalls`).
EXECUTION_STALLED = "execution-stalled"

#: An event to send: its name and its (JSON-serialisable) data.
Message = tuple[str, dict[str, Any]]

#: Longest error text put in a payload (tracebacks belong in logs, not streams).
MAX_ERROR_CHARS = 2000


def error_text(error: BaseException | str) -> str:
    """A short description of ``error`` for a payload.

    Text passed explicitly is sent as given; an exception is described by
    :func:`~django_sse_exec.execution.error_detail.describe_exception` (by default, with
    ``DEBUG`` off, only its type: its message may carry secrets).
    """
    text = error if isinstance(error, str) else describe_exception(error)
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def now_ms() -> int:
    return int(time.time() * 1000)


def checked_payload(data: dict[str, Any]) -> dict[str, Any]:
    """Raise at the call site, before the state changes, if ``data`` cannot be sent."""
    encode_data(data, max_bytes=int(sse_settings.MAX_EVENT_BYTES))
    return data


def checked_task_id(task_id: Any) -> str:
    if not isinstance(task_id, str) or not task_id:
        raise ValueError(f"task_id must be a non-empty str, not {task_id!r}")
    return task_id


@dataclass
class Running:
    title: str
    #: ``time.monotonic()`` at task start in this process; None when learnt from the log.
    started: float | None


@dataclass
class TaskState:
    """One task of an execution, as far as its events tell."""

    #: The ``taskId`` of its events.
    task_id: str
    #: Its ``taskTitle`` (the id when none was given).
    title: str
    #: ``"running"``, ``"retrying"`` (an attempt failed, another is scheduled),
    #: ``"success"`` or ``"failed"``.
    status: str = "running"
    #: Milliseconds it took (its last attempt, once that ended); None while running.
    duration: int | None = None
    #: The error text of ``task-fail`` or of the last ``task-retry``; else None.
    error: str | None = None
    #: The attempt that ran last (1 unless retried).
    attempt: int = 1
    #: Its share done (0 to 1) from its last ``progress`` (steps rolled up); None if unknown.
    fraction: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """The task as JSON-serialisable data (camelCase, like the payloads)."""
        return {"taskId": self.task_id, "title": self.title, "status": self.status,
                "duration": self.duration, "error": self.error, "attempt": self.attempt,
                "fraction": self.fraction}


def int_or(value: Any, default: int | None) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def fit_summary(data: dict[str, Any]) -> dict[str, Any]:
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



def fraction_of(data: dict[str, Any]) -> float | None:
    """The share done (0 to 1) a ``progress`` payload says: its ``percent`` (steps rolled
    up), else ``progress / total``; None when it says nothing."""
    percent = _float(data.get("percent"))
    if percent is not None:
        return min(1.0, max(0.0, percent / 100))
    current, total = _float(data.get("progress")), _float(data.get("total"))
    if current is None or total is None or total <= 0:
        return None
    return min(1.0, max(0.0, current / total))


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


__all__ = [
    "EXECUTION_CANCELLED", "EXECUTION_CANCEL_REQUESTED", "EXECUTION_COMPLETE",
    "EXECUTION_RESUMED", "EXECUTION_STALLED", "EXECUTION_START", "MAX_ERROR_CHARS", "Message",
    "PROGRESS", "Running", "TASK_COMPLETE", "TASK_FAIL", "TASK_RETRY", "TASK_START", "TaskState",
    "checked_payload", "checked_task_id", "error_text", "fit_summary", "fraction_of", "int_or",
    "now_ms",
    "str_or_none",
]
