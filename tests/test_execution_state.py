"""get_execution_state: the state of an execution rebuilt from its log, in memory and on Redis."""

from __future__ import annotations

import pytest

import django_sse_exec as sse
from django_sse_exec.execution.error_detail import GENERIC_MESSAGE
from django_sse_exec.execution.snapshot import read_all
from django_sse_exec.store.memory import MemoryStore
from django_sse_exec.wire import Event
from tests.test_commands import redis_setup  # noqa: F401  (fixture)


def report_a_run(execution_id: str) -> None:
    """Two tasks succeed, one is retried then fails; a progress message on the way."""
    with pytest.raises(RuntimeError):
        with sse.ExecutionReporter(execution_id, total=4) as report:
            report.task_start("fetch", "Fetch <data>")
            report.progress(50, 100, "half way")
            report.task_complete("fetch")
            report.task_start("load")
            report.task_complete("load")
            report.task_start("check", "Check")
            sse.send_sse_event(execution_id, "task-retry", {"taskId": "check", "taskTitle": "Check",
                                                            "attempt": 2, "error": "flaky"})
            report.task_start("check", "Check")
            report.task_fail("check", "still failing")
            raise RuntimeError("stop")


def assert_the_run(state: sse.ExecutionState, execution_id: str) -> None:
    assert state.execution_id == execution_id
    assert state.status == "failed" and state.closed and state.finished
    assert state.last_event_id == 12  # start, progress, 2 + 2 + 4 task events (a retry), summary, close
    assert (state.total_tasks(), state.completed, state.successful, state.failed) == (4, 3, 2, 1)
    assert state.percent == 75
    assert [(t.task_id, t.title, t.status) for t in state.tasks.values()] == [
        ("fetch", "Fetch <data>", "success"), ("load", "load", "success"),
        ("check", "Check", "failed")]
    check = state.tasks["check"]
    assert check.error == "still failing" and isinstance(check.duration, int)
    assert state.summary is not None and state.summary["status"] == "failed"
    # (with DEBUG off an uncaught exception is published as its type only)
    assert state.summary["error"] == f"RuntimeError: {GENERIC_MESSAGE}"
    assert state.summary["cancelled"] == 1
    assert state.last_progress == {"progress": 50, "total": 100, "message": "half way",
                                   "taskId": "fetch", "percent": 50.0}
    data = state.as_dict()
    assert data["status"] == "failed" and data["lastEventId"] == 12
    assert [t["status"] for t in data["tasks"]] == ["success", "success", "failed"]


