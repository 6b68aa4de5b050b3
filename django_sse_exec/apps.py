"""App config: registers the system checks."""

from django.apps import AppConfig


class SSEExecConfig(AppConfig):
    name = "django_sse_exec"
    verbose_name = "SSE execution streams"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the checks)
