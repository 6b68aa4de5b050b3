"""The pure maths of progress people can plan by: smoothed rate and time left (pace),
weighted nested steps (steps), the reporter's keys (keys), and the execution's share
done with running tasks rolled in (state). No I/O: times are passed in."""

from __future__ import annotations

import pytest

from django_sse_exec.execution.keys import ProgressKeys, lifecycle_key
from django_sse_exec.execution.pace import MIN_REPORTS, MIN_SPAN, Pace, rounded
from django_sse_exec.execution.state import ExecutionState
from django_sse_exec.execution.steps import StepTree
from django_sse_exec.wire import Event, encode_data


def feed(pace: Pace, reports: list[tuple[float, float]], total: float) -> dict:
    figures: dict = {}
    for now, current in reports:
        figures = pace.observe(now, current, current / total)
    return figures


def test_rate_and_eta_are_absent_until_enough_reports_over_enough_time():
    pace = Pace()
    assert pace.observe(0.0, 0, 0.0) == {}
    assert pace.observe(0.1, 10, 0.1) == {}  # two reports: not yet
    assert pace.observe(0.2, 20, 0.2) == {}  # three, but within MIN_SPAN
    figures = pace.observe(MIN_SPAN, 100, 0.5)
    assert MIN_REPORTS <= 4 and set(figures) == {"rate", "eta"}


def test_a_steady_counter_gives_its_rate_and_the_time_left():
    figures = feed(Pace(), [(t * 0.5, 50 * t) for t in range(11)], total=1000)  # 100/s
    assert figures["rate"] == 100.0
    assert figures["eta"] == 5  # 500 left at 100/s


def test_the_rate_follows_a_change_of_speed_smoothly():
    pace = Pace()
    reports = [(float(t), 10.0 * t) for t in range(11)]  # 10/s for 10 s
    reports += [(10.0 + t, 100.0 + 50 * t) for t in range(1, 31)]  # then 50/s for 30 s
    rates = []
    for now, current in reports:
        rates.append(pace.observe(now, current, None).get("rate"))
    assert rates[10] == 10.0
    assert 10 < rates[11] < 30  # one report at the new speed moves it part of the way
    assert rates[-1] == pytest.approx(50, rel=0.01)  # thirty seconds later it is there


def test_a_counter_that_goes_back_starts_a_new_estimate():
    pace = Pace()
    feed(pace, [(t * 0.5, 10 * t) for t in range(6)], total=100)
    assert pace.observe(3.0, 1, 0.01) == {}  # a new phase: nothing until it means something


def test_a_stopped_counter_has_no_eta_and_a_done_one_has_zero():
    pace = Pace()
    feed(pace, [(0.0, 0), (0.5, 0), (1.0, 0), (1.5, 0)], total=10)
    assert pace.observe(2.0, 0, 0.0) == {"rate": 0.0}  # no speed: no time left
    done = Pace()
    assert feed(done, [(0.0, 5), (0.5, 8), (1.0, 10)], total=10)["eta"] == 0


def test_rounded_keeps_three_significant_figures():
    assert (rounded(1234.5), rounded(0.012345), rounded(99.95), rounded(0)) == (
        1230.0, 0.0123, 100.0, 0.0)


def test_weighted_steps_roll_up_with_a_plan():
    tree = StepTree()
    tree.root.plan({"download": 3, "parse": 1})
    assert tree.fraction() == 0
    tree.enter("download")
    tree.progress(0.5)
    assert tree.fraction() == pytest.approx(3 * 0.5 / 4)
    tree.leave()
    assert tree.fraction() == pytest.approx(0.75)
    tree.enter("parse", steps=None)
    tree.enter("read", 1)  # nested: parse = read (1) + check (1)
    tree.leave()
    tree.enter("check", 1)
    assert tree.path == ["parse", "check"]
    tree.progress(0.5)
    assert tree.fraction() == pytest.approx(0.75 + 0.25 * (1 + 0.5) / 2)
    tree.leave()
    tree.leave()
    assert tree.fraction() == 1


