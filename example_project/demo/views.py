"""Demo views: the execution dashboard and the small JSON API behind it.

* ``GET /`` — the dashboard; ``/?execution=<id>`` reopens an execution this
  browser started (a finished one is replayed from its log, a running one
  continues live); ``&token=<stream token>`` opens one shared with a link.
* ``POST /demo/executions`` ``{"tasks", "delayMs", "failRate", "steps", "stall"}`` —
  start one (201): its ``streamUrl`` and ``cancelUrl`` (the app's signed
  :func:`~django_sse_exec.cancel_url`, which the page's Cancel button posts to).
* ``GET /demo/executions`` — recent executions this browser started (the page
  itself follows them live over one feed stream: :func:`.ownership.feed_of`).
* ``GET /demo/executions/<id>`` — its status and how many streams watch it.

Safe to copy: stream and cancel URLs are handed out only for executions the
caller started (:mod:`.ownership`), bound to the logged-in user if any; the POST
endpoint accepts only ``Content-Type: application/json`` (415 otherwise), which
a cross-site form cannot send and a cross-site script cannot send without a
CORS preflight this app never answers; inputs are validated (400, never 500);
at most :data:`MAX_RUNNING` executions run at once and each visitor starts at
most ``DEMO_STARTS_PER_MINUTE`` a minute (429, :mod:`.limits`); pages and JSON
that carry tokens are never cached. A shared link (``&token=``) shows an
execution for the token's lifetime, with that token, and grants no cancel.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.cache import add_never_cache_headers
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt

from django_sse_exec import (
    aadd_to_feed,
    aget_sse_client_count,
    cancel_url,
    feed_stream_url,
    stream_url,
)
from django_sse_exec.wire import is_valid_execution_id

from . import executor, limits, ownership

#: Limits of what the dashboard may start.
MAX_TASKS = 200
MAX_DELAY_MS = 5_000
#: Longest run one start may ask for (tasks × delayMs).
MAX_RUN_MS = 10 * 60 * 1000
#: Executions running at once in this process; more get 429.
MAX_RUNNING = int(os.environ.get("DEMO_MAX_RUNNING", "16"))
#: Largest accepted request body.
MAX_BODY_BYTES = 4096


class BadInput(ValueError):
    """A request the demo refuses with 400 and this message."""


def _error(message: str, status: int, **headers: str) -> JsonResponse:
    response = JsonResponse({"error": message}, status=status, headers=headers or None)
    add_never_cache_headers(response)
    return response


def _json_only(request: HttpRequest) -> JsonResponse | None:
    """415 unless the body is declared JSON: cross-site forms cannot declare it."""
    if request.content_type != "application/json":
        return _error("send Content-Type: application/json", 415)
    return None


def _integer(body: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadInput(f"{key} must be an integer")
    if not low <= value <= high:
        raise BadInput(f"{key} must be between {low} and {high}")
    return value


def _flag(body: dict[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise BadInput(f"{key} must be true or false")
    return value


def _rate(body: dict[str, Any]) -> float:
    value = body.get("failRate", 0.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadInput("failRate must be a number between 0 and 1")
    if not 0.0 <= value <= 1.0:
        raise BadInput("failRate must be between 0 and 1")
    return float(value)


def parse_start(raw: bytes) -> dict[str, Any]:
    """The validated options of a start request; :class:`BadInput` otherwise."""
    if len(raw) > MAX_BODY_BYTES:
        raise BadInput(f"body must be at most {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(raw or b"{}")
    except (ValueError, RecursionError):
        raise BadInput("body must be JSON") from None
    if not isinstance(body, dict):
        raise BadInput("body must be a JSON object")
    options = {"tasks": _integer(body, "tasks", 5, 1, MAX_TASKS),
               "delay_ms": _integer(body, "delayMs", 400, 0, MAX_DELAY_MS),
               "fail_rate": _rate(body), "with_steps": _flag(body, "steps"),
               "stall": _flag(body, "stall")}
    if options["tasks"] * options["delay_ms"] > MAX_RUN_MS:
        raise BadInput(f"tasks × delayMs must be at most {MAX_RUN_MS} ms")
    return options


@never_cache
def index(request: HttpRequest) -> HttpResponse:
    """The dashboard, optionally opened on ``?execution=<id>`` (and ``&token=``)."""
    requested = request.GET.get("execution", "")
    execution_id = requested if is_valid_execution_id(requested) else ""
    user = request.user
    ids = ownership.owned(request, user)
    token_user = ownership.user_of_token(user)
    shared = None if execution_id in ids else ownership.shared_token(request, user, execution_id)
    if execution_id and execution_id in ids:
        stream = stream_url(execution_id, user=token_user)
    elif shared is not None:  # a shared link: its own token, for its lifetime, never remembered
        stream = ownership.shared_stream_url(execution_id, shared)
    else:
        stream = ""
    feed, new_feed = ownership.feed_of(request, user)
    # Only a run this browser started (not one a shared link shows) can be cancelled here.
    sim = executor.REGISTRY.get(execution_id) if execution_id and execution_id in ids else None
    response = render(request, "demo/index.html", {
        "feed_url": feed_stream_url(feed, user=token_user),
        "execution_id": execution_id if stream else "",
        "stream_url": stream,
        "cancel_url": cancel_url(execution_id, user=token_user)
        if sim is not None and not sim.finished else "",
        "invalid_execution": bool(requested) and not execution_id,
        "unknown_execution": bool(execution_id) and not stream,
        "max_tasks": MAX_TASKS,
    })
    if new_feed:
        ownership.remember_feed(response, request, feed)
    return response


@csrf_exempt  # JSON-only instead (see _json_only): no cross-site request can send it
async def executions(request: HttpRequest) -> JsonResponse:
    """``POST``: start an execution; ``GET``: list this browser's recent ones."""
    user = await request.auser()
    ids = ownership.owned(request, user)
    if request.method == "GET":
        mine = [sim.info() for sim in executor.REGISTRY.recent() if sim.execution_id in ids]
        response = JsonResponse({"executions": mine})
        add_never_cache_headers(response)
        return response
    if request.method != "POST":
        return _error("use GET or POST", 405)
    refused = _json_only(request)
    if refused is not None:
        return refused
    try:
        options = parse_start(request.body)
    except BadInput as exc:
        return _error(str(exc), 400)
    if executor.REGISTRY.running() >= MAX_RUNNING:
        return _error(f"{MAX_RUNNING} executions are running; try again when one ends", 429,
                      **{"Retry-After": "10"})
    wait = limits.take_start(request)
    if wait is not None:
        return _error(limits.refusal(wait), 429, **{"Retry-After": str(wait)})
    execution_id = executor.new_execution_id()
    feed, new_feed = ownership.feed_of(request, user)
    await aadd_to_feed(feed, execution_id)  # before its first event: the recent list shows it all
    executor.start(execution_id, **options)
    response = JsonResponse({
        "executionId": execution_id,
        "streamUrl": stream_url(execution_id, user=ownership.user_of_token(user)),
        "cancelUrl": cancel_url(execution_id, user=ownership.user_of_token(user)),
    }, status=201)
    add_never_cache_headers(response)
    ownership.remember(response, request, user, ids, execution_id)
    if new_feed:
        ownership.remember_feed(response, request, feed)
    return response


async def execution_detail(request: HttpRequest, execution_id: str) -> JsonResponse:
    """Status and current viewer count of an execution this browser started."""
    user = await request.auser()
    if not is_valid_execution_id(execution_id) or execution_id not in ownership.owned(
            request, user):
        return _error("no such execution started here", 404)
    sim = executor.REGISTRY.get(execution_id)
    info: dict[str, Any] = sim.info() if sim else {"executionId": execution_id, "status": None}
    info["viewers"] = await aget_sse_client_count(execution_id)
    info["streamUrl"] = stream_url(execution_id, user=ownership.user_of_token(user))
    if sim is not None and not sim.finished:
        info["cancelUrl"] = cancel_url(execution_id, user=ownership.user_of_token(user))
    response = JsonResponse(info)
    add_never_cache_headers(response)
    return response
