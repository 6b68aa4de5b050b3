"""Demo views: a page that starts an execution and shows it live, and the start API."""

from __future__ import annotations

import json

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt

from django_sse_exec import stream_url

from . import executor


def index(request: HttpRequest) -> HttpResponse:
    return render(request, "demo/index.html")


def _bounded_int(value: object, default: int, low: int, high: int) -> int:
    try:
        number = int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default
    return max(low, min(high, number))


@csrf_exempt  # a JSON endpoint of the demo; a real project would require CSRF or auth
async def start_execution(request: HttpRequest) -> JsonResponse:
    """``POST /demo/executions`` ``{"tasks": N, "delayMs": M, "failRate": F}``."""
    if request.method != "POST":
        return JsonResponse({"error": "POST only"}, status=405)
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        return JsonResponse({"error": "body must be JSON"}, status=400)
    if not isinstance(body, dict):
        return JsonResponse({"error": "body must be a JSON object"}, status=400)
    try:
        fail_rate = min(1.0, max(0.0, float(body.get("failRate", 0.0))))
    except (TypeError, ValueError):
        fail_rate = 0.0
    execution_id = executor.new_execution_id()
    executor.start(
        execution_id,
        tasks=_bounded_int(body.get("tasks"), 5, 1, 200),
        delay_ms=_bounded_int(body.get("delayMs"), 400, 0, 60_000),
        fail_rate=fail_rate,
    )
    return JsonResponse(
        {"executionId": execution_id, "streamUrl": stream_url(execution_id)}, status=201
    )
