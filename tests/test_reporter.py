"""ExecutionReporter: the events it logs, sync and async, on success, failure, raise and cancel.

These run the reporter in the test process and read what it logged from the
process's store (and, in one test, through the app's own stream generator);
tests/test_celery_reporting.py follows reporters in other processes over sockets.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
from django.test import override_settings

from django_sse_exec import ExecutionClosed, aclose_sse_connections, close_sse_connections
from django_sse_exec.execution.error_detail import GENERIC_MESSAGE
from django_sse_exec.execution.reporter import ExecutionReporter, ExecutionState
from django_sse_exec.runtime.sync import run_sync
from django_sse_exec.store import get_store
from django_sse_exec.streams.single import stream_events
from tests.helpers import names
from tests.sse import SSEClient, SSEParser
from tests.test_commands import redis_setup  # noqa: F401  (fixture)


async def alogged(execution_id: str) -> list[tuple[str, dict]]:
    log = await get_store().read(execution_id)
    return [(e.event, json.loads(e.data)) for e in log.events]


def logged(execution_id: str) -> list[tuple[str, dict]]:
    """Every event the execution's log holds, as (name, data)."""
    return run_sync("logged", alogged, execution_id)


def final(events: list[tuple[str, dict]]) -> dict:
    [summary] = [data for name, data in events if name.startswith("execution-") and name != "execution-start"]
    return summary


def test_sync_success_emits_the_whole_vocabulary(execution_id):
    with ExecutionReporter(execution_id, total=2) as report:
        report.task_start("fetch", "Fetch the data")
        report.progress(1, 2, "half way")
        time.sleep(0.05)
        report.task_complete("fetch", result={"rows": 3})
        report.task_start("load")
        report.task_complete("load")
    events = logged(execution_id)
    assert names(events) == ["execution-start", "task-start", "progress", "task-complete",
                             "task-start", "task-complete", "execution-complete", "stream-closed"]
    start = events[0][1]
    assert start["executionId"] == execution_id and start["totalTasks"] == 2
    assert abs(start["startTime"] - time.time() * 1000) < 60_000
    assert events[1][1] == {"taskId": "fetch", "taskTitle": "Fetch the data", "progress": 0, "total": 2}
    assert events[2][1] == {"progress": 1, "total": 2, "message": "half way", "taskId": "fetch",
                            "percent": 50.0}
    fetched = events[3][1]
    assert fetched["status"] == "success" and fetched["progress"] == 1 and fetched["total"] == 2
    assert fetched["duration"] >= 50 and fetched["result"] == {"rows": 3}
    assert events[4][1]["progress"] == 1 and events[4][1]["taskTitle"] == "load"
    summary = events[6][1]
    assert summary["status"] == "success"
    assert (summary["successful"], summary["failed"], summary["cancelled"],
            summary["completed"], summary["total"]) == (2, 0, 0, 2, 2)
    assert summary["totalDuration"] >= 50
    assert [r["taskId"] for r in summary["results"]] == ["fetch", "load"]
    assert "error" not in summary


def test_a_failed_task_makes_the_execution_failed(execution_id):
    with ExecutionReporter(execution_id, total=2) as report:
        report.task_start("a")
        report.task_fail("a", ValueError("bad row 7"))
        report.task_start("b")
        report.task_complete("b")
    events = logged(execution_id)
    fail = dict(events)["task-fail"]
    assert fail["status"] == "failed" and fail["error"] == f"ValueError: {GENERIC_MESSAGE}"
    summary = final(events)
    assert summary["status"] == "failed" and summary["successful"] == 1 and summary["failed"] == 1
    assert names(events)[-1] == "stream-closed"


