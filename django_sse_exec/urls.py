"""URLs of the app: include them under any prefix, e.g. ``path("sse/", include(...))``."""

from django.urls import path

from .refresh import progress_view
from .views import stream_view

app_name = "django_sse_exec"

urlpatterns = [
    path("executions/<str:execution_id>/events", stream_view, name="stream"),
    path("executions/<str:execution_id>/progress", progress_view, name="progress"),
]
