"""App config: registers the system checks, and the hub's checks for lost and stalled executions."""

from django.apps import AppConfig


class SSEExecConfig(AppConfig):
    name = "django_sse_exec"
    verbose_name = "SSE execution streams"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, as Django asks: the app registry must be ready first.
        from . import checks  # noqa: F401  (registers the checks)
        from .execution import leases, stalls
        from .hub.maintenance import add_job

        add_job(leases.maintain)
        add_job(stalls.maintain)
