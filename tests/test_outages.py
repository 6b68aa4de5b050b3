"""An outage at connect is retried by the client; only a refusal is a 403.

Through real daphne for both entry points: a policy whose database is down, and
a store that cannot be reached, give a 200 that ends at once with ``retry:`` and
a comment naming the cause (logged as an error); a policy that refuses is a 403;
a policy with a bug stays a 403. Plus the classification itself, the database
bound's semaphore, and the 204's headers.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

import httpx
import pytest
from django.core.exceptions import PermissionDenied
from django.db import OperationalError, ProgrammingError
from django.test import RequestFactory, override_settings

from django_sse_exec.auth.db_slots import database_slot
from django_sse_exec.auth.policies import authorize
from django_sse_exec.exceptions import StoreUnavailable
from django_sse_exec.outages import ServiceUnavailable, cause_of
from tests.conftest import entry_point_env
from tests.server import Server
from tests.sse import SSEClient


# Policies the servers below load by dotted path.
def database_down(request, execution_id):
    raise OperationalError('connection failed: FATAL: sorry, too many clients already')


async def redis_down(request, execution_id):
    import redis.exceptions

    raise redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379")


def refuses(request, execution_id):
    raise PermissionDenied("not yours")


def buggy(request, execution_id):
    return request.no_such_attribute


@pytest.mark.parametrize("exc, cause", [
    (OperationalError("too many connections"), "database"),
    (StoreUnavailable("redis timed out"), "redis"),
    (TimeoutError(), "timeout"),
    (asyncio.TimeoutError(), "timeout"),
    (ConnectionRefusedError(), "network"),
    (ProgrammingError("relation does not exist"), None),
    (AttributeError("bug"), None),
    (PermissionDenied("no"), None),
])
def test_what_counts_as_an_outage(exc, cause):
    assert cause_of(exc) == cause


async def test_authorize_raises_for_an_outage_and_logs_it(caplog):
    caplog.set_level(logging.ERROR, logger="django_sse_exec")
    request = RequestFactory().get("/sse/executions/e1/events")
    with override_settings(SSE_EXEC={"AUTHORIZE": database_down}):
        with pytest.raises(ServiceUnavailable) as raised:
            await authorize(request, "e1")
    assert (raised.value.step, raised.value.cause) == ("authorization", "database")
    assert "authorization unavailable (OperationalError: connection failed" in caplog.text
    with override_settings(SSE_EXEC={"AUTHORIZE": refuses}):
        assert await authorize(request, "e1") == "not yours"
    with override_settings(SSE_EXEC={"AUTHORIZE": buggy}):
        assert await authorize(request, "e1") == "authorization failed"


async def test_database_slots_bound_concurrent_holders():
    holding = 0
    most = 0

    async def hold() -> None:
        nonlocal holding, most
        async with database_slot():
            holding += 1
            most = max(most, holding)
            await asyncio.sleep(0.01)
            holding -= 1

    with override_settings(SSE_EXEC={"AUTHORIZE_DB_CONNECTIONS": 3}):
        await asyncio.gather(*(hold() for _ in range(20)))
    assert most == 3
    with override_settings(SSE_EXEC={"AUTHORIZE_DB_CONNECTIONS": None}):
        most = 0
        await asyncio.gather(*(hold() for _ in range(20)))
    assert most == 20


def by_execution(request, execution_id):
    """The servers' policy: what it does depends on the execution id's first word."""
    kind = execution_id.split("-")[0]
    if kind == "dbdown":
        return database_down(request, execution_id)
    if kind == "redisdown":
        return redis_down(request, execution_id)
    if kind == "refuse":
        return refuses(request, execution_id)
    if kind == "bug":
        return buggy(request, execution_id)
    return True


@pytest.fixture(scope="module", params=["view", "fast"])
def policy_server(request):
    """One daphne per entry point whose policy is :func:`by_execution`."""
    with Server("daphne", env=entry_point_env(request.param),
                sse_exec={"AUTHORIZE": "tests.test_outages.by_execution"}) as srv:
        yield srv


async def _answer(url: str, headers: dict[str, str] | None = None) -> SSEClient:
    client = SSEClient(url, headers)
    await client.connect()
    if client.response.status_code == 200:
        await client.read_until_closed(timeout=20)
    else:
        await client.response.aread()
    await client.close()
    return client


@pytest.mark.parametrize("kind, cause", [("dbdown", "database"), ("redisdown", "redis")])
async def test_policy_outage_is_a_retry_not_a_403(policy_server, url_for, kind, cause):
    client = await _answer(url_for(policy_server, f"{kind}-{uuid.uuid4().hex[:8]}"))
    assert client.response.status_code == 200
    assert client.response.headers["content-type"].startswith("text/event-stream")
    assert client.raw == (b"retry: 2000\n: reconnect (authorization unavailable: "
                          + cause.encode() + b")\n\n")
    assert client.events == []
    assert "authorization unavailable" in policy_server.log()


@pytest.mark.parametrize("kind, reason", [("refuse", b"not yours"), ("bug", b"authorization failed")])
async def test_refusal_and_bug_stay_403(policy_server, url_for, kind, reason):
    client = await _answer(url_for(policy_server, f"{kind}-{uuid.uuid4().hex[:8]}"))
    assert client.response.status_code == 403
    assert client.response.content == reason


async def test_204_has_no_content_type(policy_server, url_for, execution_id):
    policy_server.send(execution_id, ("one", 1))
    last = policy_server.close(execution_id)
    async with httpx.AsyncClient() as http:
        resp = await http.get(url_for(policy_server, execution_id),
                              headers={"Last-Event-ID": str(last)})
    assert resp.status_code == 204
    assert "content-type" not in resp.headers
    assert resp.content == b""


@pytest.mark.parametrize("entry", ["view", "fast"])
async def test_store_outage_on_reconnect_is_a_retry(make_server, url_for, execution_id, entry):
    """A reconnect (Last-Event-ID) reads the store first; Redis down must not be a 500."""
    unreachable = {"STORE": "redis", "REDIS_URL": "redis://127.0.0.1:1/0"}
    srv = make_server("daphne", env=entry_point_env(entry), sse_exec=unreachable)
    client = await _answer(url_for(srv, execution_id), {"Last-Event-ID": "3"})
    assert client.response.status_code == 200
    assert client.raw == (b"retry: 2000\n: reconnect (event store unavailable: redis; Redis at "
                          b"redis://127.0.0.1:1/0 unreachable, check SSE_EXEC['REDIS_URL'])\n\n")
    assert "Redis at redis://127.0.0.1:1/0 is unreachable (StoreUnavailable" in srv.log()


@pytest.mark.parametrize("size, bad", [(8, False), (1, False), (None, False), (0, True),
                                       (-2, True), ("8", True), (True, True), (2.5, True)])
def test_db_connections_check(settings, size, bad):
    from django.core.checks import run_checks

    settings.SSE_EXEC = {"AUTHORIZE_DB_CONNECTIONS": size}
    assert ("django_sse_exec.E011" in [m.id for m in run_checks()]) is bad
