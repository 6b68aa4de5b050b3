"""OpenTelemetry spans of the app, and the trace context an event carries; no-ops without it.

An operator who sees a late event wants to follow it from its sender (a Celery
task, a ``django.tasks`` task, a view) through Redis to the streams of each web
process. With ``opentelemetry-api`` installed (the ``otel`` extra) and a tracer
provider configured by the project, the app records:

* ``sse_exec.send`` around each send, and ``sse_exec.log_append`` around its
  round trip to the log (which, fused, also delivers it);
* ``sse_exec.deliver`` when a web process's hub fans an event out to its local
  streams, a child of the send's span: the send's trace context travels in the
  channel-layer message as ``"tc"`` (a W3C ``traceparent``), only while tracing is on;
* ``sse_exec.connect`` around a stream's connect rules (``sse_exec.auth`` inside),
  and ``sse_exec.stream`` from the stream's first byte to its end (its replay
  and first byte as span events).

Every use of OpenTelemetry is in this module. When it is not installed
:data:`ENABLED` is False and each function returns at once (no span objects, no
context lookups; the message gets no field), so the send path costs one module
attribute check.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

try:  # the optional extra
    from opentelemetry import trace as _trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:  # pragma: no cover - exercised by a test in a subprocess
    _trace = None  # type: ignore[assignment]

#: True when opentelemetry-api is installed (spans are made; a project without an
#: SDK gets the API's non-recording ones, which cost little).
ENABLED = _trace is not None

if ENABLED:
    _tracer = _trace.get_tracer("django_sse_exec")
    _propagator = TraceContextTextMapPropagator()


@contextlib.contextmanager
def span(name: str, **attributes: Any) -> Iterator[Any]:
    """A span named ``name``, current inside the block (None when tracing is off)."""
    if not ENABLED:
        yield None
        return
    with _tracer.start_as_current_span(name, attributes=attributes) as current:
        yield current


@contextlib.contextmanager
def sending(execution_id: str, event: str) -> Iterator[Callable[[T], T]]:
    """The spans of one send: ``sse_exec.send`` and, inside, ``sse_exec.log_append``.

    Yields ``sent(appended)``, which notes the event's id and returns it. Callers
    enter it only when :data:`ENABLED`.
    """
    with _tracer.start_as_current_span("sse_exec.send", attributes={
            "sse_exec.execution_id": execution_id, "sse_exec.event": event}) as send:
        with _tracer.start_as_current_span("sse_exec.log_append"):
            def sent(appended: T) -> T:
                send.set_attribute("sse_exec.event_id", int(appended))  # type: ignore[call-overload]
                return appended

            yield sent


def start(name: str, **attributes: Any) -> Any:
    """A span that outlives a block (a stream's lifetime): end it with :func:`end`; None when off."""
    if not ENABLED:
        return None
    return _tracer.start_span(name, attributes=attributes)


def note(current: Any, event: str, **attributes: Any) -> None:
    """An event on ``current`` (a span from :func:`start`; nothing when None)."""
    if current is not None:
        current.add_event(event, attributes=attributes)


def end(current: Any, **attributes: Any) -> None:
    """End ``current`` (a span from :func:`start`; nothing when None), setting ``attributes``."""
    if current is not None:
        if attributes:
            current.set_attributes(attributes)
        current.end()


def carrier() -> str | None:
    """The current trace context as a ``traceparent`` string, for an event's message; None
    when tracing is off or no span is recording (so the message gets no field)."""
    if not ENABLED or not _trace.get_current_span().get_span_context().is_valid:
        return None
    headers: dict[str, str] = {}
    _propagator.inject(headers)
    return headers.get("traceparent")


def delivered(message: dict[str, Any], streams: int) -> None:
    """Record the fan-out of ``message`` to ``streams`` local streams, as a child of the span
    its sender carried (``"tc"``); nothing when tracing is off or it carried none."""
    if not ENABLED:
        return
    traceparent = message.get("tc")
    if not isinstance(traceparent, str):
        return
    parent = _propagator.extract({"traceparent": traceparent})
    _tracer.start_span("sse_exec.deliver", context=parent, attributes={
        "sse_exec.execution_id": str(message.get("execution_id")),
        "sse_exec.event_id": int(message.get("id") or 0),
        "sse_exec.streams": streams}).end()


__all__ = ["ENABLED", "carrier", "delivered", "end", "note", "sending", "span", "start"]
