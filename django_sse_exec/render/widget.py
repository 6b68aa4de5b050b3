"""The progress widget: what its templates are given, first paint and live alike.

``{% sse_exec_progress %}`` (first paint), the state fragments of an HTML stream
(live) and the widget's refresh view all render the same templates from the
same context, built here from an :class:`~django_sse_exec.execution.state.ExecutionState`,
so the page never changes shape between the first paint and the first event.

Templates (override any of them in the project to restyle the widget):

* ``django_sse_exec/progress.html`` — the whole widget: the element that holds
  the stream (``hx-ext="sse"``, ``sse-connect``, ``sse-close``), the state, a
  live region for screen readers, and the refresh on a refused stream;
* ``django_sse_exec/state.html`` — the state inside it (bar, counts, the pace
  line: rate, time left, a stall or a cancel under way; summary, task list), also
  sent as each state fragment;
* ``django_sse_exec/unavailable.html`` — in place of the state when the event
  store could not be read (:class:`Unavailable`): the widget still connects,
  and its stream brings the state once the store is back;
* ``django_sse_exec/events/<event>.html`` and ``django_sse_exec/event.html`` —
  one event's fragment (the live region announces them).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from typing import Any
from urllib.parse import urlencode

from django.urls import reverse

from ..auth.cancel import make_cancel_token
from ..auth.policies import make_token
from ..auth.stream_urls import multi_stream_url
from ..execution.snapshot import fold_log
from ..execution.state import ExecutionState
from ..execution.vocabulary import int_or
from ..outages import unavailable
from ..runtime.sync import run_sync
from ..store import get_store
from ..wire.many import cursor_pair, key_of

#: Labels of the statuses an execution goes through.
STATUS_LABELS = {"pending": "Waiting", "running": "Running", "success": "Succeeded",
                 "failed": "Failed", "cancelled": "Cancelled", "closed": "Ended"}
#: Consecutive refreshes of a widget whose stream is refused, without progress,
#: after which it stops trying (a policy that allows the page but not the stream).
MAX_REFRESHES = 3
#: Task rows a widget shows at most (the others are counted, not listed): what one
#: state costs to render stays bounded whatever its events say (a state of a million
#: expected tasks renders as fast as one of a hundred, inside the event loop).
MAX_ROWS = 100
#: Final statuses: the widget opens no stream for them.
FINAL = ("success", "failed", "cancelled", "closed")


@dataclass(frozen=True)
class Unavailable:
    """An execution whose state could not be read: the event store is down.

    The widget tags render it as "unavailable, retrying" instead of failing the
    page; the widget still connects its stream (from the start), which the
    browser retries until the store is back and which then brings the state.
    """

    execution_id: str
    #: What failed, e.g. "event store unavailable: redis" (logged; not shown).
    reason: str


async def aget_widget_state(execution_id: str) -> ExecutionState | Unavailable:
    """What a widget shows of ``execution_id``: its state, read page by page and lean
    (:func:`~django_sse_exec.execution.snapshot.fold_log`), or :class:`Unavailable`
    when the event store is down (logged). Any other error is raised."""
    try:
        return await fold_log(get_store(), execution_id, lean=True)
    except Exception as exc:
        outage = unavailable("event store", exc)
        if outage is None:
            raise
        return Unavailable(execution_id, str(outage))


def get_widget_state(execution_id: str) -> ExecutionState | Unavailable:
    """Sync twin of :func:`aget_widget_state` (the template tags, in sync views)."""
    return run_sync("get_widget_state", aget_widget_state, execution_id)


def state_context(state: ExecutionState) -> dict[str, Any]:
    """What ``state.html`` is rendered with: the state plus rows ready to show.

    ``rows`` lists the tasks seen (``task_id``, ``title``, ``status``,
    ``duration`` ms, ``error``, ``attempt``), then a ``pending`` placeholder for
    each expected task not seen yet, :data:`MAX_ROWS` rows at most;
    ``rows_hidden`` counts the rows left out. When the execution was cancelled,
    tasks that never ended show as ``cancelled``.
    """
    status = state.status
    rows: list[dict[str, Any]] = []
    for task in islice(state.tasks.values(), MAX_ROWS):
        row = task.as_dict()
        row["task_id"] = task.task_id
        if status in FINAL and row["status"] in ("running", "retrying"):
            row["status"] = "cancelled"
        rows.append(row)
    seen = len(state.tasks)
    total = (int_or(state.summary.get("total"), 0) or 0) if state.summary else state.total_tasks()
    for number in range(seen + 1, min(total, seen + MAX_ROWS - len(rows)) + 1):
        rows.append({"task_id": "", "title": f"Task {number}", "status":
                     "cancelled" if status in FINAL else "pending",
                     "duration": None, "error": None, "attempt": 0})
    return {
        "state": state,
        "execution_id": state.execution_id,
        "status": status,
        "status_label": STATUS_LABELS.get(status, status.capitalize()),
        "finished": status in FINAL,
        "percent": state.percent,
        "completed": state.completed,
        "total": total,
        "failed": state.failed,
        # The share of the ended tasks that succeeded (the bar is green, then red).
        "ok_percent": (100 * (state.completed - state.failed)) // max(1, state.completed),
        "rows": rows,
        "rows_hidden": max(seen, total) - len(rows),
        "summary": state.summary,
        "message": (state.last_progress or {}).get("message") if status == "running" else None,
        "last_event_id": state.last_event_id,
        "pace": pace_context(state, status),
    }


def pace_context(state: ExecutionState, status: str) -> dict[str, Any]:
    """The pace line of a running execution: ``rate`` (units/s) and ``eta`` (s) of its last
    ``progress`` (when they mean something, and not while it is stalled), its ``step``
    labels, ``stalled_after`` (s) while stalled, and ``cancelling`` once a cancel was
    requested. Empty values once it ended."""
    if status in FINAL:
        return {"rate": None, "eta": None, "step": None, "stalled_after": None,
                "cancelling": False}
    progress = state.last_progress or {}
    stall = state.stall or {}
    if state.stalled:  # a silent producer's last speed says nothing now
        progress = {"step": progress.get("step")}
    return {"rate": progress.get("rate"), "eta": progress.get("eta"),
            "step": " › ".join(progress.get("step") or []) or None,
            "stalled_after": stall.get("after") if state.stalled else None,
            "cancelling": state.cancel_requested}


def progress_context(state: ExecutionState | Unavailable, *, user: Any = None,
                     max_age: float | None = None, token: str | None = None,
                     refreshes: int = 0, refused: str | None = None,
                     cancel: bool | str = False) -> dict[str, Any]:
    """What ``progress.html`` is rendered with: ``state.html``'s context plus the URLs.

    ``stream_url`` (HTML format, resuming after ``state.last_event_id``) is
    None when the execution has ended or the stream was ``refused`` (then the
    reason is shown). ``token`` reuses a token instead of minting one (the
    refresh view passes the request's, so a refresh never extends a grant; a
    page opened with a shared link passes the link's). For an
    :class:`Unavailable` state, ``unavailable`` is set instead of the state's
    fields and the stream replays the execution from the start.
    ``cancel=True`` adds the cancel control (``cancel_url``, bound like the
    stream's token); a str is a cancel token to reuse (the refresh view's).
    """
    if isinstance(state, Unavailable):
        context: dict[str, Any] = {"execution_id": state.execution_id, "status": "unavailable",
                                   "unavailable": state.reason, "finished": False,
                                   "last_event_id": 0}
    else:
        context = state_context(state)
    execution_id = context["execution_id"]
    live = refused is None and not context["finished"]
    if live and token is None:
        token = make_token(execution_id, user, max_age)
    query = {"token": token or ""}
    context.update(refused=refused, stream_url=None, refresh_url=None, cancel_url=None)
    cancel_token = cancel if isinstance(cancel, str) else (
        make_cancel_token(execution_id, user, max_age) if cancel and live else None)
    if live and cancel_token:
        where = reverse("django_sse_exec:cancel", args=[execution_id])
        context["cancel_url"] = f"{where}?{urlencode({'token': cancel_token})}"
        query["cancel"] = cancel_token
    if live:
        stream = reverse("django_sse_exec:stream", args=[execution_id])
        resume = {"token": query["token"], "format": "html",
                  "last_event_id": context["last_event_id"]}
        context["stream_url"] = f"{stream}?{urlencode(resume)}"
        if refreshes < MAX_REFRESHES:
            refresh = reverse("django_sse_exec:progress", args=[execution_id])
            again = {**query, "seen": context["last_event_id"], "refreshes": refreshes + 1}
            context["refresh_url"] = f"{refresh}?{urlencode(again)}"
    return context


def many_context(states: list[ExecutionState | Unavailable], *, user: Any = None,
                 max_age: float | None = None) -> dict[str, Any]:
    """What ``progress_many.html`` is rendered with: each widget, and one stream for all.

    The stream (a set's, HTML format) resumes every execution after the state
    shown (an :class:`Unavailable` one from the start); it is None when every
    execution has ended.
    """
    widgets = []
    for state in states:
        if isinstance(state, Unavailable):
            widget: dict[str, Any] = {"execution_id": state.execution_id, "finished": False,
                                      "unavailable": state.reason, "last_event_id": 0}
        else:
            widget = state_context(state)
        widget["swap_event"] = f"state:{widget['execution_id']}"
        widgets.append(widget)
    stream = None
    if not all(w["finished"] for w in widgets):
        pairs = (cursor_pair(key_of(i), w["last_event_id"]) for i, w in enumerate(widgets))
        cursor = ".".join(p for p in pairs if p)
        stream = multi_stream_url([w["execution_id"] for w in widgets], user=user, max_age=max_age)
        stream += "&format=html" + (f"&last_event_id={cursor}" if cursor else "")
    return {"widgets": widgets, "stream_url": stream}


__all__ = ["FINAL", "MAX_REFRESHES", "MAX_ROWS", "STATUS_LABELS", "Unavailable",
           "aget_widget_state", "get_widget_state", "many_context", "pace_context",
           "progress_context", "state_context"]
