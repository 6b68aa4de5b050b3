"""``POST .../executions/<id>/cancel``: ask an execution to stop, from a page.

The cancel control of the widget and of the JavaScript client posts here (to
:func:`~django_sse_exec.cancel_url`'s URL). The view checks
``AUTHORIZE_CANCEL`` (by default the signed token of the URL; CSRF is checked
for every other policy, see :mod:`django_sse_exec.auth.cancel`), then logs the
request (:func:`~django_sse_exec.execution.cancel.arequest_cancel`: who as a
role and an opaque id, never a name) and answers at once: stopping is the
producer's, at its next report.

Answers: 202 ``{"executionId", "eventId"}`` (again 202 with the same id for a
repeated request); htmx requests (``HX-Request``) get 204, so nothing is
swapped (the stream shows what happens); a plain HTML form gets a 303 back to
``?next=`` or the page it came from (same host only). 403 refused (CSRF
included), 404 a malformed id, 405 anything but POST, 409 the execution has
already ended, 503 the store or what the policy needs is down.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.utils.cache import add_never_cache_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.csrf import csrf_exempt

from ..auth.cancel import get_cancel_policy, needs_csrf
from ..auth.policies import authorize, load_user
from ..exceptions import ExecutionClosed, StoreUnavailable
from ..execution.cancel import arequest_cancel, requester_id, role_of
from ..outages import ServiceUnavailable
from ..wire import is_valid_execution_id


def _json(data: dict, status: int) -> JsonResponse:
    response = JsonResponse(data, status=status)
    add_never_cache_headers(response)
    return response


def _csrf_refusal(request: HttpRequest) -> HttpResponse | None:
    """Django's own CSRF check (the view is exempt from the middleware so that signed URLs
    need none): its 403 response, or None when the request passes."""
    check = CsrfViewMiddleware(lambda r: HttpResponse())
    return check.process_view(request, lambda r: HttpResponse(), (), {})


def _back(request: HttpRequest) -> str | None:
    """Where a plain form's POST returns to: ``?next=`` or the referring page, same host only."""
    for target in (request.GET.get("next"), request.headers.get("Referer")):
        if target and url_has_allowed_host_and_scheme(target, {request.get_host()},
                                                      require_https=request.is_secure()):
            return target
    return None


def _answer(request: HttpRequest, data: dict) -> HttpResponse:
    if request.headers.get("HX-Request") == "true":
        return HttpResponse(status=204)
    back = _back(request) if "text/html" in request.headers.get("Accept", "") else None
    if back is not None:
        return HttpResponseRedirect(back, status=303)
    return _json(data, 202)


@csrf_exempt  # signed URLs need no CSRF token; other policies are checked by _csrf_refusal
async def cancel_view(request: HttpRequest, execution_id: str) -> HttpResponse:
    """Ask the execution to cancel, as ``AUTHORIZE_CANCEL`` allows."""
    if request.method != "POST":
        response = _json({"error": "POST only"}, 405)
        response["Allow"] = "POST"
        return response
    if not is_valid_execution_id(execution_id):
        return _json({"error": "unknown execution"}, 404)
    policy = get_cancel_policy()
    if needs_csrf(policy):
        refusal = _csrf_refusal(request)
        if refusal is not None:
            return refusal
    try:
        reason = await authorize(request, execution_id, policy)
        if reason is not None:
            return _json({"error": reason}, 403)
        user = await load_user(request)
        event_id = await arequest_cancel(execution_id, by=role_of(user),
                                         requester=requester_id(user))
    except ExecutionClosed:
        return _json({"error": "the execution has already ended"}, 409)
    except (ServiceUnavailable, StoreUnavailable):
        return _json({"error": "the service is unavailable; try again"}, 503)
    return _answer(request, {"executionId": execution_id, "eventId": event_id})


__all__ = ["cancel_view"]
