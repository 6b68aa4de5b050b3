"""The progress widget as a view: what a widget shows after its stream was refused.

A browser's ``EventSource`` cannot tell why a stream failed, and htmx's SSE
extension retries a refused one forever. The widget therefore asks this view,
once its stream fails for good (a 403, 404 or 204 closes an ``EventSource``):
the view applies the same policy as the stream to the same token and cookies,
and answers with the widget to put in place of the old one — the current state
with a fresh connection (the refusal was passing), the state with the reason
live updates stopped, or, when refused, only the reason (no state is shown to
whom the stream is refused).

htmx swaps only successful responses, so requests made by htmx (``HX-Request``)
get 200 whatever the outcome; others get the status (403, 404).
A widget that is refreshed :data:`~django_sse_exec.render.widget.MAX_REFRESHES` times
without the execution moving on stops trying (a policy that lets this view in
but not the stream would otherwise make a loop).
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string

from ..auth.policies import authorize
from ..execution.snapshot import aget_execution_state
from ..render.widget import MAX_REFRESHES, progress_context
from ..wire import is_valid_execution_id, parse_last_event_id


def _html(request: HttpRequest, template: str, context: dict, status: int) -> HttpResponse:
    if request.headers.get("HX-Request") == "true":
        status = 200
    return HttpResponse(render_to_string(template, context), status=status,
                        content_type="text/html; charset=utf-8")


async def progress_view(request: HttpRequest, execution_id: str) -> HttpResponse:
    """``GET .../executions/<execution_id>/progress``: the widget, as the stream's policy allows."""
    if request.method != "GET":
        return HttpResponse("method not allowed", status=405, headers={"Allow": "GET"},
                            content_type="text/plain; charset=utf-8")
    if not is_valid_execution_id(execution_id):
        return _html(request, "django_sse_exec/refused.html",
                     {"execution_id": "", "reason": "unknown execution"}, 404)
    reason = await authorize(request, execution_id)
    if reason is not None:
        return _html(request, "django_sse_exec/refused.html",
                     {"execution_id": execution_id, "reason": reason}, 403)
    state = await aget_execution_state(execution_id)
    seen = parse_last_event_id(request.GET.get("seen")) or 0
    refreshes = min(parse_last_event_id(request.GET.get("refreshes")) or 0, MAX_REFRESHES)
    if state.last_event_id > seen:
        refreshes = 0  # it moved on since the widget last saw it: the stream works
    stopped = "the stream keeps failing" if refreshes >= MAX_REFRESHES else None
    context = progress_context(state, token=request.GET.get("token"), refreshes=refreshes,
                               refused=stopped, cancel=request.GET.get("cancel") or False)
    return _html(request, "django_sse_exec/widget.html", context, 200)


__all__ = ["progress_view"]
