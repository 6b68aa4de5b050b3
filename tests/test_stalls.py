"""Stalls end to end: a ``progress_task`` run by a real ``db_worker`` goes silent; with
``STALL_AFTER`` the web processes notice, exactly one of two announces
``execution-stalled`` (an atomic claim in Redis), the widget in Chromium and the admin
page of the other process show it, and the task's next report brings
``execution-resumed`` before the run ends as usual."""

from __future__ import annotations

import time

from django_sse_exec import stream_url
from tests.helpers import names, wait_until_sync
from tests.test_admin import StreamReader, create_staff, log_in
from tests.test_browser import browser  # noqa: F401  (fixture)
from tests.test_cancel_workers import logged, on_deployment_redis
from tests.test_tasks_worker import DbWorker, deployment, enqueue, sqlite_env  # noqa: F401

SETTINGS = {"STALL_AFTER": 1, "KEEPALIVE": 30}
PAUSE = 8.0


def test_a_silent_run_is_stalled_once_shown_and_resumed(browser, deployment, sqlite_env,  # noqa: F811
                                                        make_server):
    test = deployment(sqlite_env, sse_exec=SETTINGS)
    other = make_server("daphne", env=test.env, sse_exec=SETTINGS)
    create_staff({**sqlite_env, "DJANGO_SETTINGS_MODULE": "tests.settings_tasks"})
    worker = DbWorker(test.env, test.queue, SETTINGS)
    test.workers.append(worker)
    worker.start()
    result_id = enqueue(test.env, test.queue, "pause_between", PAUSE)
    # A stream on each server: both hubs run, so both check for stalls.
    readers = [StreamReader(srv.base_url + stream_url(result_id)) for srv in (test.server, other)]
    page = browser.new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{test.server.base_url}/test/htmx/{result_id}")
    page.wait_for_selector(".sse-exec__stalled")
    stalled_text = page.inner_text(".sse-exec__stalled")
    admin = log_in(browser, other, "ops")
    admin.goto(f"{other.base_url}/admin/django_sse_exec/execution/?q={result_id}")
    admin_state = admin.locator(f"tr[data-execution-id='{result_id}'] .state").inner_text()
    page.wait_for_selector(".sse-exec__body[data-status='success']")
    assert page.locator(".sse-exec__stalled").count() == 0
    admin.context.close()
    page.close()
    assert stalled_text == "Stalled: no report for 1\u00a0s" and admin_state == "stalled"
    with on_deployment_redis(test):
        wait_until_sync(lambda: names(logged(result_id))[-1:] == ["stream-closed"], 30, "end")
        events = logged(result_id)
    assert names(events) == ["execution-start", "task-start", "progress", "execution-stalled",
                             "progress", "execution-resumed", "progress", "task-complete",
                             "execution-complete", "stream-closed"], test.logs()
    stall = events[3][1]
    assert stall["executionId"] == result_id and stall["after"] == 1
    assert 0 < time.time() * 1000 - stall["lastReportAt"] < (PAUSE + 30) * 1000
    assert events[-3][1]["status"] == "success"
    for reader in readers:
        wait_until_sync(lambda r=reader: r.events[-1:] == ["stream-closed"], 10, "both streams")
        assert reader.events == names(events)
