"""Demo views: the execution dashboard and the small JSON API behind it.

* ``GET /`` — the dashboard; ``/?execution=<id>`` opens an existing execution
  (a finished one is replayed from its log, a running one continues live).
* ``POST /demo/executions`` ``{"tasks", "delayMs", "failRate"}`` — start one (201).
* ``GET /demo/executions`` — recent executions of this process.
* ``GET /demo/executions/<id>`` — its status and how many streams watch it.
* ``POST /demo/executions/<id>/cancel`` — cancel it (``execution-cancelled``).

The start and cancel endpoints are CSRF-exempt JSON endpoints of a demo; a real
project would protect them with its own authentication.
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt

from django_sse_exec import aget_sse_client_count, stream_url
from django_sse_exec.wire import is_valid_execution_id

from . import executor

#: Limits of what the dashboard may start.
MAX_TASKS = 200
MAX_DELAY_MS = 60_000


def index(request: HttpRequest) -> HttpResponse:
    """The dashboard, optionally opened on ``?execution=<id>``."""
    requested = request.GET.get("execution", "")
    execution_id = requested if is_valid_execution_id(requested) else ""
    return render(request, "demo/index.html", {
        "execution_id": execution_id,
        "invalid_execution": bool(requested) and not execution_id,
        "max_tasks": MAX_TASKS,
    })


def _bounded_int(value: object, default: int, low: int, high: int) -> int:
    try:
        number = int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return default
    return max(low, min(high, number))


def _bounded_rate(value: object) -> float:
    try:
        rate = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0
    return min(1.0, max(0.0, rate)) if rate == rate else 0.0  # NaN -> 0


def _error(message: str, status: int) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


@csrf_exempt
async def executions(request: HttpRequest) -> JsonResponse:
    """``POST``: start an execution; ``GET``: list recent ones."""
    if request.method == "GET":
        return JsonResponse({"executions": [sim.info() for sim in executor.REGISTRY.recent()]})
    if request.method != "POST":
        return _error("use GET or POST", 405)
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        return _error("body must be JSON", 400)
    if not isinstance(body, dict):
        return _error("body must be a JSON object", 400)
    execution_id = executor.new_execution_id()
    executor.start(
        execution_id,
        tasks=_bounded_int(body.get("tasks"), 5, 1, MAX_TASKS),
        delay_ms=_bounded_int(body.get("delayMs"), 400, 0, MAX_DELAY_MS),
        fail_rate=_bounded_rate(body.get("failRate", 0.0)),
    )
    return JsonResponse(
        {"executionId": execution_id, "streamUrl": stream_url(execution_id)}, status=201
    )


async def execution_detail(request: HttpRequest, execution_id: str) -> JsonResponse:
    """Status (``null`` if not started by this process) and current viewer count."""
    if not is_valid_execution_id(execution_id):
        return _error("invalid execution id", 404)
    sim = executor.REGISTRY.get(execution_id)
    info: dict[str, Any] = sim.info() if sim else {"executionId": execution_id, "status": None}
    info["viewers"] = await aget_sse_client_count(execution_id)
    info["streamUrl"] = stream_url(execution_id)
    return JsonResponse(info)


@csrf_exempt
async def cancel_execution(request: HttpRequest, execution_id: str) -> JsonResponse:
    """Cancel a running execution: 202, or 404 unknown, 409 already ended."""
    if request.method != "POST":
        return _error("POST only", 405)
    if not is_valid_execution_id(execution_id) or executor.REGISTRY.get(execution_id) is None:
        return _error("no such execution in this process", 404)
    if not executor.cancel(execution_id):
        return _error("execution already ended", 409)
    return JsonResponse({"executionId": execution_id, "status": "cancelling"}, status=202)
