"""Celery tasks reporting an execution, end to end: a real worker, Redis broker, daphne, sse_tail.

The test process starts executions (``start_execution`` publishes to the
broker and logs ``execution-start`` in Redis), a real ``celery worker``
subprocess runs the tasks in ``tests/celery_tasks.py``, and clients follow the
execution from a real daphne over sockets and with ``manage.py sse_tail``.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from django_sse_exec import stream_url
from django_sse_exec.execution.error_detail import GENERIC_MESSAGE
from tests.conftest import redis_available
from tests.helpers import names
from tests.server import Server
from tests.sse import SSEClient, SSEEvent
from tests.test_commands import RedisSetup, finish, spawn
from tests.workers import CeleryWorker

pytestmark = pytest.mark.asyncio


class ReportingWorker(CeleryWorker):
    """The shared worker helper, also importing the reporting test tasks."""

    def command(self) -> list[str]:
        return [*super().command(), "--include", "tests.celery_tasks"]


@pytest.fixture(scope="module")
def setup() -> RedisSetup:
    # Module scope (one worker and one server for the file) cannot use the
    # function-scoped ``requires_redis``; same rule: skip, or fail when required.
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    if not redis_available():
        if os.environ.get("SSE_EXEC_REQUIRE_REDIS") == "1":
            pytest.fail(f"Redis is not reachable at {url} and SSE_EXEC_REQUIRE_REDIS=1 requires it")
        pytest.skip(f"Redis is not reachable at {url}")
    return RedisSetup(url, f"t6c-{uuid.uuid4().hex[:10]}")


@pytest.fixture(scope="module")
def worker(setup: RedisSetup) -> Iterator[ReportingWorker]:
    with ReportingWorker(setup.url, env=setup.env, concurrency=2) as w:
        yield w


@pytest.fixture(scope="module")
def web(setup: RedisSetup) -> Iterator[Server]:
    with Server("daphne", env=setup.env) as srv:
        yield srv


@pytest.fixture
def on_redis(setup: RedisSetup) -> Iterator[None]:
    """This process's helpers on the same Redis layer and store as the worker and server."""
    with setup.settings():
        yield


def sig(worker: CeleryWorker, name: str, *args: Any, immutable: bool = False) -> Any:
    """A signature of a test task, routed to the test worker's queue."""
    return worker.client().signature(f"tests.reporting.{name}", args=args, queue=worker.queue,
                                     immutable=immutable)


async def start(sig_: Any, execution_id: str) -> Any:
    """``start_execution`` from a thread with no event loop (as a sync view would); the AsyncResult."""
    from django_sse_exec.celery import start_execution

    return await asyncio.to_thread(start_execution, sig_, execution_id)


async def stream_to_end(web: Server, execution_id: str, timeout: float = 90) -> list[SSEEvent]:
    """Every event of the execution, read from daphne over a socket until the stream ends."""
    async with SSEClient(web.base_url + stream_url(execution_id)) as client:
        events = await client.read_until_closed(timeout)
    assert [e.int_id for e in events] == list(range(1, len(events) + 1)), "gap or duplicate"
    assert events and events[-1].event == "stream-closed", [e.event for e in events]
    return events


def summary(events: list[SSEEvent]) -> dict[str, Any]:
    [complete] = [e.json for e in events if e.event == "execution-complete"]
    return complete


async def test_five_line_task_streams_a_complete_execution(worker, web, on_redis, setup,
                                                           execution_id):
    tails = [spawn("sse_tail", execution_id, "--timeout", "90", *extra, env=setup.env)
             for extra in ([], ["--url", web.base_url])]
    async with SSEClient(web.base_url + stream_url(execution_id)) as live:
        await live.read_chunk()  # connected before anything happens: the events arrive live
        await start(sig(worker, "count_rows", 200), execution_id)
        events = await live.read_until_closed(90)
    outputs = [await asyncio.to_thread(finish, tail, 90) for tail in tails]

    kinds = names(events)
    assert kinds[:2] == ["execution-start", "task-start"]
    assert kinds[-4:] == ["progress", "task-complete", "execution-complete", "stream-closed"]
    assert set(kinds[2:-3]) == {"progress"} and len(kinds[2:-3]) >= 1
    assert [e.int_id for e in events] == list(range(1, len(events) + 1))
    start_, task_start, done = events[0].json, events[1].json, events[-3].json
    assert start_["executionId"] == execution_id and start_["totalTasks"] == 1
    assert task_start["taskTitle"] == "tests.reporting.count_rows" and task_start["total"] == 1
    assert events[-4].json["progress"] == 200 and events[-4].json["message"] == "row 200"
    assert done["status"] == "success" and done["result"] == 200 and done["progress"] == 1
    result = summary(events)
    assert (result["status"], result["successful"], result["failed"], result["total"]) == (
        "success", 1, 0, 1)
    assert result["results"][0]["taskId"] == task_start["taskId"] == done["taskId"]

    for code, out, err in outputs:  # in-process and --url
        assert code == 0, err
        lines = out.splitlines()
        assert [line.split(" ", 2)[:2] for line in lines] == [[str(e.int_id), e.event] for e in events]
        assert lines[-2] == f"{events[-2].id} execution-complete {events[-2].data}"


