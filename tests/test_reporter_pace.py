"""ExecutionReporter's cancel, keys and steps, sync and async, in the test process (memory
store): a cancel request stops the block at its next report (or before it starts, or at
``check_cancel``) and ends the execution cancelled; a re-run of the same block repeats
nothing; steps roll up in ``async with`` too."""

from __future__ import annotations

import asyncio

import pytest

from django_sse_exec import (
    ExecutionCancelled,
    ExecutionReporter,
    arequest_cancel,
    request_cancel,
)
from tests.helpers import names
from tests.test_reporter import alogged, logged


def test_a_cancel_request_stops_the_block_at_its_next_report(execution_id):
    reached = []
    with pytest.raises(ExecutionCancelled):
        with ExecutionReporter(execution_id, total=2) as report:
            report.task_start("fetch")
            report.progress(1, 10)
            assert request_cancel(execution_id) > 0
            assert not report.cancel_requested  # nothing reported since
            reached.append(1)
            report.progress(2, 10)  # raises, once logged
            reached.append(2)
    events = logged(execution_id)
    assert reached == [1] and report.cancel_requested
    assert names(events)[-5:] == ["progress", "execution-cancel-requested", "progress",
                                  "execution-cancelled", "stream-closed"]
    [summary] = [data for name, data in events if name == "execution-cancelled"]
    assert (summary["status"], summary["cancelled"], summary["completed"]) == ("cancelled", 2, 0)
    assert summary["error"] == "cancel requested"
    assert events[-4][1]["by"] == "user"


def test_a_block_cancelled_before_it_starts_never_runs(execution_id):
    request_cancel(execution_id, by="link")
    ran = False
    with pytest.raises(ExecutionCancelled):
        with ExecutionReporter(execution_id):
            ran = True
    assert not ran
    assert names(logged(execution_id)) == ["execution-cancel-requested", "execution-start",
                                           "execution-cancelled", "stream-closed"]


def test_check_cancel_asks_without_reporting(execution_id):
    with pytest.raises(ExecutionCancelled):
        with ExecutionReporter(execution_id) as report:
            report.check_cancel()
            request_cancel(execution_id)
            report.check_cancel()
    assert names(logged(execution_id))[-2:] == ["execution-cancelled", "stream-closed"]


async def test_the_async_reporter_stops_and_steps_roll_up(execution_id):
    with pytest.raises(ExecutionCancelled):
        async with ExecutionReporter(execution_id, plan={"a": 1, "b": 1}) as report:
            async with report.step("a"):
                await report.aprogress(1, 2)
            await arequest_cancel(execution_id)
            async with report.step("b"):  # its start is the next report
                await asyncio.sleep(10)
    events = await alogged(execution_id)
    progress = [data for name, data in events if name == "progress"]
    assert [p["percent"] for p in progress] == [0.0, 25.0, 50.0, 50.0]
    assert progress[-1]["step"] == ["b"]
    assert names(events)[-2:] == ["execution-cancelled", "stream-closed"]


def test_a_rerun_of_the_same_block_repeats_nothing(execution_id):
    def run() -> None:
        with ExecutionReporter(execution_id, total=2, close=False) as report:
            report.task_start("fetch", "Fetch")
            for n in range(1, 4):
                report.progress(n, 3, f"row {n}")
            for n in range(1, 3):  # a second loop: another phase, not a repeat
                report.progress(n, 2)
            report.task_complete("fetch")
            report.task_start("load")
            report.task_fail("load", "read-only")

    run()
    first = logged(execution_id)
    run()  # as a worker redelivered the same task would
    assert logged(execution_id) == first
    assert names(first) == ["execution-start", "task-start", *["progress"] * 5, "task-complete",
                            "task-start", "task-fail", "execution-complete"]


def test_keyed_false_sends_every_event(execution_id):
    for _ in range(2):
        with ExecutionReporter(execution_id, close=False, keyed=False) as report:
            report.progress(1, 1)
    assert names(logged(execution_id)).count("progress") == 2


def test_a_silent_execution_is_stalled_and_resumed_but_never_a_feed(settings, execution_id):
    import time

    from django_sse_exec import add_to_feed, check_stalls, send_sse_event

    settings.SSE_EXEC = {"STORE": "memory", "STALL_AFTER": 0.2}
    add_to_feed(f"user:{execution_id}", execution_id)
    send_sse_event(execution_id, "progress", {"progress": 1, "total": 2})
    time.sleep(0.3)
    assert check_stalls() == [execution_id]  # the feed's log is no execution
    assert check_stalls() == []  # announced once
    send_sse_event(execution_id, "progress", {"progress": 2, "total": 2})
    events = logged(execution_id)
    assert names(events) == ["progress", "execution-stalled", "progress", "execution-resumed"]
    assert events[1][1]["after"] == 0.2 and events[3][1]["executionId"] == execution_id
