"""OpenTelemetry: one event's trace from its send to its delivery, and Server-Timing.

With the SDK's in-memory exporter in this process and real Redis (the pub/sub layer,
the hub on its own subscription): an event sent under a span, from a thread with no
loop (as a Celery task or a sync view sends) and from a coroutine, is fanned out by
the hub in a ``sse_exec.deliver`` span of the sender's trace, a child of the send's
spans, because the channel-layer message carried the trace context. Across
processes: the test starts a trace, a real Celery worker continues it from the
task's headers and sends, and a real daphne delivers; each process records its
spans into a file of its own (``tests/tracefile.py``), and one trace joins them. Without
opentelemetry installed the module is off and messages carry no field. Through real
daphne, both entry points: the stream's response has ``Server-Timing``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.test import override_settings

import django_sse_exec as sse
from django_sse_exec.hub.running import get_hub
from tests.conftest import entry_point_env
from tests.helpers import names, wait_until, wait_until_sync
from tests.server import ROOT
from tests.sse import SSEClient
from tests.test_celery_reporting import ReportingWorker
from tests.test_delivery import layer_settings
from tests.test_direct import _close
from tests.test_tasks_worker import DbWorker, enqueue, sqlite_env  # noqa: F401
from tests.workers import delete_keys, redis_env

trace = pytest.importorskip("opentelemetry.trace")
sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

from tests import tracefile  # noqa: E402

EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    """The SDK, installed once for this process, exporting to memory."""
    provider = sdk_trace.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    trace.set_tracer_provider(provider)
    return EXPORTER


@pytest.fixture
def prefix(requires_redis):
    value = f"o{uuid.uuid4().hex[:10]}"
    yield value
    delete_keys(requires_redis, value)


def _named(exporter: InMemorySpanExporter, name: str) -> list:
    return [s for s in exporter.get_finished_spans() if s.name == name]


@pytest.mark.asyncio
@pytest.mark.parametrize("layer", ["pubsub", "redis"])
async def test_a_delivery_span_joins_the_trace_of_its_send(requires_redis, prefix, spans, layer):
    tracer = trace.get_tracer("tests")
    spans.clear()
    with override_settings(**layer_settings(requires_redis, layer, prefix)):
        hub = get_hub()
        sub = await hub.subscribe("e1")

        def producer() -> int:  # a thread with no loop: as a Celery task sends
            with tracer.start_as_current_span("producer"):
                return sse.send_sse_event("e1", "step", {"n": 1})

        sync_id = await asyncio.to_thread(producer)
        with tracer.start_as_current_span("view"):
            async_id = await sse.asend_sse_event("e1", "step", {"n": 2})
        await wait_until(lambda: len(_named(spans, "sse_exec.deliver")) == 2, 10,
                         what="both deliveries")
        await hub.unsubscribe(sub)
        await _close(hub)
    for root, event_id in (("producer", sync_id), ("view", async_id)):
        (top,) = _named(spans, root)
        sends = [s for s in _named(spans, "sse_exec.send")
                 if s.context.trace_id == top.context.trace_id]
        assert len(sends) == 1 and sends[0].attributes["sse_exec.event_id"] == event_id
        (append,) = [s for s in _named(spans, "sse_exec.log_append")
                     if s.parent.span_id == sends[0].context.span_id]
        (delivered,) = [s for s in _named(spans, "sse_exec.deliver")
                        if s.attributes["sse_exec.event_id"] == event_id]
        assert delivered.context.trace_id == top.context.trace_id  # one trace, end to end
        assert delivered.parent.span_id == append.context.span_id
        assert delivered.attributes["sse_exec.streams"] == 1


@pytest.mark.asyncio
async def test_a_celery_task_s_send_and_a_web_process_s_delivery_share_one_trace(
        requires_redis, prefix, spans, make_server, url_for, execution_id, tmp_path):
    worker_spans, web_spans = tmp_path / "worker.jsonl", tmp_path / "web.jsonl"
    env = redis_env(requires_redis, "redis", prefix)
    worker = ReportingWorker(requires_redis, env={**env, "TEST_TRACE_FILE": str(worker_spans)})
    starting = asyncio.ensure_future(asyncio.to_thread(worker.start))  # beside daphne's start
    try:
        srv = await asyncio.to_thread(make_server, "daphne",
                                      env={**env, "TEST_TRACE_FILE": str(web_spans)})
        await starting
        async with SSEClient(url_for(srv, execution_id)) as client:
            await client.read_chunk()  # subscribed: the hub has a stream to deliver to
            with trace.get_tracer("tests").start_as_current_span("test") as root:
                worker.send_task("tests.reporting.traced_send", args=[execution_id],
                                 headers={"traceparent": tracefile.traceparent()})
            events = await client.wait_for(lambda got: "step" in names(got), timeout=30)
    finally:
        await asyncio.gather(starting, return_exceptions=True)
        await asyncio.to_thread(worker.stop)
    (step,) = [e for e in events if e.event == "step"]
    assert_one_trace(root, worker_spans, web_spans, step.int_id)


@pytest.mark.asyncio
async def test_a_django_task_s_send_and_a_web_process_s_delivery_share_one_trace(
        requires_redis, prefix, spans, make_server, url_for, sqlite_env, tmp_path):
    worker_spans, web_spans = tmp_path / "worker.jsonl", tmp_path / "web.jsonl"
    env = {**redis_env(requires_redis, "redis", prefix), **sqlite_env}
    worker = DbWorker({**env, "TEST_TRACE_FILE": str(worker_spans)}, f"q{prefix}")
    starting = asyncio.ensure_future(asyncio.to_thread(worker.start))  # all three at once
    serving = asyncio.ensure_future(asyncio.to_thread(
        make_server, "daphne", env={**env, "TEST_TRACE_FILE": str(web_spans)}))
    go = tmp_path / "go"
    try:
        with trace.get_tracer("tests").start_as_current_span("test") as root:
            result_id = await asyncio.to_thread(enqueue, env, worker.queue, "traced_step",
                                                tracefile.traceparent(), str(go))
        async with SSEClient(url_for(await serving, result_id)) as client:
            await client.read_chunk()
            await starting
            go.touch()  # the task sends once its stream is open: its event is delivered
            events = await client.wait_for(lambda got: "progress" in names(got), timeout=30)
    finally:
        await asyncio.gather(starting, serving, return_exceptions=True)
        await asyncio.to_thread(worker.stop)
    (step,) = [e for e in events if e.event == "progress"]
    assert_one_trace(root, worker_spans, web_spans, step.int_id)


def assert_one_trace(root: Any, producer_spans: Path, web_spans: Path, event_id: int) -> None:
    """The producer's ``task`` span (a child of the test's ``root``), its send of
    ``event_id`` and that send's log append, and the web process's delivery of it (a
    child of the append) are one trace, in three processes."""
    def delivered() -> list[dict[str, Any]]:
        return [s for s in tracefile.read(web_spans, "sse_exec.deliver")
                if s["attributes"]["sse_exec.event_id"] == event_id]

    wait_until_sync(lambda: delivered() and tracefile.read(producer_spans, "task"), 15,
                    what="the web process's delivery and the producer's task span")
    sent = tracefile.read(producer_spans)
    (task,) = [s for s in sent if s["name"] == "task"]
    (send,) = [s for s in sent if s["name"] == "sse_exec.send" and s["parent_id"] == task["span_id"]]
    (append,) = [s for s in sent if s["name"] == "sse_exec.log_append"
                 and s["parent_id"] == send["span_id"]]
    (deliver,) = delivered()
    trace_id = format(root.get_span_context().trace_id, "032x")
    assert {s["trace_id"] for s in (task, send, append, deliver)} == {trace_id}  # one trace
    assert task["parent_id"] == format(root.get_span_context().span_id, "016x")
    assert deliver["parent_id"] == append["span_id"]
    assert send["attributes"]["sse_exec.event_id"] == event_id
    assert deliver["attributes"]["sse_exec.streams"] == 1
    assert len({os.getpid(), task["pid"], deliver["pid"]}) == 3  # three processes


def test_without_opentelemetry_tracing_is_off_and_messages_carry_nothing():
    code = ("import sys; sys.modules['opentelemetry'] = None\n"
            "import django; django.setup()\n"
            "from django_sse_exec.telemetry import tracing\n"
            "from django_sse_exec.sending.delivery import message\n"
            "assert not tracing.ENABLED and tracing.carrier() is None\n"
            "with tracing.span('x') as s: assert s is None\n"
            "assert 'tc' not in message('e1', 1, 'step', '{}')\n"
            "print('off')\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={"DJANGO_SETTINGS_MODULE": "tests.settings", "PATH": "/usr/bin"},
                         timeout=60)
    assert out.stdout.strip() == "off", out.stderr


@pytest.mark.parametrize("entry", ["view", "fast"])
def test_the_stream_response_has_server_timing(make_server, url_for, execution_id, entry):
    """Every kind of stream, on both entry points: ``auth``, and ``head`` when a reconnect
    reads the log's head (a feed reads none)."""
    from django_sse_exec import feed_stream_url, multi_stream_url

    srv = make_server("daphne", env=entry_point_env(entry))
    srv.send(execution_id, ("one", 1))
    srv.feed_add(f"feed-{execution_id}", execution_id)
    kinds = {url_for(srv, execution_id): ("1", {"auth", "head"}),
             srv.base_url + multi_stream_url([execution_id]): ("0-1", {"auth", "head"}),
             srv.base_url + feed_stream_url(f"feed-{execution_id}"): ("0~0-1", {"auth"})}
    for url, (last, expected) in kinds.items():
        with httpx.stream("GET", url, headers={"Last-Event-ID": last}, timeout=10) as response:
            assert response.status_code == 200
            timing = response.headers["Server-Timing"]
        steps = dict(part.split(";dur=") for part in timing.split(", "))
        assert set(steps) == expected, (url, timing)
        assert all(float(ms) >= 0 for ms in steps.values())
