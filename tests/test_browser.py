"""The demo dashboard in real headless Chromium, against real daphne servers.

A run reaches 100 % with its summary; a reload mid-run loses and repeats no
task; two tabs show "3 watching" (their two streams and the recent list's);
Cancel ends the run; steps show the rate and the time left, a stall shows and goes,
and Cancel (sse-exec.js's own control) stops it within a step; a server restart
mid-run is survived. Screenshots of the
finished dashboard (desktop and phone) are saved under ``test-artifacts/``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from django_sse_exec import stream_url
from tests.helpers import wait_until_sync
from tests.server import ROOT, Server, free_port

CHROMIUM = "/usr/bin/chromium"
#: Keep Chromium off the network (updates, sync, field trials) and out of the GPU.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = ROOT / "test-artifacts"
DESKTOP = {"width": 1200, "height": 900}
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 30_000

# Reading the page's state (window.dashboard is the dashboard's own view model).
STATE_JS = """() => ({ids: dashboard.eventIds, completed: dashboard.completed,
                      total: dashboard.total, status: dashboard.status})"""
ROWS_JS = "els => els.map(e => [e.dataset.taskId || null, e.dataset.status])"
VIEWERS_JS = "() => document.getElementById('viewers').textContent.replace(/\\s+/g, ' ')"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module; missing Chromium skips, or fails in CI."""
    if not os.access(CHROMIUM, os.X_OK):
        message = f"{CHROMIUM} is not installed (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + "; CI must run the browser tests")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Dashboard:
    """A tab on the dashboard, with the few actions and reads the tests need."""

    def __init__(self, browser: Any, base_url: str, viewport: dict[str, int] = DESKTOP,
                 same_browser_as: "Dashboard | None" = None) -> None:
        self.base_url = base_url
        # A tab of the same browser shares its cookies (the demo shows a browser
        # only the executions it started); otherwise a browser of its own.
        self.shared = same_browser_as is not None
        self.context = same_browser_as.context if same_browser_as is not None else \
            browser.new_context(viewport=viewport, device_scale_factor=1)
        self.page = self.context.new_page()
        if self.shared:
            self.page.set_viewport_size(viewport)
        self.page.set_default_timeout(TIMEOUT_MS)
        self.errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def open(self, execution_id: str | None = None, token: str | None = None) -> "Dashboard":
        """Open the dashboard, on ``execution_id`` (with a shared link's ``token``)."""
        query = f"/?execution={execution_id}" if execution_id else "/"
        self.page.goto(self.base_url + query + (f"&token={token}" if token else ""))
        return self

    def start(self, tasks: int, speed: str = "Fast", fail_percent: int = 0, steps: bool = False,
              stall: bool = False) -> str:
        """Fill the form, press Start, and return the new execution's id (``steps`` and
        ``stall``: the demo's options; off, a run sends the vocabulary alone)."""
        page = self.page
        page.fill("#tasks", str(tasks))
        page.set_checked("#steps", steps)
        page.set_checked("#stall", stall)
        page.eval_on_selector("#fail-rate", """(el, value) => {
            el.value = value; el.dispatchEvent(new Event("input", {bubbles: true})); }""",
                              str(fail_percent))
        page.click(f".speed label:has-text('{speed}')")
        page.click("#start")
        page.wait_for_function("() => dashboard.executionId && dashboard.status === 'running'")
        return page.evaluate("() => dashboard.executionId")

    def state(self) -> dict[str, Any]:
        return self.page.evaluate(STATE_JS)

    def rows(self) -> list[list[str | None]]:
        return self.page.eval_on_selector_all("#task-list li", ROWS_JS)

    def wait_completed(self, at_least: int, timeout: float = TIMEOUT_MS) -> None:
        self.page.wait_for_function(f"() => dashboard.completed >= {at_least}", timeout=timeout)

    def wait_finished(self, status: str | None = None, timeout: float = TIMEOUT_MS) -> None:
        """Wait for the summary and the closed stream (``status``: the run's final status)."""
        statuses = [status] if status else ["success", "failed", "cancelled"]
        self.page.wait_for_function(
            """statuses => statuses.includes(dashboard.status)
                && !document.getElementById('summary').hidden
                && document.getElementById('conn-state').dataset.state === 'closed'""",
            arg=statuses, timeout=timeout)

    def wait_viewers(self, count: int) -> None:
        """Wait until the page shows "<count> watching"."""
        self.page.wait_for_function(f"() => ({VIEWERS_JS})() === '{count} watching'"
                                    " && !document.getElementById('viewers').hidden")

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        self.page.screenshot(path=str(path), full_page=True, animations="disabled")
        return path

    def close(self) -> None:
        if self.shared:
            self.page.close()
        else:
            self.context.close()


