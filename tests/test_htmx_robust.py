"""The htmx widgets when things go wrong, in real headless Chromium with the vendored htmx.

* The widget of many executions ends cleanly: once the last execution closed,
  the page makes no more stream requests (it used to reconnect forever, every
  request replaying the final state).
* With the event store down (a private Redis the test kills) the widget tags
  render an "unavailable, retrying" state instead of a 500, and the same page
  comes back live, by itself, once the store is back.
* Under a strict Content-Security-Policy (``script-src 'self'``, no
  ``unsafe-eval``, no inline style) the widgets work and the browser reports no
  violation (``securitypolicyviolation`` events, listened for from before the
  first script runs).
"""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest

from tests.helpers import PrivateRedis, wait_until_sync
from tests.server import ROOT, Server
from tests.test_browser import browser  # noqa: F401  (the module's Chromium)
from tests.test_htmx_browser import Run, Tab

STATUSES_JS = "() => Array.from(document.querySelectorAll('.sse-exec__body')).map(b => b.dataset.status)"
MANY_SOURCE_JS = "() => document.querySelector('.sse-exec-many')['htmx-internal-data']?.sseEventSource?.readyState"
#: Seconds a page is watched for stream requests after its last execution closed.
QUIET_SECONDS = 15


def test_many_widget_makes_no_request_after_the_last_execution_closed(server, browser, execution_id):  # noqa: F811
    ids = [f"{execution_id}-{n}" for n in range(3)]
    tab = Tab(browser, f"{server.base_url}/test/htmx-many/{','.join(ids)}").open()
    try:
        tab.page.wait_for_function(f"() => ({MANY_SOURCE_JS})() === 1")
        runs = [Run(server, e, tasks=3 + n, delay=0.02) for n, e in enumerate(ids)]
        for run in runs:
            run.start()
        for run in runs:
            run.finish()
        tab.page.wait_for_function(f"() => ({STATUSES_JS})().join() === 'success,success,success'")
        closed_at = time.monotonic()
        tab.page.wait_for_timeout(QUIET_SECONDS * 1000)
        assert tab.streams_since(closed_at) == 0, tab.streams
        assert len(tab.streams) == 1
        assert tab.page.evaluate(MANY_SOURCE_JS) == 2  # CLOSED by the stream's end, not an error
        assert server.hub()["streams"] == 0
        assert tab.errors == []
    finally:
        tab.close()


# -- the event store down ------------------------------------------------------------


@pytest.fixture
def on_private_redis(private_redis: PrivateRedis) -> Any:
    """A daphne whose channel layer and event store are a private Redis the test may stop."""
    with Server("daphne", env={"TEST_LAYER": "pubsub", "REDIS_URL": private_redis.url},
                sse_exec={"RETRY_MS": 500}) as srv:
        yield srv


def test_widgets_show_unavailable_while_the_store_is_down_and_come_back(
        on_private_redis, private_redis, browser, execution_id):  # noqa: F811
    srv = on_private_redis
    ids = [f"{execution_id}-{n}" for n in range(2)]
    runs = [Run(srv, e, tasks=4, delay=0.01, hold_after=2) for e in [execution_id, *ids]]
    for run in runs:
        run.start()
    wait_until_sync(lambda: all(r.done_tasks == 2 for r in runs), 30, "two tasks each")
    private_redis.stop(save=True)  # its data is kept for the restart
    pages = {"one": f"{srv.base_url}/test/htmx/{execution_id}",
             "many": f"{srv.base_url}/test/htmx-many/{','.join(ids)}"}
    for url in pages.values():  # the page answers (no 500), with the widget saying why it is empty
        resp = httpx.get(url, timeout=30)
        assert resp.status_code == 200, resp.text[:500]
        assert resp.text.count('data-status="unavailable"') == (2 if "many" in url else 1)
        assert "retrying" in resp.text and "sse-connect=" in resp.text
    token = re.search(r"token=([^&\"]+)", httpx.get(pages["one"], timeout=30).text).group(1)
    refresh = f"{srv.base_url}/sse/executions/{execution_id}/progress?token={token}"
    resp = httpx.get(refresh, timeout=30)  # the refresh view too: 503 (200 to htmx), not a 500
    assert resp.status_code == 503 and 'data-status="unavailable"' in resp.text
    assert httpx.get(refresh, headers={"HX-Request": "true"}, timeout=30).status_code == 200
    tabs = {name: Tab(browser, url).open() for name, url in pages.items()}
    try:
        for tab in tabs.values():
            assert set(tab.page.evaluate(STATUSES_JS)) == {"unavailable"}
        private_redis.start()
        # The same pages, not reloaded: their streams (retried by the browser) bring the state.
        for tab in tabs.values():
            tab.page.wait_for_function(f"() => ({STATUSES_JS})().every(s => s === 'running')",
                                       timeout=30_000)
        assert tabs["one"].rows()[:2] == [("task-1", "success"), ("task-2", "success")]
        for run in runs:
            run.finish()
        for tab in tabs.values():
            tab.page.wait_for_function(f"() => ({STATUSES_JS})().every(s => s === 'success')")
            assert tab.errors == []
        assert 'data-status="success"' in httpx.get(pages["one"], timeout=30).text
    finally:
        for tab in tabs.values():
            tab.close()


# -- a strict Content-Security-Policy -------------------------------------------------

#: Installed before any script of the page runs: every CSP violation is kept.
VIOLATIONS_JS = """window.__violations = [];
document.addEventListener("securitypolicyviolation", e => window.__violations.push(
    [e.violatedDirective, e.blockedURI, e.sample].join(" ")));"""