async def test_executions_started_with_feeds_stream_on_the_feed(worker, web, on_redis,
                                                                execution_id):
    from django_sse_exec import feed_stream_url
    from django_sse_exec.celery import start_execution

    feed = f"user:{execution_id}"
    async with SSEClient(web.base_url + feed_stream_url(feed)) as follower:
        await follower.read_chunk()
        ids = [f"{execution_id}-{n}" for n in range(2)]
        for each in ids:
            await asyncio.to_thread(start_execution, sig(worker, "count_rows", 3), each,
                                    feeds=[feed])
        events = await follower.wait_for(
            lambda ev: sum(e.event == "stream-closed" for e in ev) == 2, timeout=90)
    added = [e.json["executionId"] for e in events if e.event == "execution-added"]
    assert added == ids
    for each in ids:
        mine = [e for e in events if e.event != "execution-added" and e.json["executionId"] == each]
        assert [e.json["id"] for e in mine] == list(range(1, len(mine) + 1))
        assert mine[0].event == "execution-start" and mine[-1].event == "stream-closed"
        assert [e.json["data"]["status"] for e in mine if e.event == "execution-complete"] == ["success"]


async def test_a_raising_task_still_ends_with_a_failed_summary(worker, web, on_redis,
                                                               execution_id):
    await start(sig(worker, "boom"), execution_id)
    events = await stream_to_end(web, execution_id)
    assert names(events) == ["execution-start", "task-start", "task-fail", "execution-complete",
                             "stream-closed"]
    # With DEBUG off the exception's message is not published, only its type.
    assert events[2].json["error"] == f"ValueError: {GENERIC_MESSAGE}"
    assert all("the data is bad" not in e.data for e in events)
    result = summary(events)
    assert (result["status"], result["successful"], result["failed"]) == ("failed", 0, 1)


async def test_retries_start_once_per_attempt(worker, web, on_redis, execution_id):
    await start(sig(worker, "flaky", 2), execution_id)
    events = await stream_to_end(web, execution_id)
    assert names(events) == ["execution-start", "task-start", "task-retry", "task-start",
                             "task-retry", "task-start", "task-complete", "execution-complete",
                             "stream-closed"]
    starts = [e.json for e in events if e.event == "task-start"]
    assert [s.get("attempt", 1) for s in starts] == [1, 2, 3]
    assert [s.get("retry", False) for s in starts] == [False, True, True]
    assert len({s["taskId"] for s in starts}) == 1
    retries = [e.json for e in events if e.event == "task-retry"]
    assert [r["attempt"] for r in retries] == [1, 2]
    assert retries[0]["error"] == f"ConnectionError: {GENERIC_MESSAGE}"
    assert all("attempt 1 failed" not in e.data for e in events)
    # flaky opts in to publishing its return value
    assert events[6].json["result"] == 3 and events[6].json["attempt"] == 3
    result = summary(events)
    assert (result["status"], result["successful"], result["failed"], result["total"]) == (
        "success", 1, 0, 1)


