"""URLs of the benchmark's Django systems: the app (via the tests' URLconf), django-eventstream,
the naive view, and what the server process runs (``bench/runtime``: event loop, Redis parser)."""

import django_eventstream
from django.http import HttpRequest, JsonResponse
from django.urls import include, path

from bench import deps, naive, trace  # noqa: F401  (trace: only with BENCH_TRACE set)


async def runtime(request: HttpRequest) -> JsonResponse:
    """What this server process runs (:func:`bench.deps.describe`), from inside its event loop."""
    return JsonResponse(deps.describe())


urlpatterns = [
    path("es/", include(django_eventstream.urls)),
    path("naive/<str:execution_id>", naive.stream),
    path("bench/runtime", runtime),
    path("", include("tests.urls")),
]
