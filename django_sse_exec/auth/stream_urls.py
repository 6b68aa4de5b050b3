"""The signed URLs of every kind of stream: one execution's, a fixed set's, a feed's.

``EventSource`` cannot send headers, so a stream's URL carries its grant: a
token bound to what it may read (an execution, a set of them, a feed), to a
user if given, and to an expiry. These are the URLs pages hand to
``new EventSource(url)``, and the template tags and widgets use them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from django.urls import reverse

from ..conf import sse_settings
from ..wire import DEFAULT_FORMAT, validate_execution_id, validate_format
from .many import make_feed_token, make_set_token
from .policies import make_token

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser
    from django.contrib.auth.models import AnonymousUser


def stream_url(execution_id: str, *, user: AbstractBaseUser | AnonymousUser | int | str | None = None,
               max_age: float | None = None, format: str = DEFAULT_FORMAT,
               after: Any = None) -> str:
    """The relative URL of the execution's stream, with a signed token.

    The token is bound to ``execution_id``, to ``user`` if given (a user or its
    primary key: then only that logged-in user may use it), and expires after
    ``max_age`` seconds (default ``SSE_EXEC["TOKEN_MAX_AGE"]``). Give the URL to
    ``new EventSource(url)``; reconnects reuse it until it expires.
    ``format="html"`` asks for HTML fragments instead of JSON (see
    :mod:`django_sse_exec.render.html`).

    ``after`` is where the page already is: the ``ExecutionState`` it was
    rendered from (``get_execution_state``) or its ``last_event_id``. The stream
    then starts after that id (``?last_event_id=``), so nothing painted is sent
    again and an event sent between the render and the connect still arrives.
    Raises ``ValueError`` if it is not a whole number of at least 0.
    """
    validate_execution_id(execution_id)
    query = {"token": make_token(execution_id, user, max_age)}
    if validate_format(format) != DEFAULT_FORMAT:
        query["format"] = format
    position = position_of(after)
    if position:
        query["last_event_id"] = str(position)
    path = reverse("django_sse_exec:stream", args=[execution_id])
    return f"{path}?{urlencode(query)}"


def position_of(after: Any) -> int:
    """The id a page was rendered at: ``after.last_event_id`` (a state) or ``after`` (an id)."""
    value = getattr(after, "last_event_id", after)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"after must be an execution state or an event id (an int >= 0), "
                         f"not {after!r}")
    return value


def multi_stream_url(execution_ids: list[str] | tuple[str, ...], *, user: Any = None,
                     max_age: float | None = None) -> str:
    """The relative URL of one stream of every execution in ``execution_ids``, signed.

    Up to ``SSE_EXEC["MULTI_STREAM_MAX"]`` distinct ids; ``user`` and
    ``max_age`` bind the token as for :func:`~django_sse_exec.stream_url`. The
    token is for exactly this set: a URL with one id more is refused.
    """
    ids = list(execution_ids)
    limit = int(sse_settings.MULTI_STREAM_MAX)
    if not ids or len(ids) > limit:
        raise ValueError(f"a multi stream carries 1 to {limit} executions "
                         f"(SSE_EXEC['MULTI_STREAM_MAX']), not {len(ids)}")
    if len(set(ids)) != len(ids):
        raise ValueError("execution_ids has an id more than once")
    query = {"ids": ",".join(ids), "token": make_set_token(ids, user, max_age)}
    return f"{reverse('django_sse_exec:multi')}?{urlencode(query, safe=',')}"


def feed_stream_url(feed: str, *, user: Any = None, max_age: float | None = None) -> str:
    """The relative URL of the stream of ``feed``, signed (``user``, ``max_age`` as for stream_url)."""
    token = make_feed_token(feed, user, max_age)
    return f"{reverse('django_sse_exec:feed', args=[feed])}?{urlencode({'token': token})}"


__all__ = ["feed_stream_url", "multi_stream_url", "position_of", "stream_url"]
