"""Which representation a stream request asks for: one ``?format=`` rule for every kind of stream.

A missing ``format`` is JSON; ``json`` or ``html``, given once, is that format;
anything else — an unknown value, the parameter twice — is refused (the stream
answers 400) rather than guessed. Each kind of stream says which of the formats
it serves: one execution's stream and a set's serve both, a feed's JSON only.
"""

from __future__ import annotations

from typing import Any

from ..wire import FORMATS
from .formats import JSON, Render
from .html import HtmlRender


def requested_format(query: Any, served: tuple[str, ...] = FORMATS) -> str | None:
    """The format ``query`` (a request's ``GET``) asks for among ``served``; None if invalid."""
    values = query.getlist("format") if hasattr(query, "getlist") else []
    if not values:
        return "json"
    if len(values) > 1 or values[0] not in served:
        return None
    return values[0]


def render_for(query: Any, execution_id: str) -> Render | None:
    """The render of one execution's stream for ``query``; None if the format is invalid."""
    requested = requested_format(query)
    if requested is None:
        return None
    return JSON if requested == "json" else HtmlRender(execution_id)


__all__ = ["render_for", "requested_format"]
