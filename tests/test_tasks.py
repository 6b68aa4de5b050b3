"""Django's tasks framework on the immediate backend, in the test process: what a
``@progress_task`` run logs (success, failure, async, context, a later attempt),
the decorator's checks, and tasks followed through the signals (``FOLLOW_TASKS``).

The immediate backend runs a task inside ``enqueue`` in this process, so the
run's events are read from this process's store; tests/test_tasks_worker.py runs
the same tasks in real ``db_worker`` processes and reads them from daphne.
On Django 5.2 the framework is the django-tasks backport, on 6.x ``django.tasks``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import django
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from django_sse_exec import ExecutionState, aget_execution_state, get_execution_state
from django_sse_exec.execution.error_detail import GENERIC_MESSAGE
from django_sse_exec.integrations import tasks_compat, tasks_lifecycle
from django_sse_exec.integrations.tasks_compat import framework, signal_sets
from django_sse_exec.tasks import progress_task
from tests import tasks_jobs
from tests.helpers import names
from tests.server import ROOT
from tests.test_reporter import final, logged

SUCCESS = ["execution-start", "task-start", "progress", "progress", "task-complete",
           "execution-complete", "stream-closed"]


def followed(setting: object) -> override_settings:
    from django.conf import settings

    return override_settings(SSE_EXEC={**settings.SSE_EXEC, "FOLLOW_TASKS": setting})


def test_the_framework_is_djangos_own_on_6_and_the_backport_before():
    expected = "django.tasks" if django.VERSION >= (6, 0) else "django_tasks"
    assert framework().__name__ == expected
    assert type(tasks_jobs.count_rows).__module__.startswith(expected + ".")
    # Django 6 also connects to the backport's signals when it is installed (the test extra).
    assert len(signal_sets()) == (2 if django.VERSION >= (6, 0) else 1)


def test_without_the_backport_before_django_6_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setattr(tasks_compat.django, "VERSION", (5, 2, 0, "final", 0))
    monkeypatch.setattr(tasks_compat, "_optional", lambda name: None)
    with pytest.raises(ImproperlyConfigured, match=r"the \[tasks\] extra, which brings django-tasks"):
        tasks_compat.framework()
    assert tasks_compat.signal_sets() == []


def test_a_run_reports_its_execution_to_stream_closed():
    result = tasks_jobs.count_rows.enqueue(5)
    assert result.status == "SUCCESSFUL" and result.return_value == 5
    events = logged(result.id)
    # Five rows at once: the first and the last progress go out, the rest are throttled.
    assert names(events) == SUCCESS
    start, task_start, first, last, complete, summary = (d for _, d in events[:6])
    assert start["executionId"] == result.id and start["totalTasks"] == 1
    assert task_start == {"taskId": result.id, "taskTitle": "count_rows", "progress": 0,
                          "total": 1}
    assert (first["progress"], last["progress"], last["message"]) == (1, 5, "row 5")
    assert complete["taskId"] == result.id and complete["status"] == "success"
    assert "attempt" not in complete and "retry" not in task_start
    assert (summary["status"], summary["successful"], summary["failed"]) == ("success", 1, 0)
    assert events[-1][1] == {"executionId": result.id, "lastEventId": 7}


def test_a_failing_run_ends_failed_like_a_celery_task():
    result = tasks_jobs.boom.enqueue(3)
    assert result.status == "FAILED"
    events = logged(result.id)
    assert names(events) == ["execution-start", "task-start", "progress", "task-fail",
                             "execution-complete", "stream-closed"]
    assert events[1][1]["taskTitle"] == "Import the rows"
    fail = events[3][1]
    assert fail["status"] == "failed" and fail["error"] == f"ValueError: {GENERIC_MESSAGE}"
    summary = final(events)
    assert (summary["status"], summary["successful"], summary["failed"]) == ("failed", 0, 1)
    assert "error" not in summary  # as the Celery integration: the error is the task's


def test_an_async_task_function_gets_the_async_reporter_from_a_sync_enqueue():
    result = tasks_jobs.acount_rows.enqueue(3)
    assert result.status == "SUCCESSFUL" and result.return_value == 3
    assert names(logged(result.id)) == SUCCESS


async def test_an_async_task_enqueued_from_async_code():
    result = await tasks_jobs.acount_rows.aenqueue(4)
    assert result.status == "SUCCESSFUL"
    state = await aget_execution_state(result.id)
    assert state.closed and state.status == "success" and state.last_progress["progress"] == 4


def test_takes_context_passes_the_context_after_the_reporter():
    result = tasks_jobs.attempt_of.enqueue(extra=7)
    assert result.return_value == [1, result.id, result.id, 1, 7]
    assert names(logged(result.id))[-2:] == ["execution-complete", "stream-closed"]


def test_a_later_attempt_of_an_ended_execution_runs_unreported():
    """A backend that ran the result again after it failed: the run still works."""
    failed = tasks_jobs.boom.enqueue()
    before = logged(failed.id)
    again = dataclasses.replace(failed, worker_ids=[*failed.worker_ids, "another-worker"])
    context = framework().TaskContext(task_result=again)
    assert context.attempt == 2
    assert tasks_jobs.attempt_of.call(context) == [2, failed.id, failed.id, 2, 0]
    assert logged(failed.id) == before


def test_reports_after_the_execution_closed_are_dropped_and_the_task_succeeds():
    result = tasks_jobs.closed_under_it.enqueue()
    assert result.status == "SUCCESSFUL" and result.return_value == 0
    assert names(logged(result.id)) == ["execution-start", "task-start", "stream-closed"]


def test_an_attempt_after_one_that_never_ended_says_it_is_a_retry(execution_id):
    state = ExecutionState(execution_id)
    first = tasks_lifecycle.begin(state, execution_id, "job", 1)
    assert names(first) == ["execution-start", "task-start"]
    # Attempt 1's worker died: the log still shows the task running.
    again = ExecutionState.from_events(execution_id, [])
    for event, data in first:
        again.apply(event, data)
    second = tasks_lifecycle.begin(again, execution_id, "job", 2)
    assert names(second) == ["task-retry", "task-start"]
    assert second[0][1]["attempt"] == 1 and "without a result" in second[0][1]["error"]
    assert second[1][1]["attempt"] == 2 and second[1][1]["retry"] is True
    ending = tasks_lifecycle.end(again, execution_id, attempt=2)
    assert names(ending) == ["task-complete", "execution-complete"]
    assert ending[0][1]["attempt"] == 2 and ending[1][1]["status"] == "success"
    assert tasks_lifecycle.begin(again, execution_id, "job", 3) == []  # ended: nothing more


def test_the_decorator_checks_the_function_and_shows_the_framework_a_context_first():
    assert tasks_jobs.count_rows.name == "count_rows"
    assert tasks_jobs.count_rows.module_path == "tests.tasks_jobs.count_rows"
    assert tasks_jobs.count_rows.takes_context
    from django.utils.inspect import get_func_args

    assert get_func_args(tasks_jobs.count_rows.func) == ["context", "rows", "delay"]
    assert get_func_args(tasks_jobs.attempt_of.func) == ["context", "extra"]
    with pytest.raises(TypeError, match=r"takes \(reporter, \.\.\.\)"):
        progress_task(lambda: None)

    def job(reporter: object, ctx: object) -> None:
        pass

    with pytest.raises(TypeError, match="takes_context=True"):
        progress_task(takes_context=True)(job)
    with pytest.raises(Exception, match="module level"):  # the framework's own checks run
        progress_task()(job)


def test_task_options_reach_the_framework():
    assert (tasks_jobs.urgent.priority, tasks_jobs.urgent.queue_name) == (5, "default")
    assert tasks_jobs.urgent.enqueue().return_value == "urgent"


# -- undecorated tasks, followed through the signals -----------------------------------


def test_a_followed_task_is_queued_running_then_ended():
    with followed(True):  # (a change of SSE_EXEC makes a new store: read inside)
        result = tasks_jobs.plain_add.enqueue(2, 3)
        events = logged(result.id)
    assert result.return_value == 5
    assert names(events) == ["execution-start", "task-start", "task-complete",
                             "execution-complete", "stream-closed"]
    assert events[1][1]["taskTitle"] == "plain_add" and events[1][1]["taskId"] == result.id
    assert events[2][1]["duration"] >= 0 and final(events)["status"] == "success"


def test_a_followed_failure_publishes_the_exception_type_only():
    with followed(["tests.tasks_jobs."]):
        result = tasks_jobs.plain_boom.enqueue()
        events = logged(result.id)
    assert result.status == "FAILED"
    assert names(events)[-3:] == ["task-fail", "execution-complete", "stream-closed"]
    assert events[-3][1]["error"] == "KeyError" and final(events)["status"] == "failed"


def test_tasks_are_not_followed_unless_asked():
    for setting in (False, ["other.app."], []):
        with followed(setting):
            result = tasks_jobs.plain_add.enqueue(1, 1)
            assert get_execution_state(result.id).status == "pending"


def test_an_invalid_follow_tasks_fails_no_task_and_says_why(caplog):
    with followed("tests"):  # a str, not a list of prefixes: check E016 reports it
        result = tasks_jobs.plain_add.enqueue(1, 1)
    assert result.status == "SUCCESSFUL" and result.return_value == 2
    assert "tasks are not followed: SSE_EXEC[\"FOLLOW_TASKS\"] = 'tests'" in caplog.text


#: Plain tasks in a module of their own: nothing in the process imports the progress tasks.
PLAIN_TASKS = """
try:
    from django.tasks import task  # Django 6.0+
