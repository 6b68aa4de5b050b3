"""Stream the runs of Django's tasks framework: ``from django_sse_exec.tasks import progress_task``.

Works with ``django.tasks`` (Django 6.0+) and, on Django 5.2, with the
``django-tasks`` backport (the ``[tasks]`` extra)::

    @progress_task()
    def import_rows(reporter, path):
        ...
        reporter.progress(n, total)

    result = import_rows.enqueue("data.csv")
    url = stream_url(result.id)          # the execution id is the task result's id

``progress_task`` takes ``@task``'s arguments; async task functions use the
reporter's async methods. Tasks that are not decorated are followed through the
framework's signals when ``SSE_EXEC["FOLLOW_TASKS"]`` asks for it. Importing this
module connects those receivers. The implementation is in
:mod:`django_sse_exec.integrations.tasks` (and :mod:`~.integrations.tasks_follow`).
"""

from .integrations.tasks import PROGRESS_INTERVAL, TaskReporter, progress_task
from .integrations.tasks_follow import connect as connect_signals
from .integrations.tasks_follow import follow_setting, followed

__all__ = ["PROGRESS_INTERVAL", "TaskReporter", "connect_signals", "follow_setting", "followed",
           "progress_task"]