class CspTab(Tab):
    """A tab that records Content-Security-Policy violations (events and console reports)."""

    def __init__(self, browser: Any, url: str) -> None:  # noqa: F811
        super().__init__(browser, url)
        self.console: list[str] = []
        self.page.add_init_script(VIOLATIONS_JS)
        self.page.on("console", lambda msg: self.console.append(msg.text))

    def violations(self) -> list[str]:
        reported = [m for m in self.console if "Content Security Policy" in m]
        return self.page.evaluate("() => window.__violations") + reported


def fill_ratio(tab: Tab, index: int = 0) -> float:
    return tab.page.evaluate("""i => { const f = document.querySelectorAll('.sse-exec__fill')[i];
        return f.getBoundingClientRect().width / f.parentElement.getBoundingClientRect().width; }""", index)


def test_single_widget_under_a_strict_csp(server, browser, execution_id):  # noqa: F811
    tab = CspTab(browser, f"{server.base_url}/test/htmx-csp/{execution_id}").open()
    try:
        assert tab.page.get_attribute('meta[name="htmx-config"]', "content") is not None
        tab.page.wait_for_function("() => document.querySelector('.sse-exec')['htmx-internal-data']"
                                   "?.sseEventSource?.readyState === 1")
        run = Run(server, execution_id, tasks=4, delay=0.02, fail=(2,), hold_after=2)
        run.start()
        tab.page.wait_for_function("() => document.querySelector('.sse-exec__body').dataset.status === 'running'"
                                   " && document.querySelectorAll('.sse-exec__task[data-task-id]').length === 2"
                                   " && !document.querySelector('.sse-exec__task[data-status=running]')")
        assert abs(fill_ratio(tab) - 0.5) < 0.02  # two of four: the class sets half the width
        run.finish()
        tab.wait_status("failed")
        assert abs(fill_ratio(tab) - 1.0) < 0.01
        ok = tab.page.evaluate("() => getComputedStyle(document.querySelector('.sse-exec__fill'))"
                               ".getPropertyValue('--sse-exec-ok').trim()")
        assert ok == "75%"  # three of the four ended tasks succeeded: green to 75 %, then red
        assert tab.rows() == [("task-1", "success"), ("task-2", "failed"), ("task-3", "success"),
                              ("task-4", "success")]
        tab.page.wait_for_timeout(500)
        assert tab.violations() == [] and tab.errors == []
        assert len(tab.streams) == 1
        # The listener does see a violation: an inline style added now is reported.
        tab.page.evaluate("() => document.body.insertAdjacentHTML('beforeend', '<p style=\"color:red\">x</p>')")
        tab.page.wait_for_function("() => window.__violations.length > 0")
        assert "style-src" in tab.violations()[0]
    finally:
        tab.close()


def test_refused_widget_under_a_strict_csp_asks_the_refresh_view_once(server, browser, execution_id):  # noqa: F811
    """No trigger filter (eval) any more: the widget's helper script makes the refresh happen."""
    tab = CspTab(browser, f"{server.base_url}/test/htmx-csp/{execution_id}?user=999").open()
    try:
        refused = tab.page.wait_for_selector(".sse-exec__refused")
        assert "login required" in refused.inner_text()
        tab.page.wait_for_timeout(2000)
        assert 1 <= len(tab.streams) <= 2, tab.streams
        settled = time.monotonic()
        tab.page.wait_for_timeout(5000)
        assert tab.streams_since(settled) == 0
        assert tab.violations() == [] and tab.errors == []
    finally:
        tab.close()


def test_many_widget_under_a_strict_csp(server, browser, execution_id):  # noqa: F811
    ids = [f"{execution_id}-{n}" for n in range(2)]
    tab = CspTab(browser, f"{server.base_url}/test/htmx-csp/{','.join(ids)}").open()
    try:
        tab.page.wait_for_function(f"() => ({MANY_SOURCE_JS})() === 1")
        runs = [Run(server, e, tasks=3, delay=0.02, fail=(1,) if n else ()) for n, e in enumerate(ids)]
        for run in runs:
            run.start()
        for run in runs:
            run.finish()
        tab.page.wait_for_function(f"() => ({STATUSES_JS})().join() === 'success,failed'")
        tab.page.wait_for_function(f"() => ({MANY_SOURCE_JS})() === 2")
        assert [round(fill_ratio(tab, i), 2) for i in range(2)] == [1.0, 1.0]
        assert tab.violations() == [] and tab.errors == []
    finally:
        tab.close()


def test_shipped_templates_need_no_inline_style_script_or_eval():
    """Every class the bar can get is in the stylesheet; no template (widgets, events,
    admin) has an inline style, an inline script or handler, or an htmx filter (eval)."""
    css = (ROOT / "django_sse_exec/static/django_sse_exec/progress.css").read_text()
    for n in range(101):
        assert f".sse-exec-w{n}{{width:{n}%}}" in css and f".sse-exec-ok{n}{{--sse-exec-ok:{n}%}}" in css
    templates = ROOT / "django_sse_exec/templates/django_sse_exec"
    for template in templates.rglob("*.html"):
        text = template.read_text()
        assert "style=" not in text and "<style" not in text, template  # no inline style
        assert "hx-on" not in text and not re.search(r"hx-trigger=\"[^\"]*\[", text), template  # no eval
        assert not re.search(r"\son[a-z]+=", text) and "<script>" not in text, template  # no inline script