@pytest.fixture
def memory(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.SSE_EXEC = {"STORE": "memory"}


def test_state_of_a_reported_run(memory, execution_id):
    report_a_run(execution_id)
    assert_the_run(sse.get_execution_state(execution_id), execution_id)


def test_state_on_redis(redis_setup, execution_id):  # noqa: F811
    with redis_setup.settings():
        report_a_run(execution_id)
        assert_the_run(sse.get_execution_state(execution_id), execution_id)


async def test_async_twin_and_the_steps_of_a_run(memory, execution_id):
    state = await sse.aget_execution_state(execution_id)
    assert (state.status, state.last_event_id, state.percent, state.tasks) == ("pending", 0, 0, {})
    await sse.asend_sse_event(execution_id, "execution-start",
                              {"executionId": execution_id, "totalTasks": 2, "startTime": 1})
    await sse.asend_sse_event(execution_id, "task-start", {"taskId": "a", "taskTitle": "A"})
    state = await sse.aget_execution_state(execution_id)
    assert (state.status, state.last_event_id, state.total_tasks()) == ("running", 2, 2)
    assert state.tasks["a"].status == "running" and state.tasks["a"].duration is None
    await sse.aclose_sse_connections(execution_id)  # closed without a summary
    state = await sse.aget_execution_state(execution_id)
    assert (state.status, state.closed, state.summary) == ("closed", True, None)


def test_sync_twin_refuses_a_running_loop_and_bad_ids(memory):
    import asyncio

    async def inside() -> None:
        sse.get_execution_state("x")

    with pytest.raises(RuntimeError, match="aget_execution_state"):
        asyncio.run(inside())
    with pytest.raises(ValueError, match="invalid execution_id"):
        sse.get_execution_state("bad id")


def test_the_reporters_own_state_has_the_same_fields(memory, execution_id):
    state = sse.ExecutionState(execution_id, total=2)
    state.start()
    state.task_start("a", "A")
    assert (state.status, state.tasks["a"].status) == ("running", "running")
    state.task_end("a", error="boom")
    state.finish()
    assert (state.status, state.tasks["a"].status, state.tasks["a"].error) == ("failed", "failed", "boom")


async def test_reads_every_page(execution_id):
    store = MemoryStore(page_events=3)
    for n in range(10):
        await store.append(execution_id, "step", str(n))
    log = await read_all(store, execution_id)
    assert [e.id for e in log.events] == list(range(1, 11))
    assert (log.last_id, log.first_id, log.closed) == (10, 1, False)
    log = await read_all(store, execution_id, after=2, upto=8)
    assert [e.id for e in log.events] == list(range(3, 9))
    assert log.events[0] == Event(3, "step", "2")


async def test_fold_reads_page_by_page_and_lean_keeps_the_vocabulary_only(execution_id):
    import json

    from django_sse_exec.execution.snapshot import fold_log

    store = MemoryStore(page_events=3)
    reads: list[int] = []
    read = store.read

    async def counted(*args: object, **kwargs: object) -> object:
        reads.append(1)
        return await read(*args, **kwargs)  # type: ignore[arg-type]

    store.read = counted  # type: ignore[method-assign]
    await store.append(execution_id, "execution-start", json.dumps({"totalTasks": 4}))
    for n in range(1, 5):
        await store.append(execution_id, "task-complete" if n != 3 else "task-fail", json.dumps({
            "taskId": f"t{n}", "status": "success" if n != 3 else "failed", "duration": n,
            "progress": n, "total": 4, "output": "x" * 1000}))
    full, lean = await fold_log(store, execution_id), await fold_log(store, execution_id, lean=True)
    assert len(reads) == 4  # two reads each: pages of three events
    for state in (full, lean):
        assert (state.last_event_id, state.completed, state.failed, state.percent) == (5, 4, 1, 100)
        assert [t.status for t in state.tasks.values()] == ["success", "success", "failed", "success"]
    assert full.results[0]["output"] == "x" * 1000
    assert lean.results[0] == {"taskId": "t1", "status": "success", "duration": 1, "progress": 1,
                               "total": 4}


def test_check_warns_when_the_templates_cannot_be_found(settings):
    from django.core.checks import run_checks

    assert "django_sse_exec.W007" not in [m.id for m in run_checks()]
    settings.TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates",
                           "DIRS": [], "APP_DIRS": False}]
    warning = [m for m in run_checks() if m.id == "django_sse_exec.W007"]
    assert warning and "APP_DIRS" in warning[0].hint


async def test_malformed_payloads_in_the_log_do_not_break_the_state(memory, execution_id):
    from django.template.loader import render_to_string

    from django_sse_exec.render.widget import state_context

    for event, data in [("execution-start", {"totalTasks": "many"}), ("task-start", {"taskId": 5}),
                        ("task-complete", {"taskId": "a", "duration": "long", "error": 3}),
                        ("progress", [1, 2]), ("task-fail", "text"),
                        ("execution-complete", {"status": None, "completed": "x", "total": []})]:
        await sse.asend_sse_event(execution_id, event, data)
    state = await sse.aget_execution_state(execution_id)
    assert (state.status, state.completed, state.percent) == ("closed", 1, 0)
    assert state.tasks["a"].duration is None and state.tasks["a"].error is None
    assert 'data-status="closed"' in render_to_string("django_sse_exec/state.html",
                                                      state_context(state))
