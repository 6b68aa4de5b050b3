"""The dashboard rebuilt with htmx and the app's template tags: no JavaScript of its own.

* ``GET /htmx/`` — the page; ``/htmx/?execution=<id>`` shows an execution this
  process started (first paint from its log, then live over the HTML stream).
* ``POST /htmx/start`` — a plain form (CSRF-protected): start one, then 303 to its page.
* ``POST /htmx/cancel/<id>`` — cancel it, then 303 back.

Like the JSON dashboard, it hands out stream tokens only for executions it
started (a token for any id would let anyone read any execution).
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_POST

from django_sse_exec import aget_execution_state
from django_sse_exec.wire import is_valid_execution_id

from . import executor
from .views import MAX_DELAY_MS, MAX_TASKS


def _page(execution_id: str) -> str:
    return f"{reverse('demo-htmx')}?execution={execution_id}"


def _bounded(value: str | None, default: int, low: int, high: int) -> int:
    try:
        return max(low, min(high, int(value or default)))
    except ValueError:
        return default


async def index(request: HttpRequest) -> HttpResponse:
    """The page, optionally opened on ``?execution=<id>``."""
    requested = request.GET.get("execution", "")
    sim = executor.REGISTRY.get(requested) if is_valid_execution_id(requested) else None
    state = await aget_execution_state(requested) if sim is not None else None
    return render(request, "demo/htmx.html", {
        "state": state, "execution_id": requested if sim else "",
        "unknown": bool(requested) and sim is None,
        "cancellable": sim is not None and not sim.finished,
        "recent": executor.REGISTRY.recent(), "max_tasks": MAX_TASKS,
    })


@require_POST
async def start(request: HttpRequest) -> HttpResponse:
    """Start an execution from the form and show it."""
    execution_id = executor.new_execution_id()
    executor.start(
        execution_id,
        tasks=_bounded(request.POST.get("tasks"), 12, 1, MAX_TASKS),
        delay_ms=_bounded(request.POST.get("speed"), 400, 0, MAX_DELAY_MS),
        fail_rate=_bounded(request.POST.get("fail_percent"), 10, 0, 100) / 100,
    )
    return HttpResponseRedirect(_page(execution_id), status=303)


@require_POST
async def cancel(request: HttpRequest, execution_id: str) -> HttpResponse:
    """Cancel an execution of this process (no effect once it ended) and show it."""
    if is_valid_execution_id(execution_id):
        executor.cancel(execution_id)
    return HttpResponseRedirect(_page(execution_id if is_valid_execution_id(execution_id) else ""),
                                status=303)
