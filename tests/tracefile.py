"""The spans of the processes a test starts (a Celery worker, daphne), in a file the test reads.

The SDK's in-memory exporter keeps a process's spans where only that process
sees them. A test that follows one event across processes gives each process it
starts ``TEST_TRACE_FILE`` (``tests.settings`` then calls :func:`install`): the
SDK records every span and appends each finished one to that file as a JSON
line. The file is opened per export (a forked Celery pool child writes as its
parent would) and each export is one ``write`` in append mode, so :func:`read`,
polled by the test while the process runs, sees whole lines only. A producer's
task joins the test's trace with :func:`continued`.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator


def _hex(value: int, width: int) -> str:
    return format(value, f"0{width}x")


def record(span: ReadableSpan) -> dict[str, Any]:
    """One finished span as plain JSON: its name, ids (hex, as in a ``traceparent``),
    parent's span id (None for a root), attributes and the process that made it."""
    context = span.get_span_context()
    assert context is not None  # a finished SDK span has one
    return {"name": span.name, "trace_id": _hex(context.trace_id, 32),
            "span_id": _hex(context.span_id, 16),
            "parent_id": _hex(span.parent.span_id, 16) if span.parent else None,
            "attributes": dict(span.attributes or {}), "pid": os.getpid()}


class FileSpanExporter(SpanExporter):
    """Appends each exported span to ``path`` as one JSON line."""

    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(record(s)) + "\n" for s in spans)
        with open(self.path, "a", encoding="utf-8") as out:
            out.write(lines)
        return SpanExportResult.SUCCESS


def install(path: str) -> None:
    """Make this process record spans and export each, as it ends, to ``path``."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(FileSpanExporter(path)))
    trace.set_tracer_provider(provider)


def read(path: str | Path, name: str | None = None) -> list[dict[str, Any]]:
    """The spans written to ``path`` so far (those named ``name`` when given); none
    when the process has written nothing yet."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    spans = [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]
    return [s for s in spans if name is None or s["name"] == name]


def traceparent() -> str:
    """The current span's context as a W3C ``traceparent``, for a task's message."""
    headers: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(headers)
    return headers["traceparent"]


@contextlib.contextmanager
def continued(parent: str | None, name: str = "task") -> Iterator[Any]:
    """A span ``name``, current inside the block, continuing the trace of ``parent`` (a
    ``traceparent``, as a task's message carried it; a new trace when None)."""
    context = TraceContextTextMapPropagator().extract({"traceparent": parent or ""})
    with trace.get_tracer("tests").start_as_current_span(name, context=context) as current:
        yield current
