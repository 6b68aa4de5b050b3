"""Progress tasks run by real ``db_worker`` processes (django-tasks-db), streamed by daphne.

Each test enqueues from a separate process (``tests.settings_tasks``) to a queue
of its own, a ``db_worker`` subprocess runs the task, and an SSE client reads
the execution (``stream_url(result.id)``) from a daphne process to
``stream-closed``. Everything meets in Redis (store and channel layer) and in
the database: SQLite (a file) and PostgreSQL (a database of this module's own;
skipped without it unless ``SSE_EXEC_REQUIRE_POSTGRES=1``). A ``kill -9`` of
the worker mid-task ends the execution as lost; a result queued again after
such a kill continues its execution as attempt 2.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import names
from tests.server import ROOT
from tests.sse import SSEClient
from tests.test_postgres import postgres_available, psql
from tests.workers import delete_keys, redis_env, run_sender

pytestmark = pytest.mark.asyncio

SETTINGS = "tests.settings_tasks"
ROLE = "sse_exec_tasks"
POSTGRES = {"ENGINE": "django.db.backends.postgresql", "NAME": ROLE, "USER": ROLE,
            "PASSWORD": ROLE, "HOST": "127.0.0.1", "PORT": os.environ.get("PGPORT", "5432")}
FAST_LEASES = {"LEASE_TTL": 1.0, "LEASE_CHECK": 0.2, "KEEPALIVE": 30}
SUCCESS = ["execution-start", "task-start", "progress", "progress", "task-complete",
           "execution-complete", "stream-closed"]


def migrate(db_env: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT,
                          env={**os.environ, "DJANGO_SETTINGS_MODULE": SETTINGS, **db_env},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def sqlite_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = {"TEST_DB_PATH": str(tmp_path_factory.mktemp("tasks") / "db.sqlite3")}
    migrate(env)
    return env


@pytest.fixture(scope="module")
def postgres_env() -> Iterator[dict[str, str]]:
    """A fresh PostgreSQL database of this module's own, migrated."""
    if not postgres_available():
        message = f"PostgreSQL is not reachable on 127.0.0.1:{POSTGRES['PORT']}"
        if os.environ.get("SSE_EXEC_REQUIRE_POSTGRES") == "1":
            pytest.fail(message + " and SSE_EXEC_REQUIRE_POSTGRES=1 requires it")
        pytest.skip(message)
    if not psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}'").strip():
        psql(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{ROLE}'")
    psql(f"DROP DATABASE IF EXISTS {ROLE} WITH (FORCE)")
    psql(f"CREATE DATABASE {ROLE} OWNER {ROLE}")
    env = {"TEST_DATABASE_JSON": json.dumps(POSTGRES)}
    migrate(env)
    yield env
    psql(f"DROP DATABASE IF EXISTS {ROLE} WITH (FORCE);")


class DbWorker:
    """One ``manage.py db_worker`` process on a queue of its own (``tests.settings_tasks``)."""

    def __init__(self, env: dict[str, str], queue: str,
                 sse_exec: dict[str, Any] | None = None) -> None:
        self.queue = queue
        self.env = {**os.environ, "DJANGO_SETTINGS_MODULE": SETTINGS, "PYTHONUNBUFFERED": "1",
                    **env}
        if sse_exec:
            self.env["SSE_EXEC_JSON"] = json.dumps(sse_exec)
        self.log_path = Path(os.environ.get("TEST_LOG_DIR", "/tmp")) / f"db-worker-{queue}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> "DbWorker":
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "db_worker", "--queue-name", self.queue,
             "--interval", "0.1", "--no-startup-delay", "--no-reload", "-v", "1"],
            cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + timeout
        while "Starting worker" not in self.log():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"db_worker did not start: {self.log()[-3000:]}")
            time.sleep(0.1)
        return self

    def kill(self) -> None:
        """``kill -9`` (as an OOM kill): no cleanup, no reports."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM (the worker ends its current task first), then kill if it lingers."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.proc is not None:
            self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def enqueue(env: dict[str, str], queue: str, task: str, *args: Any, **kwargs: Any) -> str:
    """Enqueue ``tests.tasks_jobs.<task>`` on ``queue`` from a fresh process; its result id."""
    return str(run_sender({**env, "DJANGO_SETTINGS_MODULE": SETTINGS}, f"""
        from tests import tasks_jobs
        result = tasks_jobs.{task}.using(queue_name={queue!r}).enqueue(*{args!r}, **{kwargs!r})
        emit(result.id)
    """))


def requeue(env: dict[str, str], result_id: str) -> None:
    """Queue a result again, as an operator (or a backend's recovery) would after a crash."""
    run_sender({**env, "DJANGO_SETTINGS_MODULE": SETTINGS}, f"""
        from django_tasks_db.models import DBTaskResult
        emit(DBTaskResult.objects.filter(id={result_id!r}).update(status="READY"))
    """)


class Setup:
    """A daphne server and the environment of a test's processes (Redis + one database)."""

    def __init__(self, redis_url: str, db_env: dict[str, str], make_server: Any,
                 sse_exec: dict[str, Any] | None = None) -> None:
        self.redis_url = redis_url
        self.env = {**redis_env(redis_url), **db_env}
        self.sse_exec = sse_exec
        self.server = make_server("daphne", env=self.env, sse_exec=sse_exec)
        self.queue = f"q{uuid.uuid4().hex[:12]}"
        self.workers: list[DbWorker] = []

    async def worker(self, sse_exec: dict[str, Any] | None = None) -> DbWorker:
        worker = DbWorker(self.env, self.queue, sse_exec or self.sse_exec)
        self.workers.append(worker)
        return await asyncio.to_thread(worker.start)

    def logs(self) -> str:
        return "\n".join(w.log()[-3000:] for w in self.workers)

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        delete_keys(self.redis_url, self.env["TEST_KEY_PREFIX"])


@pytest.fixture
def deployment(requires_redis: str, make_server: Any) -> Iterator[Any]:
    made: list[Setup] = []

    def make(db_env: dict[str, str], sse_exec: dict[str, Any] | None = None) -> Setup:
        made.append(Setup(requires_redis, db_env, make_server, sse_exec))
        return made[-1]

    yield make
    for each in made:
        each.close()


async def stream(test: Setup, url_for: Any, result_id: str, timeout: float = 60) -> list[Any]:
    async with SSEClient(url_for(test.server, result_id)) as client:
        return await client.read_until_closed(timeout=timeout)


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
async def test_a_progress_task_run_by_db_worker_streams_to_stream_closed(
        database, deployment, url_for, request):
    test = deployment(request.getfixturevalue(f"{database}_env"))
    await test.worker()
    result_id = await asyncio.to_thread(enqueue, test.env, test.queue, "count_rows", 4, 0.3)
    async with SSEClient(url_for(test.server, result_id)) as client:
        await client.wait_for(lambda events: "task-start" in names(events), timeout=30)
        events = await client.read_until_closed(timeout=60)
    got = names(events)
    assert got[:2] == ["execution-start", "task-start"] and got[-3:] == SUCCESS[-3:], test.logs()
    assert got[2:-3] == ["progress"] * 4  # a row every 0.3 s: none is throttled
    assert [e.int_id for e in events] == list(range(1, len(events) + 1))
    assert events[0].json["executionId"] == result_id and events[1].json["taskId"] == result_id
    assert events[-4].json["progress"] == 4 and events[-2].json["status"] == "success"


async def test_a_failing_task_ends_failed(deployment, url_for, sqlite_env):
    test = deployment(sqlite_env)
    await test.worker()
    result_id = await asyncio.to_thread(enqueue, test.env, test.queue, "boom", 2)
    events = await stream(test, url_for, result_id)
    assert names(events) == ["execution-start", "task-start", "progress", "task-fail",
                             "execution-complete", "stream-closed"], test.logs()
    assert events[3].json["error"].startswith("ValueError")
    assert (events[4].json["status"], events[4].json["failed"]) == ("failed", 1)


async def test_an_async_task_runs_in_db_worker(deployment, url_for, sqlite_env):
    test = deployment(sqlite_env)
    await test.worker()
    result_id = await asyncio.to_thread(enqueue, test.env, test.queue, "acount_rows", 3, 0.3)
    events = await stream(test, url_for, result_id)
    assert names(events)[:2] == ["execution-start", "task-start"], test.logs()
    assert names(events)[-3:] == ["task-complete", "execution-complete", "stream-closed"]
    assert events[-4].json == {"progress": 3, "total": 3, "taskId": result_id, "percent": 100.0}


async def test_a_killed_worker_ends_its_execution_as_lost(deployment, url_for, sqlite_env):
    test = deployment(sqlite_env, sse_exec=FAST_LEASES)
    worker = await test.worker()
    result_id = await asyncio.to_thread(enqueue, test.env, test.queue, "stall_first_attempt", 3)
    async with SSEClient(url_for(test.server, result_id)) as client:
        await client.wait_for(lambda events: "progress" in names(events), timeout=30)
        await asyncio.to_thread(worker.kill)
        killed = time.monotonic()
        events = await client.read_until_closed(timeout=60)
        took = time.monotonic() - killed
    assert names(events) == ["execution-start", "task-start", "progress", "task-fail",
                             "execution-complete", "stream-closed"], test.logs()
    summary = events[-2].json
    assert summary["status"] == "lost" and "lease" in summary["error"]
    assert took < 1.0 + 0.2 + 5, took
    print(f"\nlost {took:.2f}s after kill -9 of db_worker")


async def test_a_result_queued_again_after_a_crash_continues_as_attempt_2(
        deployment, url_for, sqlite_env):
    test = deployment(sqlite_env)  # default LEASE_TTL (30 s): queued again before it expires
    first = await test.worker()
    result_id = await asyncio.to_thread(enqueue, test.env, test.queue, "stall_first_attempt", 3)
    async with SSEClient(url_for(test.server, result_id)) as client:
        await client.wait_for(lambda events: "progress" in names(events), timeout=30)
        await asyncio.to_thread(first.kill)
        await asyncio.to_thread(requeue, test.env, result_id)
        await test.worker()
        events = await client.read_until_closed(timeout=60)
    assert names(events) == ["execution-start", "task-start", "progress", "task-retry",
                             "task-start", "progress", "progress", "task-complete",
                             "execution-complete", "stream-closed"], test.logs()
    retry, again = events[3].json, events[4].json
    assert retry["attempt"] == 1 and "without a result" in retry["error"]
    assert (again["attempt"], again["retry"], again["taskId"]) == (2, True, result_id)
    # Attempt 2 counts from 1 again: it shows only what attempt 1 had not (2 and 3).
    assert [e.json["progress"] for e in events if e.event == "progress"] == [1, 2, 3]
    assert events[7].json["attempt"] == 2 and events[8].json["status"] == "success"
    assert events[8].json["successful"] == 1 and len(events[8].json["results"]) == 1


async def test_a_plain_task_is_followed_from_queued_to_ended(deployment, url_for, sqlite_env):
    test = deployment(sqlite_env, sse_exec={"FOLLOW_TASKS": ["tests.tasks_jobs."]})
    result_id = await asyncio.to_thread(enqueue, {**test.env, "SSE_EXEC_JSON": json.dumps(
        test.sse_exec)}, test.queue, "plain_add", 2, 3)
    async with SSEClient(url_for(test.server, result_id)) as client:
        queued = await client.wait_for(lambda events: len(events) >= 1, timeout=30)
        assert names(queued) == ["execution-start"]  # queued: no worker yet
        await test.worker()
        events = await client.read_until_closed(timeout=60)
    assert names(events) == ["execution-start", "task-start", "task-complete",
                             "execution-complete", "stream-closed"], test.logs()
    assert events[1].json["taskTitle"] == "plain_add"
    assert events[2].json["duration"] >= 0 and events[3].json["status"] == "success"