def open_tabs(factory: Any) -> Iterator[Any]:
    """Yield ``make(...)``, which opens a tab with ``factory(...)``; then close every tab
    and fail on any JavaScript error they saw (tabs have ``close()`` and ``errors``)."""
    opened: list[Any] = []

    def make(*args: Any, **kwargs: Any) -> Any:
        tab = factory(*args, **kwargs)
        opened.append(tab)
        return tab

    yield make
    for tab in sorted(opened, key=lambda t: not getattr(t, "shared", False)):  # tabs first
        if not tab.page.is_closed():
            tab.close()
    errors = [e for tab in opened for e in tab.errors]
    assert errors == [], f"JavaScript errors in the page: {errors}"


@pytest.fixture
def dashboards(browser: Any) -> Iterator[Any]:
    """``dashboards(base_url, viewport=...)`` opens tabs; all are closed after the test."""
    yield from open_tabs(lambda base_url, viewport=DESKTOP, same_browser_as=None: Dashboard(
        browser, base_url, viewport, same_browser_as))


def assert_whole_run(tab: Dashboard, total: int) -> list[int]:
    """Every task shown once, in order, ended; event ids 1..n with no gap or repeat."""
    rows = tab.rows()
    assert [r[0] for r in rows] == [f"task-{i}" for i in range(1, total + 1)]
    state = tab.state()
    ids = state["ids"]
    assert ids == list(range(1, len(ids) + 1)), ids
    assert len(ids) == 2 * total + 3  # start, 2 per task, complete, stream-closed
    return ids


def test_run_reaches_100_percent_with_summary_and_screenshots(server, dashboards):
    tab = dashboards(server.base_url).open()
    assert tab.page.inner_text("#conn-state") == "Idle"
    execution_id = tab.start(tasks=10, speed="Fast", fail_percent=20)
    assert f"execution={execution_id}" in tab.page.url
    tab.wait_finished()
    assert tab.page.get_attribute("#progress", "aria-valuenow") == "100"
    assert tab.page.inner_text("#progress-text").replace("\u00a0", " ") == "100 %"
    assert_whole_run(tab, 10)
    statuses = [status for _, status in tab.rows()]
    assert set(statuses) <= {"success", "failed"}
    assert tab.page.inner_text("#sum-successful") == str(statuses.count("success"))
    assert tab.page.inner_text("#sum-failed") == str(statuses.count("failed"))
    expected = "failed" if "failed" in statuses else "success"
    assert tab.page.get_attribute("#status", "data-status") == expected
    assert tab.page.inner_text("#conn-state") == "Ended"
    recent = tab.page.locator(f"#recent a[data-execution-id='{execution_id}']")
    recent.wait_for()
    assert "current" in (recent.get_attribute("class") or "")
    tab.screenshot("dashboard.png")

    # Opening the finished execution replays it: same tasks, same summary, on a phone.
    phone = dashboards(server.base_url, PHONE, same_browser_as=tab).open(execution_id)
    phone.wait_finished(expected)
    assert phone.rows() == tab.rows()
    assert phone.state()["ids"] == tab.state()["ids"]
    width = phone.page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= PHONE["width"], "the dashboard scrolls sideways on a phone"
    phone.screenshot("dashboard-phone.png")


def test_reload_mid_run_loses_and_repeats_no_task(server, dashboards):
    tab = dashboards(server.base_url).open()
    tab.start(tasks=12, speed="Normal")
    tab.wait_completed(3)
    tab.page.reload()
    before = tab.state()["completed"]
    tab.page.wait_for_function("() => dashboard.status === 'running' && dashboard.completed >= 3")
    assert tab.page.get_attribute("#conn-state", "data-state") in ("live", "connecting")
    tab.wait_finished("success")
    assert before <= 12
    assert_whole_run(tab, 12)
    assert [status for _, status in tab.rows()] == ["success"] * 12


def test_two_tabs_show_every_stream_watching(server, dashboards):
    first = dashboards(server.base_url).open()
    execution_id = first.start(tasks=60, speed="Normal")
    try:
        second = dashboards(server.base_url, same_browser_as=first).open(execution_id)
        # Each tab's stream of the execution, and the one stream of the browser's
        # recent list (shared by its tabs) that carries it too.
        for tab in (first, second):
            tab.wait_viewers(3)
        second.close()
        first.wait_viewers(2)
    finally:
        if first.page.is_visible("#cancel"):
            first.page.click("#cancel")
            first.wait_finished("cancelled")


