"""The example project's Celery app (Redis as broker when ``REDIS_URL`` is set).

Run a worker next to the web process with::

    REDIS_URL=redis://127.0.0.1:6379/0 celery -A example_project worker -l info

Tasks report progress with the app's sync helpers; the events reach every web
process's streams through the Redis channel layer and event store.
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")

app = Celery("example_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
