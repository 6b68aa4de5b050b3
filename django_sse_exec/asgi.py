"""The ASGI fast path for stream endpoints, at its documented import path.

Wrap the project's ASGI application so stream requests are served with bare
ASGI messages (about a third of the memory and time of Django's request path)
and every other request goes to Django::

    # mysite/asgi.py
    from django.core.asgi import get_asgi_application
    from django_sse_exec.asgi import wrap

    application = wrap(get_asgi_application())

The implementation is :mod:`django_sse_exec.http.fastpath`.
"""

from .http.fastpath import StreamFastPath, wrap

__all__ = ["StreamFastPath", "wrap"]
