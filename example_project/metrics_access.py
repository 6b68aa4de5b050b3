"""Who may read ``/metrics`` in the example project: staff, or a configured scraper.

The metrics are operational data (how many streams, from which entry point, how
they end): nobody else's business. :func:`metrics` serves the app's
:func:`~django_sse_exec.telemetry.metrics.metrics_view` to

* a logged-in, active staff user (the admin's session), or
* a request with ``Authorization: Bearer <DEMO_METRICS_TOKEN>`` (compared in
  constant time), or
* a client whose address (as the server sees it) is in ``DEMO_METRICS_ADDRESSES``,

and answers 403 to everyone else. Both settings are empty by default (staff
only); see ``example_project/settings.py``.
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers

from django_sse_exec.telemetry.metrics import metrics_view


def may_read_metrics(request: HttpRequest) -> bool:
    """True if ``request`` is staff's, carries the metrics token, or comes from an allowed address."""
    token = str(getattr(settings, "DEMO_METRICS_TOKEN", "") or "")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if token and scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), token.encode()):
        return True
    if request.META.get("REMOTE_ADDR") in set(getattr(settings, "DEMO_METRICS_ADDRESSES", ())):
        return True
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_active and user.is_staff)


def metrics(request: HttpRequest) -> HttpResponse:
    """``GET /metrics``: the Prometheus exposition, for those :func:`may_read_metrics` allows."""
    if not may_read_metrics(request):
        response = HttpResponse("metrics are for staff or the configured scraper\n", status=403,
                                content_type="text/plain; charset=utf-8")
    else:
        response = metrics_view(request)
    add_never_cache_headers(response)
    return response
