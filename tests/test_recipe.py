"""The docs are a working recipe: a new project built from their snippets streams.

A project made with ``django-admin startproject`` and ``startapp myapp``, with
the quickstart's settings, URL, view and page snippets applied (read from
``docs/``, see tests/recipe.py), passes ``manage.py check``, serves the page and
``sse-exec.js`` under plain daphne (in development and, after ``collectstatic``,
with ``DEBUG`` off), and streams an execution; the how-to's page of many
executions follows a feed. Then the deployment how-to's nginx configuration, run
by a real nginx in front of that daphne: events arrive one by one, keepalives
outlive a short ``proxy_read_timeout``, and a reconnect resumes after
``Last-Event-ID``. Last, the tutorial: its Celery import, started from its form,
reported by a real worker over Redis, streamed to its page.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.recipe import RecipeProject, snippet, started_page
from tests.server import VENV_BIN, free_port, stop_process, wait_until_serving
from tests.sse import SSEClient

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RecipeProject]:
    made = RecipeProject(tmp_path_factory.mktemp("recipe") / "mysite")
    yield made
    made.stop()


@pytest.mark.parametrize("name", ["install", "install-prometheus", "install-tasks"])
def test_install_lines_name_this_checkout_and_its_extras(name):
    line = snippet(name).strip()
    assert line.startswith('pip install ".[')  # a checkout, never an index the package is not on
    extras = re.search(r'"\.\[([\w,]+)\]"', line).group(1).split(",")
    setup = Path(__file__).resolve().parent.parent.joinpath("setup.cfg").read_text()
    for extra in extras:
        assert re.search(rf"^{extra} =$", setup, re.M), f"setup.cfg has no [{extra}] extra"


def page_links(html: str) -> tuple[str, str]:
    """The script src and the stream URL the rendered page snippet contains."""
    script = re.search(r'<script src="([^"]+)"', html).group(1)
    stream = re.search(r'SSEExec\.connect\("([^"]+)"', html).group(1)
    return script, stream.replace("&amp;", "&")


async def test_the_three_steps_stream_an_execution(project):
    checked = project.manage("check")
    assert "no issues" in checked, checked
    base = project.daphne()
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        page = await started_page(http, "/start/", "/progress/exec-")
        script, stream = page_links(page.text)
        js = await http.get(script)
        assert js.status_code == 200 and "SSEExec" in js.text
        async with SSEClient(base + stream) as client:
            assert client.response.status_code == 200
            events = await client.read_until_closed(timeout=30)
        assert [e.event for e in events] == ["task-start"] * 5 + ["stream-closed"]
        assert events[0].json == {"taskId": "task-1", "progress": 1, "total": 5}
        again = await http.get(stream, headers={"Last-Event-ID": events[-1].id})
        assert again.status_code == 204 and "content-type" not in again.headers
    project.stop()


async def test_the_page_of_many_executions_follows_a_feed(project):
    base = project.daphne()
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        page = await http.get("/recipe/many")
        assert page.status_code == 200 and "SSEExec.connectMany" in page.text
        stream = re.search(r'data-stream="([^"]+)"', page.text).group(1).replace("&amp;", "&")
        assert stream.startswith("/sse/feeds/team:7/events?token=")
        async with SSEClient(base + stream) as client:
            assert client.response.status_code == 200
            assert (await http.get("/recipe/many-send")).text == "sent"
            events = await client.wait_for(lambda ev: len(ev) >= 3, timeout=30)
        assert [e.event for e in events] == ["execution-added", "task-start", "stream-closed"]
        assert events[1].json == {"executionId": "import-1", "id": 1, "data": {
            "taskId": "rows", "progress": 1, "total": 3}}
    project.stop()


async def test_fast_path_asgi_and_metrics_recipes(project):
    """The deployment how-to's asgi.py (fast path, gc settings) and the operations
    how-to's metrics URL, in the quickstart's project."""
    project.apply("asgi")
    project.apply("metrics-urls")
    base = project.daphne()
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        page = await started_page(http, "/start/", "/progress/exec-")
        _, stream = page_links(page.text)
        async with SSEClient(base + stream) as client:
            events = await client.read_until_closed(timeout=30)
        assert [e.event for e in events] == ["task-start"] * 5 + ["stream-closed"]
        metrics = await http.get("/metrics")
        assert metrics.status_code == 200 and 'sse_exec_connects_total{entry_point="fast"' in metrics.text
    project.stop()


def test_static_file_with_debug_off_after_collectstatic(project):
    project.append_settings('DEBUG = False\nALLOWED_HOSTS = ["127.0.0.1"]')
    project.manage("collectstatic", "--noinput")
    assert (project.dir / "staticfiles" / "django_sse_exec" / "sse-exec.js").exists()
    base = project.daphne()
    js = httpx.get(base + "/static/django_sse_exec/sse-exec.js", timeout=30)
    assert js.status_code == 200 and "SSEExec" in js.text
    project.stop()


# -- nginx --------------------------------------------------------------------------


def nginx_conf(prefix: Path, app_port: int, port: int, static_root: Path) -> str:
    """The docs' nginx snippet with this machine's ports and paths, in a minimal main config."""
    site = snippet("nginx")
    for pattern, replacement in [
        (r"server 127\.0\.0\.1:8000;", f"server 127.0.0.1:{app_port};"),
        (r"listen 80;", f"listen 127.0.0.1:{port};"),
        (r"alias /srv/mysite/staticfiles/;", f"alias {static_root}/;"),
        (r"proxy_read_timeout 1h;", "proxy_read_timeout 4s;"),
    ]:
        site, count = re.subn(pattern, replacement, site)
        assert count == 1, f"the docs' nginx snippet has no {pattern!r}"
    temp = "\n".join(f"    {kind}_temp_path {prefix}/{kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (f"user root;\ndaemon off;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log info;\n"
            f"events {{ worker_connections 256; }}\nhttp {{\n    access_log {prefix}/access.log;\n"
            f"{temp}\n{site}}}\n")


@pytest.fixture
def nginx(project, tmp_path) -> Iterator[str]:
    """The docs' nginx in front of the project's daphne (1 s keepalive); its base URL."""
    if not Path(NGINX).exists():
        if os.environ.get("CI"):
            pytest.fail(f"nginx is not installed ({NGINX}) and CI requires it")
        pytest.skip(f"nginx is not installed ({NGINX})")
    project.append_settings('SSE_EXEC = {"KEEPALIVE": 1, "RETRY_JITTER_MS": 0}')
    project.manage("collectstatic", "--noinput")
    app = project.daphne()
    port = free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(nginx_conf(tmp_path, int(app.rsplit(":", 1)[1]), port,
                               project.dir / "staticfiles"))
    log = tmp_path / "nginx.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(conf)],
                                stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(proc, base + "/recipe/emit?execution=warm-up", 60,
                           lambda: log.read_text()[-3000:])
        yield base
    finally:
        stop_process(proc, timeout=15)
        project.stop()


async def test_nginx_passes_events_one_by_one_keeps_idle_streams_and_resumes(nginx,
                                                                            execution_id):
    async with httpx.AsyncClient(base_url=nginx, timeout=30) as http:
        js = await http.get("/static/django_sse_exec/sse-exec.js")
        assert js.status_code == 200 and "SSEExec" in js.text
        page = await http.get(f"/progress/{execution_id}/")
        assert page.status_code == 200  # the Host header reached Django (ALLOWED_HOSTS)
        _, stream = page_links(page.text)

        async def emit(n: int) -> int:
            resp = await http.get("/recipe/emit", params={"execution": execution_id, "n": n})
            return resp.json()["id"]

        async with SSEClient(nginx + stream) as client:
            assert client.response.headers["content-type"].startswith("text/event-stream")
            for n in range(1, 4):  # each event arrives before the next is sent: no buffering
                await emit(n)
                await client.wait_for(lambda events, n=n: len(events) == n, timeout=10)
            # Silent for longer than proxy_read_timeout (4 s): keepalives hold the stream open.
            started = time.monotonic()
            await client.wait_for(lambda events: time.monotonic() - started > 9, timeout=30)
            assert client.parser.comments.count("keepalive") >= 5
            await emit(4)
            events = await client.wait_for(lambda events: len(events) == 4, timeout=10)
            assert [e.json["n"] for e in events] == ["1", "2", "3", "4"]
            last = events[-1].id
        sent = [await emit(5), await emit(6)]
        async with SSEClient(nginx + stream, {"Last-Event-ID": last}) as client:
            events = await client.wait_for(lambda events: len(events) == 2, timeout=10)
            assert [e.int_id for e in events] == sent
            assert [e.json["n"] for e in events] == ["5", "6"]


# -- Celery ---------------------------------------------------------------------------


async def test_tutorial_imports_with_a_celery_worker(requires_redis, tmp_path):
    """The tutorial's Redis settings, Celery app, tasks, views and pages, with a real worker."""
    made = RecipeProject(tmp_path / "mysite")
    try:
        made.apply("celery-settings", snippet("celery-settings").replace(
            "redis://127.0.0.1:6379/0", requires_redis))
        queue = f"recipe-{uuid.uuid4().hex[:8]}"  # not the shared Redis's default queue
        made.append_settings(f'CELERY_TASK_DEFAULT_QUEUE = "{queue}"\n'
                             f'SSE_EXEC = {{"KEY_PREFIX": "{queue}"}}')
        for name in ("celery-app", "celery-init", "tutorial-tasks", "tutorial-views", "tutorial-urls",
                     "tutorial-form", "tutorial-page"):
            made.apply(name)
        assert "no issues" in made.manage("check")
        base = made.daphne()
        worker = made.start([str(VENV_BIN / "celery"), "-A", "mysite", "worker", "-l", "info",
                             "--pool", "solo", "--without-gossip", "--without-mingle"],
                            "celery")
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            form = await http.get("/imports/")
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
            started = await http.post("/imports/", data={"rows": "5", "csrfmiddlewaretoken": token})
            assert started.status_code == 302, started.text
            page = await http.get(started.headers["location"])
            _, stream = page_links(page.text)
            async with SSEClient(base + stream) as client:
                events = await client.read_until_closed(timeout=60)
        names = [e.event for e in events]
        assert names[:4] == ["execution-start", "task-start", "task-complete", "task-start"], \
            worker.read_text()
        assert names[-3:] == ["task-complete", "execution-complete", "stream-closed"]
        assert set(names[4:-3]) == {"progress"}
        assert events[-3].json["progress"] == 2 and events[-2].json["status"] == "success"
        assert [e.json["message"] for e in events if e.event == "progress"][-1] == "imported row 5"
    finally:
        made.stop()
