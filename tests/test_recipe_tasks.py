"""The django.tasks how-to is a working recipe: its snippets, in a new project, with a real worker.

The quickstart's project (tests/recipe.py) gets every snippet of
``docs/howto/django-tasks.md``: the settings (django-tasks-db, channels_redis on
the test Redis), the progress tasks (plain, with ``takes_context``, async), the
view, URLs and page, ``FOLLOW_TASKS`` and a plain task. Its commands run as the
page writes them (``manage.py migrate``, then ``manage.py db_worker`` next to
daphne). The page's view starts an import whose widget streams it to the end;
the other tasks, enqueued from ``manage.py shell`` as any producer would, are
read from their streams to ``stream-closed``.
"""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

import httpx

from tests.recipe import RecipeProject, snippet, started_page
from tests.sse import SSEClient, SSEEvent

SNIPPETS = ("tasks-task", "tasks-views", "tasks-urls", "tasks-page", "tasks-context", "tasks-async",
            "tasks-follow-settings", "tasks-plain")
ENQUEUE = """
from django_sse_exec import stream_url
from myapp.tasks import fetch_all, import_attempt, send_report

for result in (import_attempt.enqueue(3), fetch_all.enqueue(["https://example.com/a", "https://example.com/b"]),
               send_report.enqueue("ops@example.com")):
    print("STREAM", stream_url(result.id))
"""


def run_commands(project: RecipeProject, text: str) -> Path:
    """The page's commands as written: ``db_worker`` keeps running (its log is returned)."""
    worker_log = None
    for line in text.splitlines():
        command = line.split("#", 1)[0].split()
        assert command[:2] == ["python", "manage.py"], line
        if command[2] == "db_worker":
            worker_log = project.start([str(project.bin / "python"), *command[1:]], "db_worker")
        else:
            project.manage(*command[2:])
    assert worker_log is not None, "the page starts no db_worker"
    deadline = time.monotonic() + 60
    while "Starting worker" not in worker_log.read_text(errors="replace"):
        assert time.monotonic() < deadline, worker_log.read_text(errors="replace")[-3000:]
        time.sleep(0.2)
    return worker_log


def named(events: list[SSEEvent]) -> list[str]:
    """The events' names, without the HTML stream's unnamed state messages."""
    return [e.event for e in events if e.event != "message"]


async def test_the_django_tasks_page_runs_with_a_db_worker(requires_redis, tmp_path):
    made = RecipeProject(tmp_path / "mysite")
    try:
        made.apply("tasks-settings", snippet("tasks-settings").replace("redis://127.0.0.1:6379/0", requires_redis))
        for name in SNIPPETS:
            made.apply(name)
        made.append_settings(f'SSE_EXEC = {{**SSE_EXEC, "KEY_PREFIX": "recipe-{uuid.uuid4().hex[:8]}"}}')
        assert "no issues" in made.manage("check")
        worker = run_commands(made, snippet("tasks-run"))
        base = made.daphne()

        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            page = await started_page(http, "/import/", "/import/")
        stream = re.search(r'sse-connect="([^"]+)"', page.text).group(1).replace("&amp;", "&")
        async with SSEClient(base + stream) as client:
            events = await client.read_until_closed(timeout=60)
        names = named(events)
        assert names[-3:] == ["task-complete", "execution-complete", "stream-closed"], worker.read_text()[-3000:]
        assert "progress" in names
        states = [e.data for e in events if e.event == "message"]
        assert 'data-status="success"' in states[-1] and "1 of 1 task" in states[-1]

        urls = [line.split()[1] for line in made.manage("shell", "-c", ENQUEUE).splitlines()
                if line.startswith("STREAM ")]
        runs = []
        for url in urls:
            async with SSEClient(base + url) as client:
                runs.append(await client.read_until_closed(timeout=60))
        attempt, fetched, report = runs
        assert named(attempt) == ["execution-start", "task-start", "progress", "task-complete",
                                  "execution-complete", "stream-closed"]
        assert attempt[1].json["taskTitle"] == "Import the rows" and attempt[2].json["message"] == "attempt 1"
        assert [e.json["message"] for e in fetched if e.event == "progress"] == [
            "https://example.com/a", "https://example.com/b"]
        assert named(fetched)[-2:] == ["execution-complete", "stream-closed"]
        assert fetched[-2].json["status"] == "success"
        # A plain task, followed: queued (from the shell), then run and ended by the worker.
        assert named(report) == ["execution-start", "task-start", "task-complete", "execution-complete",
                                 "stream-closed"]
        assert report[1].json["taskTitle"] == "send_report" and report[-2].json["status"] == "success"
    finally:
        made.stop()