def test_steps_without_a_plan_count_once_started_and_repeats_are_numbered():
    tree = StepTree()
    tree.enter("fetch", 1)
    tree.leave()
    assert tree.fraction() == 1  # the only step known so far
    tree.enter("fetch", 1)
    assert tree.path == ["fetch#2"] and tree.fraction() == 0.5
    with pytest.raises(ValueError):
        tree.enter("x", weight=0)


def test_lifecycle_keys_are_by_task_and_attempt():
    assert lifecycle_key("execution-start", {}) == "start"
    assert lifecycle_key("execution-cancelled", {}) == lifecycle_key("execution-complete", {}) == "end"
    assert lifecycle_key("task-start", {"taskId": "a"}) == "task:a:1:start"
    assert lifecycle_key("task-start", {"taskId": "a", "attempt": 2}) == "task:a:2:start"
    assert lifecycle_key("task-retry", {"taskId": "a", "attempt": 1}) == "task:a:1:retry"
    assert lifecycle_key("task-fail", {"taskId": "a"}) == lifecycle_key("task-complete",
                                                                         {"taskId": "a"})
    assert lifecycle_key("custom", {"taskId": "a"}) is None
    assert len(lifecycle_key("task-start", {"taskId": "x" * 300})) <= 120


def test_progress_keys_repeat_in_a_rerun_and_tell_phases_apart():
    def run() -> list[str]:
        keys = ProgressKeys()
        first = [keys.key("t", [], n, 3, None) for n in (1, 2, 3)]
        second = [keys.key("t", [], n, 3, None) for n in (1, 2, 3)]  # a second loop
        return first + second

    one, again = run(), run()
    assert one == again  # a re-run sends the same keys: nothing twice
    assert len(set(one)) == 6  # the second loop is another phase, not a repeat
    keys = ProgressKeys()
    assert keys.key("t", ["a"], 1, 3, None) != keys.key("t", ["b"], 1, 3, None)


def test_the_execution_rolls_running_tasks_in():
    state = ExecutionState("e", total=4)
    state.start()
    for task in ("a", "b", "c"):
        state.task_start(task)
    state.task_end("a")
    state.progress(50, 100, task_id="b")
    state.progress(1, 4, task_id="c")
    assert state.fraction() == pytest.approx((1 + 0.5 + 0.25) / 4)
    assert state.percent == 43
    rebuilt = ExecutionState.from_events("e", [
        Event(n, event, encode_data(data)) for n, (event, data) in enumerate([
            ("execution-start", {"executionId": "e", "totalTasks": 2, "startTime": 0}),
            ("task-start", {"taskId": "a"}), ("task-start", {"taskId": "b"}),
            ("progress", {"progress": 3, "total": 4, "taskId": "a"}),
            ("progress", {"progress": 1, "total": 10, "taskId": "b", "percent": 60.0}),
        ], 1)])
    assert rebuilt.fraction() == pytest.approx((0.75 + 0.6) / 2)


def test_progress_payloads_carry_percent_step_rate_and_eta():
    state = ExecutionState("e")
    state.plan({"download": 3, "parse": 1})
    _, start = state.step_start("download")
    assert start == {"progress": 0.0, "total": 100, "message": "download", "step": ["download"],
                     "percent": 0.0}
    _, data = state.progress(50, 100, "rows")
    assert data["step"] == ["download"] and data["percent"] == 37.5
    assert "rate" not in data and "eta" not in data  # one report says nothing yet
    state.step_end()
    assert state.last_progress is not None and state.last_progress["stepDone"] is True
    assert state.own_fraction == pytest.approx(0.75)


def test_stall_and_cancel_request_are_part_of_the_state():
    events = [("progress", {"progress": 1, "total": 2}),
              ("execution-stalled", {"executionId": "e", "lastReportAt": 0, "after": 30}),
              ("execution-cancel-requested", {"executionId": "e", "by": "user", "at": 1})]
    state = ExecutionState.from_events("e", [Event(n, e, encode_data(d))
                                             for n, (e, d) in enumerate(events, 1)])
    assert state.stalled is False and state.cancel_requested  # any later event ends a stall
    state.apply("execution-stalled", {"executionId": "e"})
    assert state.stalled and state.as_dict()["stalled"] == {"executionId": "e"}
    state.apply("execution-resumed", {"executionId": "e"})
    assert not state.stalled and state.as_dict()["cancelRequested"]["by"] == "user"