def test_cancel_shows_the_cancelled_state(server, dashboards):
    tab = dashboards(server.base_url).open()
    tab.start(tasks=40, speed="Normal")
    tab.wait_completed(2)
    tab.page.click("#cancel")
    tab.wait_finished("cancelled")
    state = tab.state()
    statuses = [status for _, status in tab.rows()]
    assert len(statuses) == 40
    assert "running" not in statuses and "pending" not in statuses
    done = statuses.count("success") + statuses.count("failed")
    assert done == state["completed"] and statuses.count("cancelled") == 40 - done > 0
    assert tab.page.inner_text("#sum-cancelled") == str(40 - done)
    assert tab.page.is_hidden("#cancel")
    ids = state["ids"]
    assert ids == list(range(1, len(ids) + 1))
    # Nothing arrives after the cancellation (the run really stopped).
    tab.page.wait_for_timeout(1000)
    assert tab.state()["ids"] == ids


def test_steps_show_the_pace_a_stall_and_cancel_stops_it(make_server, dashboards):
    srv = make_server("daphne", sse_exec={"KEEPALIVE": 30, "STALL_AFTER": 2})
    tab = dashboards(srv.base_url).open()
    tab.start(tasks=5, speed="Slow", steps=True, stall=True)  # task 3 goes silent for 8 s
    page = tab.page
    page.wait_for_function("() => /\\/s .* left$/.test(document.getElementById('pace').textContent)")
    pace = page.inner_text("#pace")
    assert pace.startswith("Task ") and " › " in pace, pace  # e.g. "Task 1 › process · 410/s · …"
    page.wait_for_selector("#stalled", state="visible")  # task 3's silence
    tab.screenshot("dashboard-stalled.png")
    page.wait_for_selector("#stalled", state="hidden")   # its next report
    page.wait_for_function("() => document.getElementById('pace').textContent.includes('Task 4')")
    page.click("#cancel")
    tab.wait_finished("cancelled")
    state = tab.state()
    assert state["ids"] == list(range(1, len(state["ids"]) + 1))
    assert page.is_hidden("#cancel") and page.is_hidden("#pace") and page.is_hidden("#stalled")
    assert page.is_hidden("#message")  # no "Cancelling…" once it ended
    assert 3 <= state["completed"] < 5
    tab.screenshot("dashboard-steps.png")


CLIENT_JS = """([url, after]) => {
    const t = window.t = {steps: [], resets: [], states: [], errors: [], closed: []};
    t.stream = SSEExec.connect(url + "&last_event_id=" + after, {
        handlers: {
            step: (data, meta) => t.steps.push([Number(meta.id), data.n]),
            boom: () => { throw new Error("handler bug"); },
            "stream-closed": (data) => t.closed.push(data),
        },
        onReset: (data) => t.resets.push(data),
        onStateChange: (state) => t.states.push(state),
        onError: (error, context) => t.errors.push(context + ": " + error.message),
    });
}"""


def test_js_client_contract(make_server, dashboards, execution_id):
    """sse-exec.js: handlers, stream-reset, unknown events, failing handlers, close, 204."""

    server = make_server("daphne", sse_exec={"HISTORY_MAX_EVENTS": 5})
    server.send(execution_id, *[("step", {"n": n}) for n in range(1, 11)])
    page = dashboards(server.base_url).open().page
    url = stream_url(execution_id)
    page.evaluate(CLIENT_JS, [url, 2])  # ids 3..5 were trimmed: stream-reset, then 6..10
    page.wait_for_function("() => t.steps.length === 5")
    assert page.evaluate("() => t.steps") == [[n, n] for n in range(6, 11)]
    assert page.evaluate("() => t.resets.length") == 1
    assert page.evaluate("() => [t.stream.state, t.stream.lastEventId]") == ["live", "10"]
    server.send(execution_id, ("unknown-event", {"n": 0}), ("boom", {}), ("step", {"n": 11}))
    page.wait_for_function("() => t.steps.length === 6")  # went on past both
    assert page.evaluate("() => t.errors") == ["handler for boom: handler bug"]
    last = server.close(execution_id)
    page.wait_for_function("() => t.stream.state === 'closed'")
    assert page.evaluate("() => t.closed") == [{"executionId": execution_id, "lastEventId": last}]
    assert page.evaluate("() => [t.stream.lastEventId, t.states]") == [str(last), ["live", "closed"]]
    # Past the end the server answers 204: EventSource gives up, the client says closed.
    page.evaluate(CLIENT_JS, [url, last])
    page.wait_for_function("() => t.stream.state === 'closed'")
    assert page.evaluate("() => [t.steps, t.closed, t.states]") == [[], [], ["closed"]]


