"""A WSGI entry point, as a project served by gunicorn has one: the streams must refuse it."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

application = get_wsgi_application()
