"""The dashboard rebuilt with htmx and the app's template tags: no JavaScript of its own.

* ``GET /htmx/`` — the page; ``/htmx/?execution=<id>`` shows an execution this
  browser started (first paint from its log, then live over the HTML stream;
  with the event store down, the widget says so and comes back by itself);
  ``&token=<stream token>`` shows one shared with a link, for the token's
  lifetime and with no cancel (:func:`.ownership.shared_token`).
* ``POST /htmx/start`` — a plain form (CSRF-protected): start one, then 303 to its page.

Cancel is the widget's own button (``{% sse_exec_progress ... cancel=True %}``),
shown only on executions this browser started: it posts to the app's signed
cancel URL.

The same rules as the JSON dashboard (:mod:`.views`): widgets, and so stream
tokens, only for executions the caller started (:mod:`.ownership`) or holds a
token for, bound to the logged-in user if any; the same limits on what a start
may ask for; pages that carry tokens are never cached.
"""

from __future__ import annotations

import json

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_POST

from django_sse_exec.render.widget import aget_widget_state
from django_sse_exec.wire import is_valid_execution_id

from . import executor, limits, ownership
from .views import MAX_RUNNING, MAX_TASKS, BadInput, parse_start


def _page(execution_id: str = "") -> str:
    url = reverse("demo-htmx")
    return f"{url}?execution={execution_id}" if execution_id else url


def _show(request: HttpRequest, context: dict, status: int = 200) -> HttpResponse:
    ids = context.pop("ids")
    context.update(recent=[sim for sim in executor.REGISTRY.recent() if sim.execution_id in ids],
                   max_tasks=MAX_TASKS)
    response = render(request, "demo/htmx.html", context, status=status)
    add_never_cache_headers(response)  # the page may carry a stream token
    return response


async def index(request: HttpRequest) -> HttpResponse:
    """The page, optionally opened on ``?execution=<id>`` (and ``&token=``)."""
    user = await request.auser()
    ids = ownership.owned(request, user)
    requested = request.GET.get("execution", "")
    execution_id = requested if is_valid_execution_id(requested) else ""
    owned = bool(execution_id) and execution_id in ids
    # A shared link shows the execution with its own token, for its lifetime; it is
    # never remembered, so it grants no cancel and nothing once the token is gone.
    shared = None if owned else ownership.shared_token(request, user, execution_id)
    granted = owned or shared is not None
    sim = executor.REGISTRY.get(execution_id) if owned else None
    return _show(request, {
        "ids": ids, "execution_id": execution_id if granted else "",
        "state": await aget_widget_state(execution_id) if granted else None,
        "token_user": ownership.user_of_token(user), "shared_token": shared,
        "unknown": bool(requested) and not granted,
        "cancellable": sim is not None and not sim.finished,
    })


@require_POST
async def start(request: HttpRequest) -> HttpResponse:
    """Start an execution from the form (the JSON dashboard's limits) and show it."""
    user = await request.auser()
    ids = ownership.owned(request, user)
    form = request.POST
    try:
        body = {"tasks": int(form.get("tasks", "12")), "delayMs": int(form.get("speed", "400")),
                "failRate": int(form.get("fail_percent", "10")) / 100,
                "steps": form.get("steps") == "on", "stall": form.get("stall") == "on"}
        options = parse_start(json.dumps(body).encode())
    except ValueError as exc:  # BadInput, or a field that is not a number
        message = str(exc) if isinstance(exc, BadInput) else "every field must be a number"
        return _show(request, {"ids": ids, "error": message}, status=400)
    if executor.REGISTRY.running() >= MAX_RUNNING:
        return _show(request, {"ids": ids, "error": f"{MAX_RUNNING} executions are running; "
                                                    "try again when one ends"}, status=429)
    wait = limits.take_start(request)
    if wait is not None:
        response = _show(request, {"ids": ids, "error": limits.refusal(wait)}, status=429)
        response["Retry-After"] = str(wait)
        return response
    execution_id = executor.new_execution_id()
    executor.start(execution_id, **options)
    response = HttpResponseRedirect(_page(execution_id), status=303)
    ownership.remember(response, request, user, ids, execution_id)
    return response