def test_js_client_reconnects_with_its_renewed_token(make_server, dashboards, execution_id):
    """sse-exec.js, a 4 s token renewed at half its life, streams ended after 5 s (past its
    expiry): the client reconnects with the renewed token from its last id; every event
    arrives once."""
    server = make_server("daphne", sse_exec={"KEEPALIVE": 30, "MAX_STREAM_LIFETIME": 5,
                                             "MAX_STREAM_LIFETIME_JITTER": 0,
                                             "TOKEN_RENEW_BEFORE": 60})
    server.send(execution_id, ("step", {"n": 1}))
    page = dashboards(server.base_url).open().page
    page.evaluate(CLIENT_JS, [stream_url(execution_id, max_age=4), 0])
    page.evaluate("() => { t.stream.options.reconnectMs = 100; }")
    page.wait_for_function("() => t.steps.length === 1")
    page.wait_for_function("() => t.states.includes('reconnecting') && t.stream.state === 'live'",
                           timeout=20_000)
    server.send(execution_id, ("step", {"n": 2}), ("step", {"n": 3}))
    last = server.close(execution_id)
    page.wait_for_function("() => t.stream.state === 'closed'")
    assert page.evaluate("() => t.steps") == [[1, 1], [2, 2], [3, 3]]
    assert page.evaluate("() => [t.closed.length, t.errors, t.stream.lastEventId]") == [1, [], str(last)]
    assert "last_event_id=1" in page.evaluate("() => t.stream.source.url")


def _sender(env: dict[str, str], execution_id: str, tasks: int, delay_ms: int) -> Any:
    """Run the execution from another process with the sync helpers; collect its output."""
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "simulate_execution", "--id", execution_id,
         "--tasks", str(tasks), "--delay-ms", str(delay_ms)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    proc.lines = []  # type: ignore[attr-defined]

    def read() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            proc.lines.append(line.rstrip())  # type: ignore[attr-defined]

    threading.Thread(target=read, daemon=True).start()
    return proc


def _sent_count(proc: Any) -> int:
    return sum(1 for line in proc.lines if line.startswith("sent "))


def test_page_resumes_after_server_restart(requires_redis, dashboards):
    prefix = f"t5-{uuid.uuid4().hex[:10]}"
    env = {"TEST_LAYER": "redis", "REDIS_URL": requires_redis, "TEST_KEY_PREFIX": prefix}
    port = free_port()  # fixed, so the page's EventSource reconnects to the same address
    execution_id = f"restart-{uuid.uuid4().hex[:10]}"
    tasks = 24
    server = Server("daphne", env=env, port=port).start()
    sender = None
    try:
        # Started by another process: the page opens it through a shared link's token.
        token = parse_qs(urlsplit(stream_url(execution_id)).query)["token"][0]
        tab = dashboards(server.base_url).open(execution_id, token=token)
        tab.page.wait_for_function(
            "() => document.getElementById('conn-state').dataset.state === 'live'")
        sender = _sender({**server.env}, execution_id, tasks, delay_ms=400)
        tab.wait_completed(3)
        # A shared link grants viewing only: no Cancel, no status API (so no viewer count).
        assert tab.page.is_hidden("#cancel"), "a run of another process offers Cancel"
        server.stop()
        tab.page.wait_for_function(
            "() => document.getElementById('conn-state').dataset.state === 'reconnecting'")
        down_at = _sent_count(sender)
        wait_until_sync(lambda: _sent_count(sender) >= down_at + 4, 30, "events sent while down")
        assert tab.state()["completed"] < tasks
        server = Server("daphne", env=env, port=port).start()
        tab.wait_finished("success", timeout=60_000)
        assert_whole_run(tab, tasks)
        assert sender.wait(30) == 0, "\n".join(sender.lines)
    finally:
        if sender is not None and sender.poll() is None:
            sender.kill()
            sender.wait()
        server.stop()
        import redis

        client = redis.Redis.from_url(requires_redis)
        keys = list(client.scan_iter(match=f"*{prefix}*"))
        if keys:
            client.delete(*keys)
