"""The progress widget in real headless Chromium with the real htmx files, against real daphne.

The pages have no script of their own: only ``{% sse_exec_scripts %}`` (htmx
2.0.11 and htmx-ext-sse 2.2.4, vendored from npm, and the widget's helper) and
``{% sse_exec_progress %}``.
They reach 100 % with the right summary, reload mid-run straight into the same
state, stop requesting the stream after ``stream-closed``, agree across tabs,
and show a refused stream instead of retrying it. htmx 4's built-in
``hx-sse:connect`` swaps the state fragments too.
"""

from __future__ import annotations

import threading
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from django_sse_exec.execution.state import ExecutionState
from tests.helpers import wait_until_sync
from tests.server import Server
from tests.test_browser import ARTIFACTS, TIMEOUT_MS, browser, open_tabs  # noqa: F401  (browser: the module's Chromium)

#: Where every script of the pages comes from: the app's static files (htmx, its SSE
#: extension, the widget's helper), none of the page's own.
APP_STATIC = "/static/django_sse_exec/"
BODY = ".sse-exec__body"


class Run(threading.Thread):
    """An execution sent to a server from another thread, task by task, like a worker would.

    ``fail`` lists the 1-based numbers of the tasks that fail. ``gate`` (an
    Event), when given, is waited on before each task after ``hold_after``.
    """

    def __init__(self, server: Server, execution_id: str, tasks: int, delay: float,
                 fail: tuple[int, ...] = (), hold_after: int | None = None) -> None:
        super().__init__(daemon=True)
        self.server, self.execution_id, self.tasks, self.delay = server, execution_id, tasks, delay
        self.fail, self.hold_after = fail, hold_after
        self.gate = threading.Event()
        self.done_tasks = 0
        self.error: BaseException | None = None
        self.summary: dict[str, Any] | None = None

    def run(self) -> None:
        try:
            state = ExecutionState(self.execution_id, total=self.tasks)
            self.server.send(self.execution_id, state.start())
            for number in range(1, self.tasks + 1):
                if self.hold_after is not None and number > self.hold_after:
                    self.gate.wait(60)
                task_id = f"task-{number}"
                self.server.send(self.execution_id, state.task_start(task_id, f"Step {number}"))
                time.sleep(self.delay)
                error = "disk full" if number in self.fail else None
                self.server.send(self.execution_id, state.task_end(task_id, error=error))
                self.done_tasks = number
            messages = state.finish()
            self.summary = messages[-1][1]
            self.server.send(self.execution_id, *messages)
            self.server.close(self.execution_id)
        except BaseException as exc:  # surfaced by finish()
            self.error = exc

    def finish(self, timeout: float = 60) -> None:
        self.gate.set()
        self.join(timeout)
        assert not self.is_alive(), "the run did not finish"
        assert self.error is None, self.error


class Tab:
    """A tab on a widget page, counting its stream requests."""

    def __init__(self, browser: Any, url: str, width: int = 900) -> None:  # noqa: F811
        self.context = browser.new_context(viewport={"width": width, "height": 900})
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.errors: list[str] = []
        self.streams: list[tuple[float, str]] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("request", self._request)
        self.url = url

    def _request(self, request: Any) -> None:
        if "/events?" in request.url:
            self.streams.append((time.monotonic(), request.url))

    def open(self) -> "Tab":
        self.page.goto(self.url)
        return self

    def body(self, name: str) -> str:
        return self.page.get_attribute(BODY, name) or ""

    def wait_status(self, *statuses: str, timeout: float = TIMEOUT_MS) -> None:
        self.page.wait_for_function(
            "statuses => statuses.includes(document.querySelector('.sse-exec__body')?.dataset.status)",
            arg=list(statuses), timeout=timeout)

    def rows(self) -> list[tuple[str, str]]:
        return [tuple(row) for row in self.page.eval_on_selector_all(
            ".sse-exec__task", "els => els.map(e => [e.dataset.taskId || '', e.dataset.status])")]

    def summary(self) -> dict[str, str]:
        return self.page.eval_on_selector_all(
            ".sse-exec__summary dd", "els => Object.fromEntries(els.map(e => [e.dataset.field, e.textContent]))")

    def state_html(self) -> str:
        return self.page.inner_html(".sse-exec__state")

    def streams_since(self, moment: float) -> int:
        return sum(1 for at, _ in self.streams if at >= moment)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def tabs(browser: Any) -> Any:  # noqa: F811
    """``tabs(url, width=900)`` opens a tab; all are closed after the test."""
    yield from open_tabs(lambda url, width=900: Tab(browser, url, width))


