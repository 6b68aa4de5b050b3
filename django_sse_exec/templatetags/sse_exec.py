"""Template tags: stream URLs, and a live progress widget with no JavaScript of the page's own.

Load them with ``{% load sse_exec %}``::

    new EventSource("{% sse_stream_url execution_id %}")
    {% sse_stream_url execution_id user=request.user max_age=600 as url %}
    {% sse_stream_url execution_id format="html" %}      {# HTML fragments for htmx #}
    {% sse_multi_stream_url ids user=request.user %}     {# many executions, one stream #}
    {% sse_feed_url "user:42" user=request.user %}       {# every execution of a feed #}

    {% sse_exec_scripts %}                  {# htmx and its SSE extension, served by the app #}
    {% sse_exec_progress execution_id %}    {# bar, task list, summary; live over SSE #}
    {% sse_exec_progress execution_id cancel=True %}   {# with a Cancel button #}
    {% sse_exec_progress_many ids %}        {# a widget each, all live over ONE stream #}

The URL's characters (path of a validated id, ``?token=`` and URL-safe base64)
need no escaping in HTML attributes or JavaScript string literals.
"""

from typing import Any

from django import template
from django.template.loader import render_to_string
from django.templatetags.static import static
from django.utils.html import format_html
from django.utils.safestring import SafeString

from ..auth.stream_urls import feed_stream_url, multi_stream_url, stream_url
from ..execution.snapshot import get_execution_state
from ..execution.state import ExecutionState
from ..render.widget import many_context, progress_context
from ..wire import DEFAULT_FORMAT

register = template.Library()

#: The vendored scripts (see ``static/django_sse_exec/vendor/README.md``).
HTMX_SCRIPT = "django_sse_exec/vendor/htmx-2.0.11.min.js"
SSE_EXTENSION_SCRIPT = "django_sse_exec/vendor/htmx-ext-sse-2.2.4.min.js"


@register.simple_tag
def sse_stream_url(execution_id: str, user: Any = None, max_age: float | None = None,
                   format: str = DEFAULT_FORMAT) -> str:
    """The signed stream URL of ``execution_id``, optionally bound to ``user``.

    Raises ``ValueError`` (so the page fails loudly) for an invalid id, a bad
    ``max_age`` or ``format``, or ``user`` being anonymous.
    """
    return stream_url(execution_id, user=user, max_age=max_age, format=format)


@register.simple_tag
def sse_multi_stream_url(execution_ids: Any, user: Any = None, max_age: float | None = None) -> str:
    """The signed URL of one stream of ``execution_ids`` (a list, or a comma-separated str)."""
    ids = execution_ids.split(",") if isinstance(execution_ids, str) else list(execution_ids)
    return multi_stream_url(ids, user=user, max_age=max_age)


@register.simple_tag
def sse_feed_url(feed: str, user: Any = None, max_age: float | None = None) -> str:
    """The signed URL of the stream of ``feed``, optionally bound to ``user``."""
    return feed_stream_url(feed, user=user, max_age=max_age)


@register.simple_tag
def sse_exec_scripts() -> SafeString:
    """``<script>`` tags of htmx 2 and its SSE extension, as shipped with the app (deferred)."""
    return format_html('<script src="{}" defer></script>\n<script src="{}" defer></script>',
                       static(HTMX_SCRIPT), static(SSE_EXTENSION_SCRIPT))


@register.simple_tag
def sse_exec_progress(execution: "str | ExecutionState", user: Any = None,
                      max_age: float | None = None, cancel: bool = False) -> SafeString:
    """The progress widget of an execution: right on first paint, then live.

    ``execution`` is an execution id (the state is read from the log, so call
    it from sync views) or an :class:`~django_sse_exec.ExecutionState` from
    ``await aget_execution_state(id)`` (async views). ``user`` and ``max_age``
    bind the stream's token as for :func:`~django_sse_exec.stream_url`. An
    execution that has ended renders without a stream. ``cancel=True`` adds a
    Cancel button (a signed :func:`~django_sse_exec.cancel_url`, bound like the
    stream's token: render it only for those who may cancel). Restyle it by
    overriding the ``django_sse_exec/*.html`` templates (see :doc:`/howto/htmx`,
    "Restyling").
    """
    state = execution if isinstance(execution, ExecutionState) else get_execution_state(execution)
    return render_to_string("django_sse_exec/progress.html",
                            progress_context(state, user=user, max_age=max_age, cancel=cancel))


@register.simple_tag
def sse_exec_progress_many(executions: Any, user: Any = None,
                           max_age: float | None = None) -> SafeString:
    """Progress widgets of several executions, all live over one connection.

    ``executions`` is a list of execution ids (or a comma-separated str; states
    are read from the log, so call it from sync views) or of
    :class:`~django_sse_exec.ExecutionState` (async views). At most
    ``MULTI_STREAM_MAX`` of them; ``user`` and ``max_age`` bind the token.
    """
    items = executions.split(",") if isinstance(executions, str) else list(executions)
    states = [e if isinstance(e, ExecutionState) else get_execution_state(e) for e in items]
    return render_to_string("django_sse_exec/progress_many.html",
                            many_context(states, user=user, max_age=max_age))


@register.filter
def sse_exec_eta(seconds: Any) -> str:
    """Time left: ``42`` -> ``"42 s left"``; ``150`` -> ``"about 3 min left"``;
    ``7300`` -> ``"about 2 h 2 min left"``; anything else -> ``""``."""
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
        return ""
    if seconds < 60:
        return f"{round(seconds)} s left"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"about {minutes} min left"
    return f"about {minutes // 60} h {minutes % 60} min left"


@register.filter
def sse_exec_rate(per_second: Any) -> str:
    """A rate: ``1230.0`` -> ``"1230/s"``; ``0.05`` -> ``"3/min"``; anything else -> ``""``."""
    if not isinstance(per_second, (int, float)) or isinstance(per_second, bool) or per_second < 0:
        return ""
    if 0 < per_second < 1:
        return f"{per_second * 60:.3g}/min"
    return f"{per_second:.4g}/s"


@register.filter
def sse_exec_seconds(milliseconds: Any) -> str:
    """``1234`` -> ``"1.2 s"``; ``12345`` -> ``"12 s"``; anything else -> ``""``."""
    if not isinstance(milliseconds, (int, float)) or isinstance(milliseconds, bool):
        return ""
    seconds = max(0.0, milliseconds / 1000)
    return f"{seconds:.1f} s" if seconds < 10 else f"{round(seconds)} s"
