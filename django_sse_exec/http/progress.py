"""The progress widget as a view: what a widget shows after its stream was refused.

A browser's ``EventSource`` cannot tell why a stream failed, and htmx's SSE
extension retries a refused one forever. The widget therefore asks this view,
once its stream fails for good (a 403, 404, 429 or 204 closes an ``EventSource``):
the view applies the same policy as the stream to the same token and cookies,
and answers with the widget to put in place of the old one — the current state
with a fresh connection (the refusal was passing), the state with the reason
live updates stopped, or, when refused, only the reason (no state is shown to
whom the stream is refused). With the event store (or the policy's database)
down it answers the widget's "unavailable, retrying" state, whose stream comes
back by itself.

htmx swaps only successful responses, so requests made by htmx (``HX-Request``)
get 200 whatever the outcome; others get the status (403, 404, 429, 503).
A widget that is refreshed :data:`~django_sse_exec.render.widget.MAX_REFRESHES` times
without the execution moving on stops trying (a policy that lets this view in
but not the stream would otherwise make a loop).

What one request may cost is bounded, as a stream's is:

* it counts against the stream caps (``MAX_STREAMS_PER_USER``,
  ``MAX_STREAMS_PER_ADDRESS``) while it runs: over a cap it is refused (429);
* it reads the log page by page and keeps only what the widget shows
  (:func:`~django_sse_exec.render.widget.aget_widget_state`), not the events;
* at most :data:`MAX_CONCURRENT_REFRESHES` requests per process read and render
  at once (the others wait their turn), and the rendering runs in a worker
  thread, off the event loop that serves the streams.

Every answer embeds or depends on a token: none may be stored by any cache
(``Cache-Control: no-cache, no-store, private``, the stream's own headers).
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.views.decorators.csrf import csrf_exempt

from ..auth.policies import authorize
from ..outages import ServiceUnavailable, guard
from ..render.widget import MAX_REFRESHES, Unavailable, aget_widget_state, progress_context
from ..streams.caps import OverCap, admit
from ..streams.headers import SECURITY_HEADERS, session_read
from ..wire import is_valid_execution_id, parse_last_event_id

#: Refresh requests one process reads and renders at once; more wait their turn.
#: Each holds at most one page of the log and the state it builds (one row per task).
MAX_CONCURRENT_REFRESHES = 2

_bounds: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = \
    weakref.WeakKeyDictionary()


def _bound() -> asyncio.Semaphore:
    """This event loop's semaphore of :data:`MAX_CONCURRENT_REFRESHES`."""
    loop = asyncio.get_running_loop()
    bound = _bounds.get(loop)
    if bound is None:
        bound = _bounds[loop] = asyncio.Semaphore(MAX_CONCURRENT_REFRESHES)
    return bound


async def _html(request: HttpRequest, template: str, context: dict[str, Any], status: int,
                **headers: str) -> HttpResponse:
    """The rendered widget (in a worker thread), with the headers of an answer carrying a token."""
    if request.headers.get("HX-Request") == "true":
        status = 200
    body = await sync_to_async(render_to_string, thread_sensitive=False)(template, context)
    headers = {**SECURITY_HEADERS, **headers}
    if session_read(request):
        headers["Vary"] = "Cookie"
    return HttpResponse(body, status=status, headers=headers,
                        content_type="text/html; charset=utf-8")


@csrf_exempt  # GET only; exempt so other methods get a clean 405 instead of a CSRF 403
async def progress_view(request: HttpRequest, execution_id: str) -> HttpResponse:
    """``GET .../executions/<execution_id>/progress``: the widget, as the stream's policy allows."""
    if request.method != "GET":
        return HttpResponse("method not allowed", status=405,
                            headers={**SECURITY_HEADERS, "Allow": "GET"},
                            content_type="text/plain; charset=utf-8")
    if not is_valid_execution_id(execution_id):
        return await _html(request, "django_sse_exec/refused.html",
                           {"execution_id": "", "reason": "unknown execution"}, 404)
    try:
        slot = await guard("stream caps", admit(request))
    except OverCap as exc:
        return await _html(request, "django_sse_exec/refused.html",
                           {"execution_id": execution_id, "reason": str(exc)}, 429,
                           **{"Retry-After": str(exc.retry_after)})
    except ServiceUnavailable as exc:
        return await _unavailable(request, execution_id, str(exc))
    try:
        async with _bound():
            return await _answer(request, execution_id)
    finally:
        if slot is not None:
            slot.release()


async def _answer(request: HttpRequest, execution_id: str) -> HttpResponse:
    try:
        reason = await authorize(request, execution_id)
    except ServiceUnavailable as exc:
        return await _unavailable(request, execution_id, str(exc))
    if reason is not None:
        return await _html(request, "django_sse_exec/refused.html",
                           {"execution_id": execution_id, "reason": reason}, 403)
    state = await aget_widget_state(execution_id)
    if isinstance(state, Unavailable):
        return await _unavailable(request, execution_id, state.reason)
    seen = parse_last_event_id(request.GET.get("seen")) or 0
    refreshes = _refreshes(request)
    if state.last_event_id > seen:
        refreshes = 0  # it moved on since the widget last saw it: the stream works
    stopped = "the stream keeps failing" if refreshes >= MAX_REFRESHES else None
    context = progress_context(state, token=request.GET.get("token"), refreshes=refreshes,
                               refused=stopped, cancel=request.GET.get("cancel") or False)
    return await _html(request, "django_sse_exec/widget.html", context, 200)


def _refreshes(request: HttpRequest) -> int:
    return min(parse_last_event_id(request.GET.get("refreshes")) or 0, MAX_REFRESHES)


async def _unavailable(request: HttpRequest, execution_id: str, reason: str) -> HttpResponse:
    """The widget's "unavailable, retrying" state (503; 200 to htmx), with the request's token."""
    context = progress_context(Unavailable(execution_id, reason), token=request.GET.get("token"),
                               refreshes=_refreshes(request))
    return await _html(request, "django_sse_exec/widget.html", context, 503)


__all__ = ["MAX_CONCURRENT_REFRESHES", "progress_view"]
