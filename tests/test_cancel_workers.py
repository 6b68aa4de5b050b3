"""Cancel from the page, end to end, with real workers: headless Chromium clicks the
widget's Cancel button while a real Celery worker, or a real ``db_worker``, runs the
task; the producer stops at its next report and the execution ends
``execution-cancelled`` then ``stream-closed``. Also: a Celery group rolls up into its
execution and stops whole, a chain's queued tasks never run, and a ``progress_task``
cancelled while queued never runs its function.

Everything meets in Redis; the page is served by daphne (``/test/htmx/<id>?cancel``,
the widget with ``cancel=True``); cancels are POSTed to ``cancel_url`` (the widget's
form, or the test) in the web process, never in this one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from django_sse_exec import cancel_url, get_execution_state
from django_sse_exec.celery import start_execution
from django_sse_exec.execution.snapshot import read_all
from django_sse_exec.runtime.sync import run_sync
from django_sse_exec.store import get_store
from tests.helpers import names, wait_until_sync
from tests.test_browser import browser  # noqa: F401  (fixture)
from tests.test_celery_reporting import ReportingWorker, on_redis, setup, sig, web  # noqa: F401
from tests.test_commands import RedisSetup
from tests.test_tasks_worker import DbWorker, deployment, enqueue, sqlite_env  # noqa: F401
from tests.workers import run_sender

TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def worker(setup: RedisSetup) -> Iterator[ReportingWorker]:  # noqa: F811
    with ReportingWorker(setup.url, env=setup.env, concurrency=3) as w:
        yield w


def off_loop(func: Any, *args: Any) -> Any:
    """``func(*args)`` in a thread of its own: Playwright's sync API runs an event loop in
    this one, and the app's sync helpers refuse to run inside a loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(func, *args).result()


def logged(execution_id: str) -> list[tuple[str, Any]]:
    """The execution's events as the store holds them (this process is on the same Redis)."""
    log = off_loop(run_sync, "read", lambda: read_all(get_store(), execution_id))
    return [(e.event, json.loads(e.data) if e.event != "stream-closed" else None)
            for e in log.events]


def state_of(execution_id: str) -> Any:
    return off_loop(get_execution_state, execution_id)


def closed(execution_id: str) -> bool:
    return bool(state_of(execution_id).closed)


def cancel_in_page(browser: Any, base_url: str, execution_id: str, ready: str) -> dict:  # noqa: F811
    """Open the widget, wait for ``ready`` (a selector), click Cancel, wait for the end;
    returns what the page showed."""
    page = browser.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{base_url}/test/htmx/{execution_id}?cancel")
    page.wait_for_selector(ready)
    shown_before = page.locator(".sse-exec__body").get_attribute("data-status")
    page.click(".sse-exec__cancel-button")
    page.wait_for_selector(".sse-exec__body[data-status='cancelled']")
    shown = {"before": shown_before, "badge": page.inner_text(".sse-exec__badge"),
             "cancel_visible": page.locator(".sse-exec__cancel").is_visible(),
             "errors": errors}
    page.close()
    return shown


def test_a_celery_task_is_cancelled_from_the_page(browser, worker, web, on_redis,  # noqa: F811
                                                   execution_id):
    off_loop(start_execution, sig(worker, "slow_rows", 300, 0.1), execution_id)
    shown = cancel_in_page(browser, web.base_url, execution_id, ".sse-exec__rate")
    assert shown["before"] == "running" and shown["badge"] == "Cancelled", shown
    assert not shown["cancel_visible"] and not shown["errors"]
    wait_until_sync(lambda: closed(execution_id), 30, "stream-closed")
    events = logged(execution_id)
    kinds = names(events)
    assert "execution-cancel-requested" in kinds, (kinds, events[-3:])
    at = kinds.index("execution-cancel-requested")
    assert kinds[-2:] == ["execution-cancelled", "stream-closed"], kinds
    assert set(kinds[at + 1:-2]) <= {"progress"} and len(kinds[at + 1:-2]) <= 1  # stopped at once
    assert "task-complete" not in kinds
    rows = [data["progress"] for event, data in events if event == "progress"]
    assert 0 < rows[-1] < 300
    assert events[at][1]["by"] == "link"
    summary = events[-2][1]
    assert (summary["status"], summary["cancelled"], summary["completed"]) == ("cancelled", 1, 0)
    rated = [data for event, data in events if event == "progress" and "rate" in data]
    assert rated and all(5 <= d["rate"] <= 11 and d["eta"] > 0 for d in rated[-3:]), rated[-3:]
    wait_until_sync(lambda: "raised expected: ExecutionCancelled" in worker.log(), 15,
                    "the worker ended the task as cancelled (expected: not logged as an error)")
    assert "raised unexpected: ExecutionCancelled" not in worker.log()