def test_page_without_script_of_its_own_reaches_100_percent(server, tabs, execution_id):
    tab = tabs(f"{server.base_url}/test/htmx/{execution_id}").open()
    scripts = tab.page.eval_on_selector_all("script", "els => els.map(e => e.src)")
    assert len(scripts) == 3 and all(APP_STATIC in src for src in scripts), scripts
    assert tab.page.eval_on_selector_all("script:not([src]), [onclick], [hx-on]", "els => els.length") == 0
    assert tab.body("data-status") == "pending"
    tab.page.wait_for_function("() => document.querySelector('.sse-exec')['htmx-internal-data']"
                               "?.sseEventSource?.readyState === 1")
    run = Run(server, execution_id, tasks=8, delay=0.05, fail=(3, 6))
    run.start()
    tab.wait_status("failed")
    run.finish()
    assert tab.page.get_attribute("[role=progressbar]", "aria-valuenow") == "100"
    assert tab.page.inner_text(".sse-exec__percent").replace("\u00a0", " ") == "100 %"
    assert tab.rows() == [(f"task-{n}", "failed" if n in (3, 6) else "success") for n in range(1, 9)]
    summary = tab.summary()
    assert (summary["successful"], summary["failed"], summary["cancelled"]) == ("6", "2", "0")
    assert run.summary is not None and run.summary["successful"] == 6
    # The live region announced the end; the stream was closed, not retried.
    tab.page.wait_for_function("() => document.querySelector('.sse-exec__announce')"
                               ".textContent.includes('Finished with failures')")
    assert len(tab.streams) == 1
    # A reload of the ended execution renders the same state, and opens no stream at all.
    live = tab.state_html()
    reloaded_at = time.monotonic()
    tab.page.reload()
    assert tab.body("data-status") == "failed"
    assert tab.state_html() == live
    assert tab.page.get_attribute(".sse-exec", "sse-connect") is None
    tab.page.wait_for_timeout(1000)
    assert tab.streams_since(reloaded_at) == 0


def test_reload_mid_run_shows_the_same_state_at_once_and_goes_on(server, tabs, execution_id):
    run = Run(server, execution_id, tasks=10, delay=0.05, hold_after=4)
    tab = tabs(f"{server.base_url}/test/htmx/{execution_id}").open()
    run.start()
    wait_until_sync(lambda: run.done_tasks == 4, 30, "four tasks")
    tab.page.wait_for_function("() => document.querySelectorAll('.sse-exec__task[data-status=success]').length === 4")
    before = tab.state_html()
    last_id = tab.body("data-last-event-id")
    # The first paint after a reload is the state already (no stream has said anything yet),
    # and the stream resumes after it instead of replaying the execution.
    tab.page.route("**/events?*", lambda route: None)  # hold the stream: see the first paint alone
    tab.page.reload(wait_until="domcontentloaded")
    assert tab.state_html() == before
    assert tab.body("data-last-event-id") == last_id
    tab.page.unroute("**/events?*")
    tab.page.reload()
    assert tab.state_html() == before
    tab.page.wait_for_function("() => document.querySelector('.sse-exec')['htmx-internal-data']"
                               "?.sseEventSource?.readyState === 1")
    assert f"last_event_id={last_id}" in tab.streams[-1][1]
    run.finish()
    tab.wait_status("success")
    assert tab.rows() == [(f"task-{n}", "success") for n in range(1, 11)]
    assert tab.page.get_attribute("[role=progressbar]", "aria-valuenow") == "100"
    assert tab.summary()["successful"] == "10"


