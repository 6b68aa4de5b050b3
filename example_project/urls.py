"""URLs of the example project: the app's stream endpoint, the demo, the admin
(with the live executions page) and Prometheus metrics."""

from django.contrib import admin
from django.urls import include, path

from django_sse_exec.telemetry.metrics import metrics_view

urlpatterns = [
    path("admin/", admin.site.urls),
    # Operational data: expose it to your scraper only (network policy or proxy rule).
    path("metrics", metrics_view),
    path("sse/", include("django_sse_exec.urls")),
    path("", include("example_project.demo.urls")),
]
