"""App config: registers the system checks, the hub's checks for lost and stalled
executions, and the followers of Django's tasks when ``SSE_EXEC["FOLLOW_TASKS"]`` asks
for them."""

from django.apps import AppConfig
from django.core.exceptions import ImproperlyConfigured

from .conf import given_settings, problem


def follows_tasks() -> bool:
    """True if ``SSE_EXEC["FOLLOW_TASKS"]`` is set to a valid value other than ``False``.

    Read as given: an invalid value (reported by check ``E016``) connects nothing,
    and must not stop the app from loading before the checks can say so.
    """
    try:
        value = given_settings.FOLLOW_TASKS
    except ImproperlyConfigured:  # SSE_EXEC is not a dict (E016)
        return False
    return bool(value) and problem("FOLLOW_TASKS", value) is None


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
        if follows_tasks():
            # Only when asked: it reaches for the tasks framework, an optional dependency.
            from .integrations.tasks_follow import connect

            connect()