def test_no_stream_requests_after_stream_closed(server, tabs, execution_id):
    tab = tabs(f"{server.base_url}/test/htmx/{execution_id}").open()
    tab.page.wait_for_function("() => document.querySelector('.sse-exec')['htmx-internal-data']"
                               "?.sseEventSource?.readyState === 1")
    run = Run(server, execution_id, tasks=3, delay=0.02)
    run.start()
    tab.wait_status("success")
    run.finish()
    closed_at = time.monotonic()
    tab.page.wait_for_timeout(12_000)
    assert tab.streams_since(closed_at) == 0
    assert len(tab.streams) == 1
    assert tab.page.evaluate("() => document.querySelector('.sse-exec')['htmx-internal-data']"
                             ".sseEventSource.readyState") == 2  # CLOSED


def test_two_tabs_agree(server, tabs, execution_id):
    run = Run(server, execution_id, tasks=12, delay=0.03, fail=(5,), hold_after=6)
    first = tabs(f"{server.base_url}/test/htmx/{execution_id}").open()
    run.start()
    wait_until_sync(lambda: run.done_tasks == 6, 30, "six tasks")
    second = tabs(f"{server.base_url}/test/htmx/{execution_id}").open()
    for tab in (first, second):  # paused half way: both show the same six ended tasks
        tab.page.wait_for_function(
            "() => document.querySelectorAll('.sse-exec__task[data-task-id]').length === 6"
            " && !document.querySelector('.sse-exec__task[data-status=running]')")
    assert first.state_html() == second.state_html()
    run.finish()
    for tab in (first, second):
        tab.wait_status("failed")
    assert first.state_html() == second.state_html()
    assert first.summary()["failed"] == second.summary()["failed"] == "1"


def test_refused_stream_shows_why_and_stops(server, tabs, execution_id):
    """A token bound to a user who is not logged in: the stream answers 403."""
    tab = tabs(f"{server.base_url}/test/htmx/{execution_id}?user=999").open()
    refused = tab.page.wait_for_selector(".sse-exec__refused")
    assert "login required" in refused.inner_text()
    assert tab.page.get_attribute(".sse-exec", "data-status") == "refused"
    assert tab.page.query_selector(".sse-exec__body") is None  # no state shown to whom it is refused
    # htmx-ext-sse had already scheduled its retry of the refused stream when the
    # widget was replaced: that one retry still goes out, then nothing.
    tab.page.wait_for_timeout(2000)
    assert 1 <= len(tab.streams) <= 2, tab.streams
    settled = time.monotonic()
    tab.page.wait_for_timeout(10_000)
    assert tab.streams_since(settled) == 0


def test_htmx_4_hx_sse_swaps_the_state_messages(server, tabs, execution_id):
    """htmx 4 swaps unnamed messages: the state fragment, with no extension of htmx 2."""
    tab = tabs(f"{server.base_url}/test/htmx4/{execution_id}").open()
    wait_until_sync(lambda: len(tab.streams) == 1, 10, "the stream request")
    run = Run(server, execution_id, tasks=5, delay=0.03, fail=(2,))
    run.start()
    tab.wait_status("failed")
    run.finish()
    assert tab.page.get_attribute("[role=progressbar]", "aria-valuenow") == "100"
    assert tab.rows() == [(f"task-{n}", "failed" if n == 2 else "success") for n in range(1, 6)]
    closed_at = time.monotonic()
    tab.page.wait_for_timeout(5000)
    assert tab.streams_since(closed_at) == 0


def test_htmx_4_does_not_retry_a_refused_stream(server, tabs, execution_id):
    tab = tabs(f"{server.base_url}/test/htmx4/{execution_id}?user=999").open()
    tab.page.wait_for_function("() => document.getElementById('state').textContent.includes('login required')")
    tab.page.wait_for_timeout(5000)
    assert len(tab.streams) == 1


