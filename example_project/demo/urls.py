"""URLs of the demo: the dashboard, its JSON API, the htmx dashboard, and static files."""

from django.contrib.staticfiles.views import serve
from django.urls import path, re_path

from . import htmx_views, views


def _static(request, path):  # type: ignore[no-untyped-def]
    """Serve app static files even with DEBUG off, so ``daphne`` alone runs the demo.

    A real deployment serves them from ``collectstatic`` output instead.
    """
    return serve(request, path, insecure=True)


urlpatterns = [
    path("", views.index, name="demo-index"),
    path("demo/executions", views.executions, name="demo-executions"),
    path("demo/executions/<str:execution_id>", views.execution_detail, name="demo-execution"),
    path("htmx/", htmx_views.index, name="demo-htmx"),
    path("htmx/start", htmx_views.start, name="demo-htmx-start"),
    re_path(r"^static/(?P<path>.+)$", _static, name="demo-static"),
]
