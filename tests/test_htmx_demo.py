"""The htmx dashboard (``/htmx/``) follows the example project's rules, through a real daphne.

Widgets, and so stream tokens, only for executions this browser started; its
plain forms are CSRF-protected and Cancel needs the widget's signed URL (a cross-site
form starts and cancels nothing);
the JSON dashboard's limits (400 for bad input, 429 past the cap); pages that
carry tokens are never cached.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from tests.conftest import migrated_db_env
from tests.server import Server


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = migrated_db_env(tmp_path_factory, "htmx-demo")
    with Server("daphne", env={**env, "DEMO_MAX_RUNNING": "2"}) as srv:
        yield srv


@contextmanager
def browser(srv: Server) -> Iterator[httpx.Client]:
    """A fresh browser (its own cookies) that has loaded the page, so it has a CSRF token."""
    with httpx.Client(base_url=srv.base_url, timeout=30) as client:
        assert client.get("/htmx/").status_code == 200
        yield client


def post(client: httpx.Client, path: str, **form: str) -> httpx.Response:
    return client.post(path, data={"csrfmiddlewaretoken": client.cookies["csrftoken"], **form},
                       headers={"Referer": str(client.base_url) + "/htmx/"})


def start(client: httpx.Client, **form: str) -> str:
    resp = post(client, "/htmx/start", **{"tasks": "40", "speed": "400", **form})
    assert resp.status_code == 303, resp.text[:300]
    return resp.headers["location"].rsplit("=", 1)[1]


def cancel(client: httpx.Client, execution_id: str) -> httpx.Response:
    """Press the widget's Cancel button as a plain form (no htmx): POST to its signed URL;
    a page without the button leaves only the endpoint without a token."""
    page = client.get(f"/htmx/?execution={execution_id}").text
    found = re.search(r'class="sse-exec__cancel" method="post" action="([^"]+)"', page)
    url = html.unescape(found.group(1)) if found else f"/sse/executions/{execution_id}/cancel"
    return client.post(url)


def test_only_the_browser_that_started_it_gets_the_widget(demo):
    with browser(demo) as mine, browser(demo) as other:
        execution_id = start(mine)
        try:
            page = mine.get(f"/htmx/?execution={execution_id}")
            assert 'sse-connect="/sse/executions/' + execution_id in page.text
            assert "format=html" in page.text and "token=" in page.text
            cache = page.headers["cache-control"]
            assert "no-store" in cache and "private" in cache, cache
            theirs = other.get(f"/htmx/?execution={execution_id}")
            assert "token=" not in theirs.text and 'class="sse-exec"' not in theirs.text
            assert "not started from this browser" in theirs.text
            # Another browser has no Cancel button, and no URL to post to: the run goes on.
            assert cancel(other, execution_id).status_code == 403
            assert "Cancel</button>" in mine.get(f"/htmx/?execution={execution_id}").text
        finally:
            assert cancel(mine, execution_id).status_code == 202
        page = mine.get(f"/htmx/?execution={execution_id}")
        assert 'data-status="cancelled"' in page.text or 'data-status="running"' in page.text


def test_a_cross_site_form_starts_and_cancels_nothing(demo):
    with browser(demo) as mine:
        execution_id = start(mine, tasks="30")
        try:
            # A form on another site: the victim's cookies, but no CSRF token of theirs.
            with httpx.Client(base_url=demo.base_url, timeout=30,
                              cookies=dict(mine.cookies)) as attacker:
                assert attacker.post("/htmx/start", data={"tasks": "5"}).status_code == 403
                refused = attacker.post(f"/sse/executions/{execution_id}/cancel")
                assert refused.status_code == 403  # the cookies are no proof: no signed URL
            assert "Cancel</button>" in mine.get(f"/htmx/?execution={execution_id}").text
        finally:
            cancel(mine, execution_id)


@pytest.mark.parametrize("form", [
    {"tasks": "abc"}, {"tasks": "0"}, {"tasks": "100000"}, {"speed": "60000"},
    {"fail_percent": "300"}, {"tasks": "200", "speed": "5000"},
])
def test_bad_input_is_400_and_the_cap_is_429(demo, form):
    with browser(demo) as client:
        resp = post(client, "/htmx/start", **{"tasks": "5", "speed": "400", **form})
        assert resp.status_code == 400
        assert re.search(r'class="error" role="alert">[^<]+<', resp.text)


def test_concurrent_executions_are_capped(demo):
    with browser(demo) as client:
        started = [start(client, tasks="100", speed="1000") for _ in range(2)]
        try:
            resp = post(client, "/htmx/start", tasks="5", speed="400")
            assert resp.status_code == 429 and "running" in resp.text
        finally:
            for execution_id in started:
                cancel(client, execution_id)
