"""URLs of the app: include them under any prefix, e.g. ``path("sse/", include(...))``."""

from django.urls import path

from .http.cancel import cancel_view
from .http.progress import progress_view
from .http.views import feed_view, multi_view, stream_view

app_name = "django_sse_exec"

urlpatterns = [
    path("executions/<str:execution_id>/events", stream_view, name="stream"),
    path("executions/events", multi_view, name="multi"),
    path("feeds/<str:feed>/events", feed_view, name="feed"),
    path("executions/<str:execution_id>/progress", progress_view, name="progress"),
    path("executions/<str:execution_id>/cancel", cancel_view, name="cancel"),
]
