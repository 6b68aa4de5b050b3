"""``tests.settings`` plus Django's tasks framework on django-tasks-db: for ``db_worker``
processes and the processes that enqueue to them (database: ``TEST_DB_PATH`` or
``TEST_DATABASE_JSON``, as in ``tests.settings``). Every queue name is valid, so each
test enqueues to a queue of its own and its worker takes no other test's tasks."""

from tests.settings import *  # noqa: F401,F403
from tests.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "django_tasks_db"]
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": []}}
