"""Session authorisation on PostgreSQL under a connect burst, through real daphne.

The policy loads the user from the session (``authenticated_user``), which takes
a database connection. The test role has a ``CONNECTION LIMIT``: a burst of
connects larger than it must all stream (the process holds at most
``AUTHORIZE_DB_CONNECTIONS`` connections for authorisation at once), and when
PostgreSQL does refuse connections the clients get a retry, never a 403, and
stream once it accepts them again.

Needs the local PostgreSQL (``su postgres -c psql`` creates the role and the
database); skipped without it unless ``SSE_EXEC_REQUIRE_POSTGRES=1`` (CI).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import entry_point_env
from tests.server import ROOT, Server
from tests.sse import SSEClient

ROLE = "sse_exec_test"
DATABASE = {"ENGINE": "django.db.backends.postgresql", "NAME": ROLE, "USER": ROLE,
            "PASSWORD": ROLE, "HOST": "127.0.0.1", "PORT": os.environ.get("PGPORT", "5432")}
ENV = {"TEST_DATABASE_JSON": json.dumps(DATABASE)}


def psql(sql: str) -> str:
    """Run ``sql`` as the server's superuser (peer authentication as the OS user postgres)."""
    done = subprocess.run(["su", "postgres", "-c", "psql -v ON_ERROR_STOP=1 -qAt"], input=sql,
                          text=True, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def set_connection_limit(limit: int) -> None:
    psql(f"ALTER ROLE {ROLE} CONNECTION LIMIT {limit};")


def postgres_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", int(DATABASE["PORT"])), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def postgres() -> Iterator[None]:
    """A fresh database owned by the test role, migrated."""
    if not postgres_available():
        message = f"PostgreSQL is not reachable on 127.0.0.1:{DATABASE['PORT']}"
        if os.environ.get("SSE_EXEC_REQUIRE_POSTGRES") == "1":
            pytest.fail(message + " and SSE_EXEC_REQUIRE_POSTGRES=1 requires it")
        pytest.skip(message)
    psql(f"""
        DO $$ BEGIN
          IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ROLE}') THEN
            CREATE ROLE {ROLE} LOGIN PASSWORD '{ROLE}';
          END IF;
        END $$;
        ALTER ROLE {ROLE} CONNECTION LIMIT -1;
        DROP DATABASE IF EXISTS {ROLE} WITH (FORCE);
        CREATE DATABASE {ROLE} OWNER {ROLE};
    """)
    migrated = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", **ENV},
        capture_output=True, text=True, timeout=300)
    assert migrated.returncode == 0, migrated.stderr
    yield
    set_connection_limit(-1)


def login(srv: Server, username: str) -> str:
    resp = httpx.post(srv.base_url + "/control/login", json={"username": username}, timeout=30)
    resp.raise_for_status()
    return f"sessionid={resp.cookies['sessionid']}"


async def stream_first_event(url: str, cookie: str,
                             refused: asyncio.Event | None = None) -> tuple[int, list[int]]:
    """Connect as ``EventSource`` would until the first event arrives.

    Returns (attempts, statuses): a stream that ends with no event and a retry
    hint is retried after its ``retry:``; any other status ends the attempt.
    Such a retry sets ``refused``.
    """
    statuses: list[int] = []
    while True:
        client = SSEClient(url, {"Cookie": cookie})
        try:
            await client.connect(timeout=120)
            statuses.append(client.response.status_code)
            if client.response.status_code != 200:
                return len(statuses), statuses
            try:
                await client.wait_for(lambda events: len(events) >= 1, timeout=120)
                return len(statuses), statuses
            except EOFError:
                assert client.parser.comments[-1].startswith("reconnect (authorization "
                                                             "unavailable: database)")
                if refused is not None:
                    refused.set()
                await asyncio.sleep((client.parser.retry or 2000) / 1000)
        finally:
            await client.close()


class PeakConnections:
    """Polls how many connections the test role holds (its own excluded) and keeps the peak."""

    def __init__(self) -> None:
        import psycopg

        self.conn = psycopg.connect(host=DATABASE["HOST"], port=DATABASE["PORT"], user=ROLE,
                                    password=ROLE, dbname=ROLE, autocommit=True)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            row = self.conn.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s "
                                    "AND pid <> pg_backend_pid()", (ROLE,)).fetchone()
            self.peak = max(self.peak, row[0] if row else 0)
            time.sleep(0.002)

    def __enter__(self) -> PeakConnections:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.conn.close()


@pytest.mark.parametrize("entry", ["view", "fast"])
async def test_connect_burst_past_the_connection_limit_all_stream(postgres, url_for,
                                                                  execution_id, entry):
    bound, burst = 2, 60
    set_connection_limit(bound + 2)  # the server's bound, one exiting backend, the monitor
    srv = Server("daphne", env={**entry_point_env(entry), **ENV}, sse_exec={
        "AUTHORIZE": "django_sse_exec.auth.authenticated_user",
        "AUTHORIZE_DB_CONNECTIONS": bound}).start(timeout=60)
    try:
        cookie = login(srv, f"burst-{entry}")
        srv.send(execution_id, ("hello", 1))
        url = url_for(srv, execution_id)
        with PeakConnections() as peak:
            results = await asyncio.gather(*(stream_first_event(url, cookie)
                                             for _ in range(burst)))
        assert all(statuses == [200] for _, statuses in results), results
        # A backend is still listed for a moment after its client closed it, while the
        # next slot holder connects: at most one more than the bound is ever seen.
        assert peak.peak <= bound + 1, peak.peak
        assert "unavailable" not in srv.log()
    finally:
        srv.stop()


async def test_refused_database_connections_are_retried_not_403(postgres, url_for,
                                                                execution_id):
    """PostgreSQL refuses every connection of the role: clients retry, then stream."""
    import psycopg

    srv = Server("daphne", env=ENV, sse_exec={
        "AUTHORIZE": "django_sse_exec.auth.authenticated_user", "RETRY_MS": 300}).start(timeout=60)
    try:
        set_connection_limit(-1)
        cookie = login(srv, "refused")
        srv.send(execution_id, ("hello", 1))
        set_connection_limit(1)
        holder = psycopg.connect(host=DATABASE["HOST"], port=DATABASE["PORT"], user=ROLE,
                                 password=ROLE, dbname=ROLE)  # takes the role's only connection
        refused = [asyncio.Event() for _ in range(10)]
        clients = [asyncio.create_task(stream_first_event(url_for(srv, execution_id), cookie,
                                                          refused=event))
                   for event in refused]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while not all(event.is_set() for event in refused):  # every client was refused once
            assert loop.time() < deadline, srv.log()[-2000:]
            await asyncio.sleep(0.1)
        assert "too many connections for role" in srv.log()
        holder.close()
        results = await asyncio.wait_for(asyncio.gather(*clients), 120)
        for attempts, statuses in results:
            assert attempts >= 2 and set(statuses) == {200}, results
    finally:
        set_connection_limit(-1)
        srv.stop()
