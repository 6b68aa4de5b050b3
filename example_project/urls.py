"""URLs of the example project: the app's stream endpoint and the demo."""

from django.urls import include, path

urlpatterns = [
    path("sse/", include("django_sse_exec.urls")),
    path("", include("example_project.demo.urls")),
]