def test_a_group_rolls_up_and_stops_whole(worker, web, on_redis, execution_id):  # noqa: F811
    from celery import group

    off_loop(start_execution, group(sig(worker, "slow_rows", 300, 0.05) for _ in range(3)),
             execution_id)

    def all_moving() -> bool:
        state = state_of(execution_id)
        return len(state.running) == 3 and all(
            (state.tasks[t].fraction or 0) > 0.05 for t in state.running)

    wait_until_sync(all_moving, 60, "three tasks past 5 %")
    state = state_of(execution_id)
    shares = [state.tasks[t].fraction or 0.0 for t in state.running]
    assert state.fraction() == pytest.approx(sum(shares) / 3)  # the group rolls up
    assert 0 < state.percent < 100
    answer = httpx.post(web.base_url + cancel_url(execution_id))
    assert answer.status_code == 202
    wait_until_sync(lambda: closed(execution_id), 30, "stream-closed")
    kinds = names(logged(execution_id))
    assert kinds.count("execution-cancelled") == 1 and kinds[-1] == "stream-closed"
    assert "task-complete" not in kinds and "execution-complete" not in kinds
    wait_until_sync(lambda: worker.log().count("raised expected: ExecutionCancelled") >= 3, 20,
                    "every member stopped")
    assert "Tasks flagged as revoked" in worker.log()  # the first to stop revoked the others


def test_a_chains_queued_tasks_never_run(worker, web, on_redis, execution_id):  # noqa: F811
    from celery import chain

    off_loop(start_execution, chain(sig(worker, "slow_rows", 200, 0.05, immutable=True),
                                    sig(worker, "slow_rows", 5, 0.01, immutable=True)),
             execution_id)
    wait_until_sync(lambda: "progress" in names(logged(execution_id)), 30,
                    "first progress")
    assert httpx.post(web.base_url + cancel_url(execution_id)).status_code == 202
    wait_until_sync(lambda: closed(execution_id), 30, "stream-closed")
    events = logged(execution_id)
    assert names(events).count("task-start") == 1  # the second never started
    assert events[-2][1]["cancelled"] == 2


def test_a_progress_task_is_cancelled_from_the_page(browser, deployment, sqlite_env):  # noqa: F811
    test = deployment(sqlite_env)
    worker = DbWorker(test.env, test.queue)
    test.workers.append(worker)
    worker.start()
    result_id = enqueue(test.env, test.queue, "count_rows", 400, 0.1)
    with on_deployment_redis(test):
        shown = cancel_in_page(browser, test.server.base_url, result_id, ".sse-exec__eta")
        assert shown["badge"] == "Cancelled" and not shown["errors"], shown
        wait_until_sync(lambda: closed(result_id), 30, "stream-closed")
        events = logged(result_id)
    kinds = names(events)
    assert kinds[:2] == ["execution-start", "task-start"], test.logs()
    after = kinds[kinds.index("execution-cancel-requested") + 1:]
    assert after in (["execution-cancelled", "stream-closed"],  # the report that saw it, if any
                     ["progress", "execution-cancelled", "stream-closed"]), kinds
    assert "task-complete" not in kinds and "task-fail" not in kinds
    assert [d["progress"] for e, d in events if e == "progress"][-1] < 400
    status = wait_for_status(test.env, result_id)
    assert status == ["FAILED", "ExecutionCancelled"], test.logs()


def test_a_progress_task_cancelled_while_queued_never_runs(deployment, sqlite_env):  # noqa: F811
    test = deployment(sqlite_env)
    result_id = enqueue(test.env, test.queue, "count_rows", 3, 0.0)
    assert httpx.post(test.server.base_url + cancel_url(result_id)).status_code == 202
    worker = DbWorker(test.env, test.queue)
    test.workers.append(worker)
    worker.start()
    with on_deployment_redis(test):
        wait_until_sync(lambda: closed(result_id), 30, "stream-closed")
        kinds = names(logged(result_id))
    assert kinds == ["execution-cancel-requested", "execution-cancelled", "stream-closed"], \
        test.logs()
    assert wait_for_status(test.env, result_id) == ["FAILED", "ExecutionCancelled"]


def on_deployment_redis(test: Any) -> Any:
    """This process on the deployment's Redis (its layer and store)."""
    return RedisSetup(test.redis_url, test.env["TEST_KEY_PREFIX"]).settings()


def wait_for_status(env: dict[str, str], result_id: str) -> list[str]:
    """The task result's status and its error's class, once it ended (from another process)."""
    code = f"""
        from django_tasks_db.models import DBTaskResult
        row = DBTaskResult.objects.get(id={result_id!r})
        emit([row.status, (row.exception_class_path or "").rsplit(".", 1)[-1]])
    """
    deadline = time.monotonic() + 30
    while True:
        status = run_sender({**env, "DJANGO_SETTINGS_MODULE": "tests.settings_tasks"}, code)
        if status[0] in ("FAILED", "SUCCESSFUL") or time.monotonic() > deadline:
            return list(status)
        time.sleep(0.5)
