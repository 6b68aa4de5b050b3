"""The package as users get it: built, installed from its wheel, used in a new project.

Every other test runs on an editable install, which reads templates and static
files from the checkout, so a file the wheel leaves out (the admin templates
once did: the admin page was a 500) goes unseen there. Here the checkout is
copied as a fresh clone has it (no egg-info of earlier builds, whose file lists
setuptools would reuse) and built with ``uv build`` (an sdist, then the wheel from
that sdist, as ``python -m build`` does), ``twine check`` reads both, and the wheel is installed (not
editable) into a fresh virtualenv with WhiteNoise, as the quickstart says. A
``django-admin startproject`` project with the quickstart's snippets then runs
its migrations under daphne and, over real sockets: serves every static file
of the checkout from the installed package, renders every template (the admin
list and detail, the progress widgets, the refused widget, each event's
fragment in the HTML stream, the fallback fragment, ``stream-reset``) and
streams an execution. pip's and uv's caches keep it to seconds.
"""

from __future__ import annotations

import re
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.recipe import RecipeProject, run, snippet
from tests.server import ROOT, VENV_BIN
from tests.sse import SSEClient

PACKAGE = ROOT / "django_sse_exec"
SHIPPED = sorted(str(p.relative_to(PACKAGE)) for folder in ("templates", "static")
                 for p in (PACKAGE / folder).rglob("*") if p.is_file())

#: Views of the test itself, in the new project: they run inside its server process
#: (the in-memory layer reaches only that process).
HARNESS = '''
from django.contrib.auth import get_user_model, login
from django.http import HttpResponse, JsonResponse
from django.template import engines

from django_sse_exec import close_sse_connections, send_sse_event, stream_url

MANY = """{% load sse_exec %}<html><head>{% sse_exec_scripts %}</head><body>
{% sse_exec_progress_many many %}</body></html>"""
RUN = [("execution-start", {"executionId": "", "totalTasks": 2, "startTime": 0}),
       ("task-start", {"taskId": "a", "taskTitle": "A", "progress": 0, "total": 2}),
       ("progress", {"taskId": "a", "progress": 1, "total": 2, "message": "half"}),
       ("task-retry", {"taskId": "a", "taskTitle": "A", "attempt": 2, "error": "x"}),
       ("task-complete", {"taskId": "a", "taskTitle": "A", "status": "success", "duration": 5,
                          "progress": 1, "total": 2}),
       ("task-fail", {"taskId": "b", "taskTitle": "B", "status": "failed", "duration": 5,
                      "progress": 2, "total": 2, "error": "boom"}),
       ("a-custom-event", {"note": "no template of its own"}),
       ("execution-complete", {"executionId": "", "status": "failed", "successful": 1,
                               "failed": 1, "cancelled": 0, "completed": 2, "total": 2,
                               "totalDuration": 10, "results": []})]


def url(request):
    return JsonResponse({"url": stream_url(request.GET["execution"],
                                           format=request.GET.get("format", "json"))})


def execute(request):
    execution_id = request.GET["execution"]
    for event, data in RUN:
        send_sse_event(execution_id, event, data)
    if request.GET.get("cancel"):
        for event in ("execution-stalled", "execution-resumed", "execution-cancel-requested"):
            send_sse_event(execution_id, event, {"executionId": execution_id, "after": 30,
                                                 "by": "link", "at": 0})
        send_sse_event(execution_id, "execution-cancelled", {**RUN[-1][1], "status": "cancelled"})
    close_sse_connections(execution_id)
    return HttpResponse("done")


def ticks(request):
    for n in range(int(request.GET["n"])):
        send_sse_event(request.GET["execution"], "tick", {"n": n})
    return HttpResponse("done")


def page(request):
    many = [i for i in request.GET.get("many", "").split(",") if i]
    html = engines["django"].from_string(MANY if many else PAGE).render(
        {"execution_id": request.GET.get("execution"), "many": many}, request)
    return HttpResponse(html)


def staff(request):
    user, _ = get_user_model().objects.get_or_create(
        username="admin", defaults={"is_staff": True, "is_superuser": True})
    login(request, user)
    return HttpResponse("logged in")
'''


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


