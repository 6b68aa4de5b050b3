"""What the app itself publishes about an exception it caught.

``ExecutionReporter`` and the Celery integration catch exceptions on the
user's behalf and report them in ``task-fail``, ``task-retry`` and the summary.
An exception's message is written for logs, not for every viewer of a stream:
a ``ConnectionError`` may carry a database URL with its password, a
``KeyError`` a customer's e-mail. So, unless told otherwise, only the
exception's *type* and a generic message are published when ``DEBUG`` is off:

``SSE_EXEC["ERROR_DETAIL"]``

* ``"auto"`` (default): ``"Type: message"`` with ``DEBUG`` on, ``"Type: <generic>"`` off;
* ``"type"``: always the type and the generic message;
* ``"message"``: always ``"Type: message"`` (opt in: you vouch for your messages);
* a dotted path to (or a) callable ``(exception) -> str``: your own description.

Text passed explicitly (``task_fail(id, "…")``, ``cancel("…")``, ``progress(…, message)``)
is the user's choice and is sent as given. The full exception still reaches
the logs (and propagates to the caller) unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.utils.module_loading import import_string

from ..conf import sse_settings

logger = logging.getLogger("django_sse_exec")

#: What replaces an exception's message when it is not published.
GENERIC_MESSAGE = "an error occurred (details are in the server log)"

_MODES = ("auto", "type", "message")


def formatter() -> Callable[[BaseException], str] | None:
    """The custom formatter named by ``ERROR_DETAIL``, or None for a built-in mode."""
    detail = sse_settings.ERROR_DETAIL
    if callable(detail):
        return detail
    if isinstance(detail, str) and detail not in _MODES:
        return import_string(detail)
    return None


def describe_exception(error: BaseException) -> str:
    """The text published for ``error``, per ``SSE_EXEC["ERROR_DETAIL"]``.

    A formatter that fails (or cannot be imported) is logged and the type-only
    description is used: failing closed, as everywhere else.
    """
    name = type(error).__name__
    try:
        custom = formatter()
        if custom is not None:
            return str(custom(error))
    except Exception:
        logger.exception("SSE_EXEC['ERROR_DETAIL'] formatter failed; publishing the type only")
        return f"{name}: {GENERIC_MESSAGE}"
    detail = sse_settings.ERROR_DETAIL
    if detail == "message" or (detail == "auto" and settings.DEBUG):
        return f"{name}: {error}"
    return f"{name}: {GENERIC_MESSAGE}"


__all__ = ["GENERIC_MESSAGE", "describe_exception", "formatter"]
