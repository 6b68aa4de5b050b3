"""Shared fixtures: real servers, stream URLs, unique execution ids, Redis."""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import PrivateRedis
from tests.server import ROOT, Server

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def _print_tasks() -> None:
    """Print every task of every running event loop of this process, with where it waits."""
    for loop in [o for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop)]:
        if loop.is_running():
            def dump(loop: asyncio.AbstractEventLoop = loop) -> None:
                for task in asyncio.all_tasks(loop):
                    print(f"--- task {task.get_name()}", file=sys.stderr)
                    task.print_stack(file=sys.stderr)
            loop.call_soon_threadsafe(dump)


@pytest.fixture(autouse=True)
def tasks_dumped_before_timeout(request: pytest.FixtureRequest) -> Iterator[None]:
    """Shortly before pytest-timeout fails a test, print its event loop's tasks: the
    timeout's own dump shows threads only, and a hung async test waits in a task."""
    marker = request.node.get_closest_marker("timeout")
    limit = float(marker.args[0]) if marker and marker.args else float(
        request.config.getini("timeout") or 0)
    if limit <= 10:
        yield
        return
    timer = threading.Timer(limit - 5, _print_tasks)
    timer.daemon = True
    timer.start()
    yield
    timer.cancel()


def redis_available() -> bool:
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
        return True
    except Exception:
        return False


@pytest.fixture
def requires_redis() -> str:
    """Skip when Redis is unreachable, unless ``SSE_EXEC_REQUIRE_REDIS=1`` (CI) makes it fail."""
    if not redis_available():
        message = f"Redis is not reachable at {REDIS_URL}"
        if os.environ.get("SSE_EXEC_REQUIRE_REDIS") == "1":
            pytest.fail(message + " and SSE_EXEC_REQUIRE_REDIS=1 requires it")
        pytest.skip(message)
    return REDIS_URL


def require_program(name: str) -> None:
    """Skip when program ``name`` is not installed, unless ``SSE_EXEC_REQUIRE_REDIS=1``
    (CI) makes it fail."""
    if shutil.which(name) is None:
        message = f"{name} is not installed"
        if os.environ.get("SSE_EXEC_REQUIRE_REDIS") == "1":
            pytest.fail(message + " and SSE_EXEC_REQUIRE_REDIS=1 requires it")
        pytest.skip(message)


@pytest.fixture
def make_private_redis(requires_redis: str, tmp_path: Path) -> Iterator[Callable[..., PrivateRedis]]:
    """``make_private_redis(extra_args=None)`` starts another redis-server of the test's
    own (free port, own directory); all are stopped after the test."""
    require_program("redis-server")
    started: list[PrivateRedis] = []

    def make(extra_args: list[str] | None = None) -> PrivateRedis:
        directory = tmp_path / f"redis-{len(started)}"
        directory.mkdir()
        server = PrivateRedis(directory, extra_args)
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def private_redis(make_private_redis: Callable[..., PrivateRedis]) -> PrivateRedis:
    """A redis-server of the test's own (free port) that it may kill, restart and wipe."""
    return make_private_redis()


@pytest.fixture
def execution_id() -> str:
    return f"t-{uuid.uuid4().hex[:16]}"


#: Test modules whose stream tests run twice: through the Django view and the ASGI fast path.
BOTH_ENTRY_POINTS = {"tests.test_stream", "tests.test_security", "tests.test_hardening", "tests.test_multi",
                     "tests.test_fragments", "tests.test_kind_contract", "tests.test_kind_bounds",
                     "tests.test_renewal"}


#: Test modules that load the machine themselves (chaos, thousands of connections,
#: full-speed senders) or judge clients by how soon they take bytes: `make test`
#: runs them after the others, two at a time (see the Makefile), so neither
#: disturbs the other much. A single test of another module is marked
#: ``@pytest.mark.heavy`` itself.
HEAVY_MODULES = {"tests.test_chaos", "tests.test_throughput", "tests.test_slow_client_proxies"}
#: Test modules that measure a server's memory (what it holds depends on how many
#: requests are in flight at once, so on the machine's load): run last, one at a time
#: (a test of theirs that measures no memory is marked ``heavy`` instead).
ALONE_MODULES = {"tests.test_leaks"}


#: The longest test modules (a minute or more of servers and clients each), run first:
#: `make test` hands whole modules to its parallel processes in collection order, and
#: a long one handed out last would leave the others idle while it runs.
LONGEST_FIRST = ["tests.test_stream", "tests.test_topologies", "tests.test_multiprocess",
                 "tests.test_htmx_browser", "tests.test_security", "tests.test_commands",
                 "tests.test_faults", "tests.test_browser"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--stream-kinds", default="single,set,feed",
                     help="the kinds of stream tests/test_stream.py runs on (comma-separated)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(getattr(item.module, "__name__", ""), len(rank)))
    for item in items:
        module = getattr(item.module, "__name__", "")
        if module in HEAVY_MODULES:
            item.add_marker(pytest.mark.heavy)
        elif module in ALONE_MODULES and item.get_closest_marker("heavy") is None:
            item.add_marker(pytest.mark.alone)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.module.__name__ in BOTH_ENTRY_POINTS and "entry_point" in metafunc.fixturenames:
        metafunc.parametrize("entry_point", ["view", "fast"], indirect=True, scope="session")


@pytest.fixture(scope="session")
def entry_point(request: pytest.FixtureRequest) -> str:
    """How servers serve streams: "view" (Django view, default) or "fast" (``SSE_FAST_PATH=1``)."""
    return getattr(request, "param", "view")


def entry_point_env(entry_point: str) -> dict[str, str]:
    return {"SSE_FAST_PATH": "1"} if entry_point == "fast" else {}


@pytest.fixture(scope="session")
def server(entry_point: str) -> Iterator[Server]:
    """One daphne process on the in-memory layer, shared by the tests that need no tuning."""
    with Server("daphne", env=entry_point_env(entry_point), sse_exec={"KEEPALIVE": 30}) as srv:
        yield srv


@pytest.fixture
def make_server(entry_point: str) -> Iterator[Callable[..., Server]]:
    """Start servers with specific settings; all are stopped after the test."""
    started: list[Server] = []

    def make(*args: object, **kwargs: object) -> Server:
        kwargs["env"] = {**entry_point_env(entry_point), **(kwargs.get("env") or {})}  # type: ignore[dict-item]
        srv = Server(*args, **kwargs).start()  # type: ignore[arg-type]
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


@pytest.fixture
def url_for() -> Callable[..., str]:
    """``url_for(server, execution_id, **stream_url kwargs)`` -> absolute signed stream URL."""
    from django_sse_exec import stream_url

    def make(srv: Server, execution_id: str, **kwargs: object) -> str:
        return srv.base_url + stream_url(execution_id, **kwargs)  # type: ignore[arg-type]

    return make


def migrated_db_env(tmp_path_factory: pytest.TempPathFactory, name: str) -> dict[str, str]:
    """``TEST_DB_PATH`` of a freshly migrated sqlite file, for servers that share users
    and sessions with each other (and with ``/control/login``)."""
    env = {"TEST_DB_PATH": str(tmp_path_factory.mktemp(name) / "db.sqlite3")}
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0",
                    "--settings", "tests.settings"], cwd=ROOT, env={**os.environ, **env},
                   check=True, timeout=120)
    return env