@pytest.fixture(scope="module")
def wheel_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RecipeProject, dict]]:
    """The built sdist and wheel, a virtualenv with the wheel, and a project using it."""
    uv = shutil.which("uv", path=str(VENV_BIN)) or shutil.which("uv")
    if uv is None:
        pytest.fail("uv is not installed (it is in the [test] extra)")
    tmp = tmp_path_factory.mktemp("wheel")
    timings: dict[str, float] = {}
    started = time.monotonic()
    source = tmp / "source"  # as a fresh clone has it: no build/ or *.egg-info/ of earlier builds
    files = run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT)
    for name in filter(None, files.split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    run([uv, "build", "-q", "--out-dir", str(tmp / "dist"), str(source)])
    timings["build"] = time.monotonic() - started
    [wheel] = (tmp / "dist").glob("*.whl")
    venv = tmp / "venv"
    started = time.monotonic()
    run([uv, "venv", "-q", "-p", sys.executable, str(venv)])
    run([uv, "pip", "install", "-q", "--compile-bytecode", "--python", str(venv_python(venv)),
         str(wheel), "whitenoise"])
    timings["install"] = time.monotonic() - started
    project = RecipeProject(tmp / "mysite", bin_dir=venv / "bin")
    (project.dir / "mysite" / "wheel_views.py").write_text(
        f"PAGE = {snippet('htmx-page')!r}  # the htmx how-to's page\n" + HARNESS)
    project.append_settings('SSE_EXEC = {"HISTORY_MAX_EVENTS": 12}\nDEBUG = True')
    with open(project.dir / "mysite" / "urls.py", "a") as f:
        f.write("\nfrom mysite import wheel_views as w\n"
                "urlpatterns += [path(f'wheel/{v.__name__}', v) for v in "
                "(w.url, w.execute, w.ticks, w.page, w.staff)]\n")
    yield project, {"dist": tmp / "dist", "venv": venv, "timings": timings}
    project.stop()


def test_the_wheel_and_sdist_hold_every_shipped_file_and_pass_twine_check(wheel_project):
    project, built = wheel_project
    found = run([str(project.bin / "python"), "-c",
                 "import django_sse_exec, pathlib; print(pathlib.Path(django_sse_exec.__file__).parent)"],
                cwd=project.dir, env=project.env)
    installed = Path(found.strip())
    assert installed.is_relative_to(built["venv"]), f"not the wheel's install: {installed}"
    missing = [name for name in SHIPPED if not (installed / name).is_file()]
    assert not missing, f"the wheel leaves out {missing}"
    checked = run([str(VENV_BIN / "python"), "-m", "twine", "check", "--strict",
                   *map(str, sorted(built["dist"].glob("*.*[lz]")))])  # the .whl and the .tar.gz
    assert checked.count("PASSED") == 2, checked
    print(f"\nbuild {built['timings']['build']:.1f} s, venv and install "
          f"{built['timings']['install']:.1f} s")


async def test_installed_wheel_migrates_serves_renders_and_streams(wheel_project):
    project, _ = wheel_project
    assert "django_sse_exec" in project.manage("migrate", "--noinput")
    assert "no issues" in project.manage("check")
    base = project.daphne()
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        # Every static file, served from the installed package, byte for byte.
        for name in SHIPPED:
            if name.startswith("static/"):
                served = await http.get("/" + name)
                assert served.status_code == 200, name
                assert served.content == (PACKAGE / name).read_bytes(), name

        async def stream_of(execution_id: str, **params: str) -> str:
            return (await http.get("/wheel/url", params={"execution": execution_id, **params})).json()["url"]

        # The quickstart's pages and stream.
        page = await http.get((await http.get("/start/")).headers["location"])
        assert page.status_code == 200 and "SSEExec.connect" in page.text
        stream = re.search(r'SSEExec\.connect\("([^"]+)"', page.text).group(1).replace("&amp;", "&")
        async with SSEClient(base + stream) as client:
            events = await client.read_until_closed(timeout=30)
        assert [e.event for e in events] == ["task-start"] * 5 + ["stream-closed"]

        # Each event's fragment, the fallback one and the state, in the HTML stream.
        await http.get("/wheel/execute", params={"execution": "run-1"})
        await http.get("/wheel/execute", params={"execution": "run-2", "cancel": "1"})
        html = ""
        for execution_id in ("run-1", "run-2"):
            async with SSEClient(base + await stream_of(execution_id, format="html")) as client:
                await client.read_until_closed(timeout=30)
                html += client.raw.decode()
        fragments = {name.removeprefix("templates/django_sse_exec/events/").removesuffix(".html")
                     for name in SHIPPED if "/events/" in name}
        rendered = set(re.findall(r'<span data-event="([\w-]+)"', html))
        assert fragments - {"stream-reset"} <= rendered, fragments - rendered
        assert 'class="sse-exec-event" data-event="a-custom-event"' in html  # event.html
        assert 'class="sse-exec__body"' in html  # state.html
        await http.get("/wheel/ticks", params={"execution": "long-1", "n": 20})
        async with SSEClient(base + await stream_of("long-1", format="html"),
                             {"Last-Event-ID": "1"}) as client:
            await client.wait_for(lambda events: len(events) >= 2, timeout=30)
        assert 'data-event="stream-reset"' in client.raw.decode()

        # The widgets (the htmx how-to's page: progress.html, widget.html, state.html;
        # progress_many.html) and the widget a refused stream shows (refused.html).
        one = await http.get("/wheel/page", params={"execution": "run-1"})
        assert one.status_code == 200 and 'data-status="failed"' in one.text
        assert "htmx-2.0.11.min.js" in one.text and "progress.css" in one.text
        many = await http.get("/wheel/page", params={"many": "run-1,run-2"})
        assert many.status_code == 200 and many.text.count('class="sse-exec"') >= 2
        refused = await http.get("/sse/executions/run-1/progress", params={"token": "forged"})
        assert refused.status_code == 403 and 'data-status="refused"' in refused.text

        # The admin page of live executions: list and detail.
        assert (await http.get("/wheel/staff")).status_code == 200
        listing = await http.get("/admin/django_sse_exec/execution/")
        assert listing.status_code == 200 and "run-1" in listing.text
        detail = await http.get("/admin/django_sse_exec/execution/run-1/")
        assert detail.status_code == 200 and "execution-complete" in detail.text
    project.stop()
