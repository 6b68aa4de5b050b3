"""Many executions over one connection, in real headless Chromium against a real daphne.

The demo's "Recent executions" list follows the browser's feed with
``SSEExec.connectMany(..., {shareTabs: true})``: every execution started there
appears and advances without a reload, over one connection for all tabs of
the browser — eight tabs, more than the six connections per host a browser
allows, all keep working, and when the tab holding the connection closes
another takes over where it was.
"""

from __future__ import annotations

from typing import Any

from tests.helpers import wait_until_sync
from tests.test_browser import browser, dashboards  # noqa: F401  (fixtures)

ROWS_JS = """() => Array.from(document.querySelectorAll('#recent li[data-execution-id]'))
                     .map(li => [li.dataset.executionId, li.dataset.status, li.dataset.progress])"""


def start(tab: Any, tasks: int, delay_ms: int = 100) -> str:
    """Start an execution from ``tab``'s browser without opening it (as another page would)."""
    return tab.page.evaluate("""([tasks, delayMs]) => fetch("/demo/executions", {
        method: "POST", headers: {"Content-Type": "application/json"},
        body: JSON.stringify({tasks: tasks, delayMs: delayMs, failRate: 0})})
        .then(r => r.json()).then(b => b.executionId)""", [tasks, delay_ms])


def wait_all_done(tab: Any, ids: list[str], timeout: float = 30_000) -> None:
    tab.page.wait_for_function(
        """ids => ids.every(id => {
            const li = document.querySelector(`#recent li[data-execution-id="${id}"]`);
            return li && li.dataset.status === "success" && li.dataset.progress === "100"; })""",
        arg=ids, timeout=timeout)


def feed_streams(server: Any) -> int:
    return server.hub()["streams"]


def test_recent_list_is_live_over_one_connection(server, dashboards):
    tab = dashboards(server.base_url).open()
    tab.page.wait_for_function("() => dashboard.recent.stream && dashboard.recent.stream.state === 'live'")
    ids = [start(tab, tasks=3 + i) for i in range(3)]
    wait_all_done(tab, ids)
    rows = tab.page.evaluate(ROWS_JS)
    assert [r[0] for r in rows] == ids[::-1]  # newest first, each once
    # No reload happened, and the page holds one stream for all of them.
    wait_until_sync(lambda: feed_streams(server) == 1, 10, f"one stream: {server.hub()}")
    assert tab.page.locator("#recent li[data-execution-id] .meta").first.inner_text() == "5 of 5 tasks"


def test_eight_tabs_share_one_connection_and_survive_its_tab_closing(server, dashboards):
    first = dashboards(server.base_url).open()
    tabs = [first] + [dashboards(server.base_url, same_browser_as=first).open() for _ in range(7)]
    for tab in tabs:
        tab.page.wait_for_function("() => dashboard.recent.stream && dashboard.recent.stream.state === 'live'")
    ids = [start(first, tasks=4) for _ in range(4)]
    for tab in tabs:
        wait_all_done(tab, ids)
    # Eight tabs, one connection (six per host would have stalled the seventh tab).
    assert feed_streams(server) == 1
    leaders = [t for t in tabs if t.page.evaluate("() => dashboard.recent.stream.leader")]
    assert len(leaders) == 1
    leader = leaders[0]
    leader.page.close()
    rest = [t for t in tabs if t is not leader]
    more = [start(rest[0], tasks=3) for _ in range(2)]
    for tab in rest:
        wait_all_done(tab, ids + more)
        rows = tab.page.evaluate(ROWS_JS)
        assert sorted(r[0] for r in rows) == sorted(ids + more)  # each once
    assert sum(t.page.evaluate("() => dashboard.recent.stream.leader") for t in rest) == 1
    wait_until_sync(lambda: feed_streams(server) == 1, 10, "one stream after the hand-over")


def test_many_htmx_widgets_live_over_one_connection(server, browser, execution_id):  # noqa: F811
    from tests.test_htmx_browser import Run, Tab

    ids = [f"{execution_id}-{n}" for n in range(4)]
    done = Run(server, ids[3], tasks=2, delay=0.01)  # one ended before the page: no stream for it
    done.start()
    done.finish()
    tab = Tab(browser, f"{server.base_url}/test/htmx-many/{','.join(ids)}").open()
    try:
        statuses = "() => Array.from(document.querySelectorAll('.sse-exec__body')).map(b => b.dataset.status)"
        assert tab.page.evaluate(statuses) == ["pending", "pending", "pending", "success"]
        tab.page.wait_for_function("() => document.querySelector('.sse-exec-many')['htmx-internal-data']"
                                   "?.sseEventSource?.readyState === 1")
        runs = [Run(server, e, tasks=4 + n, delay=0.03, fail=(2,) if n == 1 else ()) for n, e in
                enumerate(ids[:3])]
        for run in runs:
            run.start()
        tab.page.wait_for_function(f"() => ({statuses})().join() === 'success,failed,success,success'",
                                   timeout=30_000)
        for run in runs:
            run.finish()
        percents = tab.page.eval_on_selector_all(".sse-exec__percent", "els => els.map(e => e.textContent)")
        assert [p.replace("\u00a0", " ") for p in percents] == ["100 %"] * 4
        assert len(tab.streams) == 1  # four widgets, one connection
        wait_until_sync(lambda: server.hub()["streams"] == 0, 10, "the stream to end with the last execution")
        assert tab.errors == []
    finally:
        tab.close()


FEED_JS = """(url) => {
    const t = window.t = {seen: []};
    const note = (name) => (data, meta) => t.seen.push([name, meta.executionId, meta.id]);
    t.stream = SSEExec.connectMany(url, {handlers: {
        "execution-added": note("added"), "execution-removed": note("removed"), step: note("step"),
    }});
}"""


def test_the_library_follows_a_feeds_window_out_and_back_in(make_server, dashboards):
    """sse-exec.js on a feed whose stream follows its last 2 entries: an execution pushed
    out is removed, and, added again, announced again and replayed from its start
    (the library must not take the replay for events it had)."""
    from django_sse_exec import feed_stream_url

    srv = make_server("daphne", sse_exec={"KEEPALIVE": 30, "MULTI_STREAM_MAX": 2})
    feed, (a, b, c) = "user:window", ("win-a", "win-b", "win-c")
    for execution_id in (a, b):
        srv.feed_add(feed, execution_id)
        srv.send(execution_id, ("step", {}), ("step", {}))
    page = dashboards(srv.base_url).open().page
    page.evaluate(FEED_JS, srv.base_url + feed_stream_url(feed))
    page.wait_for_function("() => t.seen.length === 6")
    srv.feed_add(feed, c)  # a leaves the window
    srv.feed_add(feed, a)  # and comes back (b leaves)
    page.wait_for_function("() => t.seen.length === 12")
    assert page.evaluate("() => t.seen") == [
        ["added", a, None], ["added", b, None], ["step", a, 1], ["step", a, 2],
        ["step", b, 1], ["step", b, 2],
        ["removed", a, None], ["added", c, None],
        ["removed", b, None], ["added", a, None], ["step", a, 1], ["step", a, 2]]