async def test_chain_success_and_failure(worker, web, on_redis, execution_id):
    from celery import chain

    from django_sse_exec.celery import TITLE_HEADER

    first = sig(worker, "add", 1, 2).set(headers={TITLE_HEADER: "Add one and two"})
    await start(chain(first, sig(worker, "add", 10)), execution_id)
    events = await stream_to_end(web, execution_id)
    assert [e.json["taskTitle"] for e in events if e.event == "task-start"] == [
        "Add one and two", "tests.reporting.add"]
    assert names(events) == ["execution-start", "task-start", "task-complete", "task-start",
                             "task-complete", "execution-complete", "stream-closed"]
    # add does not opt in (publish_result): its return values stay private
    assert ["result" in e.json for e in events if e.event == "task-complete"] == [False, False]
    assert all("result" not in r for r in summary(events)["results"])
    assert [e.json["progress"] for e in events if e.event.startswith("task-")] == [0, 1, 1, 2]
    result = summary(events)
    assert (result["status"], result["successful"], result["total"]) == ("success", 2, 2)

    failing = execution_id + "-f"
    await start(chain(sig(worker, "add", 1, 2), sig(worker, "boom"), sig(worker, "add", 1),
                      sig(worker, "add", 1)), failing)
    events = await stream_to_end(web, failing)
    assert names(events) == ["execution-start", "task-start", "task-complete", "task-start",
                             "task-fail", "execution-complete", "stream-closed"]
    assert events[4].json["skipped"] == 2
    result = summary(events)
    assert (result["status"], result["successful"], result["failed"], result["cancelled"],
            result["completed"], result["total"]) == ("failed", 1, 1, 2, 2, 4)


async def test_group_ends_exactly_once(worker, web, on_redis, execution_id):
    from celery import group

    await start(group(sig(worker, "nap", 0.2) for _ in range(5)), execution_id)
    events = await stream_to_end(web, execution_id)
    assert names(events).count("task-start") == 5 and names(events).count("task-complete") == 5
    assert names(events).count("execution-complete") == 1
    assert names(events)[-2:] == ["execution-complete", "stream-closed"]
    result = summary(events)
    assert (result["status"], result["successful"], result["total"]) == ("success", 5, 5)


async def test_a_worker_process_that_dies_is_reported(worker, web, on_redis, execution_id):
    await start(sig(worker, "crash"), execution_id)
    events = await stream_to_end(web, execution_id, timeout=120)
    assert names(events) == ["execution-start", "task-start", "task-fail", "execution-complete",
                             "stream-closed"]
    assert "WorkerLostError" in events[2].json["error"]
    assert summary(events)["status"] == "failed"


async def test_a_hard_time_limit_is_reported(worker, web, on_redis, execution_id):
    await start(sig(worker, "nap", 60).set(time_limit=1), execution_id)
    events = await stream_to_end(web, execution_id, timeout=120)
    assert names(events) == ["execution-start", "task-start", "task-fail", "execution-complete",
                             "stream-closed"]
    assert "TimeLimitExceeded" in events[2].json["error"]
    assert summary(events)["status"] == "failed"


async def test_revoking_a_task_cancels_the_execution(worker, web, on_redis, execution_id):
    async with SSEClient(web.base_url + stream_url(execution_id)) as client:
        await start(sig(worker, "nap", 60), execution_id)
        events = await client.wait_for(lambda ev: "task-start" in names(ev), 60)
        task_id = events[-1].json["taskId"]
        await asyncio.to_thread(worker.client().control.revoke, task_id, terminate=True)
        events = await client.read_until_closed(60)
    assert names(events) == ["execution-start", "task-start", "execution-cancelled",
                             "stream-closed"], [e.data for e in events]
    cancelled = events[2].json
    assert cancelled["status"] == "cancelled" and cancelled["cancelled"] == 1
    assert cancelled["error"] == "task tests.reporting.nap was terminated"


async def test_reporting_problems_never_fail_the_task(setup, on_redis, execution_id):
    """With the event store unreachable from the worker, the task still runs and returns."""
    from tests.server import free_port

    unreachable = {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    with ReportingWorker(setup.url, env=setup.env, sse_exec=unreachable,
                         result_backend=True) as broken:
        result = await start(sig(broken, "count_rows", 3), execution_id)
        assert await asyncio.to_thread(result.get, timeout=60) == 3
        log = broken.log()
    assert "could not report" in log and "StoreUnavailable" in log


async def test_an_unreachable_broker_ends_the_execution_and_raises(on_redis, execution_id):
    from celery import Celery
    from kombu.exceptions import OperationalError

    from django_sse_exec.store import get_store
    from tests.server import free_port

    app = Celery("unreachable", broker=f"redis://127.0.0.1:{free_port()}/0")
    app.conf.broker_transport_options = {"max_retries": 1}
    try:
        with pytest.raises(OperationalError):
            await start(app.signature("tests.reporting.add", args=(1, 2)), execution_id)
    finally:
        app.close()
    log = await get_store().read(execution_id)
    assert [e.event for e in log.events] == ["execution-start", "execution-complete", "stream-closed"]
    assert log.closed and '"status":"failed"' in log.events[1].data
    assert "OperationalError" in log.events[1].data
