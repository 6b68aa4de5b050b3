"""The stream endpoint as a Django async view.

All stream logic lives in :mod:`django_sse_exec.streams.single`; this view only turns its
outcome into a response: a ``StreamingHttpResponse`` over an async generator for
a 200, a short plain-text body for 403/404, an empty 204 — and refuses at once,
with an error naming the fix, a request that reached it through WSGI.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from ..streams.connect import Outcome, last_event_id_of, position_of
from ..streams.headers import response_headers
from ..streams.many.feeds import open_feed_stream
from ..streams.many.sets import open_multi_stream
from ..streams.single import open_stream
from ..telemetry import metrics
from .require_asgi import refuse_wsgi


def _refusal(request: HttpRequest) -> HttpResponse | None:
    """The answer to a request no stream can serve: through WSGI, or not a GET."""
    refusal = refuse_wsgi(request)
    if refusal is not None:
        return refusal
    if request.method != "GET":
        return HttpResponse("method not allowed", status=405,
                            headers={**response_headers(405), "Allow": "GET"})
    return None


def _response(request: HttpRequest, outcome: Outcome) -> HttpResponse | StreamingHttpResponse:
    """The response for a connect's outcome (the same statuses and headers as the fast path)."""
    metrics.connected("view", outcome.status)
    if outcome.status == 204:
        response = HttpResponse(status=204, headers=outcome.headers)
        del response["Content-Type"]  # no body, so no (text/html) type either
        return response
    if outcome.status != 200 or outcome.body is None:
        return HttpResponse(outcome.reason, status=outcome.status, headers=outcome.headers)
    # GZipMiddleware would buffer and compress every chunk; it only compresses
    # when the request accepts gzip, so make this request not say so.
    request.META.pop("HTTP_ACCEPT_ENCODING", None)
    return StreamingHttpResponse(outcome.body, headers=outcome.headers)


@csrf_exempt  # GET only; exempt so other methods get a clean 405 instead of a CSRF 403
async def stream_view(request: HttpRequest, execution_id: str) -> HttpResponse | StreamingHttpResponse:
    """``GET .../executions/<execution_id>/events``: the execution's event stream."""
    refusal = _refusal(request)
    if refusal is not None:
        return refusal
    last_event_id = last_event_id_of(
        request.headers.get("Last-Event-ID"), request.GET.get("last_event_id")
    )
    return _response(request, await open_stream(request, execution_id, last_event_id))


@csrf_exempt
async def multi_view(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    """``GET .../executions/events?ids=a,b,c``: one stream of a fixed set of executions."""
    refusal = _refusal(request)
    if refusal is not None:
        return refusal
    return _response(request, await open_multi_stream(request, request.GET.get("ids"),
                                                      position_of(request)))


@csrf_exempt
async def feed_view(request: HttpRequest, feed: str) -> HttpResponse | StreamingHttpResponse:
    """``GET .../feeds/<feed>/events``: one stream of every execution of a feed."""
    refusal = _refusal(request)
    if refusal is not None:
        return refusal
    return _response(request, await open_feed_stream(request, feed, position_of(request)))
