"""Shared fixtures: real servers, stream URLs, unique execution ids, Redis."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.server import Server

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


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


@pytest.fixture
def execution_id() -> str:
    return f"t-{uuid.uuid4().hex[:16]}"


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    """One daphne process on the in-memory layer, shared by the tests that need no tuning."""
    with Server("daphne", sse_exec={"KEEPALIVE": 30}) as srv:
        yield srv


@pytest.fixture
def make_server() -> Iterator[Callable[..., Server]]:
    """Start servers with specific settings; all are stopped after the test."""
    started: list[Server] = []

    def make(*args: object, **kwargs: object) -> Server:
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
