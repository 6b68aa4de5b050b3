"""Streams need an ASGI server: say so loudly instead of failing silently under WSGI.

Under WSGI (``gunicorn project.wsgi``, mod_wsgi, uWSGI) a stream cannot work:
the async generator is buffered to its end (the browser sees nothing until the
execution is over), each open stream blocks a worker, and the worker is killed
at its timeout. So the project gets a system check error when it has no
``ASGI_APPLICATION``, and a stream request that arrives through WSGI is answered
at once with a plain-text error naming the fix (and logged), instead of being
buffered.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.checks import CheckMessage, Error
from django.core.handlers.wsgi import WSGIRequest
from django.http import HttpRequest, HttpResponse

logger = logging.getLogger("django_sse_exec")

#: What to do about it, in the system check and in the error response.
FIX = ('set ASGI_APPLICATION = "<project>.asgi.application" and serve the project with an '
       'ASGI server (daphne or uvicorn: "daphne <project>.asgi:application"); '
       '"daphne" first in INSTALLED_APPS makes runserver serve ASGI')


def check_asgi() -> list[CheckMessage]:
    """Error ``django_sse_exec.E010`` when the project has no ``ASGI_APPLICATION``."""
    if getattr(settings, "ASGI_APPLICATION", None):
        return []
    return [Error(
        "ASGI_APPLICATION is not set: event streams need an ASGI server (under WSGI "
        "every stream is buffered until the execution ends and blocks a worker)",
        hint=FIX[0].upper() + FIX[1:] + ".",
        id="django_sse_exec.E010",
    )]


def refuse_wsgi(request: HttpRequest) -> HttpResponse | None:
    """The error response for a stream request served through WSGI, else None."""
    if not isinstance(request, WSGIRequest):
        return None
    logger.error("stream request %s served through WSGI: streams need an ASGI server; %s",
                 request.path, FIX)
    return HttpResponse(
        "Event streams need an ASGI server, and this request was served through WSGI.\n"
        f"Fix: {FIX}.\n",
        status=500, content_type="text/plain; charset=utf-8")


__all__ = ["FIX", "check_asgi", "refuse_wsgi"]
