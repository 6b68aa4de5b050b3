"""The keys of a reporter's events: a retry that runs a step again sends nothing twice.

Every event a reporter (or a task integration) sends carries a key
(``send_sse_event(..., key=...)``): the store logs an event at most once per
key, so a run that repeats what an earlier one already reported — a Celery task
redelivered after its worker died, a retry that runs the same steps again, a
``django.tasks`` result run again — adds nothing the page has already shown.

The keys, by task and attempt:

* ``execution-start``: ``start``; the summary (``execution-complete`` or
  ``execution-cancelled``): ``end`` — one of each per execution, whoever sends it
  (two group members that both see the end, the reaper and the producer);
* ``task-start``: ``task:<id>:<attempt>:start`` and ``task-retry``:
  ``task:<id>:<attempt>:retry`` — a new attempt shows, a re-run of the same
  attempt does not; ``task-complete``/``task-fail``: ``task:<id>:end``;
* ``progress``: by task, step and what it says — ``(current, total, message)``
  and its *phase* (how many times the counter went back to a lower value in this
  run, so two loops counting 1..n in one step are told apart). Not by attempt: an
  attempt that counts the same rows again shows them once, and one that resumes
  from a checkpoint shows only what is new.

A run that finds an earlier attempt's progress in the log (the task
integrations rebuild the state at their start) also holds back its own progress
until it gets further than that (:func:`shown_before`): an attempt that counts
with other steps than the last, or is throttled at other moments, has other keys.

Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .vocabulary import (
    EXECUTION_CANCELLED,
    EXECUTION_COMPLETE,
    EXECUTION_START,
    TASK_COMPLETE,
    TASK_FAIL,
    TASK_RETRY,
    TASK_START,
)

#: Longest key; longer ones are hashed (the store's limit is 200 characters).
MAX_KEY = 120


def _fit(key: str) -> str:
    if len(key) <= MAX_KEY:
        return key
    return key[:40] + "~" + hashlib.blake2b(key.encode(), digest_size=16).hexdigest()


def lifecycle_key(event: str, data: dict[str, Any]) -> str | None:
    """The key of a lifecycle event from its payload (None for other events)."""
    task_id = data.get("taskId")
    attempt = data.get("attempt") if isinstance(data.get("attempt"), int) else 1
    if event == EXECUTION_START:
        return "start"
    if event in (EXECUTION_COMPLETE, EXECUTION_CANCELLED):
        return "end"
    if not isinstance(task_id, str):
        return None
    if event == TASK_START:
        return _fit(f"task:{task_id}:{attempt}:start")
    if event == TASK_RETRY:
        return _fit(f"task:{task_id}:{attempt}:retry")
    if event in (TASK_COMPLETE, TASK_FAIL):
        return _fit(f"task:{task_id}:end")
    return None


#: Half the rounding step of a payload's ``percent`` (one decimal), as a fraction.
PERCENT_ROUNDING = 0.0005


def shown_before(current: float, total: float | None, high_water: float | None) -> bool:
    """True when ``progress(current, total)`` is no further than ``high_water`` (the share an
    earlier attempt reported, from its rounded ``percent``): showing it would repeat."""
    if high_water is None or not total:
        return False
    return current / total <= high_water + PERCENT_ROUNDING


class ProgressKeys:
    """Keys of one run's ``progress`` events, by subject, step and phase."""

    def __init__(self) -> None:
        #: (subject, step path) -> (phase, last counter value).
        self._phases: dict[tuple[str, str], tuple[int, float]] = {}

    def key(self, subject: str, path: list[str], current: Any, total: Any,
            message: str | None) -> str:
        """The key of ``progress(current, total, message)`` of ``subject`` in step ``path``."""
        where = (subject, "/".join(path))
        phase, last = self._phases.get(where, (0, float("-inf")))
        if isinstance(current, (int, float)) and not isinstance(current, bool):
            if current < last:
                phase += 1
            last = current
        self._phases[where] = (phase, last)
        said = json.dumps([where[1], phase, current, total, message], default=str)
        digest = hashlib.blake2b(said.encode(), digest_size=10).hexdigest()
        return _fit(f"progress:{subject}:{digest}")

    @staticmethod
    def boundary(subject: str, path: list[str], edge: str) -> str:
        """The key of a step's start or end (``edge``) event."""
        return _fit(f"step:{subject}:{'/'.join(path)}:{edge}")


__all__ = ["MAX_KEY", "PERCENT_ROUNDING", "ProgressKeys", "lifecycle_key", "shown_before"]
