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

import time
from typing import Any

import pytest

from tests.helpers import PrivateRedis, wait_until_sync
from tests.server import Server
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
