"""Template tags: stream URLs, and a live progress widget with no JavaScript of the page's own.

Load them with ``{% load sse_exec %}``::

    new EventSource("{% sse_stream_url execution_id %}")
    new EventSource("{% sse_stream_url execution_id after=state %}")  {# from the painted state #}
    {% sse_stream_url execution_id user=request.user max_age=600 as url %}
    {% sse_stream_url execution_id format="html" %}      {# HTML fragments for htmx #}
    {% sse_multi_stream_url ids user=request.user %}     {# many executions, one stream #}
    {% sse_feed_url "user:42" user=request.user %}       {# every execution of a feed #}

    {% sse_exec_scripts %}                  {# htmx and its SSE extension, served by the app #}
    {% sse_exec_scripts csp=True %}         {# the same, configured for a strict CSP #}
    {% sse_exec_progress execution_id %}    {# bar, task list, summary; live over SSE #}
    {% sse_exec_progress execution_id cancel=True %}   {# with a Cancel button #}
    {% sse_exec_progress_many ids %}        {# a widget each, all live over ONE stream #}

The URL's characters (path of a validated id, ``?token=`` and URL-safe base64)
need no escaping in HTML attributes or JavaScript string literals.

The widgets embed a stream token: serve the pages that show them with
``Cache-Control: no-store, private`` (``@never_cache``), as the app's own
refresh view does. With the event store down they render an "unavailable,
retrying" state (:class:`~django_sse_exec.render.widget.Unavailable`) rather
than fail the page. They need no ``unsafe-eval`` and no inline style: under a
Content-Security-Policy such as ``script-src 'self'; style-src 'self'`` load
the scripts with ``{% sse_exec_scripts csp=True %}``.
"""

import math
from typing import Any

from django import template
from django.template.loader import render_to_string
from django.templatetags.static import static
from django.utils.html import format_html
from django.utils.safestring import SafeString

from ..auth.stream_urls import feed_stream_url, multi_stream_url, stream_url
from ..execution.state import ExecutionState
from ..render.widget import Unavailable, get_widget_state, many_context, progress_context
from ..wire import DEFAULT_FORMAT

register = template.Library()

#: The vendored scripts (see ``static/django_sse_exec/vendor/README.md``).
HTMX_SCRIPT = "django_sse_exec/vendor/htmx-2.0.11.min.js"
SSE_EXTENSION_SCRIPT = "django_sse_exec/vendor/htmx-ext-sse-2.2.4.min.js"
#: The widget's own helper (a refused stream asks the refresh view; no eval needed).
WIDGET_SCRIPT = "django_sse_exec/sse-exec-htmx.js"
#: htmx's configuration under a strict Content-Security-Policy: nothing compiled
#: with ``Function`` (``unsafe-eval``), no ``<style>`` element of htmx's own
#: (``style-src 'unsafe-inline'``), no script run from swapped content.
CSP_HTMX_CONFIG = '{"allowEval":false,"includeIndicatorStyles":false,"allowScriptTags":false}'


@register.simple_tag
def sse_stream_url(execution_id: str, user: Any = None, max_age: float | None = None,
                   format: str = DEFAULT_FORMAT, after: Any = None) -> str:
    """The signed stream URL of ``execution_id``, optionally bound to ``user``.

    ``after``: the state the page was rendered from (``get_execution_state``) or
    its ``last_event_id``; the stream then starts after it.
    Raises ``ValueError`` (so the page fails loudly) for an invalid id, a bad
    ``max_age``, ``format`` or ``after``, or ``user`` being anonymous.
    """
    return stream_url(execution_id, user=user, max_age=max_age, format=format, after=after)


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
def sse_exec_scripts(csp: bool = False) -> SafeString:
    """``<script>`` tags of htmx 2, its SSE extension and the widget's helper, as shipped with the app (deferred).

    ``csp=True`` also configures htmx for a strict Content-Security-Policy
    (a ``<meta name="htmx-config">`` before the scripts: :data:`CSP_HTMX_CONFIG`):
    no ``unsafe-eval`` (``allowEval`` off: no ``hx-on``, no trigger filters, no
    ``js:`` values anywhere on the page) and no inline ``<style>`` of htmx's
    own (``includeIndicatorStyles`` off). A page with a ``htmx-config`` meta
    of its own keeps the first one in the document.
    """
    meta = format_html('<meta name="htmx-config" content="{}">\n', CSP_HTMX_CONFIG) if csp else ""
    return format_html('{}<script src="{}" defer></script>\n<script src="{}" defer></script>\n'
                       '<script src="{}" defer></script>', meta, static(HTMX_SCRIPT),
                       static(SSE_EXTENSION_SCRIPT), static(WIDGET_SCRIPT))


def _read(execution: Any) -> ExecutionState | Unavailable:
    """The state of ``execution`` (an id is read from the log; the store down is Unavailable)."""
    if isinstance(execution, (ExecutionState, Unavailable)):
        return execution
    return get_widget_state(execution)


@register.simple_tag
def sse_exec_progress(execution: "str | ExecutionState | Unavailable", user: Any = None,
                      max_age: float | None = None, token: str | None = None,
                      cancel: bool = False) -> SafeString:
    """The progress widget of an execution: right on first paint, then live.

    ``execution`` is an execution id (the state is read from the log, so call
    it from sync views) or what ``await aget_widget_state(id)``
    (:func:`~django_sse_exec.render.widget.aget_widget_state`) or
    ``await aget_execution_state(id)`` returned (async views). ``user`` and
    ``max_age`` bind the stream's token as for :func:`~django_sse_exec.stream_url`;
    ``token`` reuses a token instead (a link's that shared the execution: the
    widget then lives as long as that token). An execution that has ended
    renders without a stream; with the event store down, "unavailable,
    retrying" (the stream brings the state once the store is back).
    ``cancel=True`` adds a Cancel button (a signed
    :func:`~django_sse_exec.cancel_url`, bound like the stream's token: render it
    only for those who may cancel). Restyle it by overriding the
    ``django_sse_exec/*.html`` templates (see :doc:`/howto/htmx`, "Restyling").
    """
    return render_to_string("django_sse_exec/progress.html",
                            progress_context(_read(execution), user=user, max_age=max_age,
                                             token=token, cancel=cancel))


@register.simple_tag
def sse_exec_progress_many(executions: Any, user: Any = None,
                           max_age: float | None = None) -> SafeString:
    """Progress widgets of several executions, all live over one connection.

    ``executions`` is a list of execution ids (or a comma-separated str; states
    are read from the log, so call it from sync views) or of what
    ``aget_widget_state`` / ``aget_execution_state`` returned (async views).
    At most ``MULTI_STREAM_MAX`` of them; ``user`` and ``max_age`` bind the
    token. The stream ends, and the page stops asking for it, once every
    execution has closed.
    """
    items = executions.split(",") if isinstance(executions, str) else list(executions)
    return render_to_string("django_sse_exec/progress_many.html",
                            many_context([_read(e) for e in items], user=user, max_age=max_age))


@register.filter
def sse_exec_percent(value: Any) -> int:
    """``value`` as a whole percentage 0-100 (the bar's classes ``sse-exec-w<n>``, ``sse-exec-ok<n>``)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return 0
    return max(0, min(100, int(value)))


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
