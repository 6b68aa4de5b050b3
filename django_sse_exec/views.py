"""The stream endpoint as a Django async view.

All stream logic lives in :mod:`django_sse_exec.stream`; this view only turns its
outcome into a response: a ``StreamingHttpResponse`` over an async generator for
a 200, a short plain-text body for 403/404, an empty 204.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from . import metrics
from .headers import response_headers
from .stream import last_event_id_of, open_stream


@csrf_exempt  # GET only; exempt so other methods get a clean 405 instead of a CSRF 403
async def stream_view(request: HttpRequest, execution_id: str) -> HttpResponse | StreamingHttpResponse:
    """``GET .../executions/<execution_id>/events``: the execution's event stream."""
    if request.method != "GET":
        return HttpResponse("method not allowed", status=405,
                            headers={**response_headers(405), "Allow": "GET"})
    last_event_id = last_event_id_of(
        request.headers.get("Last-Event-ID"), request.GET.get("last_event_id")
    )
    outcome = await open_stream(request, execution_id, last_event_id)
    metrics.connected("view", outcome.status)
    if outcome.status != 200 or outcome.body is None:
        return HttpResponse(outcome.reason, status=outcome.status, headers=outcome.headers)
    # GZipMiddleware would buffer and compress every chunk; it only compresses
    # when the request accepts gzip, so make this request not say so.
    request.META.pop("HTTP_ACCEPT_ENCODING", None)
    return StreamingHttpResponse(outcome.body, headers=outcome.headers)