def test_an_exception_still_ends_the_stream_then_propagates(execution_id):
    with pytest.raises(ZeroDivisionError):
        with ExecutionReporter(execution_id, total=3) as report:
            report.task_start("a")
            report.task_complete("a")
            report.task_start("b", "Divide")
            raise ZeroDivisionError("division by zero")
    events = logged(execution_id)
    assert names(events)[-3:] == ["task-fail", "execution-complete", "stream-closed"]
    assert events[-3][1]["taskId"] == "b" and "ZeroDivisionError" in events[-3][1]["error"]
    summary = final(events)
    assert summary["status"] == "failed" and "ZeroDivisionError" in summary["error"]
    assert (summary["successful"], summary["failed"], summary["cancelled"], summary["total"]) == (1, 1, 1, 3)
    state = run_sync("read", get_store().read, execution_id)
    assert state.closed


def test_a_raise_between_tasks_is_a_failed_execution(execution_id):
    with pytest.raises(LookupError):
        with ExecutionReporter(execution_id, total=2) as report:
            report.task_start("a")
            report.task_complete("a")
            raise LookupError("no such thing")
    summary = final(logged(execution_id))
    assert summary["status"] == "failed" and summary["failed"] == 0
    assert summary["error"] == f"LookupError: {GENERIC_MESSAGE}"


def test_cancel_emits_cancelled_and_no_complete(execution_id):
    with ExecutionReporter(execution_id, total=4) as report:
        report.task_start("a")
        report.task_complete("a")
        report.task_start("b")
        report.cancel("user pressed stop")
        with pytest.raises(RuntimeError, match="already been finished"):
            report.cancel()
    events = logged(execution_id)
    assert names(events)[-2:] == ["execution-cancelled", "stream-closed"]
    assert "execution-complete" not in names(events)
    summary = final(events)
    assert summary["status"] == "cancelled" and summary["error"] == "user pressed stop"
    assert (summary["successful"], summary["cancelled"], summary["total"]) == (1, 3, 4)


def test_unfinished_task_on_normal_exit_is_reported_failed(execution_id):
    with ExecutionReporter(execution_id) as report:
        report.task_start("forgotten")
    summary = final(logged(execution_id))
    assert summary["status"] == "failed" and summary["failed"] == 1 and summary["total"] == 1
    assert "ended before the task" in summary["results"][0]["error"]


def test_close_false_leaves_the_stream_open(execution_id):
    with ExecutionReporter(execution_id, close=False) as report:
        report.task_start("a")
        report.task_complete("a")
    assert names(logged(execution_id))[-1] == "execution-complete"
    close_sse_connections(execution_id)


def test_bad_input_raises_at_the_call_site_and_nothing_is_lost(execution_id):
    with pytest.raises(ValueError):
        ExecutionReporter("not valid!")
    with pytest.raises(ValueError):
        ExecutionReporter(execution_id, total=-1)
    with ExecutionReporter(execution_id, total=1) as report:
        report.task_start("a")
        with pytest.raises(TypeError):
            report.task_complete("a", result=object())
        with pytest.raises(ValueError):
            report.task_start("")
        report.task_complete("a", result="ok")
    summary = final(logged(execution_id))
    assert summary["status"] == "success" and summary["results"][0]["result"] == "ok"


@override_settings(SSE_EXEC={"MAX_EVENT_BYTES": 4000})
def test_a_summary_too_large_is_trimmed_not_lost(execution_id):
    with ExecutionReporter(execution_id, total=40) as report:
        for i in range(40):
            report.task_start(f"t{i}")
            report.task_complete(f"t{i}", result="x" * 300)
    summary = final(logged(execution_id))
    assert summary["resultsTruncated"] is True and summary["successful"] == 40
    assert len(json.dumps(summary).encode()) <= 4000


def test_exit_errors_do_not_mask_the_block_exception(execution_id):
    with pytest.raises(KeyError):
        with ExecutionReporter(execution_id) as report:
            report.task_start("a")
            close_sse_connections(execution_id)  # someone else closed it
            raise KeyError("original")
    # With no exception from the block the failure to finish is raised instead.
    other = execution_id + "-2"
    with pytest.raises(ExecutionClosed):
        with ExecutionReporter(other):
            close_sse_connections(other)


