"""Where Django's tasks framework lives: ``django.tasks`` (Django 6.0+) or the backport.

Django 6.0 ships ``django.tasks``; on Django 5.2 the same API comes from the
``django-tasks`` package (module ``django_tasks``), whose signals are other
objects. This module is the one place that knows which is which (the rule the
version gate follows, and the only imports of either):

* progress tasks are made with the ``task`` decorator of Django's own framework
  on Django 6.0 and later, else of the backport (:func:`framework`). Either
  decorator builds the task with the *backend's* ``task_class``, so a task is
  right for whichever backend ``TASKS`` names;
* signal receivers connect to every signal set that imports
  (:func:`signal_sets`): a backport backend on Django 6 sends the backport's
  signals, Django's own backends send Django's, and a task is only ever run by
  one backend, so it is never reported twice.

Only the frameworks' public names are used (``task``, the three signals, and the
``TaskResult`` fields ``id``, ``status``, ``attempts``, ``task``, ``errors``,
``started_at`` and ``finished_at``), which both provide alike.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, NamedTuple

import django
from django.core.exceptions import ImproperlyConfigured

#: The first Django version with ``django.tasks``.
DJANGO_WITH_TASKS = (6, 0)
#: The backport's module (the ``django-tasks`` package on PyPI).
BACKPORT = "django_tasks"


class SignalSet(NamedTuple):
    """The three lifecycle signals of one framework."""

    task_enqueued: Any
    task_started: Any
    task_finished: Any


def _optional(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def framework() -> ModuleType:
    """The tasks framework progress tasks are made with (its module: ``task``, ...).

    ``django.tasks`` on Django 6.0 and later, else the ``django_tasks`` backport;
    ``ImproperlyConfigured`` when neither is there.
    """
    if django.VERSION >= DJANGO_WITH_TASKS:
        return importlib.import_module("django.tasks")
    backport = _optional(BACKPORT)
    if backport is None:
        raise ImproperlyConfigured(
            f"Django {django.get_version()} has no django.tasks: install the backport "
            "(the [tasks] extra, which brings django-tasks) or use Django 6.0+")
    return backport


def signal_sets() -> list[SignalSet]:
    """Every importable set of task signals: Django's own (6.0+), then the backport's."""
    modules = []
    if django.VERSION >= DJANGO_WITH_TASKS:
        modules.append(importlib.import_module("django.tasks.signals"))
    backport = _optional(f"{BACKPORT}.signals")
    if backport is not None:
        modules.append(backport)
    return [SignalSet(m.task_enqueued, m.task_started, m.task_finished) for m in modules]


def task_decorator() -> Any:
    """The framework's ``task`` decorator (see :func:`framework`)."""
    return framework().task


__all__ = ["BACKPORT", "DJANGO_WITH_TASKS", "SignalSet", "framework", "signal_sets",
           "task_decorator"]
