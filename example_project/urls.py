"""URLs of the example project: the app's stream endpoint, the demo, the admin
(with the live executions page) and Prometheus metrics."""

from django.contrib import admin
from django.urls import include, path

from .metrics_access import metrics

urlpatterns = [
    path("admin/", admin.site.urls),
    # Operational data: staff or the configured scraper only (metrics_access.py, settings).
    path("metrics", metrics),
    path("sse/", include("django_sse_exec.urls")),
    path("", include("example_project.demo.urls")),
]