def test_sync_reporters_in_threads_without_a_loop(execution_id):
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            with ExecutionReporter(f"{execution_id}-{n}", total=3) as report:
                for i in range(3):
                    report.task_start(f"t{i}")
                    report.task_complete(f"t{i}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    for n in range(4):
        events = logged(f"{execution_id}-{n}")
        assert len(events) == 9 and final(events)["successful"] == 3


async def test_async_with_and_sync_calls_in_a_loop_are_refused(execution_id):
    async with ExecutionReporter(execution_id, total=1) as report:
        with pytest.raises(RuntimeError, match="await atask_start"):
            report.task_start("a")
        with pytest.raises(RuntimeError, match="async with"):
            with ExecutionReporter(execution_id + "-x"):
                pass
        await report.atask_start("a", "Async task")
        await report.aprogress(3, 10)
        await report.atask_complete("a")
    events = await alogged(execution_id)
    assert names(events) == ["execution-start", "task-start", "progress", "task-complete",
                             "execution-complete", "stream-closed"]
    assert final(events)["status"] == "success"


async def test_async_exception_and_cancellation(execution_id):
    with pytest.raises(RuntimeError, match="boom"):
        async with ExecutionReporter(execution_id) as report:
            await report.atask_start("a")
            raise RuntimeError("boom")
    assert final(await alogged(execution_id))["status"] == "failed"

    other = execution_id + "-c"
    started = asyncio.Event()

    async def body() -> None:
        async with ExecutionReporter(other, total=2) as report:
            await report.atask_start("a")
            started.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(body())
    await asyncio.wait_for(started.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    events = await alogged(other)
    assert names(events)[-2:] == ["execution-cancelled", "stream-closed"]
    assert final(events)["cancelled"] == 2


async def test_a_stream_sees_the_reported_execution_end(execution_id):
    """The app's stream generator follows a reporter to its end (replay, then live)."""
    parser = SSEParser()
    received = []

    async def follow() -> None:
        async for chunk in stream_events(execution_id, None):
            received.extend(parser.feed(chunk))

    follower = asyncio.create_task(follow())
    async with ExecutionReporter(execution_id, total=1) as report:
        await report.atask_start("a")
        await report.atask_complete("a")
    await asyncio.wait_for(follower, 10)
    assert [e.event for e in received] == ["execution-start", "task-start", "task-complete",
                                           "execution-complete", "stream-closed"]
    assert [e.int_id for e in received] == [1, 2, 3, 4, 5]
    await aclose_sse_connections(execution_id)  # idempotent


def test_state_rebuilt_from_the_log_gives_the_same_summary(execution_id):
    with pytest.raises(OSError):
        with ExecutionReporter(execution_id, total=3) as report:
            report.task_start("a")
            report.task_complete("a")
            report.task_start("b")
            report.task_fail("b", "nope")
            raise OSError("disk")
    log = run_sync("read", get_store().read, execution_id)
    state = ExecutionState.from_events(execution_id, log.events)
    assert state.finished and state.total == 3
    assert (state.successful, state.failed) == (1, 1)
    assert [r["taskId"] for r in state.results] == ["a", "b"]


async def test_a_reporter_in_a_thread_streams_to_a_client_of_another_process(
        make_server, redis_setup, execution_id):  # noqa: F811
    """Sync reporter in a loop-less thread here, on Redis; a client of a real daphne sees it all."""
    from django_sse_exec import stream_url

    web = make_server("daphne", env=redis_setup.env)

    def run() -> None:
        with ExecutionReporter(execution_id, total=2) as report:
            report.task_start("a", "First")
            report.progress(1, 2)
            report.task_complete("a")
            report.task_start("b", "Second")
            raise RuntimeError("lost the connection")

    with redis_setup.settings():
        async with SSEClient(web.base_url + stream_url(execution_id)) as client:
            await client.read_chunk()
            with pytest.raises(RuntimeError, match="lost the connection"):
                await asyncio.to_thread(run)
            events = await client.read_until_closed(60)
    assert [e.event for e in events] == ["execution-start", "task-start", "progress",
                                         "task-complete", "task-start", "task-fail",
                                         "execution-complete", "stream-closed"]
    assert [e.int_id for e in events] == list(range(1, 9))
    summary = events[6].json
    assert (summary["status"], summary["successful"], summary["failed"], summary["total"]) == (
        "failed", 1, 1, 2)
    assert summary["error"] == f"RuntimeError: {GENERIC_MESSAGE}"


# -- what is published about caught exceptions ----------------------------------

LEAKY = ConnectionError("could not connect to postgres://app:s3cret-pw@db:5432/app")


def report_a_failure(execution_id: str) -> list[tuple[str, dict]]:
    """A task fails with a leaky exception and the block raises another."""
    with pytest.raises(ConnectionError):
        with ExecutionReporter(execution_id, total=2) as report:
            report.task_start("a")
            report.task_fail("a", LEAKY)
            report.task_start("b")
            raise LEAKY
    return logged(execution_id)


def test_exception_messages_are_not_published_by_default(execution_id):
    """The finding: a ConnectionError's URL with its password appeared in task-fail,
    results[] and the summary. Now only the type and a generic message do."""
    events = report_a_failure(execution_id)
    assert all("s3cret-pw" not in json.dumps(data) for _, data in events)
    fails = [data for name, data in events if name == "task-fail"]
    assert [f["error"] for f in fails] == [f"ConnectionError: {GENERIC_MESSAGE}"] * 2
    assert final(events)["error"] == f"ConnectionError: {GENERIC_MESSAGE}"


def test_explicit_text_is_published_as_given(execution_id):
    with ExecutionReporter(execution_id, total=2) as report:
        report.task_start("a")
        report.task_fail("a", "row 7: bad e-mail address")
        report.task_start("b")
        report.progress(1, 2, "half of b")
        report.task_complete("b")
        report.cancel("stopped by the operator")
    events = logged(execution_id)
    assert dict(events)["task-fail"]["error"] == "row 7: bad e-mail address"
    assert dict(events)["progress"]["message"] == "half of b"
    assert final(events)["error"] == "stopped by the operator"


@pytest.mark.parametrize("detail, debug, published", [
    ("auto", True, True), ("auto", False, False), ("message", False, True),
    ("type", True, False)])
def test_error_detail_setting(execution_id, detail, debug, published):
    with override_settings(SSE_EXEC={"ERROR_DETAIL": detail}, DEBUG=debug):
        events = report_a_failure(execution_id)
    leaked = any("s3cret-pw" in json.dumps(data) for _, data in events)
    assert leaked is published


def redacting(exc: BaseException) -> str:
    return f"{type(exc).__name__} ({len(str(exc))} characters withheld)"


@pytest.mark.parametrize("formatter", ["tests.test_reporter.redacting", redacting])
def test_error_detail_formatter(execution_id, formatter):
    with override_settings(SSE_EXEC={"ERROR_DETAIL": formatter}):
        events = report_a_failure(execution_id)
    assert final(events)["error"] == f"ConnectionError ({len(str(LEAKY))} characters withheld)"


def test_a_failing_formatter_publishes_the_type_only(execution_id, caplog):
    def broken(exc: BaseException) -> str:
        raise RuntimeError("formatter bug")

    with override_settings(SSE_EXEC={"ERROR_DETAIL": broken}):
        events = report_a_failure(execution_id)
    assert final(events)["error"] == f"ConnectionError: {GENERIC_MESSAGE}"
    assert "formatter failed" in caplog.text


@pytest.mark.parametrize("detail, bad", [("auto", False), ("message", False),
                                         ("tests.test_reporter.redacting", False),
                                         ("no.such.formatter", True),
                                         ("tests.test_reporter.LEAKY", True)])
def test_error_detail_check(settings, detail, bad):
    from django.core.checks import run_checks

    settings.SSE_EXEC = {"ERROR_DETAIL": detail}
    assert ("django_sse_exec.E013" in {m.id for m in run_checks()}) is bad
