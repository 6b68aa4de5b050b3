"""``{% sse_stream_url execution_id %}``: templates never build stream URLs by hand."""

from typing import Any

from django import template

from ..api import stream_url

register = template.Library()


@register.simple_tag
def sse_stream_url(execution_id: str, user: Any = None, max_age: float | None = None) -> str:
    """The signed stream URL of ``execution_id`` (optionally bound to ``user``)."""
    return stream_url(execution_id, user=user, max_age=max_age)
