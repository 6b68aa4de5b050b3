"""``{% sse_stream_url execution_id %}``: templates never build stream URLs by hand.

Load it with ``{% load sse_exec %}``::

    new EventSource("{% sse_stream_url execution_id %}")
    {% sse_stream_url execution_id user=request.user max_age=600 as url %}

The URL's characters (path of a validated id, ``?token=`` and URL-safe base64)
need no escaping in HTML attributes or JavaScript string literals.
"""

from typing import Any

from django import template

from ..api import stream_url

register = template.Library()


@register.simple_tag
def sse_stream_url(execution_id: str, user: Any = None, max_age: float | None = None) -> str:
    """The signed stream URL of ``execution_id``, optionally bound to ``user``.

    Raises ``ValueError`` (so the page fails loudly) for an invalid id, a bad
    ``max_age``, or ``user`` being anonymous.
    """
    return stream_url(execution_id, user=user, max_age=max_age)
