"""URLs of the benchmark's Django systems: the app (via the tests' URLconf), django-eventstream, the naive view."""

import django_eventstream
from django.urls import include, path

from bench import naive, trace  # noqa: F401  (trace: only with BENCH_TRACE set)

urlpatterns = [
    path("es/", include(django_eventstream.urls)),
    path("naive/<str:execution_id>", naive.stream),
    path("", include("tests.urls")),
]