except ImportError:
    from django_tasks import task  # the backport, on Django 5.2


@task()
def add(a, b):
    return a + b
"""

#: A fresh process: set up Django, enqueue a plain task (the immediate backend runs it),
#: print how its execution ended and which integration modules were imported.
ENQUEUE = """
import sys

import django
from django.core.exceptions import ImproperlyConfigured

django.setup()
from plain_tasks import add

from django_sse_exec import get_execution_state

result = add.enqueue(2, 3)
try:
    state = get_execution_state(result.id)
    print(result.status, state.status, state.closed, end=" ")
except ImproperlyConfigured:  # the settings refuse every read while a value is invalid
    print(result.status, "refused", end=" ")
print(*(name in sys.modules for name in (
    "django_sse_exec.integrations.tasks", "django_sse_exec.integrations.tasks_follow")))
"""


@pytest.mark.parametrize("setting, expected", [
    (True, "SUCCESSFUL success True False True"),
    (["plain_tasks."], "SUCCESSFUL success True False True"),
    (False, "SUCCESSFUL pending False False False"),
    ("plain_tasks.", "SUCCESSFUL refused False False"),  # invalid (E016): the app still loads
])
def test_the_app_connects_the_followers_when_it_starts_with_follow_tasks(tmp_path, setting, expected):
    (tmp_path / "plain_tasks.py").write_text(PLAIN_TASKS)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
           "SSE_EXEC_JSON": json.dumps({"FOLLOW_TASKS": setting})}
    done = subprocess.run([sys.executable, "-c", ENQUEUE], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected, done.stderr


def test_following_does_not_report_a_progress_task_twice():
    with followed(True):
        result = tasks_jobs.count_rows.enqueue(5)
        assert names(logged(result.id)) == SUCCESS


def test_a_followed_result_the_backend_will_run_again_gets_task_retry():
    with followed(True):
        result = tasks_jobs.plain_boom.enqueue()
        assert names(logged(result.id))[-1] == "stream-closed"
        # What a backend that retries would send: the result is READY again when it finishes.
        # (Another id: the last character changed, whatever it was.)
        other = result.id[:-1] + ("y" if result.id.endswith("x") else "x")
        ready = dataclasses.replace(result, id=other, status="READY")
        signals = signal_sets()[0]  # (once: the backport's receivers are the same)
        signals.task_started.send(type(None), task_result=ready)
        signals.task_finished.send(type(None), task_result=ready)
        retried = logged(ready.id)
        assert names(retried) == ["execution-start", "task-start", "task-retry"]
        assert retried[-1][1]["error"] == "KeyError" and not get_execution_state(ready.id).closed
