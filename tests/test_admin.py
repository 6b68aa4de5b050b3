"""The admin page of live executions, in real headless Chromium against a real daphne.

Staff with the app's permissions log in through the admin's own form, find the
page on the admin index, see the executions the store holds (viewers, open or
closed, age, last event), search them, open one and close it: its open stream
gets ``stream-closed``. Staff without the permission see no link and get 403.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.helpers import wait_until_sync
from tests.server import ROOT, Server
from tests.test_browser import browser  # noqa: F401  (the module's Chromium fixture)

PASSWORD = "admin-page-test-password"


def create_staff(env: dict[str, str]) -> None:
    """Two staff users in the database of ``env`` (migrated): ``ops`` (the app's
    permissions) and ``nosy`` (staff, no permission)."""
    import os

    subprocess.run([sys.executable, "manage.py", "shell", "-c", f"""
from django.contrib.auth.models import Permission, User
ops = User.objects.create_user("ops", password={PASSWORD!r}, is_staff=True)
ops.user_permissions.set(Permission.objects.filter(content_type__app_label="django_sse_exec"))
User.objects.create_user("nosy", password={PASSWORD!r}, is_staff=True)
"""], cwd=ROOT, env={**os.environ, **env}, check=True)


@pytest.fixture(scope="module")
def admin_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """daphne on a migrated sqlite file with two staff users (:func:`create_staff`)."""
    db = str(tmp_path_factory.mktemp("admin") / "db.sqlite3")
    env = {"TEST_DB_PATH": db, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    import os

    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT,
                   env={**os.environ, **env}, check=True)
    create_staff(env)
    with Server("daphne", env=env, sse_exec={"KEEPALIVE": 30}) as srv:
        yield srv


class StreamReader:
    """Reads one stream in a thread and keeps its event names."""

    def __init__(self, url: str) -> None:
        self.events: list[str] = []
        self.opened = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(url,), daemon=True)
        self.thread.start()
        assert self.opened.wait(10)

    def _run(self, url: str) -> None:
        with httpx.stream("GET", url, timeout=httpx.Timeout(10, read=60)) as resp:
            self.opened.set()
            for line in resp.iter_lines():
                if line.startswith("event: "):
                    self.events.append(line[7:])


def log_in(browser: Any, srv: Server, username: str) -> Any:  # noqa: F811
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(srv.base_url + "/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(srv.base_url + "/admin/")
    return page


def test_staff_list_search_open_and_close_an_execution(browser, admin_server):  # noqa: F811
    from django_sse_exec import stream_url

    srv = admin_server
    tag = uuid.uuid4().hex[:8]
    live, closed, other = f"adm-{tag}-live", f"adm-{tag}-done", f"adm-{tag}-other"
    sent_at = time.time()
    srv.send(live, ("execution-start", {"executionId": live, "totalTasks": 2,
                                        "startTime": int(time.time() * 1000) - 90_000}),
             ("task-start", {"taskId": "t1", "taskTitle": "Fetch", "progress": 0, "total": 2}))
    srv.send(closed, ("step", {"n": 1}))
    srv.close(closed)
    srv.send(other, ("step", {"n": 1}))
    srv.send(f"unrelated-{tag}", ("step", {"n": 1}))
    reader = StreamReader(srv.base_url + stream_url(live))

    page = log_in(browser, srv, "ops")
    page.click("text=Live executions")
    page.wait_for_selector("#result_list")
    page.fill("#searchbar", f"adm-{tag}")
    page.click("#changelist-search input[type=submit]")
    rows = page.locator("tr.execution-row")
    rows.first.wait_for()
    shown = {row.get_attribute("data-execution-id"): row for row in rows.all()}
    assert set(shown) == {live, closed, other}
    live_row = page.locator(f"tr[data-execution-id='{live}']")
    assert live_row.locator(".state").inner_text() == "open"
    assert live_row.locator(".viewers").inner_text() == "1"
    assert live_row.locator(".last-event").inner_text().startswith("task-start")
    age = int(live_row.locator(".age").inner_text().removesuffix(" s"))
    assert 90 <= age < 90 + (time.time() - sent_at) + 1, age
    assert page.locator(f"tr[data-execution-id='{closed}'] .state").inner_text() == "closed"

    page.click(f"text={live}")
    page.wait_for_selector("#events")
    assert [r.get_attribute("data-event") for r in page.locator("tr.event-row").all()] == [
        "task-start", "execution-start"]
    asked: list[str] = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.click("#close-execution")  # asked first (admin-confirm.js): dismissed, nothing closes
    page.wait_for_timeout(500)
    assert asked == [f"Close {live}? Every stream gets stream-closed."]
    assert page.locator("#execution-state").inner_text() == "open"
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#close-execution")
    page.wait_for_selector("text=stream-closed is event 3")
    assert page.locator("#execution-state").inner_text() == "closed"
    assert page.locator("#close-execution").count() == 0
    wait_until_sync(lambda: reader.events[-1:] == ["stream-closed"], 10, "stream-closed")
    assert reader.events == ["execution-start", "task-start", "stream-closed"]
    page.context.close()


def test_staff_without_the_permission_see_no_link_and_get_403(browser, admin_server):  # noqa: F811
    srv = admin_server
    page = log_in(browser, srv, "nosy")
    assert page.locator("text=Live executions").count() == 0
    response = page.goto(srv.base_url + "/admin/django_sse_exec/execution/")
    assert response.status == 403
    page.context.close()
    # Not logged in: the admin's login page, not the data.
    resp = httpx.get(srv.base_url + "/admin/django_sse_exec/execution/", follow_redirects=False)
    assert resp.status_code == 302 and "/admin/login/" in resp.headers["location"]