def test_demo_htmx_dashboard_runs_and_cancels_without_a_script_of_its_own(server, tabs):
    tab = tabs(f"{server.base_url}/htmx/", width=1200).open()
    scripts = tab.page.eval_on_selector_all("script", "els => els.map(e => e.src)")
    assert len(scripts) == 3 and all(APP_STATIC in src for src in scripts), scripts
    tab.page.fill("input[name=tasks]", "10")
    tab.page.fill("input[name=fail_percent]", "20")
    tab.page.click(".speed label:has-text('Fast')")
    tab.page.click("button[type=submit]")
    tab.page.wait_for_url("**/htmx/?execution=*")
    execution_id = tab.page.url.rsplit("=", 1)[1]
    assert tab.page.is_visible(".sse-exec__cancel-button")
    tab.wait_status("success", "failed")
    assert tab.page.get_attribute("[role=progressbar]", "aria-valuenow") == "100"
    rows = tab.rows()
    assert [task for task, _ in rows] == [f"task-{n}" for n in range(1, 11)]
    summary = tab.summary()
    assert int(summary["successful"]) == sum(1 for _, status in rows if status == "success")
    assert int(summary["failed"]) == sum(1 for _, status in rows if status == "failed")
    assert tab.page.is_hidden(".sse-exec__cancel-button")  # the CSS hides it once the run ended
    assert tab.page.is_visible(f".recent a.current:has-text('{execution_id}')")
    tab.page.wait_for_timeout(300)  # let the bar's transition end
    ARTIFACTS.mkdir(exist_ok=True)
    tab.page.screenshot(path=str(ARTIFACTS / "htmx.png"), full_page=True, animations="disabled")

    # Only executions this browser started are shown: another browser that knows the
    # id gets no widget (and so no token), nor does any made-up id.
    for url in (tab.page.url, f"{server.base_url}/htmx/?execution=not-started-here"):
        other = tabs(url).open()
        assert "not started from this browser" in other.page.inner_text(".empty")
        assert other.page.query_selector(".sse-exec") is None

    # Cancel stops a run: the widget shows it cancelled, the rest greyed out.
    tab.page.goto(f"{server.base_url}/htmx/")
    tab.page.fill("input[name=tasks]", "40")
    tab.page.click("button[type=submit]")
    tab.page.wait_for_url("**/htmx/?execution=*")
    tab.page.wait_for_function(
        "() => document.querySelectorAll('.sse-exec__task[data-status=success],"
        " .sse-exec__task[data-status=failed]').length >= 2")
    tab.page.click(".sse-exec__cancel-button")
    tab.wait_status("cancelled")
    statuses = [status for _, status in tab.rows()]
    assert len(statuses) == 40 and statuses.count("cancelled") > 0
    assert "running" not in statuses and "pending" not in statuses


def test_the_widget_reconnects_with_its_renewed_token_after_the_first_expired(make_server, tabs,
                                                                              execution_id):
    """A 6 s token renewed at half its life, streams ended after 7 s (past its expiry): the
    widget comes back (1-2 s later) with the renewed token from where it was, and shows
    every task once."""
    server = make_server("daphne", sse_exec={"KEEPALIVE": 30, "MAX_STREAM_LIFETIME": 7,
                                             "MAX_STREAM_LIFETIME_JITTER": 0,
                                             "TOKEN_RENEW_BEFORE": 60})
    tab = tabs(f"{server.base_url}/test/htmx/{execution_id}?max_age=6").open()
    run = Run(server, execution_id, tasks=4, delay=0.05, hold_after=2)
    run.start()
    tab.page.wait_for_function("() => document.querySelector('.sse-exec__count')"
                               ".textContent.startsWith('2 of 4')")
    with tab.page.expect_request(lambda r: "/events?" in r.url, timeout=20_000) as again:
        pass  # (the stream is ended after 7 s; the widget comes back)
    first, second = tab.streams[0][1], again.value.url
    query, before = parse_qs(urlsplit(second).query), parse_qs(urlsplit(first).query)
    assert query["token"] != before["token"] and int(query["last_event_id"][0]) >= 5
    # The refresh the widget asks when refused carries the renewed token too, and it works.
    refresh = tab.page.evaluate("() => document.querySelector('.sse-exec [hx-get]').getAttribute('hx-get')")
    assert parse_qs(urlsplit(refresh).query)["token"] != before["token"]  # the latest renewal's
    answer = tab.page.evaluate("async u => { const r = await fetch(u); return [r.status, await r.text()]; }",
                               refresh)
    assert answer[0] == 200 and "expired" not in answer[1] and "2 of 4" in answer[1], answer
    run.gate.set()
    tab.wait_status("success")
    run.finish()
    assert tab.rows() == [(f"task-{n}", "success") for n in range(1, 5)]
