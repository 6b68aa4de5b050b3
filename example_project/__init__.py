"""The example project. Its Celery app is loaded only when Celery is installed."""

import importlib.util

if importlib.util.find_spec("celery") is not None:
    from .celery import app as celery_app

    __all__ = ["celery_app"]
